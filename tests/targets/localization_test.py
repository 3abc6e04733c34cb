"""Tests of unloc_tf.targets.localization (reference_spec.md §3.1-§3.3).

Most expected values are computed by hand in the comments.  The small pyramid
used throughout is

  P3 = PyramidSpec(num_frames=8, num_levels=3,
                   regression_ranges=[(0, 2), (2, 4), (4, inf)],
                   center_sampling_radius=1.0)

whose 14 tokens are (flat index: level-0 position t, stride)

  level 0: idx 0..7  -> t = 0..7,      stride 1, range [0, 2), radius 1
  level 1: idx 8..11 -> t = 0,2,4,6,   stride 2, range [2, 4), radius 2
  level 2: idx 12,13 -> t = 0,4,       stride 4, range [4, inf), radius 4
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.targets import localization as loc

INF = math.inf
P3 = spec.PyramidSpec(
  num_frames=8,
  num_levels=3,
  regression_ranges=((0.0, 2.0), (2.0, 4.0), (4.0, INF)),
  center_sampling_radius=1.0,
)
STRIDES = np.array([1] * 8 + [2] * 4 + [4] * 2, np.float32)


def _run(start, end, labels, n, num_classes, pyramid=P3, **kw):
  out = loc.localization_targets(
    tf.constant(start, tf.int64),
    tf.constant(end, tf.int64),
    tf.constant(labels, tf.int64),
    tf.constant(n, tf.int64),
    num_classes,
    pyramid,
    **kw,
  )
  return out[0].numpy(), out[1].numpy()


def _positives(labels_column):
  return np.nonzero(labels_column)[0].tolist()


# ---------------------------------------------------------------------------
# Token layout and coordinates.
# ---------------------------------------------------------------------------
def test_token_positions_and_strides():
  np.testing.assert_array_equal(
    loc.token_positions(P3).numpy(),
    [0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 4, 6, 0, 4],
  )
  np.testing.assert_array_equal(loc.token_strides(P3).numpy(), STRIDES)
  assert loc.token_positions(P3).dtype == tf.float32
  assert loc.token_positions(P3).shape == (P3.total_tokens,)


def test_to_token_coordinates():
  # n = 15, N0 = 8: scale (8-1)/(15-1) = 0.5 -> 0, 3, 14 map to 0, 1.5, 7.
  np.testing.assert_array_equal(
    loc.to_token_coordinates(tf.constant([0, 3, 14]), 15, 8).numpy(),
    [0.0, 1.5, 7.0],
  )
  # n = N0: identity.
  np.testing.assert_array_equal(
    loc.to_token_coordinates(tf.constant([0, 5, 7]), 8, 8).numpy(),
    [0.0, 5.0, 7.0],
  )
  # n = 29: scale 7/28 = 0.25.
  np.testing.assert_array_equal(
    loc.to_token_coordinates(tf.constant([5, 7, 28]), 29, 8).numpy(),
    [1.25, 1.75, 7.0],
  )
  # n = 1: no division by zero, everything at coordinate 0.
  out = loc.to_token_coordinates(tf.constant([0, -1000]), 1, 8).numpy()
  np.testing.assert_array_equal(out, [0.0, 0.0])


# ---------------------------------------------------------------------------
# TAL / HD.
# ---------------------------------------------------------------------------
def test_single_segment_every_value():
  # n = N0 = 8 (scale 1), one class-0 segment [s', e'] = [2, 5], c = 3.5.
  # Positives:
  #   L0 (range [0,2), r=1): region [max(2,2.5), min(5,4.5)] = [2.5, 4.5]
  #     -> t=3: m = max(5-3, 3-2) = 2, not < 2; t=4: m = max(1, 2) = 2. None.
  #   L1 (range [2,4), r=2): region [max(2,1.5), min(5,5.5)] = [2, 5]
  #     -> t=2: m = max(3, 0) = 3 ok; t=4: m = max(1, 2) = 2 ok.
  #   L2 (range [4,inf), r=4): region [2, 5] -> t=4: m = 2 < 4. None.
  #   => positives at flat idx 9 (L1 t=2) and 10 (L1 t=4).
  # Displacements, sentinel n+1 = 9:
  #   d_start = t - 2 if t >= 2 else 9,  d_end = 5 - t if t <= 5 else 9,
  #   then / stride (sentinel included).
  labels, disp = _run([2], [5], [0], 8, 1)
  assert labels.shape == (14, 1) and labels.dtype == np.int32
  assert disp.shape == (14, 1, 2) and disp.dtype == np.float32
  assert _positives(labels[:, 0]) == [9, 10]
  expected = np.array(
    [
      # L0, stride 1
      [9, 5],
      [9, 4],
      [0, 3],
      [1, 2],
      [2, 1],
      [3, 0],
      [4, 9],
      [5, 9],
      # L1, stride 2: raw (9,5) (0,3) (2,1) (4,9)
      [4.5, 2.5],
      [0, 1.5],
      [1, 0.5],
      [2, 4.5],
      # L2, stride 4: raw (9,5) (2,1)
      [2.25, 1.25],
      [0.5, 0.25],
    ],
    np.float32,
  )
  np.testing.assert_array_equal(disp[:, 0, :], expected)

  # Without stride normalisation: the raw values.
  labels_raw, disp_raw = _run([2], [5], [0], 8, 1, normalize_by_stride=False)
  np.testing.assert_array_equal(labels_raw, labels)
  np.testing.assert_array_equal(disp_raw[:, 0, :], expected * STRIDES[:, None])


def test_overlapping_same_class_segments():
  # Class 0: A = [0, 7] (c = 3.5) and B = [3, 4] (c = 3.5), n = 8.
  # A positives: L0 region [2.5,4.5]: t=3 m=max(4,3)=4, t=4 m=max(3,4)=4,
  #   both >= 2: none.  L1 region [1.5,5.5]: t=2 m=5, t=4 m=4, not < 4: none.
  #   L2 region [0,7] (r=4 covers it): t=0 m=7 ok, t=4 m=4 ok -> idx 12, 13.
  # B positives: L0 region [3,4]: t=3 m=max(1,0)=1 ok, t=4 m=1 ok -> idx 3, 4.
  #   L1: t=4 m=1 < 2 no.  L2: t=4 m=1 < 4 no.
  # Displacements (no sentinel: A covers every token):
  #   d_start = min(t - 0, t - 3 if t >= 3), d_end = min(7 - t, 4 - t if t <= 4)
  #   L0 t=0..7: d_start 0,1,2,0,1,2,3,4   d_end 4,3,2,1,0,2,1,0
  #   L1 t=0,2,4,6: raw (0,4) (2,2) (1,0) (3,1) -> /2
  #   L2 t=0,4: raw (0,4) (1,0) -> /4 = (0,1) (0.25,0)
  # E.g. idx 13 (L2 t=4) is positive because of A = [0,7] but regresses to
  # (1, 0)*4 = B's start and B's end: the latest start / earliest end.
  labels, disp = _run([0, 3], [7, 4], [0, 0], 8, 1)
  assert _positives(labels[:, 0]) == [3, 4, 12, 13]
  expected = np.array(
    [
      [0, 4],
      [1, 3],
      [2, 2],
      [0, 1],
      [1, 0],
      [2, 2],
      [3, 1],
      [4, 0],
      [0, 2],
      [1, 1],
      [0.5, 0],
      [1.5, 0.5],
      [0, 1],
      [0.25, 0],
    ],
    np.float32,
  )
  np.testing.assert_array_equal(disp[:, 0, :], expected)
  # Same result whatever the order of the segments.
  labels2, disp2 = _run([3, 0], [4, 7], [0, 0], 8, 1)
  np.testing.assert_array_equal(labels2, labels)
  np.testing.assert_array_equal(disp2, disp)


def test_two_classes_and_empty_class():
  # C = 3.  Class 2: B = [3, 4]; class 0: A = [0, 7]; class 1: nothing.
  # Positives per class as in the previous test (computed per segment):
  #   class 0 -> idx 12, 13; class 2 -> idx 3, 4; class 1 -> none.
  # Class 1 displacements: sentinel 9 everywhere, /stride.
  # Class 0: (t, 7 - t) / stride.
  # Class 2 (only B): d_start = t-3 if t >= 3 else 9, d_end = 4-t if t <= 4
  #   else 9:  L0 (9,4) (9,3) (9,2) (0,1) (1,0) (2,9) (3,9) (4,9)
  #   L1 t=0,2,4,6: (9,4) (9,2) (1,0) (3,9) /2;  L2 t=0,4: (9,4) (1,0) /4.
  labels, disp = _run([3, 0], [4, 7], [2, 0], 8, 3)
  assert labels.shape == (14, 3) and disp.shape == (14, 3, 2)
  assert _positives(labels[:, 0]) == [12, 13]
  assert _positives(labels[:, 1]) == []
  assert _positives(labels[:, 2]) == [3, 4]
  np.testing.assert_array_equal(
    disp[:, 1, :], np.repeat((9.0 / STRIDES)[:, None], 2, axis=1)
  )
  t = loc.token_positions(P3).numpy()
  np.testing.assert_array_equal(
    disp[:, 0, :], np.stack([t, 7 - t], -1) / STRIDES[:, None]
  )
  class2 = np.array(
    [
      [9, 4],
      [9, 3],
      [9, 2],
      [0, 1],
      [1, 0],
      [2, 9],
      [3, 9],
      [4, 9],
      [4.5, 2],
      [4.5, 1],
      [0.5, 0],
      [1.5, 4.5],
      [2.25, 1],
      [0.25, 0],
    ],
    np.float32,
  )
  np.testing.assert_array_equal(disp[:, 2, :], class2)


def test_multi_hot_when_classes_share_a_token():
  # Two identical segments [3, 4] with classes 0 and 1 -> both positive at
  # idx 3, 4 (see B above); a duplicate of class 0 does not give label 2.
  labels, _ = _run([3, 3, 3], [4, 4, 4], [0, 1, 0], 8, 2)
  assert _positives(labels[:, 0]) == [3, 4]
  assert _positives(labels[:, 1]) == [3, 4]
  assert labels.max() == 1


def test_segment_too_short_for_any_level():
  # n = 29, N0 = 8: scale 7/28 = 0.25; frames [5, 7] -> [1.25, 1.75].
  # No token position (integers at L0, even at L1, 0/4 at L2) lies in
  # [1.25, 1.75], so no level has a positive.  Sentinel n+1 = 30.
  # L0 t=1: d_start: 1 < 1.25 -> 30, d_end 1.75-1 = 0.75.
  # L0 t=2: d_start 0.75, d_end: 2 > 1.75 -> 30.
  labels, disp = _run([5], [7], [0], 29, 1)
  assert labels.sum() == 0
  np.testing.assert_array_equal(disp[1, 0], [30.0, 0.75])
  np.testing.assert_array_equal(disp[2, 0], [0.75, 30.0])
  # L2 t=0 (idx 12): (30, 1.75) / 4.
  np.testing.assert_array_equal(disp[12, 0], [7.5, 0.4375])


def test_segment_at_video_end_with_scaling_and_sentinel():
  # n = 15, N0 = 8: scale 0.5; frames [8, 14] (e = n-1) -> [4, 7], c = 5.5.
  # L0 (r=1): region [4.5, 6.5] -> t=5: m = max(2, 1) = 2, t=6: m = max(1, 2)
  #   = 2; neither < 2.
  # L1 (r=2): region [4, 7] -> t=4: m = max(3, 0) = 3 ok; t=6: m = 2 ok.
  #   -> idx 10, 11.
  # L2 (r=4): region [4, 7] -> t=4: m = 3 < 4 no.
  # Sentinel n+1 = 16.  d_start = t-4 if t >= 4 else 16, d_end = 7-t.
  labels, disp = _run([8], [14], [0], 15, 1)
  assert _positives(labels[:, 0]) == [10, 11]
  expected = np.array(
    [
      [16, 7],
      [16, 6],
      [16, 5],
      [16, 4],
      [0, 3],
      [1, 2],
      [2, 1],
      [3, 0],
      # L1 raw (16,7) (16,5) (0,3) (2,1) / 2
      [8, 3.5],
      [8, 2.5],
      [0, 1.5],
      [1, 0.5],
      # L2 raw (16,7) (0,3) / 4
      [4, 1.75],
      [0, 0.75],
    ],
    np.float32,
  )
  np.testing.assert_array_equal(disp[:, 0, :], expected)


def test_sentinel_caps_distances_when_video_shorter_than_pyramid():
  # Reference behaviour: the running minimum starts at n+1, so a real
  # distance larger than n+1 is capped.  n = 5, N0 = 8: scale 7/4 = 1.75,
  # segment frames [0, 0] -> [0, 0].  Sentinel 6.
  # L0 d_start = min(6, t): 0,1,2,3,4,5,6,6; d_end = 0 at t=0, else 6.
  # L0 t=0 positive (m = 0 in [0,2), region [0,0]); L1/L2 t=0 have m = 0,
  # outside [2,4) and [4,inf).
  labels, disp = _run([0], [0], [0], 5, 1, normalize_by_stride=False)
  assert _positives(labels[:, 0]) == [0]
  np.testing.assert_array_equal(disp[:8, 0, 0], [0, 1, 2, 3, 4, 5, 6, 6])
  np.testing.assert_array_equal(disp[:8, 0, 1], [0, 6, 6, 6, 6, 6, 6, 6])


def test_padding_and_invalid_labels_ignored():
  # The single segment [2, 5] of test_single_segment_every_value plus
  #  * a reference-style pad (-1000, -1000, label -1),
  #  * a label -1 entry with real indices [0, 7] (would be positive at
  #    idx 12, 13 and change every displacement if it counted),
  #  * an out-of-range label 1 >= C = 1.
  ref_labels, ref_disp = _run([2], [5], [0], 8, 1)
  labels, disp = _run([2, -1000, 0, 0], [5, -1000, 7, 7], [0, -1, -1, 1], 8, 1)
  np.testing.assert_array_equal(labels, ref_labels)
  np.testing.assert_array_equal(disp, ref_disp)
  # Only padding: nothing positive, every displacement the sentinel.
  labels, disp = _run([-1000] * 3, [-1000] * 3, [-1] * 3, 8, 2)
  assert labels.sum() == 0
  np.testing.assert_array_equal(
    disp, np.broadcast_to((9.0 / STRIDES)[:, None, None], (14, 2, 2))
  )


def test_no_segments_at_all():
  labels, disp = _run(
    np.zeros([0], np.int64),
    np.zeros([0], np.int64),
    np.zeros([0], np.int64),
    8,
    2,
  )
  assert labels.shape == (14, 2) and labels.sum() == 0
  np.testing.assert_array_equal(disp[:, 0, 0], 9.0 / STRIDES)


def test_center_sampling_radius_none_uses_whole_segment():
  # Single level N0 = 8, range [0, inf), no centre sampling: every token in
  # [s', e'] = [1, 6] is positive.
  pyr = spec.PyramidSpec(
    num_frames=8,
    num_levels=1,
    regression_ranges=((0.0, INF),),
    center_sampling_radius=None,
  )
  labels, _ = _run([1], [6], [0], 8, 1, pyramid=pyr)
  assert _positives(labels[:, 0]) == [1, 2, 3, 4, 5, 6]


def test_window_localization_targets():
  # Contiguous window, offset 10: token positions 10..17 / 10,12,14,16 /
  # 10,14.  Raw segment [12, 15] is [2, 5] relative to the window, so labels
  # equal the single-segment test (idx 9, 10).  Sentinel n+1 = 101.
  # L0 t=10: d_start 101 (10 < 12), d_end 15-10 = 5; t=17: (5, 101).
  # L2 t=14 (idx 13): (2, 1) / 4.
  labels, disp = loc.window_localization_targets(
    tf.constant([12, -1000]),
    tf.constant([15, -1000]),
    tf.constant([0, -1]),
    tf.constant(100),
    tf.constant(10),
    1,
    P3,
  )
  assert _positives(labels.numpy()[:, 0]) == [9, 10]
  disp = disp.numpy()
  np.testing.assert_array_equal(disp[0, 0], [101.0, 5.0])
  np.testing.assert_array_equal(disp[7, 0], [5.0, 101.0])
  np.testing.assert_array_equal(disp[13, 0], [0.5, 0.25])


# ---------------------------------------------------------------------------
# MR.
# ---------------------------------------------------------------------------
def test_moment_retrieval_targets():
  # K = 3, n = 8.  Caption 0: [2, 5] -> positives idx 9, 10 (as in the TAL
  # test).  Caption 1: padding (invalid) -> zeros.  Caption 2: [0, 7] ->
  # idx 12, 13 (segment A above).
  # Displacements (t - s', e' - t) / stride, negative outside the segment:
  #   caption 0 L0 t=0: (-2, 5); L1 t=6: (4, -1)/2 = (2, -0.5);
  #   L2 t=0: (-2, 5)/4 = (-0.5, 1.25).
  start = tf.constant([2, -1000, 0], tf.int64)
  end = tf.constant([5, -1000, 7], tf.int64)
  valid = tf.constant([1, 0, 1])
  labels, disp = loc.moment_retrieval_targets(
    start, end, valid, tf.constant(8, tf.int64), P3
  )
  labels, disp = labels.numpy(), disp.numpy()
  assert labels.shape == (3, 14) and labels.dtype == np.int32
  assert disp.shape == (3, 14, 2)
  assert _positives(labels[0]) == [9, 10]
  assert _positives(labels[1]) == []
  assert _positives(labels[2]) == [12, 13]
  t = loc.token_positions(P3).numpy()
  np.testing.assert_array_equal(
    disp[0], np.stack([t - 2, 5 - t], -1) / STRIDES[:, None]
  )
  np.testing.assert_array_equal(disp[0, 0], [-2, 5])
  np.testing.assert_array_equal(disp[0, 11], [2, -0.5])
  np.testing.assert_array_equal(disp[0, 12], [-0.5, 1.25])
  np.testing.assert_array_equal(disp[1], np.zeros((14, 2)))
  np.testing.assert_array_equal(
    disp[2], np.stack([t, 7 - t], -1) / STRIDES[:, None]
  )

  # valid=None derives validity from start != -1000: same result.
  labels2, disp2 = loc.moment_retrieval_targets(
    start, end, None, tf.constant(8, tf.int64), P3
  )
  np.testing.assert_array_equal(labels2.numpy(), labels)
  np.testing.assert_array_equal(disp2.numpy(), disp)


def test_moment_retrieval_scaling_and_no_stride_normalisation():
  # n = 15 -> scale 0.5; frames [8, 14] -> [4, 7]: positives idx 10, 11 (see
  # the TAL video-end test); raw displacements (t - 4, 7 - t).
  labels, disp = loc.moment_retrieval_targets(
    tf.constant([8]),
    tf.constant([14]),
    tf.constant([True]),
    tf.constant(15),
    P3,
    normalize_by_stride=False,
  )
  assert _positives(labels.numpy()[0]) == [10, 11]
  t = loc.token_positions(P3).numpy()
  np.testing.assert_array_equal(disp.numpy()[0], np.stack([t - 4, 7 - t], -1))


# ---------------------------------------------------------------------------
# Inside tf.data.
# ---------------------------------------------------------------------------
def test_inside_tf_data_map_static_shapes():
  def gen():
    # Dynamic number of segments (2, then 0).
    yield {"s": [2, 0], "e": [5, 7], "l": [0, -1], "n": 8}
    yield {"s": [], "e": [], "l": [], "n": 15}

  sig = {
    "s": tf.TensorSpec([None], tf.int64),
    "e": tf.TensorSpec([None], tf.int64),
    "l": tf.TensorSpec([None], tf.int64),
    "n": tf.TensorSpec([], tf.int64),
  }

  def fn(x):
    labels, disp = loc.localization_targets(
      x["s"], x["e"], x["l"], x["n"], 3, P3
    )
    mr_labels, mr_disp = loc.moment_retrieval_targets(
      x["s"], x["e"], x["l"] >= 0, x["n"], P3
    )
    w_labels, w_disp = loc.window_localization_targets(
      x["s"], x["e"], x["l"], x["n"], 0, 3, P3
    )
    return {
      "labels": labels,
      "disp": disp,
      "mr_labels": mr_labels,
      "mr_disp": mr_disp,
      "w_labels": w_labels,
      "w_disp": w_disp,
    }

  ds = tf.data.Dataset.from_generator(gen, output_signature=sig).map(fn)
  es = ds.element_spec
  assert es["labels"].shape == (14, 3) and es["labels"].dtype == tf.int32
  assert es["disp"].shape == (14, 3, 2) and es["disp"].dtype == tf.float32
  assert es["w_labels"].shape == (14, 3)
  assert es["w_disp"].shape == (14, 3, 2)
  assert es["mr_labels"].shape.as_list() == [None, 14]
  assert es["mr_disp"].shape.as_list() == [None, 14, 2]
  first, second = list(ds.as_numpy_iterator())
  ref_labels, ref_disp = _run([2], [5], [0], 8, 3)
  np.testing.assert_array_equal(first["labels"], ref_labels)
  np.testing.assert_array_equal(first["disp"], ref_disp)
  assert _positives(first["mr_labels"][0]) == [9, 10]
  assert second["labels"].sum() == 0
  np.testing.assert_array_equal(second["disp"][:, 0, 0], 16.0 / STRIDES)

  # Padded (static S) input: the MR output keeps the static K.
  ds2 = tf.data.Dataset.from_tensors(
    (tf.constant([2, -1000], tf.int64), tf.constant([5, -1000], tf.int64))
  ).map(lambda s, e: loc.moment_retrieval_targets(s, e, None, 8, P3))
  assert ds2.element_spec[0].shape == (2, 14)
  assert ds2.element_spec[1].shape == (2, 14, 2)


# ---------------------------------------------------------------------------
# Randomised comparison with a literal per-segment / per-level numpy loop.
# ---------------------------------------------------------------------------
def _np_reference_tal(start, end, labels, n, num_classes, pyramid, normalize):
  """Loop transcription of reference_spec §3 in float32."""
  f32 = np.float32
  scale = f32(pyramid.num_frames - 1) / f32(n - 1) if n > 1 else f32(0)
  sentinel = f32(n) + f32(1)
  out_labels, out_disp = [], []
  for level, (n_l, stride) in enumerate(
    zip(pyramid.level_lengths, pyramid.strides)
  ):
    lo, hi = pyramid.regression_ranges[level]
    lab = np.zeros((n_l, num_classes), np.int32)
    disp = np.full((n_l, num_classes, 2), sentinel, np.float32)
    for j in range(n_l):
      t = f32(j * stride)
      for s_idx, e_idx, c in zip(start, end, labels):
        if c < 0 or c >= num_classes:
          continue
        s = f32(s_idx) * scale
        e = f32(e_idx) * scale
        if t - s >= 0:
          disp[j, c, 0] = min(disp[j, c, 0], t - s)
        if e - t >= 0:
          disp[j, c, 1] = min(disp[j, c, 1], e - t)
        m = max(e - t, t - s)
        in_range = lo <= m < hi
        if pyramid.center_sampling_radius is None:
          a, b = s, e
        else:
          r = f32(pyramid.center_sampling_radius * stride)
          center = (s + e) * f32(0.5)
          a, b = max(s, center - r), min(e, center + r)
        if in_range and a <= t <= b:
          lab[j, c] = 1
    if normalize:
      disp = disp / f32(stride)
    out_labels.append(lab)
    out_disp.append(disp)
  return np.concatenate(out_labels), np.concatenate(out_disp)


def _np_reference_mr(start, end, valid, n, pyramid, normalize):
  f32 = np.float32
  scale = f32(pyramid.num_frames - 1) / f32(n - 1) if n > 1 else f32(0)
  t_all = loc.token_positions(pyramid).numpy()
  strides = loc.token_strides(pyramid).numpy()
  labels = np.zeros((len(start), len(t_all)), np.int32)
  disp = np.zeros((len(start), len(t_all), 2), np.float32)
  for k in range(len(start)):
    if not valid[k]:
      continue
    single_l, _ = _np_reference_tal(
      [start[k]], [end[k]], [0], n, 1, pyramid, normalize
    )
    labels[k] = single_l[:, 0]
    s, e = f32(start[k]) * scale, f32(end[k]) * scale
    d = np.stack([t_all - s, e - t_all], -1)
    disp[k] = d / strides[:, None] if normalize else d
  return labels, disp


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_against_numpy_loop(seed):
  rng = np.random.default_rng(seed)
  pyramids = [
    P3,
    spec.PyramidSpec(num_frames=16, num_levels=4),  # reference defaults
    spec.PyramidSpec(
      num_frames=16,
      num_levels=2,
      regression_ranges=((0.0, 3.0), (3.0, INF)),
      center_sampling_radius=1.5,
    ),
    spec.PyramidSpec(
      num_frames=8,
      num_levels=2,
      regression_ranges=((0.0, 4.0), (4.0, INF)),
      center_sampling_radius=None,
    ),
  ]
  num_pos = 0
  for _ in range(60):
    pyramid = pyramids[rng.integers(len(pyramids))]
    num_classes = int(rng.integers(1, 4))
    n = int(rng.integers(1, 40))
    num_real = int(rng.integers(0, 6))
    starts = rng.integers(0, n, num_real)
    lengths = rng.integers(0, max(1, n // 2), num_real)
    ends = np.minimum(starts + lengths, n - 1)
    labels = rng.integers(-1, num_classes, num_real)
    num_pad = int(rng.integers(0, 3))
    starts = np.concatenate([starts, np.full(num_pad, -1000)])
    ends = np.concatenate([ends, np.full(num_pad, -1000)])
    labels = np.concatenate([labels, np.full(num_pad, -1)])
    normalize = bool(rng.integers(2))

    got_l, got_d = _run(
      starts,
      ends,
      labels,
      n,
      num_classes,
      pyramid=pyramid,
      normalize_by_stride=normalize,
    )
    want_l, want_d = _np_reference_tal(
      starts, ends, labels, n, num_classes, pyramid, normalize
    )
    np.testing.assert_array_equal(got_l, want_l)
    np.testing.assert_allclose(got_d, want_d, rtol=1e-6)
    num_pos += int(want_l.sum())

    valid = labels >= 0
    mr_l, mr_d = loc.moment_retrieval_targets(
      tf.constant(starts),
      tf.constant(ends),
      tf.constant(valid),
      tf.constant(n),
      pyramid,
      normalize_by_stride=normalize,
    )
    want_l, want_d = _np_reference_mr(
      starts, ends, valid, n, pyramid, normalize
    )
    np.testing.assert_array_equal(mr_l.numpy(), want_l)
    np.testing.assert_allclose(mr_d.numpy(), want_d, rtol=1e-6)
  assert num_pos > 0  # the comparison exercised positives
