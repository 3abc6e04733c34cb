"""Tests of unloc_tf.data.augment (reference_spec.md §1.3)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from tests.data.clip_helpers import (
  assert_frames_identical,
  clip_seed,
  coord_clip,
  same_frames_clip,
)
from unloc_tf.data import augment, records


# ---------------------------------------------------------------------------
# Shapes, dtypes, determinism.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize("normalize_output", [True, False])
def test_preprocess_clip_shapes_and_dtypes(is_training, normalize_output):
  clip = tf.constant(same_frames_clip(2, 300, 400))
  out = augment.preprocess_clip(
      clip,
      is_training=is_training,
      seed=clip_seed(3) if is_training else None,
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


def test_training_requires_aclip_seed():
  with pytest.raises(ValueError):
    augment.preprocess_clip(
        tf.zeros([1, 64, 64, 3], tf.uint8), is_training=True, crop_size=32
    )


def test_same_seed_same_output_and_eval_ignoresclip_seed():
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
  a = augment.preprocess_clip(clip, is_training=True, seed=clip_seed(7, 1),
                              **kwargs).numpy()
  b = augment.preprocess_clip(clip, is_training=True, seed=clip_seed(7, 1),
                              **kwargs).numpy()
  c = graph_fn(clip_seed(7, 1)).numpy()
  np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(a, c)
  # Eval: no randomness, the seed is irrelevant, result = centre crop.
  e1 = augment.preprocess_clip(clip, is_training=False, crop_size=32,
                               min_resize=40, normalize_output=False)
  e2 = augment.preprocess_clip(clip, is_training=False, seed=clip_seed(9),
                               crop_size=32, min_resize=40,
                               normalize_output=False)
  expected = augment.center_crop(augment.resize_short_side(clip, 40), 32)
  np.testing.assert_array_equal(e1.numpy(), expected.numpy())
  np.testing.assert_array_equal(e2.numpy(), expected.numpy())


# ---------------------------------------------------------------------------
# One transform per clip; different seeds give different transforms.
# ---------------------------------------------------------------------------
def test_every_random_op_is_clip_consistent():
  clip = tf.constant(same_frames_clip(3, 48, 64))
  for i in range(4):
    s = clip_seed(i, 11)
    assert_frames_identical(augment.scale_jitter(clip, s).numpy())
    assert_frames_identical(augment.random_crop(clip, 32, s).numpy())
    assert_frames_identical(augment.random_flip(clip, s).numpy())
    assert_frames_identical(
        augment.preprocess_clip(
            clip, is_training=True, seed=s, crop_size=32, min_resize=40,
            jitter_scale=True, rand_augment=True, normalize_output=False,
        ).numpy()
    )


def test_different_seeds_give_different_transforms():
  clip = tf.constant(coord_clip(2, 60, 80))
  crops = {augment.random_crop(clip, 32, clip_seed(i)).numpy().tobytes()
           for i in range(6)}
  assert len(crops) > 1
  flips = {bool(np.array_equal(
      augment.random_flip(clip, clip_seed(i)).numpy(), clip.numpy()))
           for i in range(16)}
  assert flips == {True, False}
  sizes = {augment.scale_jitter(clip, clip_seed(i)).shape[1:3]
           for i in range(4)}
  assert len(sizes) > 1


# ---------------------------------------------------------------------------
# Geometry.
# ---------------------------------------------------------------------------
def test_center_crop_picks_the_central_window():
  clip = coord_clip(2, 40, 61)
  out = augment.center_crop(tf.constant(clip), 32).numpy()
  assert out.shape == (2, 32, 32, 3)
  # Offsets (40 - 32) // 2 = 4 and (61 - 32) // 2 = 14.
  np.testing.assert_array_equal(out[0, :, 0, 0], np.arange(4, 36))
  np.testing.assert_array_equal(out[0, 0, :, 1], np.arange(14, 46))
  np.testing.assert_array_equal(out, clip[:, 4:36, 14:46])


def test_random_crop_is_one_window_shared_by_all_frames():
  clip = coord_clip(3, 50, 70)
  offsets = set()
  for i in range(8):
    out = augment.random_crop(tf.constant(clip), 32, clip_seed(i)).numpy()
    oy, ox = int(out[0, 0, 0, 0]), int(out[0, 0, 0, 1])
    assert 0 <= oy <= 50 - 32 and 0 <= ox <= 70 - 32
    np.testing.assert_array_equal(out, clip[:, oy:oy + 32, ox:ox + 32])
    offsets.add((oy, ox))
  assert len(offsets) > 1


def test_random_crop_resizes_up_a_too_small_clip():
  clip = tf.constant(same_frames_clip(2, 20, 30))
  out = augment.random_crop(clip, 24, clip_seed(0))
  assert out.shape == (2, 24, 24, 3)


def test_flip_reverses_columns():
  clip = coord_clip(2, 8, 10)
  flipped = augment.random_flip(tf.constant(clip), clip_seed(0), prob=1.0)
  np.testing.assert_array_equal(flipped.numpy(), clip[:, :, ::-1])
  np.testing.assert_array_equal(flipped.numpy()[:, 3, :, 1],
                                np.tile(np.arange(9, -1, -1), (2, 1)))
  kept = augment.random_flip(tf.constant(clip), clip_seed(0), prob=0.0)
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
  clip = tf.constant(same_frames_clip(1, 100, 200))
  for i in range(6):
    h, w = augment.scale_jitter(clip, clip_seed(i)).shape[1:3]
    assert 90 <= h <= 133 and 180 <= w <= 266
  np.testing.assert_array_equal(
      augment.scale_jitter(clip, clip_seed(1), prob=0.0).numpy(), clip.numpy()
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


# ---------------------------------------------------------------------------
# Stored JPEG frames.
# ---------------------------------------------------------------------------
def _jpegs(height, width, chroma_downsampling=False):
  """5 JPEG frames (string [5]) and the frames they decode to."""
  frames = fixtures.frames(5, height, width)
  if chroma_downsampling:
    jpegs = [tf.io.encode_jpeg(f, quality=90).numpy() for f in frames]
  else:
    jpegs = records.encode_jpeg(frames)
  decoded = tf.stack([tf.io.decode_jpeg(j, channels=3) for j in jpegs])
  return tf.constant(jpegs), decoded


# (stored height, width, min_resize, crop_size, chroma_downsampling): stored
# at the short side (crop decoded alone), needing a resize, and stored at a
# short side below the crop (resized, not crop-decoded).  The crop-only
# decode equals the full decode for 4:4:4 JPEGs (what the package writes),
# not for 4:2:0 ones (libjpeg's cropped decode changes the chroma upsampling
# at a few pixels), so 4:2:0 is only checked where the clip is resized.
_STORED = [(24, 33, 24, 16, False), (24, 33, 20, 16, False),
           (33, 24, 28, 16, False), (12, 16, 12, 16, False),
           (24, 33, 20, 16, True), (12, 16, 12, 16, True)]


@pytest.mark.parametrize(
    "height,width,min_resize,crop_size,chroma_downsampling", _STORED)
def test_decode_eval_frames_is_preprocess_clip_of_the_decoded_frames(
    height, width, min_resize, crop_size, chroma_downsampling):
  jpegs, decoded = _jpegs(height, width, chroma_downsampling)
  out = augment.decode_eval_frames(jpegs, crop_size, min_resize)
  assert out.shape == (5, crop_size, crop_size, 3) and out.dtype == tf.uint8
  expected = augment.preprocess_clip(
      decoded, is_training=False, crop_size=crop_size,
      min_resize=min_resize, normalize_output=False)
  np.testing.assert_array_equal(out.numpy(), expected.numpy())
  graph = tf.function(augment.decode_eval_frames, reduce_retracing=True)
  np.testing.assert_array_equal(
      graph(jpegs, crop_size, min_resize).numpy(), expected.numpy())


@pytest.mark.parametrize("is_training", [True, False])
@pytest.mark.parametrize("jitter_scale", [False, True])
@pytest.mark.parametrize("height,width,min_resize,crop_size,_", _STORED[:3])
def test_decode_clip_is_preprocess_clip_of_the_decoded_frames(
    height, width, min_resize, crop_size, _, jitter_scale, is_training):
  jpegs, decoded = _jpegs(height, width)
  kwargs = dict(is_training=is_training, crop_size=crop_size,
                min_resize=min_resize, jitter_scale=jitter_scale,
                rand_augment=True, num_layers=2, normalize_output=False)
  for i in range(3):
    s = clip_seed(i, 4)
    out = augment.decode_clip(jpegs, seed=s, **kwargs)
    expected = augment.preprocess_clip(decoded, seed=s, **kwargs)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
  if not is_training:  # evaluation is decode_eval_frames, then normalize
    np.testing.assert_array_equal(
        augment.decode_clip(jpegs, **dict(kwargs, normalize_output=True))
        .numpy(),
        augment.normalize(augment.decode_eval_frames(
            jpegs, crop_size, min_resize)).numpy())


def test_decode_clip_with_scale_jitter_decodes_in_full():
  """With scale jitter the clip is decoded in full, also at evaluation (where
  the jitter is off): exact even on 4:2:0 JPEGs stored at the short side."""
  jpegs, decoded = _jpegs(24, 33, chroma_downsampling=True)
  for is_training in (True, False):
    kwargs = dict(is_training=is_training, seed=clip_seed(2), crop_size=16,
                  min_resize=24, jitter_scale=True, normalize_output=False)
    np.testing.assert_array_equal(
        augment.decode_clip(jpegs, **kwargs).numpy(),
        augment.preprocess_clip(decoded, **kwargs).numpy())
