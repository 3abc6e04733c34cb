"""Tests of unloc_tf.data.rand_augment (the reference's video RandAugment)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tests.data.clip_helpers import (
  assert_frames_identical,
  clip_seed,
  same_frames_clip,
)
from unloc_tf.data import rand_augment

_BRANCH_NAMES = (
    "AutoContrast", "Equalize", "Invert", "Posterize", "Solarize", "Color",
    "Contrast", "Brightness", "Sharpness", "Cutout", "SolarizeAdd", "identity",
)


def _branch(name: str):
  return rand_augment._branches(10)[_BRANCH_NAMES.index(name)]


# ---------------------------------------------------------------------------
# One transform per clip; different seeds give different transforms.
# ---------------------------------------------------------------------------
def test_rand_augment_and_every_branch_are_clip_consistent():
  clip = tf.constant(same_frames_clip(3, 48, 64))
  for i in range(4):
    s = clip_seed(i, 11)
    assert_frames_identical(rand_augment.rand_augment(clip, s).numpy())
  for name in _BRANCH_NAMES:
    out = _branch(name)(clip, clip_seed(5)).numpy()
    assert out.shape == clip.shape and out.dtype == np.uint8, name
    assert_frames_identical(out)


def test_different_seeds_give_different_transforms():
  photo = tf.constant(
      np.random.RandomState(2).randint(20, 230, (2, 32, 32, 3)), tf.uint8
  )
  outs = {rand_augment.rand_augment(photo, clip_seed(i)).numpy().tobytes()
          for i in range(8)}
  assert len(outs) >= 4


def test_rand_augment_draws_and_composition():
  # Every branch gets drawn, and the layers draw independently.
  all_ops = np.stack([rand_augment._draws(clip_seed(i, 3), 3)[0].numpy()
                      for i in range(120)])
  assert set(all_ops.ravel().tolist()) == set(range(12))
  assert (all_ops[:, 0] != all_ops[:, 1]).mean() > 0.7
  # rand_augment = the drawn branches applied in order.
  clip = tf.constant(
      np.random.RandomState(5).randint(0, 256, (2, 24, 24, 3)), tf.uint8
  )
  branches = rand_augment._branches(10)
  for i in range(6):
    ops, arg_seeds = rand_augment._draws(clip_seed(i), 3)
    expected = clip
    for op, arg_seed in zip(ops.numpy(), arg_seeds, strict=True):
      expected = branches[op](expected, arg_seed)
    np.testing.assert_array_equal(
        rand_augment.rand_augment(clip, clip_seed(i)).numpy(), expected.numpy()
    )


# ---------------------------------------------------------------------------
# Branches on hand-computed values (magnitude 10).
# ---------------------------------------------------------------------------
def _apply(name, pixels):
  return _branch(name)(tf.constant(pixels, tf.uint8), clip_seed(0)).numpy()


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
    out = _branch("Cutout")(tf.constant(clip), clip_seed(i)).numpy()
    assert_frames_identical(out)
    zero = out[0, ..., 0] == 0
    rows, cols = np.nonzero(zero)
    assert zero.any()
    box = zero[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all()  # a full rectangle
    assert box.shape[0] <= 80 and box.shape[1] <= 80
    np.testing.assert_array_equal(out[0][~zero], 9)


# ---------------------------------------------------------------------------
# The Keras layer.
# ---------------------------------------------------------------------------
def test_keras_rand_augment_is_clip_consistent_in_tf_data():
  """The Keras 3 core RandAugment option: one transform for the whole clip."""
  frame = np.random.default_rng(0).integers(0, 255, (1, 16, 16, 3))
  clip = np.repeat(frame, 4, axis=0).astype(np.uint8)
  ds = tf.data.Dataset.from_tensors(clip).repeat(3).map(
      lambda c: rand_augment.keras_rand_augment(c, num_layers=2, magnitude=8))
  outs = [o.numpy() for o in ds]
  for o in outs:
    assert o.shape == clip.shape and o.dtype == np.uint8
    for t in range(1, 4):
      np.testing.assert_array_equal(o[t], o[0])
  assert any(not np.array_equal(o, clip) for o in outs)

