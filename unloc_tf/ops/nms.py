"""1-D (temporal) Soft-NMS on TF's `non_max_suppression_with_scores`.

The reference (reference_spec.md §5.3) turns segments into boxes
`[0, start, 1, end]`, so the 2-D IoU of the kernel equals the temporal IoU,
and calls `tf.image.non_max_suppression_with_scores` (`NonMaxSuppressionV5`,
a core op that TF Serving runs).  Semantics of that kernel, which this wrapper
keeps unchanged:

* candidates with `score <= score_threshold` are dropped up front;
* greedy selection by current score (ties: lower index first) with a lazy
  priority queue; each time a candidate is compared with a newly selected
  segment its score is multiplied by `exp(-0.5 * IoU**2 / soft_nms_sigma)`
  (Gaussian Soft-NMS with denominator `2 * sigma`); a candidate whose score
  falls to `<= score_threshold` is removed; returned scores are the decayed
  ones, in selection order, hence non-increasing;
* `soft_nms_sigma = 0` is hard NMS: a candidate whose IoU with a selected
  segment is `> iou_threshold` is removed (`iou_threshold` is ignored in
  soft mode);
* a segment of zero length has IoU 0 with everything.

Outputs are padded to `max_detections` (static shapes, for `tf.map_fn` and
SavedModel signatures) with a valid count.

Groups (per-class NMS in one kernel call): with `groups` given, segment `i`
becomes the box `[g_i, start, g_i + 1, end]`.  Boxes of different groups
share no area (IoU exactly 0, so no decay) and boxes of the same group have
exactly the 1-D IoU (height 1), so one call is per-group NMS whose selections
are merged by score and cut at `max_detections` overall.
"""

from __future__ import annotations

from typing import Optional, Tuple

import tensorflow as tf


def segments_to_boxes(segments, groups=None) -> tf.Tensor:
  """[N, 2] segments -> [N, 4] boxes `[g, start, g + 1, end]` (g = 0 default).

  Args:
    segments: float [N, 2] (start, end).
    groups: optional int [N], group (class) of each segment.

  Returns:
    float32 [N, 4].
  """
  segments = tf.convert_to_tensor(segments, tf.float32)
  if groups is None:
    y0 = tf.zeros_like(segments[:, 0])
  else:
    y0 = tf.cast(groups, tf.float32)
  return tf.stack([y0, segments[:, 0], y0 + 1.0, segments[:, 1]], axis=-1)


def soft_nms_1d(
    segments,
    scores,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.001,
    soft_nms_sigma: float = 0.3,
    groups=None,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
  """Soft-NMS of one set of segments, padded to `max_detections`.

  Args:
    segments: float [N, 2] (start, end), any unit.
    scores: float [N].  Use `-inf` (or any value `<= score_threshold`) for
      candidates that must be ignored.
    max_detections: K, the static output size.
    iou_threshold: hard-NMS IoU threshold (used only when
      `soft_nms_sigma == 0`).
    score_threshold: candidates (and decayed candidates) with a score
      `<= score_threshold` are dropped.
    soft_nms_sigma: Gaussian sigma (0.3 in the reference); 0 = hard NMS.
    groups: optional int [N]; if given, NMS runs independently per group
      (see the module docstring).

  Returns:
    selected_segments: float32 [K, 2], padded with 0.
    selected_scores: float32 [K] decayed scores, non-increasing, padded
      with 0.
    selected_indices: int32 [K] indices into the N inputs, padded with -1.
    num_valid: int32 scalar, the number of real entries (a prefix).
  """
  segments = tf.convert_to_tensor(segments, tf.float32)
  scores = tf.convert_to_tensor(scores, tf.float32)
  k = int(max_detections)
  idx, sel_scores = tf.image.non_max_suppression_with_scores(
      segments_to_boxes(segments, groups),
      scores,
      max_output_size=k,
      iou_threshold=iou_threshold,
      score_threshold=score_threshold,
      soft_nms_sigma=soft_nms_sigma,
  )
  idx = tf.cast(idx, tf.int32)
  num_valid = tf.shape(idx)[0]
  pad = k - num_valid
  sel_segments = tf.pad(tf.gather(segments, idx), [[0, pad], [0, 0]])
  sel_scores = tf.pad(sel_scores, [[0, pad]])
  idx = tf.pad(idx, [[0, pad]], constant_values=-1)
  return (
      tf.ensure_shape(sel_segments, [k, 2]),
      tf.ensure_shape(sel_scores, [k]),
      tf.ensure_shape(idx, [k]),
      num_valid,
  )


def batched_soft_nms_1d(
    segments,
    scores,
    max_detections: int = 100,
    iou_threshold: float = 0.5,
    score_threshold: float = 0.001,
    soft_nms_sigma: float = 0.3,
    groups: Optional[tf.Tensor] = None,
    parallel_iterations: int = 16,
) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
  """`soft_nms_1d` over a batch with `tf.map_fn` (any batch size, also 0).

  Export-safe (keras_tf_pitfalls.md §5): `tf.map_fn` with an explicit
  `fn_output_signature` returns empty outputs for an empty batch, unlike
  `tf.vectorized_map` or padded NMS.

  Args:
    segments: float [B, N, 2].
    scores: float [B, N].
    max_detections, iou_threshold, score_threshold, soft_nms_sigma: as in
      `soft_nms_1d`.
    groups: optional int [B, N] or [N] (shared by every row).
    parallel_iterations: rows processed concurrently by `tf.map_fn`.

  Returns:
    segments float32 [B, K, 2], scores float32 [B, K], indices int32 [B, K]
    (into the N candidates of the row, -1 = padding), num_valid int32 [B].
  """
  segments = tf.convert_to_tensor(segments, tf.float32)
  scores = tf.convert_to_tensor(scores, tf.float32)
  k = int(max_detections)
  if groups is not None:
    groups = tf.convert_to_tensor(groups)
  shared_groups = groups is not None and groups.shape.rank == 1

  def one(args):
    if groups is None:
      seg, sc = args
      g = None
    elif shared_groups:
      seg, sc = args
      g = groups
    else:
      seg, sc, g = args
    return soft_nms_1d(seg, sc, k, iou_threshold, score_threshold,
                       soft_nms_sigma, groups=g)

  elems = (segments, scores)
  if groups is not None and not shared_groups:
    elems = elems + (groups,)
  return tf.map_fn(
      one,
      elems,
      fn_output_signature=(
          tf.TensorSpec([k, 2], tf.float32),
          tf.TensorSpec([k], tf.float32),
          tf.TensorSpec([k], tf.int32),
          tf.TensorSpec([], tf.int32),
      ),
      # (map_fn warns that parallel_iterations has no effect when eager.)
      parallel_iterations=(None if tf.executing_eagerly()
                           else parallel_iterations),
  )
