"""ActivityNet temporal action detection mAP (TAL and zero-shot TAL).

The numbers are those of the official toolkit, activitynet/ActivityNet
`Evaluation/eval_detection.py` (design/metrics.md §1), re-implemented in numpy
without pandas:

* tIoU = |∩| / (len_p + len_g - |∩|) in continuous seconds (no +1), the
  intersection clipped at 0.  Two identical zero-length segments give 0/0 =
  NaN; NaN is never `< threshold`, so it counts as a match.
* Per class, predictions are ranked by `scores.argsort()[::-1]` (the toolkit's
  call; `tie_order` below).  Each prediction visits the GT segments of its
  video in decreasing tIoU (`tiou.argsort()[::-1]`): the first GT below the
  threshold makes it a false positive, an already matched GT is skipped, and
  otherwise it is a true positive (tIoU >= threshold) and locks that GT.  The
  matching is done separately for every threshold.  A prediction on a video
  without GT of its class is a false positive; duplicates are false
  positives.
* AP is the VOC2011 all-point interpolated AP with `npos` = the number of GT
  segments of the class; a class without predictions has AP 0.
* Classes are the labels present in the GT; mAP@t is the mean over them and
  the average mAP the mean over the thresholds.  The default thresholds are
  `np.linspace(0.5, 0.95, 10)`, whose element 8 is 0.8999999999999999.

Tie order (`tie_order`), the one place where the toolkit is not deterministic:
`"toolkit"` (default) calls `argsort()[::-1]` exactly like the toolkit, so it
gives the toolkit's ranking on the same numpy.  numpy's default sort is not
stable: equal scores come out in reverse input order for 2 or 3 predictions,
but for more the order is implementation-defined (numpy 2.4 with AVX-512
sorting already reorders ties among 4 elements).  `"reverse_input"` is the
deterministic version of the small-array behaviour and `"input"` keeps equal
scores in input order (moment_detr's stable `list.sort`, used by the
QVHighlights MR mAP).  Only tied scores are affected; the GT visiting order
inside the matching is always the toolkit's `tiou.argsort()[::-1]`.
"""

from __future__ import annotations

import warnings
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

# The toolkit's default thresholds: element 8 is 0.8999999999999999, not 0.9.
DEFAULT_TIOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)

TIE_ORDERS = ("toolkit", "reverse_input", "input")


def segment_iou(target: Any, candidates: Any) -> np.ndarray:
  """The toolkit's tIoU of one segment against N candidates.

  Args:
    target: [2] (start, end) in seconds.
    candidates: [N, 2] (start, end) in seconds.

  Returns:
    float64 [N]: intersection / (len_t + len_c - intersection), the
    intersection clipped at 0.  Two identical zero-length segments give NaN
    (0/0), as in the toolkit; no warning is emitted.
  """
  target = np.asarray(target, dtype=np.float64)
  candidates = np.asarray(candidates, dtype=np.float64).reshape(-1, 2)
  tt1 = np.maximum(target[0], candidates[:, 0])
  tt2 = np.minimum(target[1], candidates[:, 1])
  intersection = (tt2 - tt1).clip(0)
  union = ((candidates[:, 1] - candidates[:, 0]) + (target[1] - target[0])
           - intersection)
  with np.errstate(divide="ignore", invalid="ignore"):
    return intersection / union


def interpolated_average_precision(precision: Any, recall: Any) -> float:
  """VOC2011 all-point interpolated AP (the toolkit's `interpolated_prec_rec`).

  A (recall 0, precision 0) point is put before the curve and a (recall 1,
  precision 0) point after it; precision is made monotone from the right and
  AP = sum of Δrecall × precision over the points where recall changes.

  Args:
    precision: [N] precision after each ranked prediction.
    recall: [N] recall after each ranked prediction.

  Returns:
    The AP as a Python float.
  """
  mprec = np.hstack([[0.0], np.asarray(precision, np.float64), [0.0]])
  mrec = np.hstack([[0.0], np.asarray(recall, np.float64), [1.0]])
  # Running max from the right (max is exact, so this equals the toolkit's
  # element-wise loop).
  mprec = np.maximum.accumulate(mprec[::-1])[::-1]
  idx = np.where(mrec[1:] != mrec[:-1])[0] + 1
  return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def _rank(scores: np.ndarray, tie_order: str) -> np.ndarray:
  """Indices of `scores` by decreasing score, ties as `tie_order` says."""
  if tie_order == "toolkit":
    return scores.argsort()[::-1]
  if tie_order == "reverse_input":
    return np.argsort(scores, kind="stable")[::-1]
  if tie_order == "input":
    return np.argsort(-scores, kind="stable")
  raise ValueError(f"tie_order must be one of {TIE_ORDERS}, got {tie_order!r}")


def average_precision_arrays(
    gt_video_ids: Sequence[Any],
    gt_segments: Any,
    pred_video_ids: Sequence[Any],
    pred_segments: Any,
    pred_scores: Any,
    tiou_thresholds: Any = DEFAULT_TIOU_THRESHOLDS,
    tie_order: str = "toolkit",
) -> np.ndarray:
  """`average_precision_detection` on arrays (one class).

  Args:
    gt_video_ids: [G] video id of every GT segment.
    gt_segments: [G, 2] GT (start, end).
    pred_video_ids: [P] video id of every prediction.
    pred_segments: [P, 2] predicted (start, end).
    pred_scores: [P] prediction scores.
    tiou_thresholds: [T] thresholds; a TP needs tIoU >= threshold.
    tie_order: "toolkit", "reverse_input" or "input" (module docstring).

  Returns:
    float64 [T] AP per threshold.  0 everywhere when there is no prediction
    (the toolkit's rule, checked first); NaN everywhere when there are
    predictions but no GT (the toolkit divides by npos = 0 there).
  """
  thresholds = [float(t) for t in np.atleast_1d(tiou_thresholds)]
  num_t = len(thresholds)
  pred_scores = np.asarray(pred_scores, dtype=np.float64).reshape(-1)
  num_pred = pred_scores.shape[0]
  pred_segments = np.asarray(pred_segments, np.float64).reshape(num_pred, 2)
  gt_segments = np.asarray(gt_segments, np.float64).reshape(-1, 2)
  num_gt = gt_segments.shape[0]
  if len(pred_video_ids) != num_pred or len(gt_video_ids) != num_gt:
    raise ValueError("video ids and segments must have the same length")
  if num_pred == 0:
    return np.zeros(num_t)
  if num_gt == 0:
    return np.full(num_t, np.nan)

  gt_by_video: dict[Any, list[int]] = {}
  for i, vid in enumerate(gt_video_ids):
    gt_by_video.setdefault(vid, []).append(i)
  gt_by_video_arrays = {
      vid: (np.asarray(ids), gt_segments[ids])
      for vid, ids in gt_by_video.items()}

  lock_gt = np.full((num_t, num_gt), -1, dtype=np.int64)
  tp = np.zeros((num_t, num_pred))
  fp = np.zeros((num_t, num_pred))
  for rank, p in enumerate(_rank(pred_scores, tie_order)):
    entry = gt_by_video_arrays.get(pred_video_ids[p])
    if entry is None:
      fp[:, rank] = 1
      continue
    gt_ids, segs = entry
    tiou = segment_iou(pred_segments[p], segs)
    order = tiou.argsort()[::-1].tolist()
    tiou_list = tiou.tolist()
    for t, threshold in enumerate(thresholds):
      for j in order:
        if tiou_list[j] < threshold:  # NaN is never < threshold: a match.
          fp[t, rank] = 1
          break
        if lock_gt[t, gt_ids[j]] >= 0:
          continue
        tp[t, rank] = 1
        lock_gt[t, gt_ids[j]] = rank
        break
      if fp[t, rank] == 0 and tp[t, rank] == 0:
        fp[t, rank] = 1

  tp_cumsum = np.cumsum(tp, axis=1).astype(np.float64)
  fp_cumsum = np.cumsum(fp, axis=1).astype(np.float64)
  recall = tp_cumsum / float(num_gt)
  precision = tp_cumsum / (tp_cumsum + fp_cumsum)
  return np.array([
      interpolated_average_precision(precision[t], recall[t])
      for t in range(num_t)])


def average_precision_detection(
    ground_truth: Sequence[Mapping[str, Any]],
    predictions: Sequence[Mapping[str, Any]],
    tiou_thresholds: Any = DEFAULT_TIOU_THRESHOLDS,
    tie_order: str = "toolkit",
) -> np.ndarray:
  """AP of one class at every tIoU threshold (the toolkit's function).

  Args:
    ground_truth: dicts {"video_id", "t_start", "t_end"}, all of one class.
    predictions: dicts {"video_id", "t_start", "t_end", "score"}, same class,
      in input order (which decides ties, see `tie_order`).
    tiou_thresholds: [T] thresholds; a TP needs tIoU >= threshold.
    tie_order: "toolkit" (default), "reverse_input" or "input".

  Returns:
    float64 [T].  No predictions -> zeros; predictions but no GT -> NaN.
  """
  return average_precision_arrays(
      [g["video_id"] for g in ground_truth],
      [[float(g["t_start"]), float(g["t_end"])] for g in ground_truth],
      [p["video_id"] for p in predictions],
      [[float(p["t_start"]), float(p["t_end"])] for p in predictions],
      [float(p["score"]) for p in predictions],
      tiou_thresholds=tiou_thresholds,
      tie_order=tie_order)


def evaluate_detection(
    ground_truth: Mapping[str, Iterable[Mapping[str, Any]]],
    predictions: Mapping[str, Iterable[Mapping[str, Any]]],
    tiou_thresholds: Any = DEFAULT_TIOU_THRESHOLDS,
    classes: Optional[Sequence[str]] = None,
    ignore_unknown_labels: bool = False,
    filter_to_ground_truth_videos: bool = False,
    tie_order: str = "toolkit",
) -> dict[str, Any]:
  """ActivityNet detection mAP, as `ANETdetection.evaluate` computes it.

  Args:
    ground_truth: {video_id: [{"segment": [s, e], "label": str}, ...]}.
    predictions: {video_id: [{"segment": [s, e], "label": str, "score":
      float}, ...]}, the "results" part of an ActivityNet results JSON.  The
      iteration order (videos, then list order) is the input order that
      decides ties.
    tiou_thresholds: [T] thresholds (default: the toolkit's linspace).
    classes: None (default, the toolkit rule): the labels present in the GT,
      in order of first appearance.  Otherwise exactly these classes in this
      order; a listed class without GT segments gets AP NaN and is left out
      of the mean (nanmean, as the UnLoc reference averages classes).
    ignore_unknown_labels: False (the toolkit rule): a predicted label that
      is not a class raises KeyError.  True: such predictions are dropped.
    filter_to_ground_truth_videos: False (the toolkit rule): predictions on
      videos that are not keys of `ground_truth` stay and are false
      positives.  True: they are dropped (keys with an empty list count as
      GT videos).
    tie_order: "toolkit" (default), "reverse_input" or "input".

  Returns:
    {"mAP": float64 [T] (mean over classes), "average_mAP": float (mean over
    thresholds), "ap_per_class": float64 [C, T], "classes": list of C labels,
    "tiou_thresholds": float64 [T]}.  A class without predictions gets AP 0
    and a `UserWarning` (one warning listing all such classes).

  Raises:
    KeyError: a predicted label is not a class (see `ignore_unknown_labels`).
    ValueError: no classes to evaluate.
  """
  thresholds = np.array(np.atleast_1d(tiou_thresholds), dtype=np.float64)
  gt_by_class: dict[str, list[tuple[str, float, float]]] = {}
  for vid, anns in ground_truth.items():
    for ann in anns:
      gt_by_class.setdefault(ann["label"], []).append(
          (vid, float(ann["segment"][0]), float(ann["segment"][1])))
  class_list = list(gt_by_class) if classes is None else list(classes)
  if not class_list:
    raise ValueError("no classes to evaluate: the ground truth is empty")
  if len(set(class_list)) != len(class_list):
    raise ValueError("`classes` has duplicate labels")
  class_set = set(class_list)

  pred_by_class: dict[str, list[tuple[str, float, float, float]]] = {
      c: [] for c in class_list}
  for vid, results in predictions.items():
    if filter_to_ground_truth_videos and vid not in ground_truth:
      continue
    for res in results:
      label = res["label"]
      if label not in class_set:
        if ignore_unknown_labels:
          continue
        raise KeyError(
            f"predicted label {label!r} (video {vid!r}) is not one of the "
            f"{len(class_list)} evaluated classes (the ActivityNet toolkit "
            "raises KeyError here); pass ignore_unknown_labels=True to drop "
            "such predictions")
      pred_by_class[label].append(
          (vid, float(res["segment"][0]), float(res["segment"][1]),
           float(res["score"])))

  # ap is [T, C] and mAP its mean over axis 1, as in the toolkit (same
  # reduction, same floating-point result).
  ap = np.zeros((len(thresholds), len(class_list)))
  no_predictions = []
  for c, label in enumerate(class_list):
    gts = gt_by_class.get(label, [])
    if not gts:
      ap[:, c] = np.nan
      continue
    preds = pred_by_class[label]
    if not preds:
      no_predictions.append(label)
    ap[:, c] = average_precision_arrays(
        [g[0] for g in gts], [g[1:] for g in gts],
        [p[0] for p in preds], [p[1:3] for p in preds],
        [p[3] for p in preds],
        tiou_thresholds=thresholds, tie_order=tie_order)
  if no_predictions:
    warnings.warn(
        f"no predictions for {len(no_predictions)} class(es), AP = 0: "
        f"{no_predictions[:10]}{' ...' if len(no_predictions) > 10 else ''}",
        stacklevel=2)
  if np.isnan(ap).all():
    mean_ap = np.full(len(thresholds), np.nan)
  elif np.isnan(ap).any():
    mean_ap = np.nanmean(ap, axis=1)
  else:
    mean_ap = ap.mean(axis=1)
  return {
      "mAP": mean_ap,
      "average_mAP": float(mean_ap.mean()),
      "ap_per_class": np.ascontiguousarray(ap.T),
      "classes": class_list,
      "tiou_thresholds": thresholds,
  }
