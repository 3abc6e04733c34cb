"""Dense UnLoc outputs → scored segments, frame classes and clip saliency.

The same TensorFlow code runs in evaluation and inside exported SavedModels
(TF Serving): only core TF ops, any batch size (also 0), static padded
outputs with valid counts.  Reference behaviour: reference_spec.md §5.

* `ensemble_prompts`: average RAW logits and displacements over prompts
  (the sigmoid comes later, in the detection functions) — §5.1.
* `localization_detections` (TAL / HD): sigmoid, every (token, class) with
  `prob >= score_threshold` on a real token is a candidate (no top-k before
  NMS, as the reference), decode (§5.2), class-agnostic (reference) or
  per-class Soft-NMS (§5.3).
* `retrieval_detections` (MR): Soft-NMS per caption.
* `segmentation_predictions` (AS): argmax class where the max logit is above
  the background threshold (§5.4); `assemble_windows` / `assemble_windows_np`
  stitch window logits back to a per-video frame axis.
* `highlight_saliency` (HD): per-clip saliency from the level-0 relevancy
  probabilities (not in the reference; needed for QVHighlights HD metrics).

Model outputs (see `unloc_tf.tasks.action_localizer`, `moment_retriever`):
TAL/HD `logits` [B, T_tot, C], `displacements` [B, T_tot, C, 2] (level-stride
units), `token_mask` [B, T_tot]; MR `logits` [B, K, T_tot], `displacements`
[B, K, T_tot, 2]; AS `logits` [B, N0, C].
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np
import tensorflow as tf

from unloc_tf.ops import nms as nms_lib
from unloc_tf.ops import segments as seg_lib

_NEG_INF = float("-inf")
ENSEMBLE_KEYS = ("logits", "displacements")


# ---------------------------------------------------------------------------
# Prompt ensembling (§5.1).
# ---------------------------------------------------------------------------
def ensemble_prompts(
    outputs: Union[Sequence[Mapping[str, tf.Tensor]], Mapping[str, tf.Tensor]],
    keys: Sequence[str] = ENSEMBLE_KEYS,
) -> Dict[str, tf.Tensor]:
  """Averages the raw model outputs of P prompts (before any sigmoid).

  The reference sums the raw outputs (logits and distances) of the prompts
  and divides by P; the sigmoid is applied afterwards, so this is NOT the
  mean of the probabilities.

  Args:
    outputs: either a list of P output dicts (e.g. `{"logits": [B, T, C],
      "displacements": [B, T, C, 2], "token_mask": [B, T]}`, one per prompt),
      or one dict whose values are stacked along a leading prompt axis
      `[P, ...]`.
    keys: the entries to average; every other entry is taken from prompt 0.

  Returns:
    One output dict with the shapes of a single prompt's outputs.
  """
  if isinstance(outputs, Mapping):
    result = {}
    for name, value in outputs.items():
      value = tf.convert_to_tensor(value)
      if name in keys:
        p = tf.cast(tf.shape(value)[0], value.dtype)
        result[name] = tf.reduce_sum(value, axis=0) / p
      else:
        result[name] = value[0]
    return result
  outputs = list(outputs)
  if not outputs:
    raise ValueError("ensemble_prompts needs at least one prompt's outputs")
  result = {}
  for name, first in outputs[0].items():
    if name in keys:
      total = tf.convert_to_tensor(first)
      for other in outputs[1:]:  # sequential sum, as the reference
        total = total + tf.convert_to_tensor(other[name])
      result[name] = total / tf.cast(len(outputs), total.dtype)
    else:
      result[name] = first
  return result


# ---------------------------------------------------------------------------
# Detections (§5.2, §5.3).
# ---------------------------------------------------------------------------
def _lengths(level_lengths) -> tuple:
  return tuple(int(n) for n in getattr(level_lengths, "level_lengths",
                                       level_lengths))


def localization_detections(
    logits,
    displacements,
    token_mask,
    total_frames,
    secs_per_timestep,
    *,
    pyramid_level_lengths,
    num_frames: Optional[int] = None,
    max_detections: int = 100,
    score_threshold: float = 0.001,
    soft_nms_sigma: float = 0.3,
    iou_threshold: float = 0.5,
    per_class: bool = False,
    window_offset=None,
    max_candidates: Optional[int] = None,
) -> Dict[str, tf.Tensor]:
  """TAL / HD detections: sigmoid → candidates → decode → Soft-NMS.

  Candidates are every (token, class) pair on a real token with
  `sigmoid(logit) >= score_threshold`, in token-major order (as the
  reference's `nonzero`, which fixes tie-breaking in the NMS kernel).  All
  `T_tot * C` pairs are handed to the kernel with `-inf` for the rejected
  ones (the kernel drops them up front), so shapes are static and the result
  equals the reference's.  Note the kernel also drops scores `<=
  score_threshold`, so a probability exactly equal to the threshold is no
  detection (as in the reference).

  Args:
    logits: float [B, T_tot, C] relevancy logits (C may be dynamic).
    displacements: float [B, T_tot, C, 2], level-stride units.
    token_mask: int/bool [B, T_tot], non-zero = real token.
    total_frames: int [B], stored frames `n` of each video.
    secs_per_timestep: float [B] (or scalar).
    pyramid_level_lengths: `(N_0, N_1, ...)` or a `PyramidSpec`.
    num_frames: N0 of the linspace sampling; default `N_0`.
    max_detections: K, detections per video (static).
    score_threshold: minimum probability of a candidate (0.001).
    soft_nms_sigma: 0.3 (the reference); 0 = hard NMS at `iou_threshold`.
    iou_threshold: used by hard NMS only.
    per_class: False = class-agnostic Soft-NMS over all classes jointly (the
      reference default); True = independent Soft-NMS per class, then the K
      best over all classes (the reference's `multiclass_nms` keeps up to K
      per class instead; with a fixed output size we keep K per video).
    window_offset: None (linspace sampling) or int [B], first stored frame
      of a contiguous window (window decoding, see `decode_segments`).
    max_candidates: optional static cap: only the `max_candidates` highest
      scoring candidates go to NMS (`tf.math.top_k`; ties keep the lower
      index first, so the kernel's tie order is unchanged).  None (default)
      = all `T_tot * C`, exactly the reference.  A cap only changes results
      when more than `max_candidates` candidates pass the threshold.

  Returns:
    {"segments": float32 [B, K, 2] seconds (0 padding),
     "scores": float32 [B, K] decayed scores, best first (0 padding),
     "classes": int32 [B, K] (-1 padding),
     "num_detections": int32 [B]}.
  """
  lengths = _lengths(pyramid_level_lengths)
  if num_frames is None:
    num_frames = lengths[0]
  logits = tf.convert_to_tensor(logits, tf.float32)
  probs = tf.sigmoid(logits)
  segments = seg_lib.decode_segments(
      displacements, lengths, total_frames, num_frames, secs_per_timestep,
      window_offset=window_offset, token_axis=1)  # [B, T, C, 2]
  real = tf.not_equal(tf.cast(token_mask, tf.int32), 0)[:, :, None]
  keep = tf.logical_and(real, probs >= score_threshold)
  scores = tf.where(keep, probs, _NEG_INF)

  shape = tf.shape(logits)
  batch, num_classes = shape[0], shape[2]
  num_cand = shape[1] * num_classes
  scores = tf.reshape(scores, [batch, num_cand])
  segments = tf.reshape(segments, [batch, num_cand, 2])
  classes = tf.range(num_cand, dtype=tf.int32) % num_classes  # [N]
  static_cand = None
  if logits.shape[1] is not None and logits.shape[2] is not None:
    static_cand = logits.shape[1] * logits.shape[2]
  if max_candidates is not None and (static_cand is None
                                     or max_candidates < static_cand):
    k = tf.minimum(tf.constant(int(max_candidates), tf.int32), num_cand)
    scores, order = tf.math.top_k(scores, k=k, sorted=True)
    segments = tf.gather(segments, order, batch_dims=1)
    classes = tf.gather(classes, order)  # [B, k]

  sel_segments, sel_scores, sel_idx, num = nms_lib.batched_soft_nms_1d(
      segments, scores, max_detections=max_detections,
      iou_threshold=iou_threshold, score_threshold=score_threshold,
      soft_nms_sigma=soft_nms_sigma,
      groups=classes if per_class else None)
  safe_idx = tf.maximum(sel_idx, 0)
  if classes.shape.rank == 1:
    sel_classes = tf.gather(classes, safe_idx)
  else:
    sel_classes = tf.gather(classes, safe_idx, batch_dims=1)
  sel_classes = tf.where(sel_idx >= 0, sel_classes, -1)
  return {
      "segments": sel_segments,
      "scores": sel_scores,
      "classes": sel_classes,
      "num_detections": num,
  }


def retrieval_detections(
    logits,
    displacements,
    token_mask,
    total_frames,
    secs_per_timestep,
    *,
    pyramid_level_lengths,
    num_frames: Optional[int] = None,
    caption_mask=None,
    max_detections: int = 100,
    score_threshold: float = 0.001,
    soft_nms_sigma: float = 0.3,
    iou_threshold: float = 0.5,
    window_offset=None,
) -> Dict[str, tf.Tensor]:
  """MR detections: Soft-NMS of every real token, per caption.

  The reference applies no score threshold when it collects the candidates
  (every real token of every valid caption), but its NMS call passes the
  config's `score_threshold` (0.001 in every MR config) to the kernel, which
  drops scores `<= score_threshold`.  The default here is therefore 0.001,
  which reproduces the reference exactly; pass `float("-inf")` to keep every
  token.

  Args:
    logits: float [B, K, T_tot] (K captions per video).
    displacements: float [B, K, T_tot, 2], level-stride units.
    token_mask: int/bool [B, T_tot].
    total_frames: int [B].
    secs_per_timestep: float [B] (or scalar).
    pyramid_level_lengths: `(N_0, N_1, ...)` or a `PyramidSpec`.
    num_frames: N0 of the linspace sampling; default `N_0`.
    caption_mask: optional int/bool [B, K], non-zero = a real caption
      (invalid captions get no detections).
    max_detections: M, detections per caption (static).
    score_threshold, soft_nms_sigma, iou_threshold: as in
      `localization_detections`.
    window_offset: None or int [B] (window decoding).

  Returns:
    {"segments": float32 [B, K, M, 2] seconds, "scores": float32 [B, K, M]
     (best first, 0 padding), "num_detections": int32 [B, K]}.
  """
  lengths = _lengths(pyramid_level_lengths)
  if num_frames is None:
    num_frames = lengths[0]
  logits = tf.convert_to_tensor(logits, tf.float32)
  probs = tf.sigmoid(logits)
  segments = seg_lib.decode_segments(
      displacements, lengths, total_frames, num_frames, secs_per_timestep,
      window_offset=window_offset, token_axis=2)  # [B, K, T, 2]
  keep = tf.not_equal(tf.cast(token_mask, tf.int32), 0)[:, None, :]
  if caption_mask is not None:
    valid = tf.not_equal(tf.cast(caption_mask, tf.int32), 0)[:, :, None]
    keep = tf.logical_and(keep, valid)
  scores = tf.where(keep, probs, _NEG_INF)  # broadcast to [B, K, T]
  shape = tf.shape(logits)
  batch, captions, tokens = shape[0], shape[1], shape[2]
  sel_segments, sel_scores, _, num = nms_lib.batched_soft_nms_1d(
      tf.reshape(segments, [batch * captions, tokens, 2]),
      tf.reshape(scores, [batch * captions, tokens]),
      max_detections=max_detections, iou_threshold=iou_threshold,
      score_threshold=score_threshold, soft_nms_sigma=soft_nms_sigma)
  m = int(max_detections)
  return {
      "segments": tf.reshape(sel_segments, [batch, captions, m, 2]),
      "scores": tf.reshape(sel_scores, [batch, captions, m]),
      "num_detections": tf.reshape(num, [batch, captions]),
  }


# ---------------------------------------------------------------------------
# Action segmentation (§5.4).
# ---------------------------------------------------------------------------
def segmentation_predictions(
    logits, background_logit_threshold: float = 0.0, token_mask=None
) -> tf.Tensor:
  """Per-frame class: argmax where the max logit is above the threshold.

  Args:
    logits: float [B, N0, C] (or [..., C]).
    background_logit_threshold: a frame whose max logit is `<=` this value
      is background (the reference: `max logit > 0.0` is foreground).
    token_mask: optional [B, N0], non-zero = real frame; padded frames are
      predicted as background.

  Returns:
    int32 [B, N0]: class index, -1 = background.
  """
  logits = tf.convert_to_tensor(logits, tf.float32)
  best = tf.argmax(logits, axis=-1, output_type=tf.int32)
  foreground = tf.reduce_max(logits, axis=-1) > background_logit_threshold
  if token_mask is not None:
    foreground = tf.logical_and(
        foreground, tf.not_equal(tf.cast(token_mask, tf.int32), 0))
  return tf.where(foreground, best, -1)


def sliding_window_offsets(total_frames, window: int) -> tf.Tensor:
  """Offsets of the non-overlapping windows that cover a video.

  Args:
    total_frames: int scalar n.
    window: W.

  Returns:
    int32 [ceil(n / W)]: 0, W, 2W, ...
  """
  n = tf.cast(total_frames, tf.int32)
  count = (n + window - 1) // window
  return tf.range(count, dtype=tf.int32) * window


def assemble_windows(
    window_logits,
    window_offsets,
    frame_masks,
    total_frames,
    fill_value: float = float("nan"),
    return_counts: bool = False,
):
  """Stitches window logits of one video into a per-frame [n, C] array.

  Window frame `i` shows stored frame `window_offsets[w] + i` (§1.2).  Each
  stored frame gets the mean of the logits of the (real, in-range) window
  frames that show it.  The non-overlapping sliding windows of
  `sliding_window_offsets` cover every frame exactly once, so the result is
  a plain copy.  The reference's centre window (`offset = max(0, (n -
  W) // 2)`, one window per video) covers only its W frames: the others get
  `fill_value` (NaN by default; treat NaN rows as not predicted, or pass
  e.g. -inf to make them background in `segmentation_predictions`).

  Args:
    window_logits: float [Wn, N0, C], logits of the windows of one video.
    window_offsets: int [Wn], first stored frame of each window.
    frame_masks: int/bool [Wn, N0], non-zero = a real frame (looped frames
      past the end of the video are masked).
    total_frames: int scalar n.
    fill_value: value of frames that no window covers.
    return_counts: also return how many windows cover each frame.

  Returns:
    float32 [n, C]; with `return_counts`, also int32 [n].
  """
  logits = tf.convert_to_tensor(window_logits, tf.float32)
  n = tf.cast(total_frames, tf.int32)
  offsets = tf.cast(tf.reshape(window_offsets, [-1, 1]), tf.int32)
  pos = offsets + tf.range(tf.shape(logits)[1], dtype=tf.int32)[None, :]
  valid = tf.not_equal(tf.cast(frame_masks, tf.int32), 0)
  valid = tf.logical_and(valid, tf.logical_and(pos >= 0, pos < n))
  ids = tf.reshape(tf.where(valid, pos, n), [-1])  # n = discard bucket
  flat = tf.reshape(logits, [-1, tf.shape(logits)[2]])
  sums = tf.math.unsorted_segment_sum(flat, ids, n + 1)[:n]
  counts = tf.math.unsorted_segment_sum(
      tf.reshape(tf.cast(valid, tf.int32), [-1]), ids, n + 1)[:n]
  covered = counts > 0
  mean = sums / tf.cast(tf.maximum(counts, 1), tf.float32)[:, None]
  out = tf.where(covered[:, None], mean, tf.cast(fill_value, tf.float32))
  if return_counts:
    return out, counts
  return out


def assemble_windows_np(
    window_logits,
    window_offsets,
    frame_masks,
    total_frames: int,
    fill_value: float = float("nan"),
    return_counts: bool = False,
):
  """NumPy twin of `assemble_windows` for the host evaluator (same rules).

  Args:
    window_logits: [Wn, N0, C] array.
    window_offsets: [Wn] ints.
    frame_masks: [Wn, N0], non-zero = real frame.
    total_frames: n.
    fill_value: value of frames that no window covers.
    return_counts: also return the per-frame coverage counts.

  Returns:
    float32 [n, C] (and int32 [n] with `return_counts`).
  """
  logits = np.asarray(window_logits, np.float32)
  n = int(total_frames)
  wn, n0, c = logits.shape
  pos = np.asarray(window_offsets, np.int64).reshape(-1, 1) + np.arange(n0)
  valid = (np.asarray(frame_masks) != 0) & (pos >= 0) & (pos < n)
  sums = np.zeros((n, c), np.float32)
  counts = np.zeros((n,), np.int32)
  np.add.at(sums, pos[valid], logits[valid])
  np.add.at(counts, pos[valid], 1)
  out = np.full((n, c), fill_value, np.float32)
  covered = counts > 0
  out[covered] = sums[covered] / counts[covered, None]
  if return_counts:
    return out, counts
  return out


# ---------------------------------------------------------------------------
# Highlight detection saliency.
# ---------------------------------------------------------------------------
def highlight_saliency(
    logits,
    token_mask,
    total_frames,
    secs_per_timestep,
    *,
    level_lengths,
    num_frames: Optional[int] = None,
    secs_per_clip: float = 2.0,
    max_clips: int,
    reduction: str = "max",
) -> tf.Tensor:
  """Per-clip saliency (QVHighlights: 2 s clips) from level-0 relevancy.

  The reference predicts no saliency (reference_spec.md §6.3).  Here: level-0
  token `t` shows stored frame `f = int32(linspace(0, n-1, N0))[t]` (the
  pipeline's sampling), i.e. time `f * secs_per_timestep`; it belongs to clip
  `floor(time / secs_per_clip)` (a 1e-4 clip tolerance absorbs float
  round-off at clip boundaries).  A clip's saliency is the `reduction`
  ("max", default: a clip is as salient as its most relevant moment; or
  "mean") of `sigmoid(logit)` over its real tokens.  A clip with no token
  (videos with more clips than tokens) takes the probability of the token
  whose frame centre `(f + 0.5) * secs_per_timestep` is nearest to the clip
  centre (first on ties).  Clips that start at or after the end of the video
  (`j * secs_per_clip >= n * secs_per_timestep`) are 0, as are all clips of
  a video without real tokens.

  Args:
    logits: float [B, T_tot, 1] (or [B, T_tot]) HD relevancy logits.
    token_mask: int/bool [B, T_tot].
    total_frames: int [B], n >= 1.
    secs_per_timestep: float [B] (or scalar).
    level_lengths: `(N_0, ...)` or a `PyramidSpec`; only the first N_0
      tokens (level 0) are used.
    num_frames: N0 of the linspace sampling; default `N_0`.
    secs_per_clip: clip length in seconds (2.0 in QVHighlights).
    max_clips: static number of output clips.
    reduction: "max" or "mean".

  Returns:
    float32 [B, max_clips].
  """
  if reduction not in ("max", "mean"):
    raise ValueError(f"reduction must be 'max' or 'mean', got {reduction!r}")
  lengths = _lengths(level_lengths)
  n0 = lengths[0]
  if num_frames is None:
    num_frames = n0
  logits = tf.convert_to_tensor(logits, tf.float32)
  if logits.shape.rank == 3:
    logits = logits[..., 0]
  probs = tf.sigmoid(logits[:, :n0])  # [B, N0]
  real = tf.not_equal(tf.cast(token_mask, tf.int32)[:, :n0], 0)
  spt = tf.cast(secs_per_timestep, tf.float32)
  spt = tf.reshape(spt, [-1, 1]) if spt.shape.rank else spt
  frames = tf.cast(seg_lib.linspace_frame_indices(total_frames, num_frames),
                   tf.float32)[:, :n0]
  time = frames * spt  # [B, N0]
  clip = tf.cast(tf.floor(time / secs_per_clip + 1e-4), tf.int32)
  clips = tf.range(max_clips, dtype=tf.int32)
  member = tf.logical_and(tf.equal(clip[:, :, None], clips), real[:, :, None])
  p = probs[:, :, None]
  if reduction == "max":
    agg = tf.reduce_max(tf.where(member, p, _NEG_INF), axis=1)
  else:
    count = tf.reduce_sum(tf.cast(member, tf.float32), axis=1)
    agg = tf.reduce_sum(tf.where(member, p, 0.0), axis=1) / tf.maximum(
        count, 1.0)
  has_token = tf.reduce_any(member, axis=1)  # [B, M]
  centre = (tf.cast(clips, tf.float32) + 0.5) * secs_per_clip  # [M]
  token_centre = (frames + 0.5) * spt  # [B, N0]
  dist = tf.abs(token_centre[:, :, None] - centre)  # [B, N0, M]
  dist = tf.where(real[:, :, None], dist, math.inf)
  nearest = tf.argmin(dist, axis=1, output_type=tf.int32)  # [B, M]
  nearest_p = tf.gather(probs, nearest, batch_dims=1)
  out = tf.where(has_token, agg, nearest_p)
  duration = tf.cast(tf.reshape(total_frames, [-1, 1]), tf.float32) * spt
  inside = tf.cast(clips, tf.float32)[None, :] * secs_per_clip < duration
  inside = tf.logical_and(inside, tf.reduce_any(real, axis=1, keepdims=True))
  return tf.where(inside, out, 0.0)
