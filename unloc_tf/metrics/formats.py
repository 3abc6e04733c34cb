"""Readers of the official ground-truth formats, writers of the submissions.

numpy / json / csv only (the metrics layer imports nothing else).

Ground truth (readers; every one validates what it reads and raises
`FormatError`, a `ValueError` naming the file, the line or record and the
field, on bad input):

* ActivityNet 1.3 (`read_activitynet`): the official
  `activity_net.v1-3.min.json`, the results-layout
  `sample_detection_prediction.json` (our validation GT, see
  shared/data/SOURCES.md) and BSN's `anet_anno_action.json`.
  `read_activitynet_results` reads a results file as predictions (with
  scores).
* ActivityNet Captions (`read_activitynet_captions`), with the 2D-TAN loader
  rules as an option (on by default).
* Charades-STA (`read_charades_sta`), with the 2D-TAN loader rules when the
  Charades csv (video lengths) is given.
* QVHighlights (`read_qvhighlights` for GT / query files,
  `read_qvhighlights_predictions` for submissions).
* COIN (`read_coin`).

Submissions (writers; numpy scalars and arrays are accepted and written as
plain JSON numbers):

* `write_activitynet_results`: the ActivityNet results JSON that the official
  `Evaluation/eval_detection.py` reads.  `detections_to_activitynet` builds
  its `detections` from padded post-processing arrays.
* `write_qvhighlights_submission`: moment_detr's `standalone_eval` jsonl,
  windows sorted by score (its R1 reads the first window *as listed*).
* `write_retrieval_candidates`: our Charades-STA / ActivityNet Captions
  candidates jsonl (`read_retrieval_candidates` reads it back).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import numbers
import os
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import numpy as np

ACTIVITYNET_VERSION = "VERSION 1.3"
# ActivityNet subset names, as in activity_net.v1-3.min.json.
ACTIVITYNET_SUBSETS = ("training", "validation", "testing")
# The 2D-TAN loader rules (the common practice, see design/metrics.md §3).
PREPROCESS_2D_TAN = "2d-tan"

_QVH_QUERY_FIELDS = ("qid", "query", "duration", "vid")
_QVH_LABEL_FIELDS = ("relevant_windows", "relevant_clip_ids",
                     "saliency_scores")


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
# Validation helpers.
# ---------------------------------------------------------------------------
def _load_json(path: str) -> Any:
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise FormatError(path, f"line {e.lineno}", None,
                      f"invalid JSON ({e.msg})") from e


def _iter_jsonl(path: str) -> Iterator[tuple[int, dict]]:
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


def _require(obj: Mapping[str, Any], field: str, path: str,
             where: str) -> Any:
  if not isinstance(obj, Mapping):
    raise FormatError(path, where, None,
                      f"expected an object, got {type(obj).__name__}")
  if field not in obj:
    raise FormatError(path, where, field, "missing")
  return obj[field]


def _is_number(x: Any) -> bool:
  return (isinstance(x, (numbers.Real, np.floating, np.integer))
          and not isinstance(x, (bool, np.bool_)))


def _number(x: Any, path: str, where: str, field: str,
            allow_nan: bool = False) -> float:
  if not _is_number(x):
    raise FormatError(path, where, field, f"expected a number, got {x!r}")
  x = float(x)
  if not allow_nan and not math.isfinite(x):
    raise FormatError(path, where, field, f"expected a finite number, got {x}")
  return x


def _string(x: Any, path: str, where: str, field: str) -> str:
  if isinstance(x, bytes):
    x = x.decode("utf-8")
  if not isinstance(x, str):
    raise FormatError(path, where, field, f"expected a string, got {x!r}")
  return x


def _integer(x: Any, path: str, where: str, field: str) -> int:
  if (not isinstance(x, (numbers.Integral, np.integer))
      or isinstance(x, (bool, np.bool_))):
    raise FormatError(path, where, field, f"expected an integer, got {x!r}")
  return int(x)


def _list(x: Any, path: str, where: str, field: str) -> list:
  if isinstance(x, np.ndarray):
    x = x.tolist()
  if not isinstance(x, (list, tuple)):
    raise FormatError(path, where, field, f"expected a list, got {x!r}")
  return list(x)


def _segment(x: Any, path: str, where: str, field: str = "segment"
             ) -> list[float]:
  """[start, end] as floats (no ordering check: GT may hold s >= e)."""
  x = _list(x, path, where, field)
  if len(x) != 2:
    raise FormatError(path, where, field,
                      f"expected [start, end], got {x!r}")
  return [_number(v, path, where, field) for v in x]


def _scored_window(x: Any, path: str, where: str, field: str
                   ) -> list[float]:
  """[start, end, score] as floats."""
  x = _list(x, path, where, field)
  if len(x) != 3:
    raise FormatError(path, where, field,
                      f"expected [start, end, score], got {x!r}")
  return [_number(v, path, where, field) for v in x]


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
# ActivityNet 1.3 (temporal action localization).
# ---------------------------------------------------------------------------
def _anet_annotations(annotations: Any, path: str, vid: str,
                      field: str = "annotations") -> list[dict]:
  annotations = _list(annotations, path, f"video {vid!r}", field)
  out = []
  for i, a in enumerate(annotations):
    where = f"video {vid!r} {field}[{i}]"
    out.append({
        "segment": _segment(_require(a, "segment", path, where), path, where),
        "label": _string(_require(a, "label", path, where), path, where,
                         "label"),
    })
  return out


def _read_bsn_subsets(video_info: str) -> dict[str, str]:
  """BSN's video_info_new.csv: {"v_<id>": subset}."""
  out = {}
  with open(video_info, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    for field in ("video", "subset"):
      if field not in (reader.fieldnames or []):
        raise FormatError(video_info, "line 1", field, "missing column")
    for row in reader:
      out[row["video"]] = row["subset"]
  return out


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


def read_activitynet(path: str, subset: Optional[str] = None, *,
                     video_info: Optional[str] = None,
                     strip_v_prefix: bool = True
                     ) -> tuple[dict[str, list[dict]],
                                dict[str, Optional[float]]]:
  """Reads ActivityNet 1.3 ground truth, in any of three layouts.

  Layouts (detected from the content):
    * official `activity_net.v1-3.min.json`:
      `{"database": {vid: {"subset", "duration", "annotations":
      [{"segment", "label"}]}}}`.  `subset` filters on the "subset" field.
    * results layout (`sample_detection_prediction.json`, our validation GT,
      see SOURCES.md): `{"results": {vid: [{"segment", "label", "score"}]}}`.
      Scores are ignored, durations are None.  The file has no subsets, so
      `subset` must be None.
    * BSN's `anet_anno_action.json`: `{"v_" + vid: {"duration_second",
      "annotations"}}`.  The file has no subsets: pass `video_info` (BSN's
      `video_info_new.csv`, columns "video" and "subset") to filter by
      `subset`.

  Video ids ('v_' handling): the official GT, the results files and the
  official evaluation toolkit use the bare 11-character YouTube id (e.g.
  "QOlSCBRmfWY").  BSN's files (and many feature dumps) key the same video
  as "v_" + id.  In the BSN layout, and only there, a leading "v_" is removed
  (`strip_v_prefix=True`), so that its ids match the other layouts and the
  results files; in the other layouts ids are never modified (a YouTube id
  can itself begin with "v_").

  Segments are returned as stored: the official toolkit neither clips nor
  drops (3 validation segments have zero length, 71 end after the video).
  Videos without annotations (test subset) are kept, with an empty list.

  Args:
    path: the JSON file.
    subset: "training", "validation" or "testing"; None for every video.
    video_info: BSN's video_info_new.csv (only for the BSN layout).
    strip_v_prefix: BSN layout: remove the "v_" prefix from the ids.

  Returns:
    (ground_truth, durations): `{video_id: [{"segment": [s, e], "label":
    str}]}` and `{video_id: duration in seconds, or None}`.

  Raises:
    FormatError: malformed file (names the file, video and field).
    ValueError: `subset` not available for this layout or matches no video.
  """
  data = _load_json(path)
  layout = activitynet_layout(data)
  gt: dict[str, list[dict]] = {}
  durations: dict[str, Optional[float]] = {}
  if layout == "database":
    subsets_seen = set()
    for vid, info in data["database"].items():
      where = f"video {vid!r}"
      if subset is not None:
        s = _string(_require(info, "subset", path, where), path, where,
                    "subset")
        subsets_seen.add(s)
        if s != subset:
          continue
      durations[vid] = _number(_require(info, "duration", path, where), path,
                               where, "duration")
      gt[vid] = _anet_annotations(_require(info, "annotations", path, where),
                                  path, vid)
    if subset is not None and not gt:
      raise ValueError(f"{path}: no video with subset {subset!r}; subsets in"
                       f" the file: {sorted(subsets_seen)}")
  elif layout == "results":
    if subset is not None:
      raise ValueError(
          f"{path}: a results-layout file has no subsets (the whole file is"
          f" one subset, e.g. sample_detection_prediction.json is the"
          f" validation GT); call with subset=None, got {subset!r}")
    for vid, dets in data["results"].items():
      gt[vid] = _anet_annotations(dets, path, vid, field="results")
      durations[vid] = None
  elif layout == "bsn":
    subsets = None
    if subset is not None:
      if video_info is None:
        raise ValueError(
            f"{path}: BSN's anet_anno_action.json has no subsets; pass"
            f" video_info= (BSN's video_info_new.csv) to select {subset!r}")
      subsets = _read_bsn_subsets(video_info)
    for key, info in data.items():
      where = f"video {key!r}"
      if subsets is not None:
        if key not in subsets:
          raise FormatError(video_info, None, "video",
                            f"{key!r} (from {path}) is not listed")
        if subsets[key] != subset:
          continue
      vid = key[2:] if strip_v_prefix and key.startswith("v_") else key
      durations[vid] = _number(_require(info, "duration_second", path, where),
                               path, where, "duration_second")
      gt[vid] = _anet_annotations(_require(info, "annotations", path, where),
                                  path, key)
    if subset is not None and not gt:
      raise ValueError(f"{path}: no video with subset {subset!r} in"
                       f" {video_info}")
  else:
    raise FormatError(path, None, "database",
                      "not an ActivityNet file: expected a \"database\""
                      " object (official GT), a \"results\" object (results"
                      " layout) or BSN's {\"v_<id>\": {\"duration_second\","
                      " \"annotations\"}}")
  return gt, durations


def read_activitynet_results(path: str) -> dict[str, list[dict]]:
  """Reads an ActivityNet results (submission) file as predictions.

  Args:
    path: `{"version", "results": {vid: [{"label", "score", "segment"}]},
      "external_data"}` (only "results" is required here).

  Returns:
    `{video_id: [{"segment": [s, e], "label": str, "score": float}]}`, in
    file order.
  """
  data = _load_json(path)
  if activitynet_layout(data) != "results":
    raise FormatError(path, None, "results", "missing (not a results file)")
  out = {}
  for vid, dets in data["results"].items():
    dets = _list(dets, path, f"video {vid!r}", "results")
    rows = []
    for i, d in enumerate(dets):
      where = f"video {vid!r} results[{i}]"
      rows.append({
          "segment": _segment(_require(d, "segment", path, where), path,
                              where),
          "label": _string(_require(d, "label", path, where), path, where,
                           "label"),
          "score": _number(_require(d, "score", path, where), path, where,
                           "score", allow_nan=True),
      })
    out[vid] = rows
  return out


def activitynet_class_names(ground_truth: Mapping[str, Sequence[Mapping]]
                            ) -> list[str]:
  """The sorted distinct labels of `{vid: [{"label", ...}]}`."""
  return sorted({a["label"] for anns in ground_truth.values() for a in anns})


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
    vid = _string(vid, path, "detections", "video_id")
    rows = []
    for i, d in enumerate(_list(dets, path, f"video {vid!r}", "detections")):
      where = f"video {vid!r} detection {i}"
      rows.append({
          "label": _string(_require(d, "label", path, where), path, where,
                           "label"),
          "score": _number(_require(d, "score", path, where), path, where,
                           "score", allow_nan=True),
          "segment": _segment(_require(d, "segment", path, where), path,
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
# ActivityNet Captions (moment retrieval).
# ---------------------------------------------------------------------------
def read_activitynet_captions(path: str,
                              preprocess: Optional[str] = PREPROCESS_2D_TAN,
                              return_stats: bool = False):
  """Reads ActivityNet Captions (train.json / val_1.json / val_2.json).

  The file is `{vid: {"duration", "timestamps": [[t0, t1], ...],
  "sentences": [...]}}`; every sentence is one query.  Video ids are kept as
  stored, with their "v_" prefix ("v_uqiMw7tQ1Cc"); the ActivityNet 1.3 id
  is `video_id[2:]`.

  Preprocessing `"2d-tan"` (default; the 2D-TAN loader, design/metrics.md
  §3): a sentence is kept iff t0 < t1 (on the stored times) and its segment
  becomes [max(t0, 0), min(t1, duration)].  val_1: 17,505 kept, 134 ends
  clipped; train: 4 dropped, 261 clipped.  `None` keeps everything as stored.
  The counts are logged and, with `return_stats`, returned.

  Args:
    path: the JSON file.
    preprocess: "2d-tan" or None.
    return_stats: also return the counts.

  Returns:
    rows, or (rows, stats) with `return_stats`.  Row: `{"video_id",
    "query" (the sentence, surrounding whitespace removed), "segment": [s, e],
    "duration", "sentence_index" (position in the video's list)}`.  stats:
    `{"videos", "total", "kept", "dropped" (t0 >= t1), "clipped_start",
    "clipped_end"}`.

  Raises:
    FormatError: malformed file (names the file, video and field).
  """
  if preprocess not in (None, PREPROCESS_2D_TAN):
    raise ValueError(f"preprocess must be None or {PREPROCESS_2D_TAN!r}, "
                     f"got {preprocess!r}")
  data = _load_json(path)
  if not isinstance(data, dict):
    raise FormatError(path, None, None, "expected {video_id: {...}}")
  rows = []
  stats = {"videos": len(data), "total": 0, "kept": 0, "dropped": 0,
           "clipped_start": 0, "clipped_end": 0}
  for vid, info in data.items():
    where = f"video {vid!r}"
    duration = _number(_require(info, "duration", path, where), path, where,
                       "duration")
    stamps = _list(_require(info, "timestamps", path, where), path, where,
                   "timestamps")
    sentences = _list(_require(info, "sentences", path, where), path, where,
                      "sentences")
    if len(stamps) != len(sentences):
      raise FormatError(path, where, "sentences",
                        f"{len(sentences)} sentences for {len(stamps)}"
                        " timestamps")
    for i, (stamp, sentence) in enumerate(zip(stamps, sentences)):
      w = f"{where} sentence {i}"
      t0, t1 = _segment(stamp, path, w, "timestamps")
      sentence = _string(sentence, path, w, "sentences").strip()
      stats["total"] += 1
      if preprocess == PREPROCESS_2D_TAN:
        if not t0 < t1:
          stats["dropped"] += 1
          continue
        if t0 < 0:
          stats["clipped_start"] += 1
          t0 = 0.0
        if t1 > duration:
          stats["clipped_end"] += 1
          t1 = duration
      stats["kept"] += 1
      rows.append({"video_id": vid, "query": sentence, "segment": [t0, t1],
                   "duration": duration, "sentence_index": i})
  logging.info("%s: %s", path, stats)
  return (rows, stats) if return_stats else rows


# ---------------------------------------------------------------------------
# Charades-STA (moment retrieval).
# ---------------------------------------------------------------------------
def read_charades_lengths(csv_path: str) -> dict[str, float]:
  """Charades_v1_{train,test}.csv -> {video id: length in seconds}."""
  out = {}
  with open(csv_path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    for field in ("id", "length"):
      if field not in (reader.fieldnames or []):
        raise FormatError(csv_path, "line 1", field, "missing column")
    for row in reader:
      where = f"line {reader.line_num}"
      try:
        length = float(row["length"])
      except (TypeError, ValueError):
        raise FormatError(csv_path, where, "length",
                          f"expected a number, got {row['length']!r}"
                          ) from None
      if not math.isfinite(length):
        raise FormatError(csv_path, where, "length",
                          f"expected a finite number, got {length}")
      out[row["id"]] = length
  return out


def read_charades_sta(txt_path: str, csv_path: Optional[str] = None,
                      return_stats: bool = False):
  """Reads Charades-STA `charades_sta_{train,test}.txt`.

  Each line is `"<video> <start> <end>##<sentence>"`.  Without `csv_path`
  the segments are returned as stored and "duration" is None.  With the
  Charades csv (`Charades_v1_test.csv`, its "length" column) the 2D-TAN loader
  rules apply: end = min(end, length), and only s < e is kept (test: all
  3,720 kept, 562 ends clipped).  The counts are logged and, with
  `return_stats`, returned.

  Args:
    txt_path: the Charades-STA txt file.
    csv_path: optional Charades csv with the video lengths.
    return_stats: also return the counts.

  Returns:
    rows, or (rows, stats) with `return_stats`.  Row: `{"video_id", "query"
    (the sentence as stored, line ending and surrounding whitespace
    removed; the final period is kept), "segment": [s, e], "duration"}`.
    stats: `{"videos", "total", "kept", "dropped", "clipped_end"}`.

  Raises:
    FormatError: malformed line (names the file, line and field) or a video
      missing from the csv.
  """
  lengths = read_charades_lengths(csv_path) if csv_path else None
  rows = []
  stats = {"videos": 0, "total": 0, "kept": 0, "dropped": 0,
           "clipped_end": 0}
  videos = set()
  with open(txt_path, encoding="utf-8") as f:
    for lineno, line in enumerate(f, 1):
      line = line.rstrip("\r\n")
      if not line.strip():
        continue
      where = f"line {lineno}"
      if "##" not in line:
        raise FormatError(txt_path, where, "sentence",
                          "missing '##' separator")
      head, sentence = line.split("##", 1)
      parts = head.split()
      for k, field in enumerate(("video_id", "start", "end")):
        if len(parts) <= k:
          raise FormatError(txt_path, where, field, "missing")
      if len(parts) > 3:
        raise FormatError(txt_path, where, "end",
                          f"unexpected text after it: {parts[3:]!r}")
      vid = parts[0]
      times = []
      for field, text in (("start", parts[1]), ("end", parts[2])):
        try:
          t = float(text)
        except ValueError:
          raise FormatError(txt_path, where, field,
                            f"expected a number, got {text!r}") from None
        if not math.isfinite(t):
          raise FormatError(txt_path, where, field,
                            f"expected a finite number, got {text!r}")
        times.append(t)
      start, end = times
      stats["total"] += 1
      duration = None
      if lengths is not None:
        if vid not in lengths:
          raise FormatError(txt_path, where, "video_id",
                            f"{vid!r} is not in {csv_path}")
        duration = lengths[vid]
        if end > duration:
          stats["clipped_end"] += 1
          end = duration
        if not start < end:
          stats["dropped"] += 1
          continue
      stats["kept"] += 1
      videos.add(vid)
      rows.append({"video_id": vid, "query": sentence.strip(),
                   "segment": [start, end], "duration": duration})
  stats["videos"] = len(videos)
  logging.info("%s: %s", txt_path, stats)
  return (rows, stats) if return_stats else rows


# ---------------------------------------------------------------------------
# QVHighlights (moment retrieval + highlight detection).
# ---------------------------------------------------------------------------
def read_qvhighlights(path: str, require_labels: bool = False) -> list[dict]:
  """Reads a QVHighlights jsonl (highlight_{train,val,test}_*.jsonl).

  Every row needs "qid" (int, unique), "query" (str), "duration" (number) and
  "vid" (str).  The label fields are validated when present:
  "relevant_windows" ([[s, e], ...]), "relevant_clip_ids" (ints, 2-second
  clips) and "saliency_scores" (one [a, b, c] triple of the 3 annotators per
  clip id); the last two go together.  With `require_labels` (ground truth)
  all three are required.  The release test file has no labels.

  Args:
    path: the jsonl file.
    require_labels: require the label fields.

  Returns:
    The rows, as stored (dicts parsed from JSON), in file order.

  Raises:
    FormatError: names the file, the line and the field.
  """
  rows = []
  qids: dict[int, int] = {}
  for lineno, row in _iter_jsonl(path):
    where = f"line {lineno}"
    for field in _QVH_QUERY_FIELDS:
      _require(row, field, path, where)
    qid = _integer(row["qid"], path, where, "qid")
    if qid in qids:
      raise FormatError(path, where, "qid",
                        f"duplicate qid {qid} (first on line {qids[qid]})")
    qids[qid] = lineno
    _string(row["query"], path, where, "query")
    _string(row["vid"], path, where, "vid")
    _number(row["duration"], path, where, "duration")
    if require_labels:
      for field in _QVH_LABEL_FIELDS:
        _require(row, field, path, where)
    if "relevant_windows" in row:
      for w in _list(row["relevant_windows"], path, where,
                     "relevant_windows"):
        _segment(w, path, where, "relevant_windows")
    has_ids = "relevant_clip_ids" in row
    has_scores = "saliency_scores" in row
    if has_ids != has_scores:
      raise FormatError(
          path, where,
          "saliency_scores" if has_ids else "relevant_clip_ids",
          "missing (relevant_clip_ids and saliency_scores go together)")
    if has_ids:
      ids = _list(row["relevant_clip_ids"], path, where, "relevant_clip_ids")
      for c in ids:
        _integer(c, path, where, "relevant_clip_ids")
      scores = _list(row["saliency_scores"], path, where, "saliency_scores")
      if len(scores) != len(ids):
        raise FormatError(path, where, "saliency_scores",
                          f"{len(scores)} entries for {len(ids)}"
                          " relevant_clip_ids")
      for s in scores:
        s = _list(s, path, where, "saliency_scores")
        if len(s) != 3:
          raise FormatError(path, where, "saliency_scores",
                            f"expected 3 annotator scores, got {s!r}")
        for v in s:
          _number(v, path, where, "saliency_scores")
    rows.append(row)
  return rows


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
  for lineno, row in _iter_jsonl(path):
    where = f"line {lineno}"
    qid = _integer(_require(row, "qid", path, where), path, where, "qid")
    if qid in qids:
      raise FormatError(path, where, "qid",
                        f"duplicate qid {qid} (first on line {qids[qid]})")
    qids[qid] = lineno
    for w in _list(_require(row, "pred_relevant_windows", path, where), path,
                   where, "pred_relevant_windows"):
      _scored_window(w, path, where, "pred_relevant_windows")
    if "pred_saliency_scores" in row:
      for v in _list(row["pred_saliency_scores"], path, where,
                     "pred_saliency_scores"):
        _number(v, path, where, "pred_saliency_scores", allow_nan=True)
    for field in ("query", "vid"):
      if field in row:
        _string(row[field], path, where, field)
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
    qid = _integer(_require(row, "qid", path, where), path, where, "qid")
    if qid in seen:
      raise FormatError(path, where, "qid",
                        f"duplicate qid {qid} (first in row {seen[qid]})")
    seen[qid] = i
    line = {
        "qid": qid,
        "query": _string(_require(row, "query", path, where), path, where,
                         "query"),
        "vid": _string(_require(row, "vid", path, where), path, where, "vid"),
        "pred_relevant_windows": _sorted_by_score([
            _scored_window(w, path, where, "pred_relevant_windows")
            for w in _list(_require(row, "pred_relevant_windows", path, where),
                           path, where, "pred_relevant_windows")]),
    }
    if "pred_saliency_scores" in row:
      line["pred_saliency_scores"] = [
          _number(v, path, where, "pred_saliency_scores", allow_nan=True)
          for v in _list(row["pred_saliency_scores"], path, where,
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
      _require(row, field, path, where)
    line = {
        "video_id": _string(row["video_id"], path, where, "video_id"),
        "query": _string(row["query"], path, where, "query"),
        "gt": _segment(row["gt"], path, where, "gt"),
        "candidates": _sorted_by_score([
            _scored_window(c, path, where, "candidates")
            for c in _list(row["candidates"], path, where, "candidates")]),
    }
    for k, v in row.items():
      if k not in line:
        line[str(k)] = _json_ready(v)
    out.append(line)
  _write_jsonl(path, out)


def read_retrieval_candidates(path: str) -> list[dict]:
  """Reads `write_retrieval_candidates` output (validated), in file order."""
  rows = []
  for lineno, row in _iter_jsonl(path):
    where = f"line {lineno}"
    for field in _CANDIDATE_FIELDS:
      _require(row, field, path, where)
    _string(row["video_id"], path, where, "video_id")
    _string(row["query"], path, where, "query")
    row["gt"] = _segment(row["gt"], path, where, "gt")
    row["candidates"] = [
        _scored_window(c, path, where, "candidates")
        for c in _list(row["candidates"], path, where, "candidates")]
    rows.append(row)
  return rows


# ---------------------------------------------------------------------------
# COIN (action segmentation).
# ---------------------------------------------------------------------------
def read_coin(path: str, subset: Optional[str] = None) -> dict[str, dict]:
  """Reads COIN.json.

  Layout: `{"database": {vid: {"subset", "annotation": [{"id", "segment",
  "label"}], ... "duration", "recipe_type", "class", "start", "end",
  "video_url"}}}` (note COIN's singular "annotation").  COIN's subsets are
  "training" and "testing".

  Args:
    path: the JSON file.
    subset: keep only this subset; None for every video.

  Returns:
    `{video_id: entry}`: the entries as stored (extra fields kept), with
    "subset" (str), "duration" (float, or None when absent) and "annotation"
    (`[{"id": str, "segment": [s, e], "label": str}]`) validated and
    normalised.

  Raises:
    FormatError: malformed file (names the file, video and field).
    ValueError: `subset` matches no video.
  """
  data = _load_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
    raise FormatError(path, None, "database", "missing (not a COIN file)")
  out = {}
  subsets_seen = set()
  for vid, info in data["database"].items():
    where = f"video {vid!r}"
    s = _string(_require(info, "subset", path, where), path, where, "subset")
    subsets_seen.add(s)
    if subset is not None and s != subset:
      continue
    anns = []
    for i, a in enumerate(_list(_require(info, "annotation", path, where),
                                path, where, "annotation")):
      w = f"{where} annotation[{i}]"
      a_id = _require(a, "id", path, w)
      if _is_number(a_id):
        a_id = str(_integer(a_id, path, w, "id"))
      anns.append({
          "id": _string(a_id, path, w, "id"),
          "segment": _segment(_require(a, "segment", path, w), path, w),
          "label": _string(_require(a, "label", path, w), path, w, "label"),
      })
    entry = dict(info)
    entry["subset"] = s
    entry["duration"] = (None if info.get("duration") is None else
                         _number(info["duration"], path, where, "duration"))
    entry["annotation"] = anns
    out[vid] = entry
  if subset is not None and not out:
    raise ValueError(f"{path}: no video with subset {subset!r}; subsets in"
                     f" the file: {sorted(subsets_seen)}")
  return out


def coin_segments(coin: Mapping[str, Mapping]) -> dict[str, list[dict]]:
  """`read_coin` output -> `{vid: [{"segment", "label"}]}` (ActivityNet GT)."""
  return {vid: [{"segment": list(a["segment"]), "label": a["label"]}
                for a in entry["annotation"]]
          for vid, entry in coin.items()}
