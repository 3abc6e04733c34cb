"""Action segmentation frame labels and clip classification labels.

Pure TensorFlow, one example at a time, for `tf.data.Dataset.map`; vectorised
(no loop over segments or frames) with static output shapes.

Action segmentation (reference_spec.md §3.4): the window has `window_length`
frames (512 in COIN) and frame `i` shows stored frame `i + window_offset`.
Segments are visited in file order and a frame inside `[s, e]` (inclusive, raw
stored-frame indices) takes that segment's class, later segments overwriting
earlier ones.  A frame in no segment is background, the all-zero vector (not
an extra class).
"""

from __future__ import annotations

from typing import Optional, Union

import tensorflow as tf

FrameLabels = Union[tf.Tensor, tf.RaggedTensor, tf.SparseTensor]


def _window_frames(window_offset: tf.Tensor, window_length: int) -> tf.Tensor:
  """Stored-frame index of every window frame, int32 [window_length]."""
  return tf.range(window_length, dtype=tf.int32) + tf.cast(
    window_offset, tf.int32
  )


def segmentation_labels(
  start_index: tf.Tensor,
  end_index: tf.Tensor,
  label_index: tf.Tensor,
  window_offset: tf.Tensor,
  window_length: int,
  num_classes: int,
  total_frames: Optional[tf.Tensor] = None,
) -> tf.Tensor:
  """One-hot (or all-zero) frame labels of a contiguous window.

  Vectorised form of the reference's "later segments overwrite" loop: each
  frame takes the label of the *last* (highest-index) valid segment covering
  it.

  Args:
    start_index: int [S], segment start, stored-frame index.
    end_index: int [S], segment end, stored-frame index (inclusive).
    label_index: int [S].  Segments with a label outside [0, num_classes)
      (padding is -1) are ignored: they neither label nor overwrite frames.
    window_offset: int scalar, stored frame shown by window frame 0.
    window_length: static number of window frames (N0, 512 for COIN).
    num_classes: C.
    total_frames: optional int scalar n.  If given, window frames at stored
      index >= n (frames looped / padded beyond the video) are background
      even if an annotation runs past the last stored frame.  The reference
      does not clip; for well-formed records (e <= n - 1) both agree.

  Returns:
    int32 [window_length, C]: one-hot rows, all-zero for background.
  """
  start = tf.cast(tf.reshape(start_index, [-1]), tf.int32)
  end = tf.cast(tf.reshape(end_index, [-1]), tf.int32)
  labels = tf.cast(tf.reshape(label_index, [-1]), tf.int32)
  valid = tf.logical_and(labels >= 0, labels < num_classes)
  frames = _window_frames(window_offset, window_length)  # [W]

  covers = tf.logical_and(
    frames[None, :] >= start[:, None], frames[None, :] <= end[:, None]
  )
  covers = tf.logical_and(covers, valid[:, None])  # [S, W]
  num_segments = tf.shape(start)[0]
  order = tf.range(num_segments, dtype=tf.int32)[:, None]
  # Index of the last covering segment, -1 if none.  The -1 row guarantees a
  # well-defined max even when S == 0.
  last = tf.reduce_max(
    tf.concat(
      [tf.fill([1, window_length], -1), tf.where(covers, order, -1)],
      axis=0,
    ),
    axis=0,
  )  # [W]
  # Frames covered by no segment index an appended -1 (background) entry,
  # which also keeps the gather valid when S == 0.
  frame_label = tf.gather(
    tf.concat([labels, [-1]], axis=0),
    tf.where(last >= 0, last, num_segments),
  )
  if total_frames is not None:
    frame_label = tf.where(
      frames < tf.cast(total_frames, tf.int32), frame_label, -1
    )
  one_hot = tf.one_hot(frame_label, depth=num_classes, dtype=tf.int32)
  return tf.ensure_shape(one_hot, [window_length, num_classes])


def frame_labels_to_one_hot(
  frame_labels: FrameLabels,
  window_offset: tf.Tensor,
  window_length: int,
  num_classes: int,
) -> tf.Tensor:
  """Window labels from per-stored-frame class lists.

  For records that carry per-frame labels (`frame/label/index`) instead of
  (or in addition to) segments.

  Args:
    frame_labels: class indices per stored frame, one of
      * a RaggedTensor [n, (k)] (an empty row = background),
      * a SparseTensor [n, k] (converted to ragged),
      * a dense int tensor [n] (one label per frame) or [n, k],
      where -1 (and any index outside [0, num_classes)) means no class.
    window_offset: int scalar, stored frame shown by window frame 0.
    window_length: static number of window frames.
    num_classes: C.

  Returns:
    int32 [window_length, C], multi-hot (one-hot for single-label frames);
    frames outside [0, n) are all-zero.
  """
  if isinstance(frame_labels, tf.SparseTensor):
    frame_labels = tf.RaggedTensor.from_sparse(frame_labels)
  frames = _window_frames(window_offset, window_length)

  if isinstance(frame_labels, tf.RaggedTensor):
    values = tf.cast(frame_labels.values, tf.int32)
    frame_labels = frame_labels.with_values(values)
    n = tf.cast(frame_labels.nrows(), tf.int32)
    # Append one empty (background) row and send out-of-video frames to it,
    # which also keeps the gather valid for n == 0.
    frame_labels = tf.concat(
      [
        frame_labels,
        tf.RaggedTensor.from_row_lengths(
          tf.zeros([0], tf.int32),
          tf.zeros([1], frame_labels.row_splits.dtype),
        ),
      ],
      axis=0,
    )
    rows = tf.where(tf.logical_and(frames >= 0, frames < n), frames, n)
    picked = tf.gather(frame_labels, rows)  # ragged [W, (k)]
    one_hot = tf.one_hot(picked.values, depth=num_classes, dtype=tf.int32)
    multi_hot = tf.math.unsorted_segment_sum(
      one_hot, tf.cast(picked.value_rowids(), tf.int32), window_length
    )
  else:
    dense = tf.cast(frame_labels, tf.int32)
    if dense.shape.rank == 1:
      dense = dense[:, None]
    n = tf.shape(dense)[0]
    dense = tf.concat(
      [dense, tf.fill([1, tf.shape(dense)[1]], -1)], axis=0
    )  # background row at index n
    rows = tf.where(tf.logical_and(frames >= 0, frames < n), frames, n)
    picked = tf.gather(dense, rows)  # [W, k]
    multi_hot = tf.reduce_sum(
      tf.one_hot(picked, depth=num_classes, dtype=tf.int32), axis=1
    )
  multi_hot = tf.minimum(multi_hot, 1)
  return tf.ensure_shape(multi_hot, [window_length, num_classes])


def classification_labels(
  label_index: tf.Tensor, num_classes: int
) -> tf.Tensor:
  """Multi-hot clip labels.

  Args:
    label_index: int [S] class indices; -1 padding (and anything outside
      [0, num_classes)) is ignored.  S may be 0.
    num_classes: C.

  Returns:
    int32 [C].
  """
  labels = tf.cast(tf.reshape(label_index, [-1]), tf.int32)
  counts = tf.reduce_sum(
    tf.one_hot(labels, depth=num_classes, dtype=tf.int32), axis=0
  )
  return tf.ensure_shape(tf.minimum(counts, 1), [num_classes])
