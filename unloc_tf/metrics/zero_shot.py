"""Zero-shot TAL protocol: seen / unseen class splits and mean ± std.

The paper (Table 6) follows the open-set protocols of EffPrompt [30] and
STALE [51] on ActivityNet 1.3: train on 75% (or 50%) of the 200 classes, test
on the remaining 25% (50%), over 10 random class splits, and report the
average.  This module makes such splits reproducibly (`make_splits`), restricts
ground truth / predictions to a split's classes (`restrict_ground_truth`) and
aggregates per-split metrics into mean and std (`aggregate`).

numpy only.  The split files of EffPrompt / STALE are not reproduced here (the
random draws differ); the JSON that tools/make_zero_shot_splits.py writes is
the artefact to keep with the results.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np


def num_seen_classes(num_classes: int, seen_fraction: float) -> int:
  """round(num_classes * seen_fraction), halves rounded up, in [1, n - 1].

  Args:
    num_classes: total number of classes (>= 2).
    seen_fraction: in (0, 1).

  Returns:
    The number of seen classes: 200 x 0.75 -> 150, 200 x 0.5 -> 100.

  Raises:
    ValueError: fewer than 2 classes or a fraction outside (0, 1).
  """
  if num_classes < 2:
    raise ValueError(f"need at least 2 classes, got {num_classes}")
  if not 0.0 < seen_fraction < 1.0:
    raise ValueError(f"seen_fraction must be in (0, 1), got {seen_fraction}")
  n = int(math.floor(num_classes * seen_fraction + 0.5))
  return min(max(n, 1), num_classes - 1)


def make_splits(class_names: Sequence[str], seen_fraction: float = 0.75,
                num_splits: int = 10, seed: int = 0) -> list[dict]:
  """Random seen / unseen class splits, deterministic in `seed`.

  Split i uses the i-th permutation drawn from
  `np.random.default_rng(seed)`: its first `num_seen_classes(n,
  seen_fraction)` classes are seen, the rest unseen.  Indices refer to
  positions in `class_names` and are sorted, as are the names lists (in
  index order).  Splits are drawn independently, so with few classes two
  splits may coincide.

  Args:
    class_names: the class names (distinct).
    seen_fraction: fraction of classes used for training (0.75 or 0.5 in the
      paper).
    num_splits: number of splits (10 in the paper).
    seed: the random seed.

  Returns:
    `[{"split": i, "seen": [...], "unseen": [...], "seen_indices": [...],
    "unseen_indices": [...]}]`; in every split the seen and unseen sets are
    disjoint and together cover every class.

  Raises:
    ValueError: duplicate names, fewer than 2 classes, bad fraction or
      num_splits < 1.
  """
  names = [str(c) for c in class_names]
  if len(set(names)) != len(names):
    dup = sorted({c for c in names if names.count(c) > 1})
    raise ValueError(f"duplicate class names: {dup}")
  if num_splits < 1:
    raise ValueError(f"num_splits must be >= 1, got {num_splits}")
  n = len(names)
  k = num_seen_classes(n, seen_fraction)
  rng = np.random.default_rng(seed)
  splits = []
  for i in range(num_splits):
    perm = rng.permutation(n)
    seen = sorted(int(j) for j in perm[:k])
    unseen = sorted(int(j) for j in perm[k:])
    splits.append({
        "split": i,
        "seen": [names[j] for j in seen],
        "unseen": [names[j] for j in unseen],
        "seen_indices": seen,
        "unseen_indices": unseen,
    })
  return splits


def restrict_ground_truth(gt: Mapping[str, Sequence[Mapping[str, Any]]],
                          classes: Iterable[str],
                          keep_empty_videos: bool = False
                          ) -> dict[str, list[dict]]:
  """Keeps only the segments whose "label" is in `classes`.

  Works on ground truth (`{vid: [{"segment", "label"}]}`) and equally on
  predictions (`{vid: [{"segment", "label", "score"}]}`): to evaluate a
  split on its unseen classes, restrict both (the ActivityNet toolkit raises
  KeyError on a predicted label that is not in the GT).

  Args:
    gt: `{video_id: [{"label": str, ...}]}`.
    classes: the labels to keep (e.g. `split["unseen"]`).
    keep_empty_videos: keep videos left without segments (with an empty
      list).  Default False: the test set of a split is the videos that
      contain at least one of its classes.

  Returns:
    A new dict (entries are shallow-copied), video order kept.
  """
  keep = set(classes)
  out = {}
  for vid, anns in gt.items():
    kept = [dict(a) for a in anns if a["label"] in keep]
    if kept or keep_empty_videos:
      out[vid] = kept
  return out


def _is_number(x: Any) -> bool:
  return (isinstance(x, (numbers.Real, np.floating, np.integer))
          and not isinstance(x, (bool, np.bool_)))


def _aggregate_values(values: list, where: str, ddof: int) -> Any:
  first = values[0]
  if isinstance(first, Mapping):
    for i, v in enumerate(values):
      if not isinstance(v, Mapping):
        raise ValueError(f"split {i}: {where}: expected a dict like split 0,"
                         f" got {type(v).__name__}")
      if set(v) != set(first):
        raise ValueError(
            f"split {i}: {where or 'metrics'}: keys {sorted(map(str, v))}"
            f" differ from split 0's {sorted(map(str, first))}")
    return {k: _aggregate_values([v[k] for v in values],
                                 f"{where}.{k}" if where else str(k), ddof)
            for k in first}
  arrays = []
  for i, v in enumerate(values):
    a = np.asarray(v)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number)):
      raise ValueError(f"split {i}: {where}: expected a number or numeric"
                       f" array, got {v!r}")
    if a.shape != np.shape(first):
      raise ValueError(f"split {i}: {where}: shape {a.shape} differs from"
                       f" split 0's {np.shape(first)}")
    arrays.append(a.astype(np.float64))
  stack = np.stack(arrays)
  mean = stack.mean(axis=0)
  std = stack.std(axis=0, ddof=ddof) if len(values) > ddof else np.full_like(
      mean, np.nan)
  if stack.ndim == 1:
    return {"mean": float(mean), "std": float(std),
            "values": [float(x) for x in stack]}
  return {"mean": mean.tolist(), "std": std.tolist(),
          "values": stack.tolist()}


def aggregate(per_split_metrics: Sequence[Mapping[str, Any]],
              ddof: int = 0, keys: Optional[Sequence[str]] = None) -> dict:
  """Mean and standard deviation over splits, per metric key.

  The paper reports the average over the 10 splits (EffPrompt / STALE also
  give ± std).  The std here is the POPULATION std (`ddof=0`, `np.std`'s
  default: the spread of these splits, not an estimate for other draws);
  pass `ddof=1` for the sample std.  With ddof=1 and a single split the std
  is NaN.

  Args:
    per_split_metrics: one metrics dict per split, all with the same keys.
      Values are numbers, equal-shape numeric arrays / lists (aggregated
      elementwise) or nested dicts of those (aggregated recursively).
    ddof: delta degrees of freedom of the std.
    keys: aggregate only these top-level keys (e.g. `["mAP",
      "average_mAP"]` of `localization.evaluate_detection`, whose "classes"
      differ between splits); None: every key.

  Returns:
    `{key: {"mean": m, "std": s, "values": [per-split values]}}` with the
    same nesting as the input (floats, or lists for array metrics).

  Raises:
    ValueError: no splits, different keys / shapes, or non-numeric values
      (the message names the split and the key).
  """
  metrics = list(per_split_metrics)
  if not metrics:
    raise ValueError("aggregate needs at least one split")
  for i, m in enumerate(metrics):
    if not isinstance(m, Mapping):
      raise ValueError(f"split {i}: expected a metrics dict, got "
                       f"{type(m).__name__}")
  if keys is not None:
    for i, m in enumerate(metrics):
      missing = [k for k in keys if k not in m]
      if missing:
        raise ValueError(f"split {i}: missing metric keys {missing}")
    metrics = [{k: m[k] for k in keys} for m in metrics]
  return _aggregate_values(metrics, "", ddof)


def format_mean_std(aggregated: Mapping[str, Any], scale: float = 1.0,
                    digits: int = 1, prefix: str = "") -> dict[str, str]:
  """`aggregate` output -> {"key" (dotted for nesting): "m ± s"} strings.

  Args:
    aggregated: the output of `aggregate`.
    scale: multiply by this (100 for percentages from fractions).
    digits: decimals.
    prefix: prepended to the keys (used for nesting).

  Returns:
    e.g. {"mAP@0.5": "43.2 ± 1.1"}; array metrics are skipped.
  """
  out = {}
  for k, v in aggregated.items():
    name = f"{prefix}{k}"
    if isinstance(v, Mapping) and set(v) == {"mean", "std", "values"}:
      if _is_number(v["mean"]):
        out[name] = (f"{v['mean'] * scale:.{digits}f} ± "
                     f"{v['std'] * scale:.{digits}f}")
    elif isinstance(v, Mapping):
      out.update(format_mean_std(v, scale, digits, prefix=f"{name}."))
  return out


def split_summary(splits: Sequence[Mapping[str, Any]]) -> str:
  """One line per split: sizes and the first unseen classes."""
  lines = []
  for s in splits:
    head = ", ".join(s["unseen"][:3])
    lines.append(f"split {s['split']}: {len(s['seen'])} seen /"
                 f" {len(s['unseen'])} unseen (unseen: {head}, ...)")
  return "\n".join(lines)


def evaluate_splits(ground_truth: Mapping[str, Sequence[Mapping[str, Any]]],
                    predictions_per_split: Sequence[Mapping[str, Any]],
                    splits: Sequence[Mapping[str, Any]],
                    tiou_thresholds: Optional[Sequence[float]] = None,
                    ddof: int = 0) -> dict:
  """The zero-shot evaluator: each split's model on its unseen classes.

  For split i, the ground truth and `predictions_per_split[i]` (ActivityNet
  results layout, `{vid: [{"segment", "label", "score"}]}`, from the model
  trained on `splits[i]["seen"]`) are restricted to `splits[i]["unseen"]`
  and scored with the ActivityNet toolkit rules; the per-split mAPs are then
  aggregated into mean ± std.

  Returns:
    {"per_split": [{"mAP": [...], "average_mAP": x, "mAP@<t>": ...}, ...],
     "aggregate": `aggregate` of those, "tiou_thresholds": [...]}
  """
  from unloc_tf.metrics import localization  # noqa: PLC0415

  if len(predictions_per_split) != len(splits):
    raise ValueError(f"{len(predictions_per_split)} prediction sets for"
                     f" {len(splits)} splits")
  thresholds = (localization.DEFAULT_TIOU_THRESHOLDS
                if tiou_thresholds is None else np.asarray(tiou_thresholds))
  per_split = []
  for i, (preds, split) in enumerate(zip(predictions_per_split, splits)):
    unseen = list(split["unseen"])
    gt = restrict_ground_truth(ground_truth, unseen)
    if not gt:
      raise ValueError(f"split {i}: no ground-truth segment of its"
                       f" {len(unseen)} unseen classes")
    result = localization.evaluate_detection(
        gt, restrict_ground_truth(preds, unseen), thresholds,
        classes=[c for c in unseen if any(
            a["label"] == c for anns in gt.values() for a in anns)])
    row = {"mAP": [float(v) for v in result["mAP"]],
           "average_mAP": float(result["average_mAP"])}
    for t, v in zip(thresholds, result["mAP"]):
      row[f"mAP@{float(t):.2f}"] = float(v)
    per_split.append(row)
  return {"per_split": per_split, "aggregate": aggregate(per_split, ddof=ddof),
          "tiou_thresholds": [float(t) for t in thresholds]}
