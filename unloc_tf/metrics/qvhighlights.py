"""QVHighlights moment retrieval (MR) and highlight detection (HD) metrics.

Gives the numbers of jayleicn/moment_detr `standalone_eval/eval.py`
(`eval_submission`), with the same output structure and the same rounding
(percent, 2 decimals, averages taken before rounding), in numpy only.  The
rules (design/metrics.md §2):

MR
* Thresholds `[float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10)]`, so
  exactly 0.9 (the ActivityNet toolkit uses 0.8999999999999999).
* R1@t: only `pred_relevant_windows[0]` counts, the first window *as listed*.
  It is compared with the GT window of maximal true-union IoU (`np.argmax`:
  first on ties) and is a hit if its hull IoU ∩ / (max(ends) - min(starts))
  is >= t.  Mean over queries.
* mAP@t: every query is its own class; the first 10 windows as listed are
  its detections (then sorted by score with a *stable* sort: equal scores
  keep input order), all its GT windows the positives; ActivityNet greedy
  matching (true-union IoU >= t) and VOC2011 interpolated AP.  Mean over the
  queries that have >= 1 window.  A query with more than 10 GT windows can
  reach at most 10/n.
* short / middle / long: only the GT windows with length in (0, 10],
  (10, 30], (30, 150] are kept, queries left without GT window are dropped;
  predicted windows are *not* filtered.  "full" keeps everything.

HD (2-second clips)
* The GT is a [int(duration / 2), 3] matrix, 0 outside `relevant_clip_ids`,
  binarised at >= 2 (Fair), >= 3 (Good), >= 4 (VeryGood).
* HL-Hit1: the clip `np.argmax(pred_saliency_scores)` (first max, over the
  unpadded list) is a hit if any annotator marks it positive.  Mean over
  queries.
* HL-mAP: `get_ap` for every (query, annotator) pair, averaged over all pairs,
  the prediction cut or zero-padded to the number of clips.

Choices where the reference crashes (documented behaviour here):
* An empty length bucket (e.g. no GT window of 10 s or less): every number of
  that bucket is NaN (the reference raises TypeError) and a UserWarning names
  the bucket.
* A query whose `pred_relevant_windows` is empty: left out of mAP (as in the
  reference) and an R1 miss (the reference raises IndexError).  A query
  without GT window in "full" is an R1 miss (reference: IndexError).
* An empty `pred_saliency_scores`: Hit1 miss (reference: ValueError from
  argmax), all-zero scores for HL-mAP (the reference's zero padding).
* Mismatched qid sets with `match_number=True` and duplicate qids raise
  ValueError (the reference: AssertionError, or silently merges duplicates).
* An empty submission raises ValueError.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from typing import Any, Mapping, Sequence

import numpy as np

from unloc_tf.metrics import localization

MR_IOU_THRESHOLDS = [float(f"{t:.2f}") for t in np.linspace(0.5, 0.95, 10)]
# (name, (min_len, max_len)): a GT window is in the bucket if min < len <= max.
LENGTH_RANGES = (("short", (0, 10)), ("middle", (10, 30)), ("long", (30, 150)),
                 ("full", (0, 150)))
MAX_PRED_WINDOWS = 10
CLIP_LENGTH = 2  # seconds per saliency clip
SALIENCY_LEVELS = (("Fair", 2), ("Good", 3), ("VeryGood", 4))
NUM_ANNOTATORS = 3


def load_jsonl(path: str) -> list[dict]:
  """Reads a jsonl file (one JSON object per line; blank lines skipped)."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]


def _percent(value: float) -> float:
  """moment_detr's formatting: percent rounded to 2 decimals (NaN stays)."""
  return float(f"{100 * value:.2f}")


# ---------------------------------------------------------------------------
# IoU helpers (moment_detr `standalone_eval/utils.py` definitions).
# ---------------------------------------------------------------------------
def _iou_cross(spans1: np.ndarray, spans2: np.ndarray) -> np.ndarray:
  """[N, M] true-union IoU; 0/0 (identical zero-length spans) is NaN."""
  areas1 = spans1[:, 1] - spans1[:, 0]
  areas2 = spans2[:, 1] - spans2[:, 0]
  left = np.maximum(spans1[:, None, 0], spans2[None, :, 0])
  right = np.minimum(spans1[:, None, 1], spans2[None, :, 1])
  inter = np.clip(right - left, 0, None)
  union = areas1[:, None] + areas2[None, :] - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    return inter / union


def _iou_hull_paired(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
  """[N] ∩ / (max(ends) - min(starts)) of paired rows; 0 when the hull is 0."""
  inter = np.maximum(0, np.minimum(pred[:, 1], gt[:, 1])
                     - np.maximum(pred[:, 0], gt[:, 0]))
  hull = np.maximum(pred[:, 1], gt[:, 1]) - np.minimum(pred[:, 0], gt[:, 0])
  return np.divide(inter, hull, out=np.zeros_like(inter), where=hull != 0)


# ---------------------------------------------------------------------------
# Moment retrieval.
# ---------------------------------------------------------------------------
def _window_len(window: Sequence[float]) -> float:
  return window[1] - window[0]


def filter_by_length(submission: Sequence[Mapping[str, Any]],
                     ground_truth: Sequence[Mapping[str, Any]],
                     len_range: tuple[float, float]
                     ) -> tuple[list[dict], list[dict]]:
  """Keeps GT windows with min < length <= max and the queries that have one.

  (0, 150) returns the inputs unchanged (moment_detr's "full").  Predicted
  windows are never filtered.

  Args:
    submission: the submission entries.
    ground_truth: the GT entries.
    len_range: (min_len, max_len).

  Returns:
    (submission entries of the kept queries, GT entries with only the kept
    windows).
  """
  min_l, max_l = len_range
  if min_l == 0 and max_l == 150:
    return list(submission), list(ground_truth)
  gt_in_range = []
  qids = set()
  for d in ground_truth:
    windows = [w for w in d["relevant_windows"]
               if min_l < _window_len(w) <= max_l]
    if windows:
      d = copy.deepcopy(d)
      d["relevant_windows"] = windows
      gt_in_range.append(d)
      qids.add(d["qid"])
  return [d for d in submission if d["qid"] in qids], gt_in_range


def mr_average_precision(submission: Sequence[Mapping[str, Any]],
                         ground_truth: Sequence[Mapping[str, Any]],
                         max_pred_windows: int | None = MAX_PRED_WINDOWS
                         ) -> dict[str, float]:
  """MR mAP per threshold and "average", rounded (moment_detr `compute_mr_ap`).

  Args:
    submission: entries with "qid" and "pred_relevant_windows" ([s, e, score]
      each, in the given order).
    ground_truth: entries with "qid" and "relevant_windows".
    max_pred_windows: windows used per query (the first ones as listed).

  Returns:
    {"0.5": ..., ..., "0.95": ..., "average": ...} in percent (2 decimals);
    NaN everywhere when no query has a predicted window.
  """
  gt_windows: dict[Any, list] = {}
  for d in ground_truth:
    gt_windows.setdefault(d["qid"], []).extend(d["relevant_windows"])
  aps = []
  for d in submission:
    windows = d["pred_relevant_windows"]
    if max_pred_windows is not None:
      windows = windows[:max_pred_windows]
    if not windows:
      continue
    if any(len(w) < 3 for w in windows):
      raise ValueError(
          f"qid {d['qid']}: pred_relevant_windows need [start, end, score]")
    gts = gt_windows.get(d["qid"], [])
    aps.append(localization.average_precision_arrays(
        [0] * len(gts), [w[:2] for w in gts],
        [0] * len(windows), [w[:2] for w in windows],
        [w[2] for w in windows],
        tiou_thresholds=MR_IOU_THRESHOLDS, tie_order="input"))
  if aps:
    ap_thds = np.array(aps).mean(0)
    average = np.mean(ap_thds)
  else:
    ap_thds = np.full(len(MR_IOU_THRESHOLDS), np.nan)
    average = np.nan
  out = dict(zip([str(t) for t in MR_IOU_THRESHOLDS], ap_thds))
  out["average"] = average
  return {k: _percent(v) for k, v in out.items()}


def mr_recall_at_one(submission: Sequence[Mapping[str, Any]],
                     ground_truth: Sequence[Mapping[str, Any]]
                     ) -> dict[str, float]:
  """MR R1 per threshold, rounded (moment_detr `compute_mr_r1`).

  Args:
    submission: entries with "qid" and "pred_relevant_windows".
    ground_truth: entries with "qid" and "relevant_windows".

  Returns:
    {"0.5": ..., ..., "0.95": ...} in percent (2 decimals); NaN when the
    submission is empty.
  """
  gt_windows = {d["qid"]: d["relevant_windows"] for d in ground_truth}
  ious = np.zeros(len(submission))
  for i, d in enumerate(submission):
    if not d["pred_relevant_windows"]:
      continue  # miss
    gts = gt_windows.get(d["qid"], [])
    if not gts:
      continue  # miss
    pred = np.array([d["pred_relevant_windows"][0][:2]], dtype=np.float64)
    gts = np.array(gts, dtype=np.float64).reshape(-1, 2)
    best = int(np.argmax(_iou_cross(pred, gts)[0]))
    ious[i] = _iou_hull_paired(pred, gts[best:best + 1])[0]
  out = {}
  for t in MR_IOU_THRESHOLDS:
    value = np.mean(ious >= t) * 100 if len(ious) else math.nan
    out[str(t)] = float(f"{value:.2f}")
  return out


def eval_moment_retrieval(submission: Sequence[Mapping[str, Any]],
                          ground_truth: Sequence[Mapping[str, Any]]
                          ) -> dict[str, dict[str, dict[str, float]]]:
  """{"short" | "middle" | "long" | "full": {"MR-mAP": ..., "MR-R1": ...}}."""
  metrics = {}
  for name, len_range in LENGTH_RANGES:
    sub, gt = filter_by_length(submission, ground_truth, len_range)
    if not gt:
      warnings.warn(
          f"QVHighlights MR: no GT window in the {name!r} bucket {len_range}; "
          "its metrics are NaN (the reference evaluator crashes here)",
          stacklevel=2)
    metrics[name] = {"MR-mAP": mr_average_precision(sub, gt),
                     "MR-R1": mr_recall_at_one(sub, gt)}
  return metrics


# ---------------------------------------------------------------------------
# Highlight detection.
# ---------------------------------------------------------------------------
def get_ap(y_true: Any, y_predict: Any) -> float:
  """moment_detr's `get_ap` (interpolated, not 11-point), in numpy.

  All-zero labels give 0 and all-one labels give 1.  Otherwise it builds the
  precision-recall curve with one point per distinct score (a group of tied
  scores is one operating point, as in sklearn `precision_recall_curve`),
  makes precision monotone (running max from the high-recall end) and
  returns the unweighted mean of the interpolated precision at each distinct
  recall level.

  Args:
    y_true: [N] labels in {0, 1}.
    y_predict: [N] scores.

  Returns:
    The AP as a float.
  """
  y_true = np.asarray(y_true, dtype=np.float64).reshape(-1)
  y_score = np.asarray(y_predict, dtype=np.float64).reshape(-1)
  if y_true.shape != y_score.shape:
    raise ValueError("Prediction and ground truth need to be of the same "
                     f"length, got {y_score.shape} and {y_true.shape}")
  values = set(y_true.tolist())
  if len(values) == 1:
    return 0.0 if y_true[0] == 0 else 1.0
  if sorted(values) != [0, 1]:
    raise ValueError(f"labels must be in {{0, 1}}, got {sorted(values)}")
  # sklearn precision_recall_curve, re-done.
  order = np.argsort(y_score, kind="mergesort")[::-1]
  scores = y_score[order]
  labels = y_true[order]
  last_of_group = np.r_[np.where(np.diff(scores))[0], labels.size - 1]
  tps = np.cumsum(labels)[last_of_group]
  fps = 1 + last_of_group - tps
  precision = np.r_[(tps / (tps + fps))[::-1], 1.0]
  recall = np.r_[(tps / tps[-1])[::-1], 0.0].astype(np.float32)
  # Interpolate from the high-recall end, then average at every recall change.
  precision = np.maximum.accumulate(precision)
  indices = np.where(np.diff(recall))
  return float(np.mean(precision[indices]))


def gt_saliency_matrix(gt: Mapping[str, Any],
                       clip_length: float = CLIP_LENGTH) -> np.ndarray:
  """[int(duration / clip_length), 3] GT scores, 0 outside relevant clips."""
  num_clips = int(gt["duration"] / clip_length)
  scores = np.zeros((num_clips, NUM_ANNOTATORS))
  ids = np.asarray(gt["relevant_clip_ids"], dtype=np.int64)
  if ids.size:
    scores[ids] = np.asarray(gt["saliency_scores"], dtype=np.float64)
  return scores


def _fit_length(y_predict: np.ndarray, n: int) -> np.ndarray:
  """Cuts or zero-pads the predicted saliency to n clips."""
  if len(y_predict) >= n:
    return y_predict[:n]
  out = np.zeros(n)
  out[:len(y_predict)] = y_predict
  return out


def eval_highlight(submission: Sequence[Mapping[str, Any]],
                   ground_truth: Sequence[Mapping[str, Any]]
                   ) -> dict[str, dict[str, float]]:
  """{"HL-min-Fair" | ...: {"HL-mAP": ..., "HL-Hit1": ...}} in percent."""
  gt_scores = {d["qid"]: gt_saliency_matrix(d) for d in ground_truth}
  preds = [np.asarray(d["pred_saliency_scores"], dtype=np.float64)
           for d in submission]
  qids = [d["qid"] for d in submission]
  metrics = {}
  for name, min_score in SALIENCY_LEVELS:
    hit = np.zeros((len(qids), NUM_ANNOTATORS))
    ap = np.zeros((len(qids), NUM_ANNOTATORS))
    for i, (qid, pred) in enumerate(zip(qids, preds)):
      binary = (gt_scores[qid] >= min_score).astype(np.float64)
      if pred.size:
        clip = int(np.argmax(pred))
        if clip < len(binary):
          hit[i] = binary[clip]
      fitted = _fit_length(pred, len(binary))
      for a in range(NUM_ANNOTATORS):
        ap[i, a] = get_ap(binary[:, a], fitted)
    metrics[f"HL-min-{name}"] = {
        "HL-mAP": _percent(np.mean(ap)),
        "HL-Hit1": _percent(np.mean(np.max(hit, 1))),
    }
  return metrics


# ---------------------------------------------------------------------------
# Entry point.
# ---------------------------------------------------------------------------
def _check_unique(entries: Sequence[Mapping[str, Any]], what: str) -> None:
  seen = set()
  for d in entries:
    if d["qid"] in seen:
      raise ValueError(f"duplicate qid {d['qid']!r} in the {what}")
    seen.add(d["qid"])


def evaluate_qvhighlights(submission: Sequence[Mapping[str, Any]],
                          ground_truth: Sequence[Mapping[str, Any]],
                          match_number: bool = True) -> dict[str, Any]:
  """moment_detr's `eval_submission`: the same dict, the same numbers.

  MR is evaluated if the first submission entry has "pred_relevant_windows",
  HD if it has "pred_saliency_scores" (the reference's test).

  Args:
    submission: entries {"qid", "pred_relevant_windows": [[s, e, score],
      ...], "pred_saliency_scores": [...]} (other keys ignored).
    ground_truth: entries {"qid", "duration", "relevant_windows",
      "relevant_clip_ids", "saliency_scores"}.
    match_number: True: the qid sets must be equal.  False: only the shared
      qids are evaluated.

  Returns:
    {"brief": {"MR-full-R1@0.5", "MR-full-R1@0.7", "MR-full-mAP",
    "MR-full-mAP@0.5", "MR-full-mAP@0.75", "MR-long-mAP", "MR-middle-mAP",
    "MR-short-mAP", "HL-min-Fair-mAP", "HL-min-Fair-Hit1", ...,
    "HL-min-VeryGood-Hit1"}, "HL-min-Fair": {"HL-mAP", "HL-Hit1"}, ...,
    "full" | "long" | "middle" | "short": {"MR-mAP": {"0.5", ..., "0.95",
    "average"}, "MR-R1": {"0.5", ..., "0.95"}}}, in percent with 2 decimals,
    keys in the reference's order.  See the module docstring for NaNs.

  Raises:
    ValueError: empty submission, duplicate qids, or qid sets that differ
      while `match_number` is True.
  """
  if not submission:
    raise ValueError("empty submission")
  _check_unique(submission, "submission")
  _check_unique(ground_truth, "ground truth")
  pred_qids = {d["qid"] for d in submission}
  gt_qids = {d["qid"] for d in ground_truth}
  if match_number:
    if pred_qids != gt_qids:
      raise ValueError(
          "qids in ground_truth and submission must match (use "
          f"match_number=False to evaluate the shared ones): "
          f"{len(pred_qids - gt_qids)} only in the submission, "
          f"{len(gt_qids - pred_qids)} only in the ground truth")
  else:
    shared = pred_qids & gt_qids
    submission = [d for d in submission if d["qid"] in shared]
    ground_truth = [d for d in ground_truth if d["qid"] in shared]
    if not submission:
      raise ValueError("no qid is shared by the submission and the GT")

  metrics: dict[str, Any] = {}
  brief: dict[str, float] = {}
  if "pred_relevant_windows" in submission[0]:
    mr = eval_moment_retrieval(submission, ground_truth)
    metrics.update(mr)
    mr_brief = {
        "MR-full-mAP": mr["full"]["MR-mAP"]["average"],
        "MR-full-mAP@0.5": mr["full"]["MR-mAP"]["0.5"],
        "MR-full-mAP@0.75": mr["full"]["MR-mAP"]["0.75"],
        "MR-short-mAP": mr["short"]["MR-mAP"]["average"],
        "MR-middle-mAP": mr["middle"]["MR-mAP"]["average"],
        "MR-long-mAP": mr["long"]["MR-mAP"]["average"],
        "MR-full-R1@0.5": mr["full"]["MR-R1"]["0.5"],
        "MR-full-R1@0.7": mr["full"]["MR-R1"]["0.7"],
    }
    brief.update(sorted(mr_brief.items()))
  if "pred_saliency_scores" in submission[0]:
    hl = eval_highlight(submission, ground_truth)
    metrics.update(hl)
    for k, v in hl.items():
      for sub_k, value in v.items():
        brief[f"{k}-{sub_k.split('-')[1]}"] = value
  result: dict[str, Any] = {"brief": brief}
  result.update(sorted(metrics.items()))
  return result
