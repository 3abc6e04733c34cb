"""Tests of unloc_tf.ops.segments (reference_spec.md §3.1, §5.2).

The tiny pyramid used throughout has level lengths (8, 4): 12 tokens,

  level 0: idx 0..7  -> t = 0..7,    stride 1
  level 1: idx 8..11 -> t = 0,2,4,6, stride 2

Video 0 has n = 15 stored frames, so linspace decoding scales token units by
(n - 1) / (N0 - 1) = 14 / 7 = 2 frames; secs_per_timestep = 0.5, so one token
unit is exactly 1 second.  Video 1 has n = 8 (scale 1) at 1 s per frame.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import sampling
from unloc_tf.ops import segments as seg

LEVELS = (8, 4)


def test_token_positions_and_strides():
  np.testing.assert_array_equal(
      seg.token_positions(LEVELS).numpy(),
      [0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6])
  np.testing.assert_array_equal(
      seg.token_strides(LEVELS).numpy(), [1] * 8 + [2] * 4)
  pyr = spec.PyramidSpec(num_frames=8, num_levels=3,
                         regression_ranges=((0, 2), (2, 4), (4, np.inf)))
  np.testing.assert_array_equal(
      seg.token_positions(pyr).numpy()[12:], [0, 4])
  np.testing.assert_array_equal(seg.token_strides(pyr).numpy()[12:], [4, 4])


def test_bad_level_lengths():
  with pytest.raises(ValueError):
    seg.token_positions((8, 3))


def _tal_displacements():
  """[2, 12, 2, 2] with a few hand-picked (token, class) entries."""
  d = np.zeros((2, 12, 2, 2), np.float32)
  d[0, 3, 0] = [1.0, 2.0]   # level 0, t=3
  d[0, 9, 1] = [0.5, 1.5]   # level 1, j=1: t=2, stride 2
  d[0, 1, 0] = [3.0, 0.0]   # start runs below 0 -> clamped
  d[0, 11, 1] = [0.0, 2.0]  # level 1, j=3: t=6; end runs past n -> clamped
  d[1, 3, 0] = [1.0, 2.0]
  return d


def test_decode_linspace_by_hand():
  out = seg.decode_segments(
      _tal_displacements(), LEVELS, tf.constant([15, 8]), 8,
      tf.constant([0.5, 1.0])).numpy()
  assert out.shape == (2, 12, 2, 2)
  # (3 - 1) * 2 = 4 frames = 2 s; (3 + 2) * 2 = 10 frames = 5 s.
  np.testing.assert_allclose(out[0, 3, 0], [2.0, 5.0])
  # t=2, stride 2: (2 - 0.5*2) * 2 = 2 frames = 1 s; (2 + 1.5*2) * 2 = 10.
  np.testing.assert_allclose(out[0, 9, 1], [1.0, 5.0])
  # (1 - 3) * 2 = -4 -> 0; 1 * 2 = 2 frames = 1 s.
  np.testing.assert_allclose(out[0, 1, 0], [0.0, 1.0])
  # t=6: 6 * 2 = 12 frames = 6 s; (6 + 2*2) * 2 = 20 -> n = 15 -> 7.5 s.
  np.testing.assert_allclose(out[0, 11, 1], [6.0, 7.5])
  # Zero displacements decode to the token's own frame: level 1, j=2 (t=4).
  np.testing.assert_allclose(out[0, 10, 0], [4.0, 4.0])
  # Video 1: scale (8-1)/(8-1) = 1, 1 s per frame.
  np.testing.assert_allclose(out[1, 3, 0], [2.0, 5.0])
  np.testing.assert_allclose(out[1, 11, 0], [6.0, 6.0])


def test_decode_retrieval_layout_matches():
  d = _tal_displacements()  # [B, T, C, 2] -> MR layout [B, K, T, 2]
  tal = seg.decode_segments(d, LEVELS, [15, 8], 8, [0.5, 1.0]).numpy()
  mr = seg.decode_segments(np.transpose(d, (0, 2, 1, 3)), LEVELS, [15, 8], 8,
                           [0.5, 1.0], token_axis=2).numpy()
  np.testing.assert_array_equal(np.transpose(mr, (0, 2, 1, 3)), tal)


def test_decode_window_mode_by_hand():
  d = np.zeros((2, 12, 1, 2), np.float32)
  d[0, 3, 0] = [1.0, 2.0]   # t=3: (3-1)+100 = 102, (3+2)+100 = 105
  d[0, 11, 0] = [0.0, 4.0]  # t=6, stride 2: 106, 6+8+100 = 114 -> n = 110
  d[1, 0, 0] = [2.0, 1.0]   # offset 0: -2 -> 0, 1
  out = seg.decode_segments(d, LEVELS, [110, 50], 8, [0.1, 1.0],
                            window_offset=[100, 0]).numpy()
  np.testing.assert_allclose(out[0, 3, 0], [10.2, 10.5], rtol=1e-6)
  np.testing.assert_allclose(out[0, 11, 0], [10.6, 11.0], rtol=1e-6)
  np.testing.assert_allclose(out[1, 0, 0], [0.0, 1.0])


def test_decode_window_mode_without_pyramid():
  d = np.zeros((1, 8, 1, 2), np.float32)
  d[0, 5, 0] = [2.0, 3.0]  # stride 1: 5 - 2 + 7 = 10, 5 + 3 + 7 = 15
  out = seg.decode_segments(d, (8,), [100], 8, 1.0, window_offset=[7])
  np.testing.assert_allclose(out.numpy()[0, 5, 0], [10.0, 15.0])


def test_decode_rejects_wrong_token_count():
  with pytest.raises(ValueError):
    seg.decode_segments(np.zeros((1, 11, 1, 2)), LEVELS, [9], 8, [1.0])


def test_decode_under_tf_function_dynamic_batch():
  fn = tf.function(
      lambda d, n, s: seg.decode_segments(d, LEVELS, n, 8, s),
      input_signature=[tf.TensorSpec([None, 12, None, 2], tf.float32),
                       tf.TensorSpec([None], tf.int32),
                       tf.TensorSpec([None], tf.float32)])
  d = _tal_displacements()
  eager = seg.decode_segments(d, LEVELS, [15, 8], 8, [0.5, 1.0]).numpy()
  graph = fn(d, tf.constant([15, 8]), tf.constant([0.5, 1.0])).numpy()
  np.testing.assert_array_equal(graph, eager)
  assert fn(np.zeros((0, 12, 3, 2), np.float32), tf.zeros([0], tf.int32),
            tf.zeros([0])).shape == (0, 12, 3, 2)


def test_temporal_iou_by_hand():
  a = tf.constant([[0.0, 10.0], [0.0, 10.0], [0.0, 10.0], [3.0, 3.0]])
  b = tf.constant([[5.0, 15.0], [10.0, 20.0], [2.0, 4.0], [3.0, 3.0]])
  np.testing.assert_allclose(seg.temporal_iou(a, b).numpy(),
                             [5 / 15, 0.0, 0.2, 0.0], rtol=1e-6)
  # Broadcasting: [2, 1, 2] x [1, 3, 2] -> [2, 3].
  out = seg.temporal_iou(a[:2, None], b[None, :3]).numpy()
  assert out.shape == (2, 3)
  np.testing.assert_allclose(out[1], [1 / 3, 0.0, 0.2], rtol=1e-6)


def test_linspace_frame_indices_match_the_pipeline():
  n = [30, 8, 16, 1000, 129, 1]
  out = seg.linspace_frame_indices(tf.constant(n), 8).numpy()
  np.testing.assert_array_equal(out[0], [0, 4, 8, 12, 16, 20, 24, 29])
  for i, ni in enumerate(n):
    np.testing.assert_array_equal(
        out[i], sampling.linspace_indices(tf.constant(ni), 8).numpy())
