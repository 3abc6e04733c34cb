"""Token masks of the fusion transformer and of the feature pyramid.

Masks are integer (or bool) tensors, 1 = a real token.  The pyramid masks
follow `spec.PyramidSpec`: level `l` has `N0 // 2**l` tokens, and a level-`l`
token is real if any of the `2**l` level-0 tokens of its window is real.
Every shape here is static (the last axis must be known).
"""

from __future__ import annotations

import tensorflow as tf


def _binary_int32(mask) -> tf.Tensor:
  mask = tf.convert_to_tensor(mask)
  if mask.dtype != tf.bool:
    mask = tf.not_equal(mask, tf.zeros([], mask.dtype))
  return tf.cast(mask, tf.int32)


def downsample_mask(mask, stride: int) -> tf.Tensor:
  """Max-pools a mask along its last axis (window = stride = `stride`).

  Args:
    mask: [..., N] int/bool/float mask (non-zero = real).  N must be static.
    stride: window and stride (Python int >= 1).  A trailing remainder of
      fewer than `stride` tokens is dropped (floor, like VALID pooling).

  Returns:
    int32 [..., N // stride], 1 where any token of the window is real.
  """
  if stride < 1:
    raise ValueError(f"stride must be >= 1, got {stride}")
  mask = _binary_int32(mask)
  n = mask.shape[-1]
  if n is None:
    raise ValueError("downsample_mask needs a static last dimension")
  if stride == 1:
    return mask
  out = n // stride
  mask = mask[..., : out * stride]
  shape = tf.concat([tf.shape(mask)[:-1], [out, stride]], axis=0)
  pooled = tf.reduce_max(tf.reshape(mask, shape), axis=-1)
  return tf.ensure_shape(pooled, mask.shape[:-1].concatenate([out]))


def pyramid_masks(mask, num_levels: int) -> tf.Tensor:
  """Masks of all pyramid levels, concatenated along time.

  Args:
    mask: [..., N0] level-0 mask (non-zero = real).
    num_levels: L >= 1.

  Returns:
    int32 [..., T_tot] with T_tot = sum_l N0 // 2**l; level `l` is
    `downsample_mask(mask, 2**l)`.
  """
  if num_levels < 1:
    raise ValueError(f"num_levels must be >= 1, got {num_levels}")
  return tf.concat(
      [downsample_mask(mask, 2**l) for l in range(num_levels)], axis=-1)


def attention_mask_from_key_mask(key_mask) -> tf.Tensor:
  """Key-padding mask → the boolean attention mask of Keras attention.

  Args:
    key_mask: [..., S] (non-zero = attend to this key).  S must be static.

  Returns:
    bool [..., S, S]: `out[..., q, k] = key_mask[..., k]` for every query q
    (padding keys are masked for all queries; queries are never masked).
  """
  key_mask = tf.cast(_binary_int32(key_mask), tf.bool)
  s = key_mask.shape[-1]
  if s is None:
    raise ValueError("attention_mask_from_key_mask needs a static length")
  return tf.logical_and(key_mask[..., None, :], tf.ones([s, 1], tf.bool))
