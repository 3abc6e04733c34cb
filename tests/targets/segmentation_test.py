"""Tests of unloc_tf.targets.segmentation (reference_spec.md §3.4).

Expected one-hot rows are written by hand as class indices per frame
(-1 = background, the all-zero row) and expanded with `_one_hot`.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.targets import segmentation as seg


def _one_hot(frame_classes, num_classes):
  out = np.zeros((len(frame_classes), num_classes), np.int32)
  for i, c in enumerate(frame_classes):
    if c >= 0:
      out[i, c] = 1
  return out


def _labels(start, end, label, offset, length, num_classes, **kw):
  out = seg.segmentation_labels(
    tf.constant(start, tf.int64),
    tf.constant(end, tf.int64),
    tf.constant(label, tf.int64),
    tf.constant(offset),
    length,
    num_classes,
    **kw,
  )
  return out.numpy()


# Three overlapping segments in file order:
#   seg 0: [0, 5] class 1;  seg 1: [3, 4] class 2;  seg 2: [4, 8] class 0.
START, END, LABEL = [0, 3, 4], [5, 4, 8], [1, 2, 0]


def test_overwrite_order_and_background():
  # Window offset 0, 10 frames, C = 3.  Last covering segment per frame:
  #   0,1,2 -> seg 0 (class 1); 3 -> seg 1 (class 2, overwrites seg 0);
  #   4 -> seg 2 (class 0, overwrites segs 0 and 1); 5..8 -> seg 2 (class 0);
  #   9 -> none (background, all-zero).
  out = _labels(START, END, LABEL, 0, 10, 3)
  assert out.dtype == np.int32 and out.shape == (10, 3)
  np.testing.assert_array_equal(
    out, _one_hot([1, 1, 1, 2, 0, 0, 0, 0, 0, -1], 3)
  )
  # Reversed file order: the last covering segment changes.
  #   seg order [4,8]c0, [3,4]c2, [0,5]c1 -> frames 0..5 class 1 (last seg
  #   covers them), 6..8 class 0, 9 background.
  out = _labels(START[::-1], END[::-1], LABEL[::-1], 0, 10, 3)
  np.testing.assert_array_equal(
    out, _one_hot([1, 1, 1, 1, 1, 1, 0, 0, 0, -1], 3)
  )


def test_window_offset():
  # Offset 3, 4 frames: window frame i = stored frame 3 + i -> stored 3..6
  # -> classes 2, 0, 0, 0 (from the table above).
  out = _labels(START, END, LABEL, 3, 4, 3)
  np.testing.assert_array_equal(out, _one_hot([2, 0, 0, 0], 3))


def test_padding_ignored():
  # Reference pad (-1000, -1000, -1) and a label -1 entry with real indices
  # [0, 9] placed last: neither labels nor overwrites anything.
  out = _labels(
    START + [-1000, 0], END + [-1000, 9], LABEL + [-1, -1], 0, 10, 3
  )
  np.testing.assert_array_equal(
    out, _one_hot([1, 1, 1, 2, 0, 0, 0, 0, 0, -1], 3)
  )
  # No segments at all: all background.
  out = _labels(
    np.zeros([0], np.int64),
    np.zeros([0], np.int64),
    np.zeros([0], np.int64),
    0,
    4,
    2,
  )
  np.testing.assert_array_equal(out, np.zeros((4, 2)))


def test_frames_beyond_the_video():
  # Video of n = 7 frames (0..6), one segment [5, 6] class 1; window offset
  # 4, length 6 -> stored frames 4..9: 4 bg, 5 c1, 6 c1, 7..9 beyond the
  # video -> background.
  out = _labels([5], [6], [1], 4, 6, 2)
  np.testing.assert_array_equal(out, _one_hot([-1, 1, 1, -1, -1, -1], 2))
  # A bad annotation running past the video ([5, 20]) labels frames 7..9
  # unless total_frames is given (then frames >= n are background).
  out = _labels([5], [20], [1], 4, 6, 2)
  np.testing.assert_array_equal(out, _one_hot([-1, 1, 1, 1, 1, 1], 2))
  out = _labels([5], [20], [1], 4, 6, 2, total_frames=tf.constant(7))
  np.testing.assert_array_equal(out, _one_hot([-1, 1, 1, -1, -1, -1], 2))


def test_frame_labels_to_one_hot_ragged_and_dense():
  # Stored frames: 0 -> [0], 1 -> [], 2 -> [1, 2], 3 -> [2]; n = 4.
  ragged = tf.ragged.constant([[0], [], [1, 2], [2]], dtype=tf.int64)
  # Offset 1, 5 frames: stored 1..5 -> [], [1,2], [2], beyond, beyond.
  out = seg.frame_labels_to_one_hot(ragged, 1, 5, 3).numpy()
  np.testing.assert_array_equal(
    out, [[0, 0, 0], [0, 1, 1], [0, 0, 1], [0, 0, 0], [0, 0, 0]]
  )
  # Offset -1: window frame 0 is before the video -> background.
  out_neg = seg.frame_labels_to_one_hot(ragged, -1, 2, 3).numpy()
  np.testing.assert_array_equal(out_neg, [[0, 0, 0], [1, 0, 0]])
  # SparseTensor input gives the same.
  sparse = ragged.to_sparse()
  np.testing.assert_array_equal(
    seg.frame_labels_to_one_hot(sparse, 1, 5, 3).numpy(), out
  )
  # Dense, one label per frame (-1 = background); offset -1 (frame 0 of the
  # window is before the video): stored -1..4 -> bg, 0, bg, 1, 2, beyond.
  dense = tf.constant([0, -1, 1, 2])
  out = seg.frame_labels_to_one_hot(dense, -1, 6, 3).numpy()
  np.testing.assert_array_equal(out, _one_hot([-1, 0, -1, 1, 2, -1], 3))
  # Dense [n, k] padded with -1: frame 0 -> {0, 2}, frame 1 -> {}.
  dense2 = tf.constant([[0, 2], [-1, -1]])
  out = seg.frame_labels_to_one_hot(dense2, 0, 3, 3).numpy()
  np.testing.assert_array_equal(out, [[1, 0, 1], [0, 0, 0], [0, 0, 0]])
  # Empty video: all background, no gather error.
  empty = tf.RaggedTensor.from_row_lengths(
    tf.zeros([0], tf.int64), tf.zeros([0], tf.int64)
  )
  out = seg.frame_labels_to_one_hot(empty, 0, 3, 2).numpy()
  np.testing.assert_array_equal(out, np.zeros((3, 2)))


def test_classification_labels():
  # [2, 0, -1, 2] over C = 4 -> classes {0, 2}; the duplicate 2 stays 1.
  out = seg.classification_labels(tf.constant([2, 0, -1, 2]), 4).numpy()
  np.testing.assert_array_equal(out, [1, 0, 1, 0])
  assert out.dtype == np.int32
  out = seg.classification_labels(tf.zeros([0], tf.int64), 3).numpy()
  np.testing.assert_array_equal(out, [0, 0, 0])


def test_inside_tf_data_map_static_shapes():
  def gen():
    yield {
      "s": START,
      "e": END,
      "l": LABEL,
      "off": 3,
      "n": 9,
      "fl": tf.ragged.constant([[0], [], [1, 2], [2]], tf.int64),
    }
    empty = np.zeros([0], np.int64)
    yield {
      "s": empty,
      "e": empty,
      "l": empty,
      "off": 0,
      "n": 2,
      "fl": tf.ragged.constant([[1], []], tf.int64),
    }

  sig = {
    "s": tf.TensorSpec([None], tf.int64),
    "e": tf.TensorSpec([None], tf.int64),
    "l": tf.TensorSpec([None], tf.int64),
    "off": tf.TensorSpec([], tf.int32),
    "n": tf.TensorSpec([], tf.int64),
    "fl": tf.RaggedTensorSpec([None, None], tf.int64),
  }

  def fn(x):
    return {
      "seg": seg.segmentation_labels(
        x["s"], x["e"], x["l"], x["off"], 4, 3, total_frames=x["n"]
      ),
      "fl": seg.frame_labels_to_one_hot(x["fl"], x["off"], 4, 3),
      "cls": seg.classification_labels(x["l"], 3),
    }

  ds = tf.data.Dataset.from_generator(gen, output_signature=sig).map(fn)
  assert ds.element_spec["seg"].shape == (4, 3)
  assert ds.element_spec["fl"].shape == (4, 3)
  assert ds.element_spec["cls"].shape == (3,)
  first, second = list(ds.as_numpy_iterator())
  # First: stored 3..6 -> classes 2, 0, 0, 0 (test_window_offset).
  np.testing.assert_array_equal(first["seg"], _one_hot([2, 0, 0, 0], 3))
  # Frame labels from stored frame 3: [2], then beyond the 4-frame video.
  np.testing.assert_array_equal(first["fl"], _one_hot([2, -1, -1, -1], 3))
  np.testing.assert_array_equal(first["cls"], [1, 1, 1])
  np.testing.assert_array_equal(second["seg"], np.zeros((4, 3)))
  np.testing.assert_array_equal(second["fl"], _one_hot([1, -1, -1, -1], 3))
  np.testing.assert_array_equal(second["cls"], [0, 0, 0])


def _np_reference_segmentation(start, end, label, offset, length, num_classes):
  """Literal loop of reference_spec §3.4 (later segments overwrite)."""
  frame_class = np.full(length, -1)
  for i in range(length):
    frame = i + offset
    for s, e, c in zip(start, end, label):
      if c < 0:
        continue
      if s <= frame <= e:
        frame_class[i] = c
  return _one_hot(frame_class, num_classes)


@pytest.mark.parametrize("seed", [0, 1])
def test_random_against_numpy_loop(seed):
  rng = np.random.default_rng(seed)
  for _ in range(50):
    n = int(rng.integers(1, 30))
    num_classes = int(rng.integers(1, 5))
    num_seg = int(rng.integers(0, 7))
    start = rng.integers(0, n, num_seg)
    end = np.minimum(start + rng.integers(0, n, num_seg), n - 1)
    label = rng.integers(-1, num_classes, num_seg)
    pad = int(rng.integers(0, 3))
    start = np.concatenate([start, np.full(pad, -1000)])
    end = np.concatenate([end, np.full(pad, -1000)])
    label = np.concatenate([label, np.full(pad, -1)])
    offset = int(rng.integers(0, n))
    length = int(rng.integers(1, 12))
    got = _labels(start, end, label, offset, length, num_classes)
    want = _np_reference_segmentation(
      start, end, label, offset, length, num_classes
    )
    np.testing.assert_array_equal(got, want)
