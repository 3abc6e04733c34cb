"""Recall@K, IoU=m for moment retrieval (Charades-STA, ActivityNet Captions).

Two published conventions differ only in how a hit is decided
(design/metrics.md §3):

* `rule=">="`: IoU >= m.  VSLNet (`calculate_iou_accuracy`) and UnLoc's own
  `compute_recall_at_k`.  The default.
* `rule=">"`: IoU > m, microsoft/2D-TAN `lib/core/eval.py`, which first runs
  its greedy NMS over the ranked list when `nms_threshold` is set (the 2D-TAN
  configs use 0.5; 1.0 keeps everything) and keeps the top max(K).

They differ whenever an IoU equals the threshold exactly, which is common once
candidates are clipped to [0, duration].

IoU (both) = intersection / (max(ends) - min(starts)), clipped at 0: the
hull, which equals the true union whenever the intersection is > 0.  The NMS
overlap is the true-union IoU, as in 2D-TAN.

Choices made here (the references crash or differ):
* Values are fractions in [0, 1] (2D-TAN's `eval`; VSLNet prints percent).
* A query with no candidate is a miss with IoU 0 (UnLoc's rule; 2D-TAN
  crashes on it).
* Two identical zero-length segments have IoU 0 (2D-TAN: NaN, which is also
  a miss under ">"; VSLNet: ZeroDivisionError).
* The candidates are used in the given order (already ranked); only the first
  two numbers of each candidate are read, so (start, end, score) is fine.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

RULES = (">=", ">")


def temporal_iou(a: Sequence[float], b: Sequence[float]) -> float:
  """IoU of two (start, end) segments: ∩ / (max(ends) - min(starts)).

  Args:
    a: (start, end).
    b: (start, end).

  Returns:
    The IoU in [0, 1]; 0 when the hull has no length.
  """
  a0, a1 = float(a[0]), float(a[1])
  b0, b1 = float(b[0]), float(b[1])
  inter = min(a1, b1) - max(a0, b0)
  hull = max(a1, b1) - min(a0, b0)
  if hull <= 0 or inter <= 0:
    return 0.0
  return inter / hull


def nms_2d_tan(candidates: Any, threshold: float, top_k: int = -1
               ) -> np.ndarray:
  """2D-TAN's greedy NMS over an already ranked list.

  The first remaining candidate is kept and every later one whose true-union
  IoU with it is > `threshold` is dropped (`ovr <= threshold` is kept; a NaN
  overlap, two zero-length segments, is dropped).  Stops after `top_k` kept
  candidates (-1: no limit).

  Args:
    candidates: [N, >=2] ranked candidates, (start, end, ...).
    threshold: overlap above which a later candidate is suppressed.
    top_k: maximum number kept, -1 for all.

  Returns:
    float64 [M, 2] kept (start, end), in rank order.
  """
  dets = np.asarray(candidates, dtype=np.float64)
  if dets.size == 0:
    return np.zeros((0, 2))
  dets = dets.reshape(len(dets), -1)[:, :2]
  x1, x2 = dets[:, 0], dets[:, 1]
  lengths = x2 - x1
  order = np.arange(len(dets))
  keep = []
  while order.size > 0:
    i = order[0]
    keep.append(i)
    if len(keep) == top_k:
      break
    rest = order[1:]
    inter = np.maximum(0.0, np.minimum(x2[i], x2[rest])
                       - np.maximum(x1[i], x1[rest]))
    with np.errstate(divide="ignore", invalid="ignore"):
      ovr = inter / (lengths[i] + lengths[rest] - inter)
    order = rest[ovr <= threshold]
  return dets[keep]


def _key(k: int, threshold: float) -> str:
  return f"R@{k},IoU={threshold:g}"


def recall_at_k(
    predictions: Sequence[Sequence[Sequence[float]]],
    ground_truth: Sequence[Sequence[float]],
    ks: Sequence[int] = (1, 5),
    thresholds: Sequence[float] = (0.3, 0.5, 0.7),
    rule: str = ">=",
    nms_threshold: float | None = None,
) -> dict[str, float]:
  """Recall@K at IoU thresholds, and mIoU of the top-1 candidate.

  Args:
    predictions: per query, its candidates ranked best first, each
      (start, end) or (start, end, score).
    ground_truth: per query, its (start, end) GT segment (already preprocessed
      by the loader: clipping to the video is the loader's job).
    ks: the K of R@K.
    thresholds: the IoU thresholds m.
    rule: ">=" (VSLNet, UnLoc; default) or ">" (2D-TAN).
    nms_threshold: if set, 2D-TAN's greedy NMS is applied to every ranked
      list first (keeping at most max(ks)), whatever the rule.

  Returns:
    {"R@{k},IoU={m}": fraction of queries with a hit among the first k
    candidates, ..., "mIoU": mean IoU of the first candidate (0 for a query
    without candidates)}.  Keys use `{m:g}`, e.g. "R@1,IoU=0.5".

  Raises:
    ValueError: bad rule, mismatched lengths, no queries or a K < 1.
  """
  if rule not in RULES:
    raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
  if len(predictions) != len(ground_truth):
    raise ValueError(
        f"{len(predictions)} prediction lists for {len(ground_truth)} queries")
  if not ground_truth:
    raise ValueError("no queries to evaluate")
  ks = [int(k) for k in ks]
  if min(ks) < 1:
    raise ValueError(f"every K must be >= 1, got {ks}")
  max_k = max(ks)
  thresholds = [float(t) for t in thresholds]
  hits = np.zeros((len(ks), len(thresholds)))
  top1 = np.zeros(len(ground_truth))
  for q, (cands, gt) in enumerate(zip(predictions, ground_truth)):
    if nms_threshold is not None:
      cands = nms_2d_tan(cands, nms_threshold, top_k=max_k)
    else:
      cands = list(cands)[:max_k]
    ious = np.array([temporal_iou(c, gt) for c in cands])
    if ious.size:
      top1[q] = ious[0]
    for i, k in enumerate(ks):
      first = ious[:k]
      for j, m in enumerate(thresholds):
        hit = (first >= m) if rule == ">=" else (first > m)
        hits[i, j] += bool(hit.any())
  out = {}
  for i, k in enumerate(ks):
    for j, m in enumerate(thresholds):
      out[_key(k, m)] = float(hits[i, j] / len(ground_truth))
  out["mIoU"] = float(top1.mean())
  return out
