"""Action segmentation metrics (COIN): frame accuracy, frame mAP, edit, F1.

* Frame accuracy (design/metrics.md §4, alexanderrichard/action-sets
  `eval.py`): a micro average over all frames of all videos, background
  counted as a class.  The loop runs over the *prediction's* length: frames
  after a shorter prediction are ignored (not errors); a longer prediction is
  an error (ValueError naming the video, where the script raises
  IndexError).  With multi-hot labels [n, C] a frame is correct as in the
  UnLoc reference `metrics.frame_accuracy`: predicted class c with
  label[t, c] = 1, or predicted background with an all-zero label row.
* Frame mAP (UnLoc reference, reference_spec.md §6.4): per-class AP over the
  pooled frames with sklearn `average_precision_score` semantics (one
  operating point per distinct score, AP = Σ (R_n - R_{n-1}) P_n, no
  interpolation), then the nanmean over classes.  A class with no positive
  frame has AP NaN and is left out (old sklearn returned NaN there, which is
  why the reference takes a nanmean; sklearn >= 1.1 returns 0 with a
  warning).
* Edit score and F1@{10,25,50} (yabufarha/ms-tcn `eval.py`, also used by
  ASFormer): segments are runs of equal labels, background runs dropped.
  Edit = (1 - Levenshtein(P, Y) / max(|P|, |Y|)) × 100 over the segment label
  sequences, averaged over videos.  F1: each predicted segment takes the GT
  segment of maximal IoU × [same label] (IoU = ∩ / hull, first max on ties);
  TP if that IoU >= overlap and the GT segment is not matched yet, else FP;
  FN = unmatched GT segments; tp/fp/fn summed over videos, F1 in percent, 0
  when undefined.

Choices where MS-TCN crashes or is undefined: both sequences without any
segment give edit 100 (MS-TCN: 0/0 = NaN); predicted segments in a video
without GT segments are all false positives (MS-TCN: argmax of an empty
array); empty videos have no segment.  Units follow the references:
accuracy and mAP are fractions in [0, 1], edit and F1 are percentages.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable, Sequence

import numpy as np

DEFAULT_OVERLAPS = (0.1, 0.25, 0.5)
BACKGROUND = -1


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
def _is_multi_video(x: Any) -> bool:
  """True for a list/tuple of per-video arrays, False for one video."""
  if isinstance(x, np.ndarray):
    return False
  return isinstance(x, (list, tuple)) and len(x) > 0 and all(
      isinstance(v, (np.ndarray, list, tuple)) for v in x)


def _background_set(background: Any) -> frozenset:
  if background is None:
    return frozenset()
  if isinstance(background, (list, tuple, set, frozenset)):
    return frozenset(background)
  return frozenset([background])


def _first_background(background: Any) -> Any:
  """The value that stands for background when decoding multi-hot labels."""
  if background is None:
    return BACKGROUND
  if isinstance(background, (list, tuple, set, frozenset)):
    return next(iter(background)) if background else BACKGROUND
  return background


def _to_frame_labels(labels: Any, background: Any = BACKGROUND) -> list:
  """1-D per-frame labels; multi-hot [n, C] rows -> first positive class.

  An all-zero row becomes the background value.
  """
  arr = np.asarray(labels)
  if arr.ndim == 2:
    positive = arr > 0
    out = np.where(positive.any(axis=1), positive.argmax(axis=1),
                   _first_background(background))
    return out.tolist()
  if arr.ndim != 1:
    raise ValueError(f"frame labels must be [n] or [n, C], got {arr.shape}")
  return arr.tolist()


def frame_labels_to_segments(frame_labels: Any, background: Any = BACKGROUND
                             ) -> list[tuple[Hashable, int, int]]:
  """Runs of equal labels, background runs dropped (MS-TCN).

  Args:
    frame_labels: [n] labels (or [n, C] multi-hot, see module docstring).
    background: label(s) that are not segments; None: every label counts.

  Returns:
    [(label, start, end)], end exclusive.
  """
  labels = _to_frame_labels(frame_labels, background)
  bg = _background_set(background)
  segments = []
  start = 0
  for i in range(1, len(labels) + 1):
    if i == len(labels) or labels[i] != labels[start]:
      if labels[start] not in bg:
        segments.append((labels[start], start, i))
      start = i
  return segments


# ---------------------------------------------------------------------------
# Frame accuracy.
# ---------------------------------------------------------------------------
def frame_accuracy(predictions: Sequence[Any], labels: Sequence[Any],
                   background: Any = BACKGROUND) -> float:
  """Micro frame accuracy over all videos, background counted.

  Args:
    predictions: per video, [n_pred] predicted labels (class index, or the
      background value).
    labels: per video, [n] labels, or [n, C] multi-hot (all-zero row =
      background).
    background: the background value of the predictions (multi-hot labels
      only; 1-D labels are compared with ==).

  Returns:
    correct / counted frames, counted over each prediction's length.

  Raises:
    ValueError: different numbers of videos, a prediction longer than its
      labels (the message names the video index), a predicted class outside
      [0, C) with multi-hot labels, or no frame at all.
  """
  if len(predictions) != len(labels):
    raise ValueError(
        f"{len(predictions)} predicted videos for {len(labels)} labelled ones")
  correct = 0
  total = 0
  for v, (pred, label) in enumerate(zip(predictions, labels)):
    pred = np.asarray(pred).reshape(-1)
    label = np.asarray(label)
    n = pred.shape[0]
    if n > label.shape[0]:
      raise ValueError(
          f"video {v}: the prediction has {n} frames but the labels only "
          f"{label.shape[0]} (the official script raises IndexError)")
    label = label[:n]
    if label.ndim == 2:
      num_classes = label.shape[1]
      is_bg = pred == background
      idx = np.where(is_bg, 0, pred).astype(np.int64)
      if np.any((idx < 0) | (idx >= num_classes)):
        raise ValueError(
            f"video {v}: predicted class outside [0, {num_classes})")
      fg_ok = ~is_bg & (np.take_along_axis(label, idx[:, None], 1)[:, 0] > 0)
      bg_ok = is_bg & ~(label > 0).any(axis=1)
      correct += int(np.sum(fg_ok | bg_ok))
    elif label.ndim == 1:
      correct += int(np.sum(pred == label))
    else:
      raise ValueError(f"video {v}: labels must be [n] or [n, C]")
    total += n
  if total == 0:
    raise ValueError("no frames to evaluate")
  return correct / total


# ---------------------------------------------------------------------------
# Frame mAP.
# ---------------------------------------------------------------------------
def average_precision(y_true: Any, y_score: Any) -> float:
  """sklearn `average_precision_score` for one binary class, in numpy.

  Args:
    y_true: [n] labels in {0, 1}.
    y_score: [n] scores.

  Returns:
    Σ (R_n - R_{n-1}) P_n over the distinct scores, highest first; NaN when
    there is no positive.
  """
  y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
  y_score = np.asarray(y_score, dtype=np.float64).reshape(-1)
  if y_true.shape != y_score.shape:
    raise ValueError(f"shapes differ: {y_true.shape} vs {y_score.shape}")
  npos = y_true.sum()
  if npos == 0:
    return float("nan")
  order = np.argsort(y_score, kind="mergesort")[::-1]
  scores = y_score[order]
  labels = y_true[order]
  last_of_group = np.r_[np.where(np.diff(scores))[0], labels.size - 1]
  tps = np.cumsum(labels)[last_of_group]
  precision = tps / (last_of_group + 1)
  recall = tps / npos
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def mean_average_precision(scores: Sequence[Any], labels: Sequence[Any]
                           ) -> float:
  """Per-class AP over the pooled frames of all videos, nanmean over classes.

  Args:
    scores: per video, [n, C] class scores (logits or probabilities).
    labels: per video, [n] class indices (background, or any value outside
      [0, C), = no class) or [n, C] multi-hot.

  Returns:
    The nanmean of the per-class APs (NaN if no class has a positive).
  """
  if len(scores) != len(labels):
    raise ValueError(f"{len(scores)} score arrays for {len(labels)} videos")
  all_scores, all_labels = [], []
  for v, (s, y) in enumerate(zip(scores, labels)):
    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y)
    if s.ndim != 2 or y.shape[0] != s.shape[0]:
      raise ValueError(
          f"video {v}: scores {s.shape} and labels {y.shape} do not match")
    if y.ndim == 1:
      onehot = (y[:, None] == np.arange(s.shape[1])[None, :])
      y = onehot.astype(np.float64)
    elif y.shape != s.shape:
      raise ValueError(f"video {v}: scores {s.shape}, labels {y.shape}")
    all_scores.append(s)
    all_labels.append((np.asarray(y) > 0).astype(np.float64))
  pooled_scores = np.concatenate(all_scores, axis=0)
  pooled_labels = np.concatenate(all_labels, axis=0)
  aps = np.array([
      average_precision(pooled_labels[:, c], pooled_scores[:, c])
      for c in range(pooled_scores.shape[1])])
  if np.isnan(aps).all():
    return float("nan")
  return float(np.nanmean(aps))


# ---------------------------------------------------------------------------
# Edit score and F1@k (MS-TCN).
# ---------------------------------------------------------------------------
def _levenshtein(p: Sequence[Hashable], y: Sequence[Hashable]) -> int:
  prev = list(range(len(y) + 1))
  for i in range(1, len(p) + 1):
    cur = [i] + [0] * len(y)
    for j in range(1, len(y) + 1):
      if p[i - 1] == y[j - 1]:
        cur[j] = prev[j - 1]
      else:
        cur[j] = min(prev[j], cur[j - 1], prev[j - 1]) + 1
    prev = cur
  return prev[-1]


def edit_score(pred: Any, label: Any, background: Any = BACKGROUND) -> float:
  """Segmental edit score of one video, 0..100 (MS-TCN `edit_score`).

  Args:
    pred: [n] predicted frame labels.
    label: [n] GT frame labels (or [n, C] multi-hot).
    background: label(s) whose runs are not segments; None: none.

  Returns:
    (1 - Levenshtein / max(#pred segments, #GT segments)) × 100; 100 when
    neither has a segment.
  """
  p = [s[0] for s in frame_labels_to_segments(pred, background)]
  y = [s[0] for s in frame_labels_to_segments(label, background)]
  if not p and not y:
    return 100.0
  return (1 - _levenshtein(p, y) / max(len(p), len(y))) * 100


def _f_counts(pred: Any, label: Any, overlap: float, background: Any
              ) -> tuple[int, int, int]:
  """MS-TCN `f_score` of one video: (tp, fp, fn)."""
  p_segs = frame_labels_to_segments(pred, background)
  y_segs = frame_labels_to_segments(label, background)
  if not y_segs:
    return 0, len(p_segs), 0
  y_label = [s[0] for s in y_segs]
  y_start = np.array([s[1] for s in y_segs], dtype=np.float64)
  y_end = np.array([s[2] for s in y_segs], dtype=np.float64)
  hits = np.zeros(len(y_segs), dtype=bool)
  tp = fp = 0
  for lab, start, end in p_segs:
    inter = np.minimum(end, y_end) - np.maximum(start, y_start)
    union = np.maximum(end, y_end) - np.minimum(start, y_start)
    same = np.array([lab == yl for yl in y_label], dtype=np.float64)
    iou = (inter / union) * same
    idx = int(iou.argmax())
    if iou[idx] >= overlap and not hits[idx]:
      tp += 1
      hits[idx] = True
    else:
      fp += 1
  return tp, fp, len(y_segs) - int(hits.sum())


def _f1_key(overlap: float) -> str:
  return f"F1@{round(overlap * 100, 6):g}"


def _pairs(pred: Any, label: Any) -> list[tuple[Any, Any]]:
  """[(pred, label)] per video; `pred` (always 1-D per video) decides."""
  if _is_multi_video(pred):
    if len(pred) != len(label):
      raise ValueError(f"{len(pred)} predicted videos for {len(label)}")
    return list(zip(pred, label))
  return [(pred, label)]


def f1_at_overlaps(pred: Any, label: Any,
                   overlaps: Iterable[float] = DEFAULT_OVERLAPS,
                   background: Any = BACKGROUND) -> dict[str, float]:
  """MS-TCN F1@{10,25,50}, in percent.

  Args:
    pred: one video's [n] predicted labels, or a list of them.
    label: the matching GT ([n] or [n, C]), or a list of them.
    overlaps: IoU thresholds (TP needs IoU >= overlap).
    background: label(s) whose runs are not segments; None: none.

  Returns:
    {"F1@10": ..., "F1@25": ..., "F1@50": ...}: F1 × 100 from tp/fp/fn summed
    over the videos; 0 when precision + recall is 0 or undefined.
  """
  pairs = _pairs(pred, label)
  out = {}
  for overlap in overlaps:
    tp = fp = fn = 0
    for p, y in pairs:
      a, b, c = _f_counts(p, y, overlap, background)
      tp, fp, fn = tp + a, fp + b, fn + c
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = (2 * precision * recall / (precision + recall)
          if precision + recall else 0.0)
    out[_f1_key(overlap)] = f1 * 100
  return out


def evaluate_segmentation(preds: Sequence[Any], labels: Sequence[Any],
                          scores: Sequence[Any] | None = None,
                          background: Any = BACKGROUND,
                          overlaps: Iterable[float] = DEFAULT_OVERLAPS
                          ) -> dict[str, float]:
  """All AS metrics over a list of videos.

  Args:
    preds: per video, [n] predicted labels.
    labels: per video, [n] labels or [n, C] multi-hot.
    scores: optional per video [n, C] class scores, for "mAP".
    background: the background label (see the functions above).
    overlaps: F1 overlaps.

  Returns:
    {"accuracy": fraction, "mAP": fraction (only with scores), "edit": mean
    over videos in 0..100, "F1@10" / "F1@25" / "F1@50": percent}.  Edit and
    F1 use each prediction as given (no truncation).
  """
  if len(preds) != len(labels):
    raise ValueError(f"{len(preds)} predicted videos for {len(labels)}")
  if not preds:
    raise ValueError("no videos to evaluate")
  out = {"accuracy": frame_accuracy(preds, labels, background)}
  if scores is not None:
    out["mAP"] = mean_average_precision(scores, labels)
  out["edit"] = float(np.mean(
      [edit_score(p, y, background) for p, y in zip(preds, labels)]))
  out.update(f1_at_overlaps(list(preds), list(labels), overlaps, background))
  return out
