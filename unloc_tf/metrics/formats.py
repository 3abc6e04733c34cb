"""The official submission formats, and the validation shared by the readers.

numpy / json only (the metrics layer imports nothing else).  The readers of
the public datasets' ground truth are in `unloc_tf.datasets`; they validate
with the helpers here (`load_json`, `iter_jsonl`, `require`, `as_number`,
...), which raise `FormatError`: a `ValueError` naming the file, the line or
record and the field.

Submissions (writers; numpy scalars and arrays are accepted and written as
plain JSON numbers; every reader validates what it reads):

* `write_activitynet_results`: the ActivityNet results JSON that the official
  `Evaluation/eval_detection.py` reads (`read_activitynet_results` reads it
  as predictions).  `detections_to_activitynet` builds its `detections` from
  padded post-processing arrays.  `activitynet_layout` tells a results file
  from the ground-truth layouts.
* `write_qvhighlights_submission`: moment_detr's `standalone_eval` jsonl,
  windows sorted by score (its R1 reads the first window *as listed*);
  `read_qvhighlights_predictions` reads one.
* `write_retrieval_candidates`: our Charades-STA / ActivityNet Captions
  candidates jsonl (`read_retrieval_candidates` reads it back).
"""

from __future__ import annotations

import json
import math
import numbers
import os
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

ACTIVITYNET_VERSION = "VERSION 1.3"


class FormatError(ValueError):
  """Bad input file: the message names the file, the line/record, the field."""

  def __init__(self, path: str, where: Optional[str], field: Optional[str],
               problem: str):
    parts = [str(path)]
    if where:
      parts.append(where)
    if field:
      parts.append(f"field {field!r}")
    super().__init__(": ".join(parts + [problem]))
    self.path = path
    self.where = where
    self.field = field


# ---------------------------------------------------------------------------
# Validation helpers (also used by the readers of `unloc_tf.datasets`).
# `where` names the line or record, `field` the field, in `FormatError`.
# ---------------------------------------------------------------------------
def load_json(path: str) -> Any:
  """The parsed JSON file; invalid JSON is a `FormatError` naming the line."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise FormatError(path, f"line {e.lineno}", None,
                      f"invalid JSON ({e.msg})") from e


def iter_jsonl(path: str) -> Iterator[tuple[int, dict]]:
  """Yields (1-based line number, object); blank lines are skipped."""
  with open(path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        obj = json.loads(line)
      except json.JSONDecodeError as e:
        raise FormatError(path, f"line {lineno}", None,
                          f"invalid JSON ({e.msg})") from e
      if not isinstance(obj, dict):
        raise FormatError(path, f"line {lineno}", None,
                          f"expected a JSON object, got {type(obj).__name__}")
      yield lineno, obj


def require(obj: Mapping[str, Any], field: str, path: str, where: str) -> Any:
  """`obj[field]`; `obj` must be a mapping holding `field`."""
  if not isinstance(obj, Mapping):
    raise FormatError(path, where, None,
                      f"expected an object, got {type(obj).__name__}")
  if field not in obj:
    raise FormatError(path, where, field, "missing")
  return obj[field]


def is_number(x: Any) -> bool:
  """A real number (python or numpy), not a bool."""
  return (isinstance(x, (numbers.Real, np.floating, np.integer))
          and not isinstance(x, (bool, np.bool_)))


def as_number(x: Any, path: str, where: str, field: str,
              allow_nan: bool = False) -> float:
  """`x` as a float; finite unless `allow_nan`."""
  if not is_number(x):
    raise FormatError(path, where, field, f"expected a number, got {x!r}")
  x = float(x)
  if not allow_nan and not math.isfinite(x):
    raise FormatError(path, where, field, f"expected a finite number, got {x}")
  return x


def as_string(x: Any, path: str, where: str, field: str) -> str:
  """`x` as a str (bytes are decoded as UTF-8)."""
  if isinstance(x, bytes):
    x = x.decode("utf-8")
  if not isinstance(x, str):
    raise FormatError(path, where, field, f"expected a string, got {x!r}")
  return x


def as_integer(x: Any, path: str, where: str, field: str) -> int:
  """`x` as an int (python or numpy integers, not bools)."""
  if (not isinstance(x, (numbers.Integral, np.integer))
      or isinstance(x, (bool, np.bool_))):
    raise FormatError(path, where, field, f"expected an integer, got {x!r}")
  return int(x)


def as_list(x: Any, path: str, where: str, field: str) -> list:
  """`x` as a list (a list, tuple or numpy array)."""
  if isinstance(x, np.ndarray):
    x = x.tolist()
  if not isinstance(x, (list, tuple)):
    raise FormatError(path, where, field, f"expected a list, got {x!r}")
  return list(x)


def as_segment(x: Any, path: str, where: str, field: str = "segment"
               ) -> list[float]:
  """[start, end] as floats (no ordering check: GT may hold s >= e)."""
  x = as_list(x, path, where, field)
  if len(x) != 2:
    raise FormatError(path, where, field,
                      f"expected [start, end], got {x!r}")
  return [as_number(v, path, where, field) for v in x]


def _scored_window(x: Any, path: str, where: str, field: str
                   ) -> list[float]:
  """[start, end, score] as floats."""
  x = as_list(x, path, where, field)
  if len(x) != 3:
    raise FormatError(path, where, field,
                      f"expected [start, end, score], got {x!r}")
  return [as_number(v, path, where, field) for v in x]


def _sorted_by_score(windows: list[list[float]]) -> list[list[float]]:
  """Descending score; stable, so equal scores keep their input order."""
  return sorted(windows, key=lambda w: -w[2])


def _json_ready(x: Any) -> Any:
  """numpy scalars / arrays (nested) -> plain JSON values."""
  if isinstance(x, Mapping):
    return {str(k): _json_ready(v) for k, v in x.items()}
  if isinstance(x, np.ndarray):
    return _json_ready(x.tolist())
  if isinstance(x, (list, tuple)):
    return [_json_ready(v) for v in x]
  if isinstance(x, (bool, np.bool_)):
    return bool(x)
  if isinstance(x, np.integer):
    return int(x)
  if isinstance(x, np.floating):
    return float(x)
  if isinstance(x, bytes):
    return x.decode("utf-8")
  return x


def _open_for_writing(path: str):
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  return open(path, "w", encoding="utf-8")


def _write_jsonl(path: str, rows: Iterable[Mapping[str, Any]]) -> None:
  with _open_for_writing(path) as f:
    for row in rows:
      f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------
# ActivityNet results (temporal action localization submissions).
# ---------------------------------------------------------------------------
def activitynet_layout(data: Any) -> str:
  """Which ActivityNet layout a loaded JSON value has.

  Args:
    data: the loaded JSON.

  Returns:
    "database" (official activity_net.v1-3.min.json), "results" (a results /
    submission file such as sample_detection_prediction.json), "bsn" (BSN's
    anet_anno_action.json: {"v_<id>": {"duration_second", "annotations"}})
    or "unknown".
  """
  if not isinstance(data, dict):
    return "unknown"
  if isinstance(data.get("database"), dict):
    return "database"
  if isinstance(data.get("results"), dict):
    return "results"
  if data and all(isinstance(v, dict) and "duration_second" in v
                  for v in data.values()):
    return "bsn"
  return "unknown"


def read_activitynet_results(path: str) -> dict[str, list[dict]]:
  """Reads an ActivityNet results (submission) file as predictions.

  Args:
    path: `{"version", "results": {vid: [{"label", "score", "segment"}]},
      "external_data"}` (only "results" is required here).

  Returns:
    `{video_id: [{"segment": [s, e], "label": str, "score": float}]}`, in
    file order.
  """
  data = load_json(path)
  if activitynet_layout(data) != "results":
    raise FormatError(path, None, "results", "missing (not a results file)")
  out = {}
  for vid, dets in data["results"].items():
    dets = as_list(dets, path, f"video {vid!r}", "results")
    rows = []
    for i, d in enumerate(dets):
      where = f"video {vid!r} results[{i}]"
      rows.append({
          "segment": as_segment(require(d, "segment", path, where), path,
                                where),
          "label": as_string(require(d, "label", path, where), path, where,
                             "label"),
          "score": as_number(require(d, "score", path, where), path, where,
                             "score", allow_nan=True),
      })
    out[vid] = rows
  return out


def write_activitynet_results(path: str,
                              detections: Mapping[str, Sequence[Mapping]],
                              version: str = ACTIVITYNET_VERSION,
                              external_data: Optional[Mapping] = None
                              ) -> None:
  """Writes the ActivityNet results JSON read by the official toolkit.

  Args:
    path: output file (parent directories are created).
    detections: `{video_id: [{"segment": [s, e], "label": str, "score":
      float}]}`; numpy values are accepted.  Order is kept.
    version: the "version" field.
    external_data: the "external_data" field; default `{"used": False,
      "details": ""}`.

  Raises:
    FormatError: a detection lacks a field or has a bad value (the message
      names the video, the detection index and the field).
  """
  results = {}
  for vid, dets in detections.items():
    vid = as_string(vid, path, "detections", "video_id")
    rows = []
    for i, d in enumerate(as_list(dets, path, f"video {vid!r}", "detections")):
      where = f"video {vid!r} detection {i}"
      rows.append({
          "label": as_string(require(d, "label", path, where), path, where,
                             "label"),
          "score": as_number(require(d, "score", path, where), path, where,
                             "score", allow_nan=True),
          "segment": as_segment(require(d, "segment", path, where), path,
                                where),
      })
    results[vid] = rows
  if external_data is None:
    external_data = {"used": False, "details": ""}
  with _open_for_writing(path) as f:
    json.dump({"version": version, "results": results,
               "external_data": _json_ready(dict(external_data))}, f)


def detections_to_activitynet(video_ids: Any, segments: Any, scores: Any,
                              classes: Any, num_detections: Any,
                              class_names: Sequence[str],
                              durations: Any = None
                              ) -> dict[str, list[dict]]:
  """Padded detection arrays (as post-processing returns) -> results dict.

  Args:
    video_ids: [B] str or bytes (tf.string tensors come back as bytes).
    segments: [B, N, 2] (start, end); seconds, or fractions of the video
      when `durations` is given.
    scores: [B, N].
    classes: [B, N] integer class indices into `class_names`.
    num_detections: [B], the number of valid (leading) rows per video; the
      rest is padding and is ignored.
    class_names: the label of every class index.
    durations: optional [B]; segments are multiplied by it (fractions to
      seconds).

  Returns:
    `{video_id: [{"label", "score", "segment"}]}` in the input order.  A video
    id that occurs in several rows gets the detections of all of them
    (concatenated), so batches may be merged by calling this once on
    concatenated arrays.

  Raises:
    ValueError: inconsistent shapes, num_detections outside [0, N], or a
      class index outside `class_names`.
  """
  segments = np.asarray(segments, dtype=np.float64)
  scores = np.asarray(scores, dtype=np.float64)
  classes = np.asarray(classes)
  num_detections = np.asarray(num_detections).reshape(-1)
  ids = [v.decode("utf-8") if isinstance(v, bytes) else str(v)
         for v in np.asarray(video_ids, dtype=object).reshape(-1)]
  b = len(ids)
  if segments.ndim != 3 or segments.shape[0] != b or segments.shape[2] != 2:
    raise ValueError(f"segments must be [B={b}, N, 2], got {segments.shape}")
  n = segments.shape[1]
  for name, arr in (("scores", scores), ("classes", classes)):
    if arr.shape != (b, n):
      raise ValueError(f"{name} must be [B, N] = {(b, n)}, got {arr.shape}")
  if num_detections.shape != (b,):
    raise ValueError(f"num_detections must be [B={b}], got "
                     f"{num_detections.shape}")
  if np.any(num_detections < 0) or np.any(num_detections > n):
    raise ValueError(f"num_detections must be in [0, {n}], got "
                     f"{num_detections.tolist()}")
  if durations is not None:
    durations = np.asarray(durations, dtype=np.float64).reshape(-1)
    if durations.shape != (b,):
      raise ValueError(f"durations must be [B={b}], got {durations.shape}")
    segments = segments * durations[:, None, None]
  out: dict[str, list[dict]] = {}
  for i, vid in enumerate(ids):
    k = int(num_detections[i])
    rows = out.setdefault(vid, [])
    for j in range(k):
      c = int(classes[i, j])
      if not 0 <= c < len(class_names):
        raise ValueError(f"video {vid!r} detection {j}: class index {c} is"
                         f" outside [0, {len(class_names)})")
      rows.append({"label": str(class_names[c]),
                   "score": float(scores[i, j]),
                   "segment": [float(segments[i, j, 0]),
                               float(segments[i, j, 1])]})
  return out


# ---------------------------------------------------------------------------
# QVHighlights submissions (moment retrieval + highlight detection).
# ---------------------------------------------------------------------------
def read_qvhighlights_predictions(path: str) -> list[dict]:
  """Reads a QVHighlights submission jsonl (moment_detr standalone_eval).

  Rows need "qid" (int, unique) and "pred_relevant_windows" ([[s, e, score],
  ...]); "pred_saliency_scores" (numbers), "query" and "vid" are validated
  when present.

  Args:
    path: the jsonl file.

  Returns:
    The rows, as stored, in file order (window order is kept: the official
    R1 reads the first window as listed).
  """
  rows = []
  qids: dict[int, int] = {}
  for lineno, row in iter_jsonl(path):
    where = f"line {lineno}"
    qid = as_integer(require(row, "qid", path, where), path, where, "qid")
    if qid in qids:
      raise FormatError(path, where, "qid",
                        f"duplicate qid {qid} (first on line {qids[qid]})")
    qids[qid] = lineno
    for w in as_list(require(row, "pred_relevant_windows", path, where), path,
                     where, "pred_relevant_windows"):
      _scored_window(w, path, where, "pred_relevant_windows")
    if "pred_saliency_scores" in row:
      for v in as_list(row["pred_saliency_scores"], path, where,
                       "pred_saliency_scores"):
        as_number(v, path, where, "pred_saliency_scores", allow_nan=True)
    for field in ("query", "vid"):
      if field in row:
        as_string(row[field], path, where, field)
    rows.append(row)
  return rows


def write_qvhighlights_submission(path: str,
                                  rows: Iterable[Mapping[str, Any]]) -> None:
  """Writes a QVHighlights submission jsonl (moment_detr standalone_eval).

  Each output line is `{"qid", "query", "vid", "pred_relevant_windows":
  [[s, e, score], ...], "pred_saliency_scores": [...]}` with the windows
  SORTED by score, descending (stable: equal scores keep the input order).
  The official R1@t reads `pred_relevant_windows[0]` as listed and MR-mAP the
  first 10 as listed, so unsorted windows would be scored wrongly.
  "pred_saliency_scores" (one score per 2-second clip) is optional (MR-only
  submissions); other keys are not written.

  Args:
    path: output file (parent directories are created).
    rows: the predictions, one per query; numpy values are accepted.

  Raises:
    FormatError: missing / bad field or duplicate qid (names the row index).
  """
  out = []
  seen: dict[int, int] = {}
  for i, row in enumerate(rows):
    where = f"row {i}"
    qid = as_integer(require(row, "qid", path, where), path, where, "qid")
    if qid in seen:
      raise FormatError(path, where, "qid",
                        f"duplicate qid {qid} (first in row {seen[qid]})")
    seen[qid] = i
    line = {
        "qid": qid,
        "query": as_string(require(row, "query", path, where), path, where,
                           "query"),
        "vid": as_string(require(row, "vid", path, where), path, where, "vid"),
        "pred_relevant_windows": _sorted_by_score([
            _scored_window(w, path, where, "pred_relevant_windows")
            for w in as_list(require(row, "pred_relevant_windows", path, where),
                             path, where, "pred_relevant_windows")]),
    }
    if "pred_saliency_scores" in row:
      line["pred_saliency_scores"] = [
          as_number(v, path, where, "pred_saliency_scores", allow_nan=True)
          for v in as_list(row["pred_saliency_scores"], path, where,
                           "pred_saliency_scores")]
    out.append(line)
  _write_jsonl(path, out)


# ---------------------------------------------------------------------------
# Moment-retrieval candidates (Charades-STA / ActivityNet Captions).
# ---------------------------------------------------------------------------
_CANDIDATE_FIELDS = ("video_id", "query", "gt", "candidates")


def write_retrieval_candidates(path: str,
                               rows: Iterable[Mapping[str, Any]]) -> None:
  """Writes ranked moment candidates, one JSON line per query.

  Line: `{"video_id", "query", "gt": [s, e], "candidates": [[s, e, score],
  ...]}` with the candidates sorted by score, descending (stable).  Extra
  keys of a row (e.g. "duration", "sentence_index") are kept after these.
  R@K,IoU=m (2D-TAN / VSLNet) reads the candidates in this order.

  Args:
    path: output file (parent directories are created).
    rows: one per query; numpy values are accepted.

  Raises:
    FormatError: missing / bad field (names the row index and field).
  """
  out = []
  for i, row in enumerate(rows):
    where = f"row {i}"
    for field in _CANDIDATE_FIELDS:
      require(row, field, path, where)
    line = {
        "video_id": as_string(row["video_id"], path, where, "video_id"),
        "query": as_string(row["query"], path, where, "query"),
        "gt": as_segment(row["gt"], path, where, "gt"),
        "candidates": _sorted_by_score([
            _scored_window(c, path, where, "candidates")
            for c in as_list(row["candidates"], path, where, "candidates")]),
    }
    for k, v in row.items():
      if k not in line:
        line[str(k)] = _json_ready(v)
    out.append(line)
  _write_jsonl(path, out)


def read_retrieval_candidates(path: str) -> list[dict]:
  """Reads `write_retrieval_candidates` output (validated), in file order."""
  rows = []
  for lineno, row in iter_jsonl(path):
    where = f"line {lineno}"
    for field in _CANDIDATE_FIELDS:
      require(row, field, path, where)
    as_string(row["video_id"], path, where, "video_id")
    as_string(row["query"], path, where, "query")
    row["gt"] = as_segment(row["gt"], path, where, "gt")
    row["candidates"] = [
        _scored_window(c, path, where, "candidates")
        for c in as_list(row["candidates"], path, where, "candidates")]
    rows.append(row)
  return rows


