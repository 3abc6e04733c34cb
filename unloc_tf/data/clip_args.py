"""The two argument types of every clip op: clips and stateless seeds.

A clip is uint8 [T, H, W, 3] (T, H, W may be dynamic).  Randomness is
stateless: a random op takes `seed`, an int32/int64 tensor of shape [2], and
uses only `tf.random.stateless_*` ops, so a given (clip, seed) pair always
gives the same output, whatever the tf.data parallelism or the order in which
elements are processed.
"""

from __future__ import annotations

import tensorflow as tf


def check_clip(frames, name: str) -> tf.Tensor:
  """`frames` as a tensor; raises ValueError unless uint8 [T, H, W, 3].

  Args:
    frames: the clip.
    name: the calling op, named in the error.
  """
  frames = tf.convert_to_tensor(frames)
  if frames.dtype != tf.uint8:
    raise ValueError(f"{name} expects uint8 frames, got {frames.dtype}.")
  if frames.shape.rank is not None and frames.shape.rank != 4:
    raise ValueError(
        f"{name} expects frames of shape [T, H, W, 3], got {frames.shape}."
    )
  return frames


def as_seed(seed) -> tf.Tensor:
  """Converts `seed` to an int32/int64 tensor of shape [2]."""
  seed = tf.convert_to_tensor(seed)
  if seed.dtype not in (tf.int32, tf.int64):
    raise ValueError(f"seed must be int32 or int64, got {seed.dtype}.")
  return tf.ensure_shape(seed, [2])


def split_seed(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  """Splits a [2] seed into `num` independent [2] seeds."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num=num))
