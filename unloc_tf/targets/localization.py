"""Relevancy labels and start/end displacement targets over a feature pyramid.

Pure TensorFlow, one example at a time, meant to run inside
`tf.data.Dataset.map` (graph mode).  Every function is vectorised over
segments, classes and tokens (the pyramid levels are flattened into one token
axis, so there is not even a loop over levels) and returns tensors of fully
static shape, whatever the (possibly dynamic) number of segments `S`.

Rules (reference_spec.md §3.1-§3.3, checked against the authors' reference
`scenic/projects/unloc/datasets/dataset_utils.py`):

* Coordinates.  Linspace sampling maps a stored-frame index `s` of a video
  with `n` stored frames to the continuous level-0 token coordinate
  `s' = s * ((N0 - 1) / (n - 1))` (the ratio is computed first, in float32,
  as in the reference).  Token `j` of level `l` sits at `t = j * 2**l`.
* Positives.  Token `t` of level `l` is positive for segment `(s', e')` iff
  `lo_l <= max(e' - t, t - s') < hi_l` (regression range, unnormalised
  level-0 distances) and `max(s', c - r_l) <= t <= min(e', c + r_l)` with
  `c = (s' + e') * 0.5` and `r_l = radius * 2**l` (centre sampling).
* TAL/HD labels are multi-hot over classes (any segment of the class).
* TAL/HD displacements, per class and per token, independently:
  `d_start = min(n + 1, min over class segments with t >= s' of (t - s'))`,
  `d_end = min(n + 1, min over class segments with e' >= t of (e' - t))`.
  `n + 1` is the sentinel of the reference.  Note the reference initialises
  its running minimum with the sentinel, so a distance larger than `n + 1`
  (possible only when `n + 1 < N0 - 1`, i.e. a video with fewer stored frames
  than tokens) is clipped to `n + 1`; this is replicated.
* Stride normalisation (`normalize_by_stride=True`, all pyramid configs)
  divides the level-`l` displacements by `2**l` *after* the sentinel has been
  written, so the sentinel is divided too: it becomes `(n + 1) / 2**l`
  (exactly what the reference produces).  Sentinel entries are never
  positives, so the losses never read them.
* MR displacements are `(t - s', e' - t)` for every token (negative outside
  the segment), divided by `2**l`.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from unloc_tf import spec as spec_lib

PyramidSpec = spec_lib.PyramidSpec


# ---------------------------------------------------------------------------
# Per-token constants.
# ---------------------------------------------------------------------------
def _token_positions_np(pyramid: PyramidSpec) -> np.ndarray:
  return np.concatenate(
    [
      np.arange(n_l, dtype=np.float32) * np.float32(stride)
      for n_l, stride in zip(pyramid.level_lengths, pyramid.strides)
    ]
  )


def _per_token(pyramid: PyramidSpec, values) -> np.ndarray:
  """Repeats one float per level over the tokens of that level, [T_tot]."""
  return np.concatenate(
    [
      np.full((n_l,), v, dtype=np.float32)
      for n_l, v in zip(pyramid.level_lengths, values)
    ]
  )


def token_positions(pyramid: PyramidSpec) -> tf.Tensor:
  """Level-0 coordinate of every pyramid token, levels concatenated.

  Args:
    pyramid: the pyramid.

  Returns:
    float32 [T_tot]: level `l` contributes `0, 2**l, 2 * 2**l, ...`
    (`N0 // 2**l` values), i.e. the left token of each stride window.
  """
  return tf.constant(_token_positions_np(pyramid), dtype=tf.float32)


def token_strides(pyramid: PyramidSpec) -> tf.Tensor:
  """Stride `2**l` (level-0 tokens) of every pyramid token.

  Args:
    pyramid: the pyramid.

  Returns:
    float32 [T_tot].
  """
  return tf.constant(_per_token(pyramid, pyramid.strides), dtype=tf.float32)


def _token_regression_ranges(
  pyramid: PyramidSpec,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """(lo, hi) of the level of every token, float32 [T_tot] each."""
  lo = _per_token(pyramid, [r[0] for r in pyramid.regression_ranges])
  hi = _per_token(pyramid, [r[1] for r in pyramid.regression_ranges])
  return tf.constant(lo), tf.constant(hi)


def _token_radii(pyramid: PyramidSpec) -> Optional[tf.Tensor]:
  """Centre-sampling radius `r * 2**l` of every token, or None (disabled)."""
  if pyramid.center_sampling_radius is None:
    return None
  radius = float(pyramid.center_sampling_radius)
  return tf.constant(_per_token(pyramid, [radius * s for s in pyramid.strides]))


# ---------------------------------------------------------------------------
# Coordinates.
# ---------------------------------------------------------------------------
def to_token_coordinates(
  index: tf.Tensor, total_frames: tf.Tensor, num_frames: int
) -> tf.Tensor:
  """Maps stored-frame indices to continuous level-0 token coordinates.

  Linspace sampling takes token `j` from stored frame
  `int(j * (n - 1) / (N0 - 1))`, so a stored index `s` maps to
  `s * ((N0 - 1) / (n - 1))` (not rounded).

  Args:
    index: int or float tensor of any shape, stored-frame indices.
    total_frames: int scalar, number of stored frames `n` of the video.
    num_frames: N0, number of level-0 tokens (static).

  Returns:
    float32, same shape as `index`.  For `n <= 1` (a single stored frame,
    every token shows frame 0) the scale is 0 and every coordinate is 0.
  """
  index = tf.cast(index, tf.float32)
  n = tf.cast(total_frames, tf.float32)
  # Ratio first, then the product: the reference's order of float32 ops.
  scale = tf.where(
    n > 1.0,
    tf.math.divide_no_nan(tf.constant(num_frames - 1, tf.float32), n - 1.0),
    0.0,
  )
  return index * scale


# ---------------------------------------------------------------------------
# Shared core.
# ---------------------------------------------------------------------------
def _positive_mask(
  start: tf.Tensor,
  end: tf.Tensor,
  positions: tf.Tensor,
  pyramid: PyramidSpec,
) -> tf.Tensor:
  """Regression-range AND centre-sampling test.

  Args:
    start: float32 [S], segment starts in token-position units.
    end: float32 [S], segment ends (inclusive) in the same units.
    positions: float32 [T_tot], token positions in the same units.
    pyramid: the pyramid (ranges and radius per level).

  Returns:
    bool [S, T_tot].
  """
  t = positions[None, :]
  s = start[:, None]
  e = end[:, None]
  max_distance = tf.maximum(e - t, t - s)
  lo, hi = _token_regression_ranges(pyramid)
  in_range = tf.logical_and(max_distance >= lo[None, :], max_distance < hi)
  radii = _token_radii(pyramid)
  if radii is None:
    region_start, region_end = s, e
  else:
    center = (s + e) * 0.5
    region_start = tf.maximum(s, center - radii[None, :])
    region_end = tf.minimum(e, center + radii[None, :])
  in_segment = tf.logical_and(t >= region_start, t <= region_end)
  return tf.logical_and(in_range, in_segment)


def _class_targets(
  start: tf.Tensor,
  end: tf.Tensor,
  label_index: tf.Tensor,
  total_frames: tf.Tensor,
  positions: tf.Tensor,
  num_classes: int,
  pyramid: PyramidSpec,
  normalize_by_stride: bool,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """TAL/HD labels and displacements given segment and token coordinates.

  Args:
    start: float32 [S] segment starts, in the units of `positions`.
    end: float32 [S] segment ends (inclusive).
    label_index: int [S]; entries outside [0, num_classes) are ignored.
    total_frames: int scalar n (for the sentinel n + 1).
    positions: float32 [T_tot] token positions.
    num_classes: C.
    pyramid: the pyramid.
    normalize_by_stride: divide displacements (sentinel included) by 2**l.

  Returns:
    labels int32 [T_tot, C], displacements float32 [T_tot, C, 2].
  """
  label_index = tf.cast(tf.reshape(label_index, [-1]), tf.int32)
  valid = tf.logical_and(label_index >= 0, label_index < num_classes)
  # Invalid segments go to an extra class row that is dropped at the end.
  segment_ids = tf.where(valid, label_index, num_classes)
  sentinel = tf.cast(total_frames, tf.float32) + 1.0

  positive = tf.cast(
    _positive_mask(start, end, positions, pyramid), tf.int32
  )  # [S, T]
  # Empty classes get INT_MIN from unsorted_segment_max: clip to 0.
  labels = tf.maximum(
    tf.math.unsorted_segment_max(positive, segment_ids, num_classes + 1), 0
  )[:num_classes]  # [C, T]

  to_start = positions[None, :] - start[:, None]  # [S, T]
  to_end = end[:, None] - positions[None, :]
  to_start = tf.where(to_start < 0.0, sentinel, to_start)
  to_end = tf.where(to_end < 0.0, sentinel, to_end)
  # Empty classes get FLT_MAX from unsorted_segment_min; the reference's
  # running minimum starts at the sentinel, so clip to it.
  d_start = tf.minimum(
    tf.math.unsorted_segment_min(to_start, segment_ids, num_classes + 1),
    sentinel,
  )[:num_classes]
  d_end = tf.minimum(
    tf.math.unsorted_segment_min(to_end, segment_ids, num_classes + 1),
    sentinel,
  )[:num_classes]
  displacements = tf.stack(
    [tf.transpose(d_start), tf.transpose(d_end)], axis=-1
  )  # [T, C, 2]
  if normalize_by_stride:
    displacements = displacements / token_strides(pyramid)[:, None, None]
  total = pyramid.total_tokens
  labels = tf.ensure_shape(tf.transpose(labels), [total, num_classes])
  displacements = tf.ensure_shape(displacements, [total, num_classes, 2])
  return labels, displacements


# ---------------------------------------------------------------------------
# Public targets.
# ---------------------------------------------------------------------------
def localization_targets(
  start_index: tf.Tensor,
  end_index: tf.Tensor,
  label_index: tf.Tensor,
  total_frames: tf.Tensor,
  num_classes: int,
  pyramid: PyramidSpec,
  normalize_by_stride: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """TAL / HD targets for linspace sampling (reference_spec.md §3.1-§3.3).

  HD is the case `num_classes=1` with every real label 0.

  Args:
    start_index: int [S], segment start, stored-frame index.
    end_index: int [S], segment end, stored-frame index (inclusive).
    label_index: int [S], class of each segment.  Padding entries (label -1,
      start -1000) and any label outside [0, num_classes) contribute nothing.
      `S` may be dynamic (including 0).
    total_frames: int scalar, number of stored frames `n`.
    num_classes: C (static).
    pyramid: the pyramid (N0, levels, regression ranges, radius).
    normalize_by_stride: divide the level-`l` displacements by `2**l`.

  Returns:
    labels: int32 [T_tot, C], multi-hot relevancy labels.
    displacements: float32 [T_tot, C, 2], (to start, to end) per class, in
      level-0 token units divided by `2**l` if `normalize_by_stride`;
      sentinel `n + 1` (divided by `2**l` as well) where no segment of the
      class starts before / ends after the token.
  """
  start = to_token_coordinates(start_index, total_frames, pyramid.num_frames)
  end = to_token_coordinates(end_index, total_frames, pyramid.num_frames)
  return _class_targets(
    tf.reshape(start, [-1]),
    tf.reshape(end, [-1]),
    label_index,
    total_frames,
    token_positions(pyramid),
    num_classes,
    pyramid,
    normalize_by_stride,
  )


def window_localization_targets(
  start_index: tf.Tensor,
  end_index: tf.Tensor,
  label_index: tf.Tensor,
  total_frames: tf.Tensor,
  window_offset: tf.Tensor,
  num_classes: int,
  pyramid: PyramidSpec,
  normalize_by_stride: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """TAL targets for contiguous-window (`'random'`) sampling, frame stride 1.

  Token `i` of level 0 is stored frame `window_offset + i`; token `j` of level
  `l` sits at stored frame `window_offset + j * 2**l`.  Segments stay in raw
  stored-frame units (no linspace scaling); ranges and radii are compared in
  frames (= level-0 tokens at stride 1).  Otherwise identical to
  `localization_targets` (same sentinel `n + 1`, same stride division).
  Unused by the released configs.

  Args:
    start_index: int [S], stored-frame index.
    end_index: int [S], stored-frame index (inclusive).
    label_index: int [S]; -1 / out of range = padding.
    total_frames: int scalar n.
    window_offset: int scalar, first stored frame of the window.
    num_classes: C.
    pyramid: the pyramid.
    normalize_by_stride: divide level-`l` displacements by `2**l`.

  Returns:
    labels int32 [T_tot, C], displacements float32 [T_tot, C, 2].
  """
  start = tf.reshape(tf.cast(start_index, tf.float32), [-1])
  end = tf.reshape(tf.cast(end_index, tf.float32), [-1])
  positions = token_positions(pyramid) + tf.cast(window_offset, tf.float32)
  return _class_targets(
    start,
    end,
    label_index,
    total_frames,
    positions,
    num_classes,
    pyramid,
    normalize_by_stride,
  )


def moment_retrieval_targets(
  start_index: tf.Tensor,
  end_index: tf.Tensor,
  valid: Optional[tf.Tensor],
  total_frames: tf.Tensor,
  pyramid: PyramidSpec,
  normalize_by_stride: bool = True,
) -> Tuple[tf.Tensor, tf.Tensor]:
  """MR targets: one segment per caption (reference_spec.md §3.2-§3.3).

  Args:
    start_index: int [K], start of caption k's segment, stored-frame index.
    end_index: int [K], end (inclusive).
    valid: bool/int [K], 1 for a real caption; None means
      `start_index != -1000` (the reference's caption mask).
    total_frames: int scalar n.
    pyramid: the pyramid.
    normalize_by_stride: divide level-`l` displacements by `2**l`.

  Returns:
    labels: int32 [K, T_tot], positives of each caption (all zero for an
      invalid caption).
    displacements: float32 [K, T_tot, 2], `(t - s', e' - t)` for every token
      (negative outside the segment), divided by `2**l` if
      `normalize_by_stride`.  All zero for invalid captions (the reference
      leaves values derived from the -1000 padding there; they are masked by
      the caption mask and the labels either way).
  """
  start_index = tf.reshape(start_index, [-1])
  end_index = tf.reshape(end_index, [-1])
  if valid is None:
    valid = tf.not_equal(
      tf.cast(start_index, tf.int64), spec_lib.PAD_SEGMENT_INDEX
    )
  valid = tf.cast(tf.reshape(valid, [-1]), tf.bool)
  start = to_token_coordinates(start_index, total_frames, pyramid.num_frames)
  end = to_token_coordinates(end_index, total_frames, pyramid.num_frames)
  positions = token_positions(pyramid)

  positive = tf.logical_and(
    _positive_mask(start, end, positions, pyramid), valid[:, None]
  )
  labels = tf.cast(positive, tf.int32)  # [K, T]
  to_start = positions[None, :] - start[:, None]
  to_end = end[:, None] - positions[None, :]
  displacements = tf.stack([to_start, to_end], axis=-1)  # [K, T, 2]
  if normalize_by_stride:
    displacements = displacements / token_strides(pyramid)[None, :, None]
  displacements = tf.where(valid[:, None, None], displacements, 0.0)
  total = pyramid.total_tokens
  num_captions = start_index.shape[0]
  labels = tf.ensure_shape(labels, [num_captions, total])
  displacements = tf.ensure_shape(displacements, [num_captions, total, 2])
  return labels, displacements
