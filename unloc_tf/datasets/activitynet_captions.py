"""ActivityNet Captions: moment retrieval (MR), 10 fps.

`read_activitynet_captions` reads train.json / val_1.json / val_2.json
(`{vid: {"duration", "timestamps", "sentences"}}`), with the 2D-TAN loader
rules as an option (on by default).  `plan_activitynet_captions` makes one
MR record per video, one segment per sentence (as stored: the builder clips
to the decoded video and reports it); a video without any kept sentence is
reported (no_segments).  The default 10 fps is the reference configs'.
"""

from __future__ import annotations

import json
import logging
from typing import Dict, Optional

from unloc_tf.datasets import common
from unloc_tf.metrics import formats

# The 2D-TAN loader rules (the common practice, see design/metrics.md §3).
PREPROCESS_2D_TAN = "2d-tan"


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
    formats.FormatError: malformed file (names the file, video and field).
  """
  if preprocess not in (None, PREPROCESS_2D_TAN):
    raise ValueError(f"preprocess must be None or {PREPROCESS_2D_TAN!r}, "
                     f"got {preprocess!r}")
  data = formats.load_json(path)
  if not isinstance(data, dict):
    raise formats.FormatError(path, None, None, "expected {video_id: {...}}")
  rows = []
  stats = {"videos": len(data), "total": 0, "kept": 0, "dropped": 0,
           "clipped_start": 0, "clipped_end": 0}
  for vid, info in data.items():
    where = f"video {vid!r}"
    duration = formats.as_number(
        formats.require(info, "duration", path, where), path, where,
        "duration")
    stamps = formats.as_list(
        formats.require(info, "timestamps", path, where), path, where,
        "timestamps")
    sentences = formats.as_list(
        formats.require(info, "sentences", path, where), path, where,
        "sentences")
    if len(stamps) != len(sentences):
      raise formats.FormatError(path, where, "sentences",
                                f"{len(sentences)} sentences for {len(stamps)}"
                                " timestamps")
    for i, (stamp, sentence) in enumerate(zip(stamps, sentences)):
      w = f"{where} sentence {i}"
      t0, t1 = formats.as_segment(stamp, path, w, "timestamps")
      sentence = formats.as_string(sentence, path, w, "sentences").strip()
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


def plan_activitynet_captions(annotations: str) -> common.Plan:
  """ActivityNet Captions JSON -> MR records, one per video.

  Returns:
    (one item per video, in file order; no classes).
  """
  rows = read_activitynet_captions(annotations, preprocess=None)
  planner = common.Planner(None)
  by_video: Dict[str, common.VideoItem] = {}
  recs: Dict[str, common.RecordPlan] = {}
  for row in rows:
    vid = row["video_id"]
    if vid not in by_video:
      by_video[vid] = common.VideoItem(vid, [], common.video_names(vid),
                                       row["duration"])
      recs[vid] = common.RecordPlan(vid)
    planner.segment(by_video[vid], recs[vid], row["sentence_index"],
                    row["segment"][0], row["segment"][1], text=row["query"])
  # Videos without any sentence are in the file but not in `rows`.
  with open(annotations, encoding="utf-8") as f:
    data = json.load(f)  # already validated by the reader
  for vid, info in data.items():
    if vid not in by_video:
      by_video[vid] = common.VideoItem(vid, [], common.video_names(vid),
                                       info.get("duration"))
      recs[vid] = common.RecordPlan(vid)
  for vid, item in by_video.items():
    planner.finish(item, recs[vid], required=True)
  return list(by_video.values()), []
