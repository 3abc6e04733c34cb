"""COIN: action segmentation (AS), 2 fps.

`read_coin` reads COIN.json (`{"database": {vid: {"subset", "annotation":
[{"id", "segment", "label"}], ...}}}`).  `plan_coin` makes one AS record per
video with its step segments, labelled with their index in the class list
(`--class_list`, else the sorted step labels of the whole file); the builder
derives the per-frame labels (later steps overwrite earlier ones; no step =
background).  The default 2 fps is the paper's (the reference config uses
10).
"""

from __future__ import annotations

from typing import Mapping, Optional

from unloc_tf.datasets import common
from unloc_tf.metrics import formats


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
    formats.FormatError: malformed file (names the file, video and field).
    ValueError: `subset` matches no video.
  """
  data = formats.load_json(path)
  if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
    raise formats.FormatError(path, None, "database",
                              "missing (not a COIN file)")
  out = {}
  subsets_seen = set()
  for vid, info in data["database"].items():
    where = f"video {vid!r}"
    s = formats.as_string(formats.require(info, "subset", path, where), path,
                          where, "subset")
    subsets_seen.add(s)
    if subset is not None and s != subset:
      continue
    anns = []
    annotations = formats.as_list(
        formats.require(info, "annotation", path, where), path, where,
        "annotation")
    for i, a in enumerate(annotations):
      w = f"{where} annotation[{i}]"
      a_id = formats.require(a, "id", path, w)
      if formats.is_number(a_id):
        a_id = str(formats.as_integer(a_id, path, w, "id"))
      anns.append({
          "id": formats.as_string(a_id, path, w, "id"),
          "segment": formats.as_segment(formats.require(a, "segment", path, w),
                                        path, w),
          "label": formats.as_string(formats.require(a, "label", path, w),
                                     path, w, "label"),
      })
    entry = dict(info)
    entry["subset"] = s
    entry["duration"] = (
        None if info.get("duration") is None else
        formats.as_number(info["duration"], path, where, "duration"))
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


def plan_coin(annotations: str, subset: Optional[str] = None,
              class_list: Optional[str] = None) -> common.Plan:
  """COIN.json -> AS records, one per video.

  Args:
    annotations: the JSON file.
    subset: keep only this subset; None: every video.
    class_list: fixed class list file (`common.read_class_list`).

  Returns:
    (one item per video, the class names).

  Raises:
    ValueError: `subset` matches no video.
  """
  everything = read_coin(annotations)
  classes = common.resolve_classes(
      (a["label"] for e in everything.values() for a in e["annotation"]),
      class_list)
  planner = common.Planner({c: i for i, c in enumerate(classes)})
  items = []
  for vid, entry in everything.items():
    if subset is not None and entry["subset"] != subset:
      continue
    item = common.VideoItem(vid, [], common.video_names(vid),
                            entry["duration"])
    rec = common.RecordPlan(vid)
    for k, a in enumerate(entry["annotation"]):
      planner.segment(item, rec, k, a["segment"][0], a["segment"][1],
                      label=a["label"])
    planner.finish(item, rec, required=False)
    items.append(item)
  if subset is not None and not items:
    subsets = sorted({e["subset"] for e in everything.values()})
    raise ValueError(f"{annotations}: no video with subset {subset!r};"
                     f" subsets in the file: {subsets}")
  return items, classes
