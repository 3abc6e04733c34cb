"""Tests of unloc_tf.data.augment (reference_spec.md §1.3)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.data import augment

_BRANCH_NAMES = (
    "AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "Color",
    "Contrast", "Brightness", "Sharpness", "Cutout", "SolarizeAdd", "identity",
)


def _coord_clip(t: int, h: int, w: int) -> np.ndarray:
  """uint8 [t, h, w, 3] with pixel (t, y, x) = (y, x, t); needs h, w <= 256."""
  tt, yy, xx = np.meshgrid(
      np.arange(t), np.arange(h), np.arange(w), indexing="ij"
  )
  return np.stack([yy, xx, tt], axis=-1).astype(np.uint8)


def _same_frames_clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
  frame = np.random.RandomState(seed).randint(0, 256, (1, h, w, 3))
  return np.repeat(frame, t, axis=0).astype(np.uint8)


def _seed(a: int, b: int = 0) -> tf.Tensor:
  return tf.constant([a, b], tf.int32)


def _assert_frames_identical(clip: np.ndarray) -> None:
  for t in range(1, clip.shape[0]):
    np.testing.assert_array_equal(clip[t], clip[0])


def _branch(name: str):
  return augment._rand_augment_branches(10)[_BRANCH_NAMES.index(name)]


# ---------------------------------------------------------------------------
# Shapes, dtypes, determinism.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize("normalize_output", [True, False])
def test_preprocess_clip_shapes_and_dtypes(is_training, normalize_output):
  clip = tf.constant(_same_frames_clip(2, 300, 400))
  out = augment.preprocess_clip(
      clip,
      is_training=is_training,
      seed=_seed(3) if is_training else None,
      jitter_scale=True,
      rand_augment=True,
      normalize_output=normalize_output,
  )
  assert out.shape == (2, 224, 224, 3)
  assert out.dtype == (tf.float32 if normalize_output else tf.uint8)


def test_preprocess_clip_static_shape_with_dynamic_spatial_dims():
  fn = tf.function(
      lambda x, s: augment.preprocess_clip(
          x, is_training=True, seed=s, crop_size=32, min_resize=40,
          jitter_scale=True, rand_augment=True, num_layers=1,
      ),
      input_signature=[
          tf.TensorSpec([5, None, None, 3], tf.uint8),
          tf.TensorSpec([2], tf.int32),
      ],
  )
  out_spec = fn.get_concrete_function().structured_outputs
  assert out_spec.shape.as_list() == [5, 32, 32, 3]
  assert out_spec.dtype == tf.float32


def test_training_requires_a_seed():
  with pytest.raises(ValueError):
    augment.preprocess_clip(
        tf.zeros([1, 64, 64, 3], tf.uint8), is_training=True, crop_size=32
    )


def test_same_seed_same_output_and_eval_ignores_seed():
  clip = tf.constant(
      np.random.RandomState(1).randint(0, 256, (3, 50, 70, 3)), tf.uint8
  )
  # uint8 output: graph and eager must agree bit for bit (after normalize,
  # Grappler may reorder the float ops by 1 ulp).
  kwargs = dict(crop_size=32, min_resize=40, jitter_scale=True,
                rand_augment=True, normalize_output=False)
  graph_fn = tf.function(
      lambda s: augment.preprocess_clip(clip, is_training=True, seed=s,
                                        **kwargs)
  )
  a = augment.preprocess_clip(clip, is_training=True, seed=_seed(7, 1),
                              **kwargs).numpy()
  b = augment.preprocess_clip(clip, is_training=True, seed=_seed(7, 1),
                              **kwargs).numpy()
  c = graph_fn(_seed(7, 1)).numpy()
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, c)
  # Eval: no randomness, the seed is irrelevant, result = centre crop.
  e1 = augment.preprocess_clip(clip, is_training=False, crop_size=32,
                               min_resize=40, normalize_output=False)
  e2 = augment.preprocess_clip(clip, is_training=False, seed=_seed(9),
                               crop_size=32, min_resize=40,
                               normalize_output=False)
  expected = augment.center_crop(augment.resize_short_side(clip, 40), 32)
  np.testing.assert_array_equal(e1.numpy(), expected.numpy())
  np.testing.assert_array_equal(e2.numpy(), expected.numpy())


# ---------------------------------------------------------------------------
# One transform per clip; different seeds give different transforms.
# ---------------------------------------------------------------------------
def test_every_random_op_is_clip_consistent():
  clip = tf.constant(_same_frames_clip(3, 48, 64))
  for i in range(4):
    s = _seed(i, 11)
    _assert_frames_identical(augment.scale_jitter(clip, s).numpy())
    _assert_frames_identical(augment.random_crop(clip, 32, s).numpy())
    _assert_frames_identical(augment.random_flip(clip, s).numpy())
    _assert_frames_identical(augment.rand_augment(clip, s).numpy())
    _assert_frames_identical(
        augment.preprocess_clip(
            clip, is_training=True, seed=s, crop_size=32, min_resize=40,
            jitter_scale=True, rand_augment=True, normalize_output=False,
        ).numpy()
    )
  for name in _BRANCH_NAMES:
    out = _branch(name)(clip, _seed(5)).numpy()
    assert out.shape == clip.shape and out.dtype == np.uint8, name
    _assert_frames_identical(out)


def test_different_seeds_give_different_transforms():
  clip = tf.constant(_coord_clip(2, 60, 80))
  crops = {augment.random_crop(clip, 32, _seed(i)).numpy().tobytes()
           for i in range(6)}
  assert len(crops) > 1
  flips = {bool(np.array_equal(
      augment.random_flip(clip, _seed(i)).numpy(), clip.numpy()))
           for i in range(16)}
  assert flips == {True, False}
  sizes = {augment.scale_jitter(clip, _seed(i)).shape[1:3] for i in range(4)}
  assert len(sizes) > 1
  photo = tf.constant(
      np.random.RandomState(2).randint(20, 230, (2, 32, 32, 3)), tf.uint8
  )
  outs = {augment.rand_augment(photo, _seed(i)).numpy().tobytes()
          for i in range(8)}
  assert len(outs) >= 4


def test_rand_augment_draws_and_composition():
  # Every branch gets drawn, and the layers draw independently.
  all_ops = np.stack([augment._rand_augment_draws(_seed(i, 3), 3)[0].numpy()
                      for i in range(120)])
  assert set(all_ops.ravel().tolist()) == set(range(12))
  assert (all_ops[:, 0] != all_ops[:, 1]).mean() > 0.7
  # rand_augment = the drawn branches applied in order.
  clip = tf.constant(
      np.random.RandomState(5).randint(0, 256, (2, 24, 24, 3)), tf.uint8
  )
  branches = augment._rand_augment_branches(10)
  for i in range(6):
    ops, arg_seeds = augment._rand_augment_draws(_seed(i), 3)
    expected = clip
    for op, arg_seed in zip(ops.numpy(), arg_seeds, strict=True):
      expected = branches[op](expected, arg_seed)
    np.testing.assert_array_equal(
        augment.rand_augment(clip, _seed(i)).numpy(), expected.numpy()
    )


# ---------------------------------------------------------------------------
# Geometry.
# ---------------------------------------------------------------------------
def test_center_crop_picks_the_central_window():
  clip = _coord_clip(2, 40, 61)
  out = augment.center_crop(tf.constant(clip), 32).numpy()
  assert out.shape == (2, 32, 32, 3)
  # Offsets (40 - 32) // 2 = 4 and (61 - 32) // 2 = 14.
  np.testing.assert_array_equal(out[0, :, 0, 0], np.arange(4, 36))
  np.testing.assert_array_equal(out[0, 0, :, 1], np.arange(14, 46))
  np.testing.assert_array_equal(out, clip[:, 4:36, 14:46])


def test_random_crop_is_one_window_shared_by_all_frames():
  clip = _coord_clip(3, 50, 70)
  offsets = set()
  for i in range(8):
    out = augment.random_crop(tf.constant(clip), 32, _seed(i)).numpy()
    oy, ox = int(out[0, 0, 0, 0]), int(out[0, 0, 0, 1])
    assert 0 <= oy <= 50 - 32 and 0 <= ox <= 70 - 32
    np.testing.assert_array_equal(out, clip[:, oy:oy + 32, ox:ox + 32])
    offsets.add((oy, ox))
  assert len(offsets) > 1


def test_random_crop_resizes_up_a_too_small_clip():
  clip = tf.constant(_same_frames_clip(2, 20, 30))
  out = augment.random_crop(clip, 24, _seed(0))
  assert out.shape == (2, 24, 24, 3)


def test_flip_reverses_columns():
  clip = _coord_clip(2, 8, 10)
  flipped = augment.random_flip(tf.constant(clip), _seed(0), prob=1.0)
  np.testing.assert_array_equal(flipped.numpy(), clip[:, :, ::-1])
  np.testing.assert_array_equal(flipped.numpy()[:, 3, :, 1],
                                np.tile(np.arange(9, -1, -1), (2, 1)))
  kept = augment.random_flip(tf.constant(clip), _seed(0), prob=0.0)
  np.testing.assert_array_equal(kept.numpy(), clip)


def test_resize_short_side_keeps_aspect_ratio():
  wide = augment.resize_short_side(tf.zeros([2, 100, 150, 3], tf.uint8))
  tall = augment.resize_short_side(tf.zeros([1, 150, 100, 3], tf.uint8))
  assert wide.shape == (2, 256, 384, 3) and wide.dtype == tf.uint8
  assert tall.shape == (1, 384, 256, 3)
  odd = augment.resize_short_side(tf.zeros([1, 360, 640, 3], tf.uint8))
  assert odd.shape == (1, 256, 455, 3)  # 640 * 256 // 360 = 455
  flat = augment.resize_short_side(tf.fill([1, 64, 64, 3], np.uint8(77)))
  np.testing.assert_array_equal(flat.numpy(), np.full([1, 256, 256, 3], 77))


def test_resize_short_side_is_a_noop_at_256():
  clip = np.random.RandomState(3).randint(0, 256, (2, 256, 341, 3))
  clip = clip.astype(np.uint8)
  np.testing.assert_array_equal(
      augment.resize_short_side(tf.constant(clip)).numpy(), clip
  )
  np.testing.assert_array_equal(
      augment.resize_short_side(tf.constant(clip.transpose(0, 2, 1, 3)))
      .numpy(), clip.transpose(0, 2, 1, 3),
  )


def test_scale_jitter_bounds_and_probability():
  clip = tf.constant(_same_frames_clip(1, 100, 200))
  for i in range(6):
    h, w = augment.scale_jitter(clip, _seed(i)).shape[1:3]
    assert 90 <= h <= 133 and 180 <= w <= 266
  np.testing.assert_array_equal(
      augment.scale_jitter(clip, _seed(1), prob=0.0).numpy(), clip.numpy()
  )


# ---------------------------------------------------------------------------
# Normalisation.
# ---------------------------------------------------------------------------
def test_normalize_known_values():
  pixels = tf.constant([[[0, 0, 0], [255, 255, 255], [128, 128, 128]]],
                       tf.uint8)
  out = augment.normalize(pixels).numpy()
  assert out.dtype == np.float32
  # (v / 255 - mean) / std, computed by hand per channel.
  expected = np.array([[[-1.792263, -1.752097, -1.480220],
                        [1.930336, 2.074884, 2.145897],
                        [0.076336, 0.168897, 0.339949]]])
  np.testing.assert_allclose(out, expected, atol=1e-5)


# ---------------------------------------------------------------------------
# RandAugment branches on hand-computed values (magnitude 10).
# ---------------------------------------------------------------------------
def _apply(name, pixels):
  return _branch(name)(tf.constant(pixels, tf.uint8), _seed(0)).numpy()


def test_pointwise_branches_known_values():
  v = np.array([0, 100, 127, 128, 183, 200, 255], np.uint8)
  clip = np.broadcast_to(v[None, None, :, None], (1, 1, 7, 3))
  np.testing.assert_array_equal(_apply("Invert", clip)[0, 0, :, 0], 255 - v)
  # Posterize keeps 4 bits: 183 = 0b10110111 -> 0b10110000 = 176.
  np.testing.assert_array_equal(
      _apply("Posterize", clip)[0, 0, :, 0], [0, 96, 112, 128, 176, 192, 240]
  )
  # Solarize threshold int(256) wraps to 0 in uint8 (reference): all inverted.
  np.testing.assert_array_equal(_apply("Solarize", clip)[0, 0, :, 0], 255 - v)
  # SolarizeAdd: +110 below 128 only.
  np.testing.assert_array_equal(
      _apply("SolarizeAdd", clip)[0, 0, :, 0],
      [110, 210, 237, 128, 183, 200, 255],
  )
  # Brightness factor 1.9, clipped: 100 -> 190, 127 -> 241.3 -> 241.
  np.testing.assert_array_equal(
      _apply("Brightness", clip)[0, 0, :, 0], [0, 190, 241, 243, 255, 255, 255]
  )
  np.testing.assert_array_equal(_apply("identity", clip), clip)


def test_autocontrast_stretches_each_channel_over_the_clip():
  clip = np.zeros([2, 1, 3, 3], np.uint8)
  clip[0, 0, :, 0] = [50, 100, 150]
  clip[1, 0, :, 0] = [60, 100, 140]
  clip[..., 1] = 7  # constant channel: left unchanged
  clip[..., 2] = [[[0, 128, 255]], [[0, 128, 255]]]  # already full range
  out = _apply("AutoContrast", clip)
  # Channel 0: clip-wide [50, 150] -> [0, 255]; scale 2.55, offset -127.5.
  np.testing.assert_array_equal(out[0, 0, :, 0], [0, 127, 255])
  np.testing.assert_array_equal(out[1, 0, :, 0], [25, 127, 229])
  np.testing.assert_array_equal(out[..., 1], 7)
  np.testing.assert_array_equal(out[..., 2], clip[..., 2])


def test_equalize_builds_the_pil_lut_from_the_clip_histogram():
  # 510 pixels at 10, one at 20: step = (511 - 1) // 255 = 2,
  # lut[10] = (0 + 1) // 2 = 0, lut[20] = (510 + 1) // 2 = 255.
  values = np.full(511, 10, np.uint8)
  values[-1] = 20
  clip = np.stack([values] * 3, axis=-1).reshape(7, 1, 73, 3)
  out = _apply("Equalize", clip).reshape(-1, 3)
  np.testing.assert_array_equal(out[:-1], 0)
  np.testing.assert_array_equal(out[-1], 255)
  # Too few pixels (step == 0): unchanged.
  small = clip[:1, :, :4]
  np.testing.assert_array_equal(_apply("Equalize", small), small)


def test_contrast_blends_towards_the_reference_pixel_count_value():
  # The reference's "mean" is (T*H*W) / 256: 2 * 16 * 16 / 256 = 2.
  clip = np.full([2, 16, 16, 3], 100, np.uint8)
  # 2 + 1.9 * (100 - 2) = 188.2 -> 188.
  np.testing.assert_array_equal(_apply("Contrast", clip), 188)
  big = np.full([1, 256, 256, 3], 200, np.uint8)  # 256 clipped to 255
  # 255 + 1.9 * (200 - 255) = 150.5 -> 150.
  np.testing.assert_array_equal(_apply("Contrast", big), 150)


def test_color_saturates_and_keeps_grey():
  clip = np.array([[[[100, 100, 100], [150, 100, 50]]]], np.uint8)
  out = _apply("Color", clip)
  np.testing.assert_array_equal(out[0, 0, 0], [100, 100, 100])
  # Grey of (150, 100, 50) is 110 (trunc of 110.3): 110 + 1.9 * (c - 110).
  np.testing.assert_array_equal(out[0, 0, 1], [186, 91, 0])


def test_sharpness_extrapolates_away_from_the_smoothed_frame():
  clip = np.full([2, 5, 5, 3], 100, np.uint8)
  clip[:, 2, 2] = 200
  out = _apply("Sharpness", clip)
  # Centre: smoothed (8 * 100 + 5 * 200) / 13 = 138; 138 + 1.9 * 62 -> 255.
  np.testing.assert_array_equal(out[:, 2, 2], 255)
  # Neighbour: (7 * 100 + 200 + 5 * 100) / 13 = 107; 107 - 1.9 * 7 -> 93.
  np.testing.assert_array_equal(out[:, 1, 2], 93)
  # Frame borders keep their values.
  np.testing.assert_array_equal(out[:, 0], 100)
  np.testing.assert_array_equal(out[:, :, 4], 100)


def test_cutout_is_one_zero_box_of_at_most_80_pixels_in_every_frame():
  clip = np.full([3, 200, 220, 3], 9, np.uint8)
  for i in range(4):
    out = _branch("Cutout")(tf.constant(clip), _seed(i)).numpy()
    _assert_frames_identical(out)
    zero = out[0, ..., 0] == 0
    rows, cols = np.nonzero(zero)
    assert zero.any()
    box = zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # a full rectangle
    assert box.shape[0] <= 80 and box.shape[1] <= 80
    np.testing.assert_array_equal(out[0][~zero], 9)


# ---------------------------------------------------------------------------
# tf.data.
# ---------------------------------------------------------------------------
def test_runs_in_tf_data_map_with_per_element_seeds():
  rng = np.random.RandomState(4)
  clips = rng.randint(0, 256, (6, 3, 40, 56, 3)).astype(np.uint8)
  seeds = np.stack([np.arange(6), np.full(6, 42)], axis=1).astype(np.int64)

  def train_fn(index, clip, seed):
    return index, augment.preprocess_clip(
        clip, is_training=True, seed=seed, crop_size=32, min_resize=36,
        jitter_scale=True, rand_augment=True, num_layers=2,
    )

  ds = tf.data.Dataset.from_tensor_slices((np.arange(6), clips, seeds))
  ds = ds.map(train_fn, num_parallel_calls=3, deterministic=False)
  assert ds.element_spec[1].shape.as_list() == [3, 32, 32, 3]
  # Two passes, elements possibly finishing in a different order.
  first = {int(i): x.numpy() for i, x in ds}
  second = {int(i): x.numpy() for i, x in ds}
  assert sorted(first) == list(range(6))
  for i in range(6):
    np.testing.assert_array_equal(first[i], second[i])
    eager = train_fn(i, tf.constant(clips[i]), tf.constant(seeds[i]))[1]
    np.testing.assert_allclose(first[i], eager.numpy(), atol=1e-6)
  assert not np.array_equal(first[0], first[1])

  eval_ds = tf.data.Dataset.from_tensor_slices(clips).map(
      lambda c: augment.preprocess_clip(c, is_training=False, crop_size=32,
                                        min_resize=36)
  )
  out = np.stack([x.numpy() for x in eval_ds])
  assert out.shape == (6, 3, 32, 32, 3) and out.dtype == np.float32


def test_keras_rand_augment_is_clip_consistent_in_tf_data():
  """The Keras 3 core RandAugment option: one transform for the whole clip."""
  frame = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3))
  clip = np.repeat(frame, 4, axis=0).astype(np.uint8)
  ds = tf.data.Dataset.from_tensors(clip).repeat(3).map(
      lambda c: augment.keras_rand_augment(c, num_layers=2, magnitude=8))
  outs = [o.numpy() for o in ds]
  for o in outs:
    assert o.shape == clip.shape and o.dtype == np.uint8
    for t in range(1, 4):
      np.testing.assert_array_equal(o[t], o[0])
  assert any(not np.array_equal(o, clip) for o in outs)
