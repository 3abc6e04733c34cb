"""Spatial preprocessing and augmentation of RGB clips (reference_spec §1.3).

Every function takes a clip `frames` uint8 [T, H, W, 3] (T, H, W may be
dynamic), runs in graph mode inside `tf.data.Dataset.map` (no py_function),
and applies ONE random draw per clip: the same crop, flip, scale and
RandAugment op is applied to every frame.

Randomness is stateless. Every random function takes `seed`, an int32/int64
tensor of shape [2], and only uses `tf.random.stateless_*` ops, so a given
(clip, seed) pair always gives the same output, whatever the tf.data
parallelism or the order in which elements are processed.

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
So the reference's 12 branches are implemented here with plain TF ops
(following tensorflow/models `official/legacy/image_classification/augment.py`
as used by scenic `video_ops.distort_image_with_randaugment`), and the crop and
flip use `tf.slice` / `tf.reverse` with stateless draws.

Seed use in `preprocess_clip`: the clip seed is split once into four
independent seeds, always in the same slots (scale jitter, crop, flip,
RandAugment), so switching one augmentation on or off does not change the
draws of the others.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

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

# Slots of the per-clip seed split (see module docstring).
_SEED_JITTER, _SEED_CROP, _SEED_FLIP, _SEED_RAND_AUGMENT = range(4)


def _as_seed(seed) -> tf.Tensor:
  """Converts `seed` to an integer tensor of shape [2]."""
  seed = tf.convert_to_tensor(seed)
  if seed.dtype not in (tf.int32, tf.int64):
    raise ValueError(f"seed must be int32 or int64, got {seed.dtype}.")
  return tf.ensure_shape(seed, [2])


def _split(seed: tf.Tensor, num: int) -> list[tf.Tensor]:
  """Splits a [2] seed into `num` independent [2] seeds."""
  return tf.unstack(tf.random.experimental.stateless_split(seed, num=num))


def _check_uint8(frames: tf.Tensor, name: str) -> tf.Tensor:
  frames = tf.convert_to_tensor(frames)
  if frames.dtype != tf.uint8:
    raise ValueError(f"{name} expects uint8 frames, got {frames.dtype}.")
  if frames.shape.rank is not None and frames.shape.rank != 4:
    raise ValueError(
        f"{name} expects frames of shape [T, H, W, 3], got {frames.shape}."
    )
  return frames


def _resize_bilinear_uint8(frames: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
  """Bilinear resize to `size` = [h, w], cast back to uint8 (truncation).

  The cast truncates like DMVR's `tf.cast(tf.image.resize(...), uint8)`;
  bilinear outputs are convex combinations of uint8 values, so no clipping
  is needed.
  """
  resized = tf.image.resize(
      frames, size, method=tf.image.ResizeMethod.BILINEAR
  )
  return tf.cast(resized, tf.uint8)


# ---------------------------------------------------------------------------
# Geometry.
# ---------------------------------------------------------------------------
def resize_short_side(frames: tf.Tensor, short_side: int = 256) -> tf.Tensor:
  """Resizes a clip so that its short side is `short_side` (DMVR semantics).

  Output size (integer division, as DMVR `resize_smallest`):
    h' = max(short_side, H * short_side // W),
    w' = max(short_side, W * short_side // H).
  No resize op runs (tf.cond) when the clip already has that size, so a clip
  whose short side is already `short_side` is returned unchanged.

  Args:
    frames: uint8 [T, H, W, 3].
    short_side: target length of the shorter spatial side.

  Returns:
    uint8 [T, h', w', 3].
  """
  frames = _check_uint8(frames, "resize_short_side")
  shape = tf.shape(frames)
  h, w = shape[1], shape[2]
  out_h = tf.maximum(short_side, (h * short_side) // w)
  out_w = tf.maximum(short_side, (w * short_side) // h)
  should_resize = tf.logical_or(tf.not_equal(h, out_h), tf.not_equal(w, out_w))
  return tf.cond(
      should_resize,
      lambda: _resize_bilinear_uint8(frames, tf.stack([out_h, out_w])),
      lambda: frames,
  )


def scale_jitter(
    frames: tf.Tensor,
    seed: tf.Tensor,
    min_scale: float = 0.9,
    max_scale: float = 1.33,
    prob: float = 1.0,
) -> tf.Tensor:
  """Random independent rescaling of height and width (DMVR scale_jitter_augm).

  Draws h_scale, w_scale ~ U(min_scale, max_scale) and, with probability
  `prob`, resizes (bilinear) every frame to
  [int(h_scale * H), int(w_scale * W)] (truncation), cast back to uint8.

  Args:
    frames: uint8 [T, H, W, 3].
    seed: int32/int64 [2].
    min_scale: lower bound of the scale factors.
    max_scale: upper bound of the scale factors.
    prob: probability of applying the jitter.

  Returns:
    uint8 [T, H', W', 3]; H' = H and W' = W when the jitter is not applied.
  """
  frames = _check_uint8(frames, "scale_jitter")
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f"prob should be in [0, 1], got {prob}.")
  seed = _as_seed(seed)
  scale_seed, coin_seed = _split(seed, 2)
  scales = tf.random.stateless_uniform(
      [2], scale_seed, minval=min_scale, maxval=max_scale, dtype=tf.float32
  )
  coin = tf.random.stateless_uniform([], coin_seed, dtype=tf.float32)
  hw = tf.cast(tf.shape(frames)[1:3], tf.float32)
  new_size = tf.cast(scales * hw, tf.int32)
  return tf.cond(
      coin < prob,
      lambda: _resize_bilinear_uint8(frames, new_size),
      lambda: frames,
  )


def _set_crop_shape(frames: tf.Tensor, t_static, size: int) -> tf.Tensor:
  frames.set_shape([t_static, size, size, 3])
  return frames


def random_crop(frames: tf.Tensor, size: int, seed: tf.Tensor) -> tf.Tensor:
  """Random `size` x `size` crop at the same offset for every frame.

  If a side of the clip is smaller than `size`, the clip is first resized
  (bilinear, keeping the aspect ratio, `resize_short_side(frames, size)`) so
  that both sides are >= `size`; no padding is added. With the reference
  settings (short side 256, scale jitter >= 0.9, crop 224) this never
  happens.

  The offset is uniform over all valid positions:
  offset_y in [0, H - size], offset_x in [0, W - size].

  Args:
    frames: uint8 [T, H, W, 3].
    size: crop side.
    seed: int32/int64 [2].

  Returns:
    uint8 [T, size, size, 3].
  """
  frames = _check_uint8(frames, "random_crop")
  t_static = frames.shape[0]
  seed = _as_seed(seed)
  shape = tf.shape(frames)
  frames = tf.cond(
      tf.minimum(shape[1], shape[2]) < size,
      lambda: resize_short_side(frames, size),
      lambda: frames,
  )
  shape = tf.shape(frames)
  y_seed, x_seed = _split(seed, 2)
  off_y = tf.random.stateless_uniform(
      [], y_seed, minval=0, maxval=shape[1] - size + 1, dtype=tf.int32
  )
  off_x = tf.random.stateless_uniform(
      [], x_seed, minval=0, maxval=shape[2] - size + 1, dtype=tf.int32
  )
  cropped = tf.slice(frames, [0, off_y, off_x, 0], [-1, size, size, -1])
  return _set_crop_shape(cropped, t_static, size)


def center_crop(frames: tf.Tensor, size: int) -> tf.Tensor:
  """Central `size` x `size` crop (DMVR eval: `resize_with_crop_or_pad`).

  The crop starts at ((H - size) // 2, (W - size) // 2). As in the reference,
  a side smaller than `size` is zero-padded symmetrically instead (never the
  case with short side 256 and crop 224).

  Args:
    frames: uint8 [T, H, W, 3].
    size: crop side.

  Returns:
    uint8 [T, size, size, 3].
  """
  frames = _check_uint8(frames, "center_crop")
  t_static = frames.shape[0]
  cropped = tf.image.resize_with_crop_or_pad(frames, size, size)
  return _set_crop_shape(cropped, t_static, size)


def random_flip(
    frames: tf.Tensor, seed: tf.Tensor, prob: float = 0.5
) -> tf.Tensor:
  """Horizontal flip of the whole clip with probability `prob`.

  Args:
    frames: uint8 [T, H, W, 3].
    seed: int32/int64 [2].
    prob: flip probability.

  Returns:
    uint8 [T, H, W, 3], columns reversed (x -> W - 1 - x) for every frame or
    for none.
  """
  frames = _check_uint8(frames, "random_flip")
  coin = tf.random.stateless_uniform([], _as_seed(seed), dtype=tf.float32)
  return tf.cond(
      coin < prob, lambda: tf.reverse(frames, axis=[2]), lambda: frames
  )


# ---------------------------------------------------------------------------
# RandAugment branches. All take and return uint8 [T, H, W, 3]; statistics
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
  y_seed, x_seed = _split(seed, 2)
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


def _rand_augment_branches(
    magnitude: float,
) -> list[Callable[[tf.Tensor, tf.Tensor], tf.Tensor]]:
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


def _rand_augment_draws(
    seed: tf.Tensor, num_layers: int
) -> tuple[tf.Tensor, tf.Tensor]:
  """The random choices of `rand_augment`.

  Layer l uses `stateless_fold_in(seed, l)`, split into an op seed and an
  argument seed (only Cutout uses the latter).

  Args:
    seed: int32/int64 [2].
    num_layers: N.

  Returns:
    (ops int32 [N] in [0, 12), arg_seeds [N, 2] of the seed's dtype).
  """
  seed = _as_seed(seed)
  ops, arg_seeds = [], []
  for layer in range(num_layers):
    layer_seed = tf.random.experimental.stateless_fold_in(seed, layer)
    op_seed, arg_seed = _split(layer_seed, 2)
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


def _rand_augment(
    frames: tf.Tensor, seed: tf.Tensor, num_layers: int, magnitude: float
) -> tf.Tensor:
  frames = _check_uint8(frames, "rand_augment")
  static_shape = frames.shape
  branches = _rand_augment_branches(magnitude)
  ops, arg_seeds = _rand_augment_draws(seed, num_layers)
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
  (`tf.switch_case`). See `_rand_augment_branches` for the arguments and the
  module docstring for why Keras' RandAugment is not used. Known, deliberate
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
  return _rand_augment(frames, seed, num_layers, magnitude)


# ---------------------------------------------------------------------------
# Normalisation and the full pipeline.
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


def normalize(frames: tf.Tensor) -> tf.Tensor:
  """CLIP normalisation: (frames / 255 - CLIP_MEAN) / CLIP_STD.

  Args:
    frames: uint8 (or any real dtype on the 0..255 scale) [..., 3].

  Returns:
    float32, same shape.
  """
  # One multiply-add per value: x * (1 / (255 std)) - mean / std.
  scale = tf.constant([1.0 / (255.0 * s) for s in CLIP_STD], tf.float32)
  offset = tf.constant([-m / s for m, s in zip(CLIP_MEAN, CLIP_STD)],
                       tf.float32)
  return tf.cast(frames, tf.float32) * scale + offset


def preprocess_clip(
    frames: tf.Tensor,
    *,
    is_training: bool,
    seed: tf.Tensor | None = None,
    crop_size: int = 224,
    min_resize: int = 256,
    jitter_scale: bool = False,
    min_scale: float = 0.9,
    max_scale: float = 1.33,
    rand_augment: bool = False,
    num_layers: int = 3,
    magnitude: float = 10,
    flip: bool = True,
    normalize_output: bool = True,
    rand_augment_impl: str = "reference",
) -> tf.Tensor:
  """Reference spatial pipeline (reference_spec.md §1.3), in its order.

  1. `resize_short_side(min_resize)`;
  2. train and `jitter_scale`: `scale_jitter(min_scale, max_scale, prob=1)`;
  3. train: `random_crop(crop_size)`; eval: `center_crop(crop_size)`;
  4. train and `flip`: `random_flip(p=0.5)`;
  5. train and `rand_augment`: `rand_augment(num_layers, magnitude)`;
  6. `normalize` if `normalize_output`, else the clip stays uint8.
  With `is_training=False` steps 2, 4 and 5 are skipped whatever the flags,
  no random op runs and `seed` is ignored.

  Args:
    frames: uint8 [T, H, W, 3].
    is_training: Python bool.
    seed: int32/int64 [2]; required when `is_training`.
    crop_size: output side.
    min_resize: short side after step 1.
    jitter_scale: enables step 2 (reference `do_jitter_scale`).
    min_scale: scale jitter lower bound.
    max_scale: scale jitter upper bound.
    rand_augment: enables step 5 (reference `do_rand_augment`).
    num_layers: RandAugment N.
    magnitude: RandAugment M (0..10).
    flip: enables step 4 (reference `random_flip`).
    normalize_output: enables step 6.
    rand_augment_impl: "reference" (the reference's 12 branches, seeded) or
      "keras" (`keras.layers.RandAugment`, not seed-reproducible).

  Returns:
    float32 (normalised) or uint8 [T, crop_size, crop_size, 3].

  Raises:
    ValueError: if `is_training` and `seed` is None.
  """
  frames = _check_uint8(frames, "preprocess_clip")
  t_static = frames.shape[0]
  frames = resize_short_side(frames, min_resize)
  if is_training:
    if seed is None:
      raise ValueError("preprocess_clip(is_training=True) needs a seed.")
    seeds = _split(_as_seed(seed), 4)
    if jitter_scale:
      frames = scale_jitter(
          frames, seeds[_SEED_JITTER], min_scale, max_scale, prob=1.0
      )
    frames = random_crop(frames, crop_size, seeds[_SEED_CROP])
  else:
    frames = center_crop(frames, crop_size)
  return finish_cropped_clip(
      _set_crop_shape(frames, t_static, crop_size),
      is_training=is_training,
      seed=seed,
      rand_augment=rand_augment,
      num_layers=num_layers,
      magnitude=magnitude,
      flip=flip,
      normalize_output=normalize_output,
      rand_augment_impl=rand_augment_impl,
  )


def finish_cropped_clip(
    frames: tf.Tensor,
    *,
    is_training: bool,
    seed: tf.Tensor | None = None,
    rand_augment: bool = False,
    num_layers: int = 3,
    magnitude: float = 10,
    flip: bool = True,
    normalize_output: bool = True,
    rand_augment_impl: str = "reference",
) -> tf.Tensor:
  """Steps 4-6 of `preprocess_clip` on an already cropped clip.

  With the same `seed`, `crop_offsets` + cropping + this function give
  exactly what `preprocess_clip` gives (without scale jitter).

  Args:
    frames: uint8 [T, S, S, 3].

  Returns:
    float32 (normalised) or uint8 [T, S, S, 3].
  """
  if is_training:
    seeds = _split(_as_seed(seed), 4)
    if flip:
      frames = random_flip(frames, seeds[_SEED_FLIP])
    if rand_augment and rand_augment_impl == "keras":
      frames = keras_rand_augment(frames, num_layers, magnitude)
    elif rand_augment:
      frames = _rand_augment(
          frames, seeds[_SEED_RAND_AUGMENT], num_layers, magnitude
      )
  if normalize_output:
    frames = normalize(frames)
  return frames


def crop_offsets(
    height: tf.Tensor,
    width: tf.Tensor,
    size: int,
    *,
    is_training: bool,
    seed: tf.Tensor | None = None,
) -> tuple[tf.Tensor, tf.Tensor]:
  """The crop offsets `preprocess_clip` uses for an H x W clip.

  Valid when no resize happens before the crop: the short side already
  equals `min_resize` and scale jitter is off.  Lets the input pipeline
  decode only the crop (`tf.io.decode_and_crop_jpeg`).

  Args:
    height, width: scalar int32, the clip's frame size (>= size).
    size: crop side.
    is_training: random (training) or centre (evaluation) crop.
    seed: the clip seed given to `preprocess_clip` (training).

  Returns:
    (offset_y, offset_x) int32 scalars.
  """
  if not is_training:
    return (height - size) // 2, (width - size) // 2
  crop_seed = _split(_as_seed(seed), 4)[_SEED_CROP]
  y_seed, x_seed = _split(crop_seed, 2)
  off_y = tf.random.stateless_uniform(
      [], y_seed, minval=0, maxval=height - size + 1, dtype=tf.int32
  )
  off_x = tf.random.stateless_uniform(
      [], x_seed, minval=0, maxval=width - size + 1, dtype=tf.int32
  )
  return off_y, off_x
