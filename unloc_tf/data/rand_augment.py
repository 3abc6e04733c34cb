"""The reference's video RandAugment, clip-consistent and seeded.

One of 12 branches per layer, applied to the whole clip uint8 [T, H, W, 3]
(scenic `video_ops.distort_image_with_randaugment`, following
tensorflow/models `official/legacy/image_classification/augment.py`): the
colour ops of RandAugment, no geometric ops.  Written with plain TF ops and
stateless draws (`clip_args`), so a (clip, seed) pair always gives the same
clip.

Why not `keras.layers.RandAugment` (Keras 3.15) and the other Keras random
layers (checked in keras/src/layers/preprocessing/image_preprocessing/):
  * `RandAugment.get_random_transformation(data, training, seed)` ignores its
    `seed` argument: the op indices and every sub-layer's parameters come from
    the layer's own `SeedGenerator` (a stateful variable). The same call with
    the same seed tensor returns different ops, and two passes of a tf.data
    pipeline over the same elements give different clips.
  * The sub-layers (and `RandomCrop`, `RandomFlip`) accept a `seed` only as a
    Python int or a `SeedGenerator`; a per-element seed tensor raises
    `ValueError: Argument seed must be either an integer or an instance of
    SeedGenerator`.
  * Its op list is not the reference's: it contains geometric ops (shear,
    translation, rotation), has no Invert, Cutout, SolarizeAdd or identity,
    and samples a random magnitude per op instead of the fixed magnitude.
  * `transform_images` evaluates all 11 sub-layers for each of the `num_ops`
    layers and selects with `where` (33 full-clip transforms, in float32):
    about 5 s per 128x224x224 clip on this machine.
`keras_rand_augment` still offers the Keras layer when determinism does not
matter.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from unloc_tf.data import clip_args

# RandAugment constants of the reference (tensorflow/models augment.py and
# scenic video_ops.distort_image_with_randaugment).
_MAX_LEVEL = 10.0
_CUTOUT_CONST = 40
# The reference builds replace_value = [128] * 3, but for Cutout it then
# rebuilds the arguments as (pad_size, num_frames), so the video cutout uses
# the default replace=0. No other kept op uses the replace value (it is only
# for the dropped geometric ops). We reproduce what the reference computes.
_CUTOUT_REPLACE = 0
_NUM_RAND_AUGMENT_BRANCHES = 12  # 11 ops + identity.


# ---------------------------------------------------------------------------
# Branches. All take and return uint8 [T, H, W, 3]; statistics
# (AutoContrast, Equalize, Contrast) are computed over the whole clip, like
# the reference's ops on the clip reshaped to [T * H, W, 3], so every frame
# gets the same mapping.
# ---------------------------------------------------------------------------
def _blend(image1: tf.Tensor, image2: tf.Tensor, factor: float) -> tf.Tensor:
  """image1 + factor * (image2 - image1), clipped to [0, 255], uint8."""
  if factor == 0.0:
    return tf.convert_to_tensor(image1)
  if factor == 1.0:
    return tf.convert_to_tensor(image2)
  image1 = tf.cast(image1, tf.float32)
  image2 = tf.cast(image2, tf.float32)
  blended = image1 + factor * (image2 - image1)
  return tf.cast(tf.clip_by_value(blended, 0.0, 255.0), tf.uint8)


def _autocontrast(image: tf.Tensor) -> tf.Tensor:
  """Per channel, maps [min, max] of the clip linearly to [0, 255]."""
  lo = tf.cast(tf.reduce_min(image, axis=[0, 1, 2]), tf.float32)
  hi = tf.cast(tf.reduce_max(image, axis=[0, 1, 2]), tf.float32)
  valid = hi > lo
  # Channels with hi == lo keep scale 1 and offset 0: unchanged, as the
  # reference's per-channel tf.cond.
  scale = tf.where(valid, 255.0 / tf.where(valid, hi - lo, 1.0), 1.0)
  offset = tf.where(valid, -lo * scale, 0.0)
  out = tf.cast(image, tf.float32) * scale + offset
  return tf.cast(tf.clip_by_value(out, 0.0, 255.0), tf.uint8)


def _equalize(image: tf.Tensor) -> tf.Tensor:
  """PIL Equalize per channel, histogram over the whole clip."""
  values = tf.reshape(tf.cast(image, tf.int32), [-1, 3])
  # One bincount for the three channels: channel c uses bins [256c, 256c+256).
  shifted = values + tf.constant([0, 256, 512], tf.int32)
  histo = tf.reshape(
      tf.math.bincount(
          tf.reshape(shifted, [-1]), minlength=768, maxlength=768
      ),
      [3, 256],
  )
  # step = (sum of counts - count of the last non-empty bin) // 255.
  last_bin = tf.reduce_max(values, axis=0)  # [3]
  last_count = tf.gather(histo, last_bin, batch_dims=1)
  step = (tf.reduce_sum(histo, axis=1) - last_count) // 255  # [3]
  safe_step = tf.maximum(step, 1)[:, None]
  lut = (tf.cumsum(histo, axis=1) + safe_step // 2) // safe_step
  lut = tf.clip_by_value(
      tf.concat([tf.zeros([3, 1], tf.int32), lut[:, :-1]], axis=1), 0, 255
  )
  # step == 0 leaves the channel unchanged.
  identity = tf.broadcast_to(tf.range(256, dtype=tf.int32), [3, 256])
  lut = tf.where((step == 0)[:, None], identity, lut)
  out = tf.gather(tf.reshape(lut, [-1]), shifted)
  return tf.reshape(tf.cast(out, tf.uint8), tf.shape(image))


def _invert(image: tf.Tensor) -> tf.Tensor:
  return 255 - image


def _posterize(image: tf.Tensor, bits: int) -> tf.Tensor:
  """Keeps the `bits` most significant bits."""
  shift = 8 - bits
  if shift <= 0:
    return image
  if shift >= 8:
    return tf.zeros_like(image)
  return tf.bitwise.left_shift(tf.bitwise.right_shift(image, shift), shift)


def _solarize(image: tf.Tensor, threshold: int) -> tf.Tensor:
  """Inverts pixels >= threshold.

  The reference compares the uint8 image with the Python int threshold, which
  is converted to uint8: threshold 256 (magnitude 10) wraps to 0 and every
  pixel is inverted (google-research/big_vision#110). `threshold % 256`
  reproduces that.
  """
  threshold = threshold % 256
  return tf.where(image < tf.constant(threshold, tf.uint8), image, 255 - image)


def _solarize_add(
    image: tf.Tensor, addition: int, threshold: int = 128
) -> tf.Tensor:
  """Adds `addition` (clipped to [0, 255]) to pixels < threshold."""
  addition = max(-255, min(255, addition))
  if addition >= 0:
    # Saturating uint8 add, no int32 copy of the clip.
    added = tf.minimum(image, tf.constant(255 - addition, tf.uint8)) + addition
  else:
    added = tf.maximum(image, tf.constant(-addition, tf.uint8)) - (-addition)
  return tf.where(image < tf.constant(threshold, tf.uint8), added, image)


def _color(image: tf.Tensor, factor: float) -> tf.Tensor:
  """PIL Color: blend with the grayscale clip."""
  degenerate = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(image))
  return _blend(degenerate, image, factor)


def _contrast(image: tf.Tensor, factor: float) -> tf.Tensor:
  """The reference's Contrast, bug for bug.

  The reference blends with a constant grey image whose value is meant to be
  the mean grey level, but computes sum(histogram) / 256 = (number of pixels)
  / 256, clipped to [0, 255]; for any real clip (T * H * W >= 65280) the
  blend target is 255. We reproduce that value (no histogram needed).
  """
  num_pixels = tf.cast(tf.reduce_prod(tf.shape(image)[:3]), tf.float32)
  mean = tf.cast(tf.clip_by_value(num_pixels / 256.0, 0.0, 255.0), tf.uint8)
  degenerate = tf.fill(tf.shape(image), mean)
  return _blend(degenerate, image, factor)


def _brightness(image: tf.Tensor, factor: float) -> tf.Tensor:
  return _blend(tf.zeros_like(image), image, factor)


def _sharpness(image: tf.Tensor, factor: float) -> tf.Tensor:
  """PIL Sharpness: blend with a 3x3 smoothed clip, borders kept.

  Smoothing is done per frame (the reference convolves the [T * H, W, 3]
  image, so its two rows at each frame boundary mix neighbouring frames; per
  frame keeps every frame's transform identical and differs only there).
  """
  kernel = tf.constant(
      [[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32, shape=[3, 3, 1, 1]
  ) / 13.0
  kernel = tf.tile(kernel, [1, 1, 3, 1])
  smooth = tf.nn.depthwise_conv2d(
      tf.cast(image, tf.float32), kernel, [1, 1, 1, 1], padding="VALID"
  )
  smooth = tf.cast(tf.clip_by_value(smooth, 0.0, 255.0), tf.uint8)
  smooth = tf.pad(smooth, [[0, 0], [1, 1], [1, 1], [0, 0]])
  shape = tf.shape(image)
  rows = tf.range(shape[1])
  cols = tf.range(shape[2])
  inner = tf.logical_and(
      ((rows > 0) & (rows < shape[1] - 1))[:, None],
      ((cols > 0) & (cols < shape[2] - 1))[None, :],
  )[None, :, :, None]
  degenerate = tf.where(inner, smooth, image)
  return _blend(degenerate, image, factor)


def _cutout(image: tf.Tensor, pad_size: int, seed: tf.Tensor) -> tf.Tensor:
  """Fills the same (2*pad_size)^2 box (clipped at borders) in every frame.

  The box centre is uniform over the frame's pixels; rows
  [max(0, cy - pad), min(H, cy + pad)) and the same for columns are set to
  `_CUTOUT_REPLACE`.
  """
  shape = tf.shape(image)
  y_seed, x_seed = clip_args.split_seed(seed, 2)
  cy = tf.random.stateless_uniform(
      [], y_seed, minval=0, maxval=shape[1], dtype=tf.int32
  )
  cx = tf.random.stateless_uniform(
      [], x_seed, minval=0, maxval=shape[2], dtype=tf.int32
  )
  rows = tf.range(shape[1])
  cols = tf.range(shape[2])
  in_rows = (rows >= cy - pad_size) & (rows < cy + pad_size)
  in_cols = (cols >= cx - pad_size) & (cols < cx + pad_size)
  box = tf.logical_and(in_rows[:, None], in_cols[None, :])[None, :, :, None]
  return tf.where(box, tf.constant(_CUTOUT_REPLACE, tf.uint8), image)


def _branches(
    magnitude: float) -> list[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
  """The 12 branches in the reference's order, as f(image, seed) -> image.

  Level-to-argument mapping of the reference at magnitude m (0..10):
  Posterize bits int(m/10*4); Solarize threshold int(m/10*256); SolarizeAdd
  addition int(m/10*110) (threshold 128); Color/Contrast/Brightness/Sharpness
  factor m/10*1.8+0.1; Cutout pad int(m/10*40). No random sign flips (those
  are for the geometric ops, which the reference drops).
  """
  level = float(magnitude) / _MAX_LEVEL
  bits = int(level * 4)
  threshold = int(level * 256)
  addition = int(level * 110)
  enhance = level * 1.8 + 0.1
  pad_size = int(level * _CUTOUT_CONST)
  branches = [
      lambda x, s: _autocontrast(x),
      lambda x, s: _equalize(x),
      lambda x, s: _invert(x),
      lambda x, s: _posterize(x, bits),
      lambda x, s: _solarize(x, threshold),
      lambda x, s: _color(x, enhance),
      lambda x, s: _contrast(x, enhance),
      lambda x, s: _brightness(x, enhance),
      lambda x, s: _sharpness(x, enhance),
      lambda x, s: _cutout(x, pad_size, s),
      lambda x, s: _solarize_add(x, addition),
      lambda x, s: tf.identity(x),
  ]
  assert len(branches) == _NUM_RAND_AUGMENT_BRANCHES
  return branches


def _draws(seed: tf.Tensor, num_layers: int) -> tuple[tf.Tensor, tf.Tensor]:
  """The random choices of `rand_augment`.

  Layer l uses `stateless_fold_in(seed, l)`, split into an op seed and an
  argument seed (only Cutout uses the latter).

  Args:
    seed: int32/int64 [2].
    num_layers: N.

  Returns:
    (ops int32 [N] in [0, 12), arg_seeds [N, 2] of the seed's dtype).
  """
  seed = clip_args.as_seed(seed)
  ops, arg_seeds = [], []
  for layer in range(num_layers):
    layer_seed = tf.random.experimental.stateless_fold_in(seed, layer)
    op_seed, arg_seed = clip_args.split_seed(layer_seed, 2)
    ops.append(
        tf.random.stateless_uniform(
            [], op_seed, minval=0, maxval=_NUM_RAND_AUGMENT_BRANCHES,
            dtype=tf.int32,
        )
    )
    arg_seeds.append(arg_seed)
  if not ops:
    return tf.zeros([0], tf.int32), tf.zeros([0, 2], seed.dtype)
  return tf.stack(ops), tf.stack(arg_seeds)


def rand_augment(
    frames: tf.Tensor,
    seed: tf.Tensor,
    num_layers: int = 3,
    magnitude: float = 10,
) -> tf.Tensor:
  """Clip-consistent video RandAugment (scenic's, no geometric ops).

  For each of `num_layers` layers, one of 12 branches is drawn uniformly and
  applied unconditionally to the whole clip: AutoContrast, Equalize, Invert,
  Posterize, Solarize, Color, Contrast, Brightness, Sharpness, Cutout,
  SolarizeAdd, identity (indices 0..11). Only the selected branch runs
  (`tf.switch_case`). See `_branches` for the arguments and the module
  docstring for why Keras' RandAugment is not used. Known, deliberate
  reproductions of the reference: Solarize at magnitude 10 inverts every
  pixel, Contrast blends towards min(T*H*W/256, 255), Cutout fills with 0.

  Args:
    frames: uint8 [T, H, W, 3].
    seed: int32/int64 [2].
    num_layers: number of ops applied in sequence (N).
    magnitude: shared magnitude on the 0..10 scale (M).

  Returns:
    uint8 [T, H, W, 3].
  """
  frames = clip_args.check_clip(frames, "rand_augment")
  static_shape = frames.shape
  branches = _branches(magnitude)
  ops, arg_seeds = _draws(seed, num_layers)
  for layer in range(num_layers):
    frames = tf.switch_case(
        ops[layer],
        [
            (lambda fn=fn, x=frames, s=arg_seeds[layer]: fn(x, s))
            for fn in branches
        ],
    )
    frames.set_shape(static_shape)
  return frames


# ---------------------------------------------------------------------------
# The Keras layer (not seed-reproducible).
# ---------------------------------------------------------------------------
_KERAS_RAND_AUGMENT = {}


def keras_rand_augment(
    frames: tf.Tensor, num_layers: int = 3, magnitude: float = 10
) -> tf.Tensor:
  """`keras.layers.RandAugment`, one random transformation per clip.

  The Keras 3 core layer draws one transformation from the first frame and
  applies it to every frame.  It is NOT reproducible from a seed (the layer
  keeps its own seed state), it includes geometric ops, and it is slow (see
  the module docstring); `rand_augment` is the reference's version.

  Args:
    frames: uint8 [T, H, W, 3].
    num_layers: ops per clip.
    magnitude: 0..10, mapped to the layer's factor magnitude / 10.

  Returns:
    uint8 [T, H, W, 3].
  """
  import keras  # pylint: disable=g-import-not-at-top

  key = (num_layers, float(magnitude))
  if key not in _KERAS_RAND_AUGMENT:
    _KERAS_RAND_AUGMENT[key] = keras.layers.RandAugment(
        value_range=(0, 255), num_ops=num_layers, factor=magnitude / 10.0)
  layer = _KERAS_RAND_AUGMENT[key]
  shape = frames.shape
  x = tf.cast(frames, tf.float32)
  transform = layer.get_random_transformation(x[:1], training=True)
  x = layer.transform_images(x, transform, training=True)
  out = tf.cast(tf.clip_by_value(tf.round(x), 0, 255), tf.uint8)
  out.set_shape(shape)
  return out

