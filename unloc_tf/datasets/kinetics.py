"""Kinetics: classification (CLS), 10 fps.

`read_kinetics_csv` reads the Kinetics csv (`label,youtube_id,time_start,
time_end,split`).  `plan_kinetics` makes one CLS record per clip (the label's
index in the class list: `--class_list`, else the sorted labels of the whole
file), from `<id>_<start:06d>_<end:06d>.<ext>` (a trimmed clip,
`kinetics_clip_id`) or else `<id>.<ext>` (the full video, cut to the clip).
A repeated row is reported (duplicate_annotation) and written once.  10 fps
as the reference's other configs.
"""

from __future__ import annotations

import csv
import math
from typing import Dict, List, Optional

from unloc_tf.datasets import common
from unloc_tf.metrics import formats


def read_kinetics_csv(path: str) -> List[dict]:
  """Kinetics csv rows: {"label" ("" when absent), "youtube_id",
  "time_start", "time_end", "split", "line"}.

  Raises:
    formats.FormatError: names the file, the line and the field.
  """
  rows = []
  with open(path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    for field in ("youtube_id", "time_start", "time_end"):
      if field not in (reader.fieldnames or []):
        raise formats.FormatError(path, "line 1", field, "missing column")
    for row in reader:
      where = f"line {reader.line_num}"
      times = []
      for field in ("time_start", "time_end"):
        try:
          t = float(row[field])
        except (TypeError, ValueError):
          raise formats.FormatError(path, where, field, "expected a number,"
                            f" got {row[field]!r}") from None
        if not math.isfinite(t):
          raise formats.FormatError(path, where, field,
                                    f"expected a finite number, got {t}")
        times.append(t)
      yid = (row["youtube_id"] or "").strip()
      if not yid:
        raise formats.FormatError(path, where, "youtube_id", "empty")
      rows.append({"label": (row.get("label") or "").strip(),
                   "youtube_id": yid, "time_start": times[0],
                   "time_end": times[1],
                   "split": (row.get("split") or "").strip(),
                   "line": reader.line_num})
  return rows


def kinetics_clip_id(youtube_id: str, start: float, end: float) -> str:
  """`<id>_<start:06d>_<end:06d>`, the name of a downloaded Kinetics clip."""
  return f"{youtube_id}_{int(start):06d}_{int(end):06d}"


def plan_kinetics(annotations: str, subset: Optional[str] = None,
                  class_list: Optional[str] = None) -> common.Plan:
  """Kinetics csv -> CLS records, one per clip.

  Args:
    annotations: the csv file.
    subset: keep only the rows of this "split"; None: every row.
    class_list: fixed class list file (`common.read_class_list`).

  Returns:
    (one item per clip, in file order, the class names).
  """
  rows = read_kinetics_csv(annotations)
  classes = common.resolve_classes((r["label"] for r in rows if r["label"]),
                                   class_list)
  class_index = {c: i for i, c in enumerate(classes)}
  items: Dict[str, common.VideoItem] = {}
  for row in rows:
    if subset is not None and row["split"] != subset:
      continue
    s, e = row["time_start"], row["time_end"]
    cid = kinetics_clip_id(row["youtube_id"], s, e)
    if cid in items:  # a repeated row: one record
      items[cid].issues.append(common.issue(common.DUPLICATE, cid,
                                            line=row["line"]))
      continue
    item = common.VideoItem(
        cid, [], [(cid, None), (row["youtube_id"], (s, e))], e - s,
        num_records=1)
    items[cid] = item
    where = dict(line=row["line"], annotation=[s, e])
    if not e > s:
      reason = common.SEGMENT_ZERO if e == s else common.SEGMENT_REVERSED
      item.issues.append(common.issue(reason, cid, **where))
      continue
    label = row["label"]
    if not label:
      item.issues.append(common.issue(common.NO_LABEL, cid, **where))
      continue
    if label not in class_index:
      item.issues.append(common.issue(common.UNKNOWN_CLASS, cid, label=label,
                                      **where))
      continue
    item.records.append(common.RecordPlan(
        cid, clip_labels=(class_index[label],), clip_label_strings=(label,)))
  return list(items.values()), classes
