"""Spatial preprocessing of RGB clips (reference_spec §1.3), from JPEGs.

Every function takes a clip `frames` uint8 [T, H, W, 3] (or, `decode_*`, its
stored JPEG frames [T]), runs in graph mode inside `tf.data.Dataset.map` (no
py_function), and applies ONE random draw per clip: the same crop, flip,
scale and RandAugment op is applied to every frame.  Randomness is stateless
(`clip_args`): a given (clip, seed) pair always gives the same output.  The
crop and flip use `tf.slice` / `tf.reverse` with stateless draws; Keras'
random layers cannot take per-element seeds (see `rand_augment`).

Seed use in `preprocess_clip`: the clip seed is split once into four
independent seeds, always in the same slots (scale jitter, crop, flip,
RandAugment), so switching one augmentation on or off does not change the
draws of the others.
"""

from __future__ import annotations

import tensorflow as tf

from unloc_tf.data import clip_args
from unloc_tf.data import rand_augment as rand_augment_lib

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# Slots of the per-clip seed split (see module docstring).
_SEED_JITTER, _SEED_CROP, _SEED_FLIP, _SEED_RAND_AUGMENT = range(4)


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
  frames = clip_args.check_clip(frames, "resize_short_side")
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
  frames = clip_args.check_clip(frames, "scale_jitter")
  if not 0.0 <= prob <= 1.0:
    raise ValueError(f"prob should be in [0, 1], got {prob}.")
  seed = clip_args.as_seed(seed)
  scale_seed, coin_seed = clip_args.split_seed(seed, 2)
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
  frames = clip_args.check_clip(frames, "random_crop")
  t_static = frames.shape[0]
  seed = clip_args.as_seed(seed)
  shape = tf.shape(frames)
  frames = tf.cond(
      tf.minimum(shape[1], shape[2]) < size,
      lambda: resize_short_side(frames, size),
      lambda: frames,
  )
  shape = tf.shape(frames)
  y_seed, x_seed = clip_args.split_seed(seed, 2)
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
  frames = clip_args.check_clip(frames, "center_crop")
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
  frames = clip_args.check_clip(frames, "random_flip")
  coin = tf.random.stateless_uniform([], clip_args.as_seed(seed),
                                     dtype=tf.float32)
  return tf.cond(
      coin < prob, lambda: tf.reverse(frames, axis=[2]), lambda: frames
  )


# ---------------------------------------------------------------------------
# Normalisation and the full pipeline.
# ---------------------------------------------------------------------------
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
  5. train and `rand_augment`: `rand_augment.rand_augment(num_layers,
     magnitude)`;
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
  frames = clip_args.check_clip(frames, "preprocess_clip")
  t_static = frames.shape[0]
  frames = resize_short_side(frames, min_resize)
  if is_training:
    if seed is None:
      raise ValueError("preprocess_clip(is_training=True) needs a seed.")
    seeds = clip_args.split_seed(clip_args.as_seed(seed), 4)
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
    seeds = clip_args.split_seed(clip_args.as_seed(seed), 4)
    if flip:
      frames = random_flip(frames, seeds[_SEED_FLIP])
    if rand_augment and rand_augment_impl == "keras":
      frames = rand_augment_lib.keras_rand_augment(frames, num_layers,
                                                   magnitude)
    elif rand_augment:
      frames = rand_augment_lib.rand_augment(
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
  crop_seed = clip_args.split_seed(clip_args.as_seed(seed), 4)[_SEED_CROP]
  y_seed, x_seed = clip_args.split_seed(crop_seed, 2)
  off_y = tf.random.stateless_uniform(
      [], y_seed, minval=0, maxval=height - size + 1, dtype=tf.int32
  )
  off_x = tf.random.stateless_uniform(
      [], x_seed, minval=0, maxval=width - size + 1, dtype=tf.int32
  )
  return off_y, off_x


# ---------------------------------------------------------------------------
# Stored JPEG frames.
# ---------------------------------------------------------------------------
def _decode_jpegs(jpegs: tf.Tensor) -> tf.Tensor:
  """JPEG strings [T] (one frame size) → uint8 [T, H, W, 3]."""
  return tf.map_fn(
      lambda b: tf.io.decode_jpeg(b, channels=3), jpegs,
      fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
      parallel_iterations=16)


def _decode_jpeg_crops(jpegs: tf.Tensor, off_y: tf.Tensor, off_x: tf.Tensor,
                       size: int) -> tf.Tensor:
  """The same `size` square of every JPEG [T], decoded alone → [T, S, S, 3].

  ~1.5x faster than decoding the full frames then cropping, and the same
  pixels for 4:4:4 JPEGs (see `decode_eval_frames`).
  """
  window = tf.stack([off_y, off_x, size, size])
  return tf.map_fn(
      lambda b: tf.io.decode_and_crop_jpeg(b, window, channels=3), jpegs,
      fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8),
      parallel_iterations=16)


def _stored_size(jpegs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """(height, width) int32 of the first JPEG (all frames share one size)."""
  shape = tf.io.extract_jpeg_shape(jpegs[0])
  return shape[0], shape[1]


def _crop_only(height: tf.Tensor, width: tf.Tensor, crop_size: int,
               min_resize: int) -> tf.Tensor:
  """Whether the stored frames need no resize: short side == min_resize."""
  return tf.logical_and(tf.equal(tf.minimum(height, width), min_resize),
                        min_resize >= crop_size)


def decode_eval_frames(jpegs: tf.Tensor, crop_size: int,
                       min_resize: int) -> tf.Tensor:
  """Stored JPEG frames → the evaluation clip, uint8 (not normalised).

  `preprocess_clip(decode(jpegs), is_training=False, ...)` without
  normalisation: short side resized to `min_resize`, centre `crop_size`
  crop.  Frames stored at that short side already (as the converters write
  them) skip the resize and decode only the crop: the same pixels for the
  4:4:4 JPEGs this package writes; on 4:2:0 JPEGs libjpeg's cropped decode
  changes the chroma upsampling at a few pixels.  The input pipeline's
  evaluation frames and the cached frame embeddings both come from here.

  Args:
    jpegs: string [T], JPEG frames of one size.
    crop_size: S, the output side.
    min_resize: the short side before the crop.

  Returns:
    uint8 [T, S, S, 3].
  """
  jpegs = tf.convert_to_tensor(jpegs, tf.string)
  height, width = _stored_size(jpegs)

  def decode_all():
    return preprocess_clip(_decode_jpegs(jpegs), is_training=False,
                           crop_size=crop_size, min_resize=min_resize,
                           normalize_output=False)

  def decode_crop():
    off_y, off_x = crop_offsets(height, width, crop_size, is_training=False)
    return _decode_jpeg_crops(jpegs, off_y, off_x, crop_size)

  frames = tf.cond(_crop_only(height, width, crop_size, min_resize),
                   decode_crop, decode_all)
  return tf.ensure_shape(frames, [jpegs.shape[0], crop_size, crop_size, 3])


def decode_clip(
    jpegs: tf.Tensor,
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
  """`preprocess_clip` of stored JPEG frames, decoding only the crop when
  the frames need no resize.

  Evaluation is `decode_eval_frames` (then `normalize`).  With scale jitter
  every frame is decoded in full (in training the crop depends on the
  jittered size; evaluation keeps the full decode it always had, the same
  pixels except on 4:2:0 JPEGs, see `decode_eval_frames`).  Otherwise
  frames stored at the `min_resize` short side decode only the random crop,
  at the offsets `preprocess_clip` draws from `seed`.  The output is
  `preprocess_clip(decode(jpegs), ...)`.

  Args:
    jpegs: string [T], JPEG frames of one size.
    is_training, seed, ...: as `preprocess_clip`.

  Returns:
    float32 (normalised) or uint8 [T, crop_size, crop_size, 3].
  """
  if not is_training and not jitter_scale:
    frames = decode_eval_frames(jpegs, crop_size, min_resize)
    return normalize(frames) if normalize_output else frames
  finish = dict(rand_augment=rand_augment, num_layers=num_layers,
                magnitude=magnitude, flip=flip,
                normalize_output=normalize_output,
                rand_augment_impl=rand_augment_impl)

  def decode_all():
    return preprocess_clip(
        _decode_jpegs(jpegs), is_training=is_training, seed=seed,
        crop_size=crop_size, min_resize=min_resize,
        jitter_scale=jitter_scale, min_scale=min_scale, max_scale=max_scale,
        **finish)

  if jitter_scale:
    return decode_all()
  height, width = _stored_size(jpegs)

  def decode_crop():
    off_y, off_x = crop_offsets(height, width, crop_size, is_training=True,
                                seed=seed)
    frames = _decode_jpeg_crops(jpegs, off_y, off_x, crop_size)
    return finish_cropped_clip(frames, is_training=True, seed=seed, **finish)

  return tf.cond(_crop_only(height, width, crop_size, min_resize),
                 decode_crop, decode_all)
