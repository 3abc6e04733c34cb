"""ActivityNet 1.3: temporal action localization (TAL), 10 fps.

`read_activitynet` reads the ground truth in its three layouts (official
`activity_net.v1-3.min.json`, the results layout of
`sample_detection_prediction.json`, BSN's `anet_anno_action.json` with its
`video_info_new.csv` for the subsets).  `plan_activitynet` makes one TAL
record per video: a segment per annotation, labelled with its index in the
class list (`--class_list`, else the sorted labels of the whole file, every
subset, so that train and val agree).  The default 10 fps is the reference
configs'.
"""

from __future__ import annotations

import csv
from typing import Any, Mapping, Optional, Sequence

from unloc_tf.datasets import common
from unloc_tf.metrics import formats

# ActivityNet subset names, as in activity_net.v1-3.min.json.
ACTIVITYNET_SUBSETS = ("training", "validation", "testing")


def _anet_annotations(annotations: Any, path: str, vid: str,
                      field: str = "annotations") -> list[dict]:
  annotations = formats.as_list(annotations, path, f"video {vid!r}", field)
  out = []
  for i, a in enumerate(annotations):
    where = f"video {vid!r} {field}[{i}]"
    out.append({
        "segment": formats.as_segment(
            formats.require(a, "segment", path, where), path, where),
        "label": formats.as_string(
            formats.require(a, "label", path, where), path, where, "label"),
    })
  return out


def _read_bsn_subsets(video_info: str) -> dict[str, str]:
  """BSN's video_info_new.csv: {"v_<id>": subset}."""
  out = {}
  with open(video_info, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    for field in ("video", "subset"):
      if field not in (reader.fieldnames or []):
        raise formats.FormatError(video_info, "line 1", field, "missing column")
    for row in reader:
      out[row["video"]] = row["subset"]
  return out


def _duration_and_annotations(info: Any, path: str, where: str, vid: str,
                              duration_field: str):
  """(duration, annotations) of one video's entry."""
  duration = formats.as_number(
      formats.require(info, duration_field, path, where), path, where,
      duration_field)
  return duration, _anet_annotations(
      formats.require(info, "annotations", path, where), path, vid)


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
    formats.FormatError: malformed file (names the file, video and field).
    ValueError: `subset` not available for this layout or matches no video.
  """
  data = formats.load_json(path)
  layout = formats.activitynet_layout(data)
  gt: dict[str, list[dict]] = {}
  durations: dict[str, Optional[float]] = {}
  if layout == "database":
    subsets_seen = set()
    for vid, info in data["database"].items():
      where = f"video {vid!r}"
      if subset is not None:
        s = formats.as_string(formats.require(info, "subset", path, where),
                              path, where, "subset")
        subsets_seen.add(s)
        if s != subset:
          continue
      durations[vid], gt[vid] = _duration_and_annotations(
          info, path, where, vid, "duration")
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
          raise formats.FormatError(video_info, None, "video",
                                    f"{key!r} (from {path}) is not listed")
        if subsets[key] != subset:
          continue
      vid = key[2:] if strip_v_prefix and key.startswith("v_") else key
      durations[vid], gt[vid] = _duration_and_annotations(
          info, path, where, key, "duration_second")
    if subset is not None and not gt:
      raise ValueError(f"{path}: no video with subset {subset!r} in"
                       f" {video_info}")
  else:
    raise formats.FormatError(
        path, None, "database",
        "not an ActivityNet file: expected a \"database\" object (official"
        " GT), a \"results\" object (results layout) or BSN's {\"v_<id>\":"
        " {\"duration_second\", \"annotations\"}}")
  return gt, durations


def activitynet_class_names(ground_truth: Mapping[str, Sequence[Mapping]]
                            ) -> list[str]:
  """The sorted distinct labels of `{vid: [{"label", ...}]}`."""
  return sorted({a["label"] for anns in ground_truth.values() for a in anns})


def plan_activitynet(annotations: str, subset: Optional[str] = None,
                     class_list: Optional[str] = None,
                     video_info: Optional[str] = None) -> common.Plan:
  """ActivityNet 1.3 (any layout `read_activitynet` reads) -> TAL records.

  Args:
    annotations: the JSON file.
    subset: keep only this subset; None: every video.
    class_list: fixed class list file (`common.read_class_list`).
    video_info: BSN's video_info_new.csv (BSN layout with a subset).

  Returns:
    (one item per video, the class names).
  """
  everything, durations = read_activitynet(annotations, None)
  classes = common.resolve_classes(
      (a["label"] for anns in everything.values() for a in anns), class_list)
  gt = everything
  if subset is not None:
    gt, durations = read_activitynet(annotations, subset,
                                     video_info=video_info)
  planner = common.Planner({c: i for i, c in enumerate(classes)})
  items = []
  for vid, anns in gt.items():
    item = common.VideoItem(vid, [], common.video_names(vid),
                            durations.get(vid))
    rec = common.RecordPlan(vid)
    for k, a in enumerate(anns):
      planner.segment(item, rec, k, a["segment"][0], a["segment"][1],
                      label=a["label"])
    planner.finish(item, rec, required=False)
    items.append(item)
  return items, classes
