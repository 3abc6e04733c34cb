"""Charades-STA: moment retrieval (MR), 10 fps.

`read_charades_sta` reads `charades_sta_{train,test}.txt` (`<video> <start>
<end>##<sentence>` lines), with the 2D-TAN loader rules when the Charades
csv (`Charades_v1_*.csv`, its "length" column: `read_charades_lengths`) is
given.  `plan_charades_sta` makes one MR record per video with all its
queries (one segment each, in file order), as ActivityNet Captions is
stored: each video's frames are stored once instead of once per query (the
bundled test split: 1,334 records instead of 3,720, 2.8x fewer frames).
`per_query=True` keeps the reference's layout: one record per query, with
`example_id` = the 0-based index of the query in the txt (blank lines not
counted).  The queries are planned as stored, the csv lengths are only the
annotated durations (compared with the decoded ones).  The default 10 fps is
the reference configs'.
"""

from __future__ import annotations

import csv
import logging
import math
from typing import Dict, Optional

from unloc_tf.datasets import common
from unloc_tf.metrics import formats


def read_charades_lengths(csv_path: str) -> dict[str, float]:
  """Charades_v1_{train,test}.csv -> {video id: length in seconds}."""
  out = {}
  with open(csv_path, encoding="utf-8", newline="") as f:
    reader = csv.DictReader(f)
    for field in ("id", "length"):
      if field not in (reader.fieldnames or []):
        raise formats.FormatError(csv_path, "line 1", field, "missing column")
    for row in reader:
      where = f"line {reader.line_num}"
      try:
        length = float(row["length"])
      except (TypeError, ValueError):
        raise formats.FormatError(csv_path, where, "length",
                                  f"expected a number, got {row['length']!r}"
                                  ) from None
      if not math.isfinite(length):
        raise formats.FormatError(csv_path, where, "length",
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
    formats.FormatError: malformed line (names the file, line and field) or
      a video missing from the csv.
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
        raise formats.FormatError(txt_path, where, "sentence",
                                  "missing '##' separator")
      head, sentence = line.split("##", 1)
      parts = head.split()
      for k, field in enumerate(("video_id", "start", "end")):
        if len(parts) <= k:
          raise formats.FormatError(txt_path, where, field, "missing")
      if len(parts) > 3:
        raise formats.FormatError(txt_path, where, "end",
                                  f"unexpected text after it: {parts[3:]!r}")
      vid = parts[0]
      times = []
      for field, text in (("start", parts[1]), ("end", parts[2])):
        try:
          t = float(text)
        except ValueError:
          raise formats.FormatError(
              txt_path, where, field,
              f"expected a number, got {text!r}") from None
        if not math.isfinite(t):
          raise formats.FormatError(txt_path, where, field,
                                    f"expected a finite number, got {text!r}")
        times.append(t)
      start, end = times
      stats["total"] += 1
      duration = None
      if lengths is not None:
        if vid not in lengths:
          raise formats.FormatError(txt_path, where, "video_id",
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


def plan_charades_sta(annotations: str,
                      charades_csv: Optional[str] = None,
                      per_query: bool = False) -> common.Plan:
  """Charades-STA txt (+ the csv lengths) -> MR records.

  Args:
    annotations: the txt file.
    charades_csv: the Charades csv (annotated durations), or None.
    per_query: one record per query with its `example_id` (the reference's
      layout) instead of one record per video with all its queries.

  Report entries name the query by its 0-based index in the txt: `segment`
  (per video) or `example_id` (per query).

  Returns:
    (one item per video, in file order; no classes).
  """
  rows = read_charades_sta(annotations)
  lengths = read_charades_lengths(charades_csv) if charades_csv else {}
  planner = common.Planner(None)
  by_video: Dict[str, common.VideoItem] = {}
  per_video: Dict[str, common.RecordPlan] = {}
  for qid, row in enumerate(rows):
    vid = row["video_id"]
    item = by_video.get(vid)
    if item is None:
      item = by_video[vid] = common.VideoItem(
          vid, [], common.video_names(vid), lengths.get(vid))
    if per_query:
      rec = common.RecordPlan(vid, example_id=qid)
      planner.segment(item, rec, 0, row["segment"][0], row["segment"][1],
                      text=row["query"])
      planner.finish(item, rec, required=True)
    else:
      rec = per_video.setdefault(vid, common.RecordPlan(vid))
      planner.segment(item, rec, qid, row["segment"][0], row["segment"][1],
                      text=row["query"])
  for vid, rec in per_video.items():
    planner.finish(by_video[vid], rec, required=True)
  return list(by_video.values()), []
