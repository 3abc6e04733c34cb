r"""Converts public annotation files + a folder of videos into TFRecord shards.

One `tf.SequenceExample` per example in the record contract of
`unloc_tf.data.schema` (JPEG frames at a fixed rate, segments as stored-frame
indices and microsecond timestamps), written with `unloc_tf.data.records`.

Formats (--format; the task and the default --fps of each):
  activitynet           ActivityNet 1.3 JSON (official `activity_net.v1-3.min
                        .json`, the results layout of
                        `sample_detection_prediction.json`, or BSN's
                        `anet_anno_action.json` with --video_info for
                        --subset) -> temporal_localization, one record per
                        video.  10 fps (the reference configs).
  activitynet_captions  ActivityNet Captions JSON (train.json, val_1.json,
                        val_2.json) -> moment_retrieval, one record per video,
                        one segment per sentence.  10 fps (reference).
  charades_sta          Charades-STA txt (`vid start end##sentence`), with
                        --charades_csv (Charades_v1_*.csv) for the annotated
                        lengths -> moment_retrieval, one record per query
                        (`example_id` = 0-based index of the query in the
                        txt, blank lines not counted).
                        10 fps (reference).
  qvhighlights          QVHighlights jsonl -> highlight_detection (default;
                        relevant windows with label 0, the query, per-clip
                        saliency) or moment_retrieval (--task), one record per
                        query (`example_id` = qid).  1 fps (reference).
  coin                  COIN.json -> action_segmentation, one record per
                        video with step segments and per-frame labels (later
                        steps overwrite earlier ones; no step = background).
                        2 fps (the paper; the reference config uses 10).
  kinetics              Kinetics csv (`label,youtube_id,time_start,time_end,
                        split`) -> classification, one record per clip, from
                        `<id>_<start:06d>_<end:06d>.<ext>` (a trimmed clip) or
                        `<id>.<ext>` (the full video, cut to the clip).
                        10 fps.

Videos: `<videos_dir>/**/<id>.<ext>` for the common extensions (mp4, mkv,
webm, avi, mov, ...), also `v_<id>` (ActivityNet downloads) and, for ids
that have it, the id without its `v_`.  Decoding, sampling (stored frame i =
time i / fps) and resizing (short side --short_side) are `tools/video_io.py`'s.

Output (`<output_dir>`):
  <split>-0000i-of-0000N.tfrecord   the shards (N = --num_shards);
  classes.txt, classes.json         TAL / AS / CLS: the class list (one name
                                    per line, line = label index; {name:
                                    index}): --class_list, else the sorted
                                    labels of the whole annotation file (all
                                    subsets, so train and val agree);
  <split>.report.json               what was converted and every problem
                                    (below); a one-line summary is printed;
  <split>.parts/                    one small JSON per finished shard (its
                                    report part and input fingerprint; used
                                    to resume).

Determinism and resume: items (videos; Kinetics: clips) are sorted by id and
video i goes to shard i % N, so shards are a pure function of the annotation
list and N.  Records of a video are consecutive, in annotation order, and a
shard holds its videos in sorted order whatever --num_workers is.  A shard is
written to `<shard>.incomplete` and renamed when complete; a restarted
command skips the shards that exist (with their part) and writes the others,
byte-identical to an uninterrupted run (records are serialised with sorted
map keys, so the bytes do not depend on the process).  Changing the inputs
or the options of an existing output is an error (--overwrite rewrites every
shard), and so are shards of the split with another N.  Workers: spawned
processes (--num_workers > 1), each decoding one video at a time with one
thread; each imports TensorFlow (about 0.6 GB RSS) for the JPEG encoder.

Report (nothing is dropped silently), per-reason counts and per-item entries
naming the video (and record / segment):
  missing_video, undecodable_video (with the decoder's reason: open, decode,
  truncated, no_frames, ...) - the video's records are dropped;
  duration_mismatch - annotated vs decoded duration differ by more than
  --duration_tolerance seconds (converted with the decoded duration);
  segment_clipped - a segment reaching outside [0, duration] is clipped to
  the video; segment_outside_video, segment_zero_length, segment_reversed,
  unknown_class (label not in --class_list), empty_caption - the segment is
  dropped; no_segments (MR / HD record left without a segment), no_label
  (Kinetics row without a label) - the record is dropped; clip_clipped,
  clip_outside_video - Kinetics clip windows; duplicate_annotation - a
  repeated Kinetics row (one record is written).

Segment indices: start_index = round(start * fps), end_index =
min(round(end * fps), n - 1) (round half up, clamped to the n stored frames,
end inclusive), as `unloc_tf.data.synthetic` and the pipeline read them;
timestamps keep the (clipped) annotated times in microseconds.

Usage (from the repo root; or the installed `unloc-build-records`):
  python tools/build_records.py --format=activitynet \
      --annotations=activity_net.v1-3.min.json --subset=validation \
      --videos_dir=/data/anet/videos --output_dir=/data/anet/records \
      --split=val --num_shards=64 --num_workers=8
  python tools/build_records.py --format=qvhighlights \
      --annotations=highlight_val_release.jsonl --videos_dir=/data/qvh \
      --output_dir=/data/qvh/records --split=val
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import csv
import dataclasses
import glob
import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from typing import (
  Callable,
  Dict,
  Iterable,
  Iterator,
  List,
  Optional,
  Sequence,
  Tuple,
)

from absl import app, flags

if __package__ in (None, ""):
  # Run as a script (python tools/build_records.py): import the repo's
  # unloc_tf and tools without installing them.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  from tools import video_io  # noqa: E402
else:
  from . import video_io  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from unloc_tf import spec  # noqa: E402
from unloc_tf.data import records  # noqa: E402
from unloc_tf.metrics import formats  # noqa: E402

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv",
                    ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv", ".ts")
QVH_SECS_PER_CLIP = 2.0

# Report reasons, in report order.
MISSING_VIDEO = "missing_video"
UNDECODABLE_VIDEO = "undecodable_video"
DURATION_MISMATCH = "duration_mismatch"
SEGMENT_CLIPPED = "segment_clipped"
SEGMENT_OUTSIDE = "segment_outside_video"
SEGMENT_ZERO = "segment_zero_length"
SEGMENT_REVERSED = "segment_reversed"
UNKNOWN_CLASS = "unknown_class"
EMPTY_CAPTION = "empty_caption"
NO_SEGMENTS = "no_segments"
NO_LABEL = "no_label"
CLIP_CLIPPED = "clip_clipped"
CLIP_OUTSIDE = "clip_outside_video"
DUPLICATE = "duplicate_annotation"
REASONS = (MISSING_VIDEO, UNDECODABLE_VIDEO, DURATION_MISMATCH,
           SEGMENT_CLIPPED, SEGMENT_OUTSIDE, SEGMENT_ZERO, SEGMENT_REVERSED,
           UNKNOWN_CLASS, EMPTY_CAPTION, NO_SEGMENTS, NO_LABEL, CLIP_CLIPPED,
           CLIP_OUTSIDE, DUPLICATE)


@dataclasses.dataclass(frozen=True)
class Format:
  """A supported annotation format.

  Attributes:
    name: the --format value.
    task: the task of its records (one of `spec.TASKS`).
    fps: default stored frames per second.
    fps_source: where the default comes from (for the help text).
  """

  name: str
  task: str
  fps: float
  fps_source: str


FORMATS: Dict[str, Format] = {f.name: f for f in (
    Format("activitynet", spec.TAL, 10.0, "reference configs"),
    Format("activitynet_captions", spec.MR, 10.0, "reference configs"),
    Format("charades_sta", spec.MR, 10.0, "reference configs"),
    Format("qvhighlights", spec.HD, 1.0, "reference configs"),
    Format("coin", spec.AS, 2.0,
           "the paper; the reference config uses 10"),
    Format("kinetics", spec.CLS, 10.0, "as the reference's other configs"),
)}


# ---------------------------------------------------------------------------
# The conversion plan (annotations only, no video).
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class SegmentPlan:
  """An annotated segment.

  Attributes:
    index: position in the video's / query's annotation list (report).
    start, end: annotated times in seconds.
    label_index: class index (TAL / AS), 0 (HD) or -1 (MR).
    label_string: class name, caption or query.
  """

  index: int
  start: float
  end: float
  label_index: int = -1
  label_string: str = ""


@dataclasses.dataclass
class RecordPlan:
  """One output record (before its video is decoded).

  Attributes:
    media_id: `clip/media_id`.
    segments: the kept annotated segments.
    example_id: per-query id (Charades-STA, QVHighlights).
    saliency: (clip ids [R], scores [R][A]) (QVHighlights).
    clip_labels, clip_label_strings: classification labels (Kinetics).
  """

  media_id: str
  segments: List[SegmentPlan] = dataclasses.field(default_factory=list)
  example_id: Optional[int] = None
  saliency: Optional[Tuple[List[int], List[List[float]]]] = None
  clip_labels: Tuple[int, ...] = ()
  clip_label_strings: Tuple[str, ...] = ()


@dataclasses.dataclass
class VideoItem:
  """One video (Kinetics: one clip) and the records made from it.

  Attributes:
    video_id: the annotation's id (sort key; report).
    records: the records to write from it (in annotation order).
    names: file names (without extension) to look for, in order; a name
      with a window (start, end) is a full video to cut (Kinetics).
    annotation_duration: duration stated by the annotations (seconds).
    issues: problems found in the annotations (report entries).
    num_records, num_segments: annotated records / segments, including the
      ones dropped while planning.
    path: the video file found (None: missing), set by `locate_videos`.
    window: (start, end) seconds to cut from the found file, or None.
  """

  video_id: str
  records: List[RecordPlan]
  names: List[Tuple[str, Optional[Tuple[float, float]]]]
  annotation_duration: Optional[float] = None
  issues: List[dict] = dataclasses.field(default_factory=list)
  num_records: int = 0
  num_segments: int = 0
  path: Optional[str] = None
  window: Optional[Tuple[float, float]] = None


def _issue(reason: str, video_id: str, **fields) -> dict:
  out = {"reason": reason, "video_id": video_id}
  out.update({k: v for k, v in fields.items() if v is not None})
  return out


def _names(video_id: str) -> List[Tuple[str, None]]:
  names = [video_id, "v_" + video_id]
  if video_id.startswith("v_") and len(video_id) > 2:
    names.append(video_id[2:])
  return [(n, None) for n in names]


class _Planner:
  """Collects segments with the annotation-level checks."""

  def __init__(self, class_index: Optional[Dict[str, int]]):
    self.class_index = class_index

  def segment(self, item: VideoItem, rec: RecordPlan, k: int, start: float,
              end: float, label: str = "", text: str = "",
              label_index: int = -1) -> None:
    """Adds segment k (annotated [start, end]) to `rec` unless it is bad."""
    where = dict(record=rec.media_id if rec.example_id is None else None,
                 example_id=rec.example_id, segment=k,
                 annotation=[start, end])
    item.num_segments += 1
    if end == start:
      item.issues.append(_issue(SEGMENT_ZERO, item.video_id, **where))
      return
    if end < start:
      item.issues.append(_issue(SEGMENT_REVERSED, item.video_id, **where))
      return
    if self.class_index is not None:
      if label not in self.class_index:
        item.issues.append(_issue(UNKNOWN_CLASS, item.video_id, label=label,
                                  **where))
        return
      label_index = self.class_index[label]
      text = text or label
    elif text == "" and label == "":
      item.issues.append(_issue(EMPTY_CAPTION, item.video_id, **where))
      return
    rec.segments.append(SegmentPlan(k, float(start), float(end), label_index,
                                    text))

  def finish(self, item: VideoItem, rec: RecordPlan, required: bool) -> None:
    """Keeps `rec` unless it needs segments and has none."""
    item.num_records += 1
    if required and not rec.segments:
      item.issues.append(_issue(
          NO_SEGMENTS, item.video_id,
          record=rec.media_id if rec.example_id is None else None,
          example_id=rec.example_id))
      return
    item.records.append(rec)


def read_class_list(path: str) -> List[str]:
  """Class names: a .json list or {name: index}, else one name per line."""
  with open(path, encoding="utf-8") as f:
    if path.endswith(".json"):
      data = json.load(f)
      if isinstance(data, dict):
        names = sorted(data, key=lambda k: data[k])
        if [data[n] for n in names] != list(range(len(names))):
          raise formats.FormatError(path, None, None,
                                    "indices must be 0..C-1")
      else:
        names = [str(n) for n in data]
    else:
      names = [line.strip() for line in f if line.strip()]
  if not names:
    raise formats.FormatError(path, None, None, "no class names")
  if len(set(names)) != len(names):
    dup = sorted({n for n in names if names.count(n) > 1})
    raise formats.FormatError(path, None, None, f"duplicate names {dup}")
  return names


def _classes(labels: Iterable[str], class_list: Optional[str]) -> List[str]:
  if class_list:
    return read_class_list(class_list)
  return sorted(set(labels))


def plan_activitynet(opts: "Options") -> Tuple[List[VideoItem], List[str]]:
  """ActivityNet 1.3 (any layout `formats.read_activitynet` reads) -> TAL."""
  everything, durations = formats.read_activitynet(opts.annotations, None)
  classes = _classes((a["label"] for anns in everything.values()
                      for a in anns), opts.class_list)
  gt = everything
  if opts.subset is not None:
    gt, durations = formats.read_activitynet(
        opts.annotations, opts.subset, video_info=opts.video_info)
  planner = _Planner({c: i for i, c in enumerate(classes)})
  items = []
  for vid, anns in gt.items():
    item = VideoItem(vid, [], _names(vid), durations.get(vid))
    rec = RecordPlan(vid)
    for k, a in enumerate(anns):
      planner.segment(item, rec, k, a["segment"][0], a["segment"][1],
                      label=a["label"])
    planner.finish(item, rec, required=False)
    items.append(item)
  return items, classes


def plan_activitynet_captions(opts: "Options"
                              ) -> Tuple[List[VideoItem], List[str]]:
  """ActivityNet Captions -> MR, one record per video."""
  rows = formats.read_activitynet_captions(opts.annotations, preprocess=None)
  planner = _Planner(None)
  by_video: Dict[str, VideoItem] = {}
  recs: Dict[str, RecordPlan] = {}
  for row in rows:
    vid = row["video_id"]
    if vid not in by_video:
      by_video[vid] = VideoItem(vid, [], _names(vid), row["duration"])
      recs[vid] = RecordPlan(vid)
    planner.segment(by_video[vid], recs[vid], row["sentence_index"],
                    row["segment"][0], row["segment"][1], text=row["query"])
  # Videos without any sentence are in the file but not in `rows`.
  with open(opts.annotations, encoding="utf-8") as f:
    data = json.load(f)  # already validated by the reader
  for vid, info in data.items():
    if vid not in by_video:
      by_video[vid] = VideoItem(vid, [], _names(vid), info.get("duration"))
      recs[vid] = RecordPlan(vid)
  for vid, item in by_video.items():
    planner.finish(item, recs[vid], required=True)
  return list(by_video.values()), []


def plan_charades_sta(opts: "Options") -> Tuple[List[VideoItem], List[str]]:
  """Charades-STA txt (+ csv lengths) -> MR, one record per query."""
  rows = formats.read_charades_sta(opts.annotations)
  lengths = (formats.read_charades_lengths(opts.charades_csv)
             if opts.charades_csv else {})
  planner = _Planner(None)
  by_video: Dict[str, VideoItem] = {}
  for qid, row in enumerate(rows):
    vid = row["video_id"]
    item = by_video.get(vid)
    if item is None:
      item = by_video[vid] = VideoItem(vid, [], _names(vid), lengths.get(vid))
    rec = RecordPlan(vid, example_id=qid)
    planner.segment(item, rec, 0, row["segment"][0], row["segment"][1],
                    text=row["query"])
    planner.finish(item, rec, required=True)
  return list(by_video.values()), []


def plan_qvhighlights(opts: "Options") -> Tuple[List[VideoItem], List[str]]:
  """QVHighlights jsonl -> HD (or MR), one record per query."""
  rows = formats.read_qvhighlights(opts.annotations)
  hd = opts.task_or_default() == spec.HD
  planner = _Planner(None)
  by_video: Dict[str, VideoItem] = {}
  for row in rows:
    vid = row["vid"]
    item = by_video.get(vid)
    if item is None:
      item = by_video[vid] = VideoItem(vid, [], _names(vid),
                                       float(row["duration"]))
    rec = RecordPlan(vid, example_id=int(row["qid"]))
    query = row["query"].strip()
    for k, (s, e) in enumerate(row.get("relevant_windows", [])):
      planner.segment(item, rec, k, float(s), float(e), text=query,
                      label_index=0 if hd else -1)
    if hd and "relevant_clip_ids" in row:
      rec.saliency = ([int(c) for c in row["relevant_clip_ids"]],
                      [[float(v) for v in s] for s in row["saliency_scores"]])
    planner.finish(item, rec, required=True)
  return list(by_video.values()), []


def plan_coin(opts: "Options") -> Tuple[List[VideoItem], List[str]]:
  """COIN.json -> AS, one record per video."""
  everything = formats.read_coin(opts.annotations)
  classes = _classes((a["label"] for e in everything.values()
                      for a in e["annotation"]), opts.class_list)
  planner = _Planner({c: i for i, c in enumerate(classes)})
  items = []
  for vid, entry in everything.items():
    if opts.subset is not None and entry["subset"] != opts.subset:
      continue
    item = VideoItem(vid, [], _names(vid), entry["duration"])
    rec = RecordPlan(vid)
    for k, a in enumerate(entry["annotation"]):
      planner.segment(item, rec, k, a["segment"][0], a["segment"][1],
                      label=a["label"])
    planner.finish(item, rec, required=False)
    items.append(item)
  if opts.subset is not None and not items:
    subsets = sorted({e["subset"] for e in everything.values()})
    raise ValueError(f"{opts.annotations}: no video with subset"
                     f" {opts.subset!r}; subsets in the file: {subsets}")
  return items, classes


def read_kinetics_csv(path: str) -> List[dict]:
  """Kinetics csv rows: {"label" ("" when absent), "youtube_id",
  "time_start", "time_end", "split", "line"}.

  Raises:
    FormatError: names the file, the line and the field.
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


def plan_kinetics(opts: "Options") -> Tuple[List[VideoItem], List[str]]:
  """Kinetics csv -> CLS, one record per clip."""
  rows = read_kinetics_csv(opts.annotations)
  classes = _classes((r["label"] for r in rows if r["label"]),
                     opts.class_list)
  class_index = {c: i for i, c in enumerate(classes)}
  items: Dict[str, VideoItem] = {}
  for row in rows:
    if opts.subset is not None and row["split"] != opts.subset:
      continue
    s, e = row["time_start"], row["time_end"]
    cid = kinetics_clip_id(row["youtube_id"], s, e)
    if cid in items:  # a repeated row: one record
      items[cid].issues.append(_issue(DUPLICATE, cid, line=row["line"]))
      continue
    item = VideoItem(cid, [], [(cid, None), (row["youtube_id"], (s, e))],
                     e - s, num_records=1)
    items[cid] = item
    where = dict(line=row["line"], annotation=[s, e])
    if not e > s:
      item.issues.append(_issue(
          SEGMENT_ZERO if e == s else SEGMENT_REVERSED, cid, **where))
      continue
    label = row["label"]
    if not label:
      item.issues.append(_issue(NO_LABEL, cid, **where))
      continue
    if label not in class_index:
      item.issues.append(_issue(UNKNOWN_CLASS, cid, label=label, **where))
      continue
    item.records.append(RecordPlan(cid, clip_labels=(class_index[label],),
                                   clip_label_strings=(label,)))
  return list(items.values()), classes


PLANNERS: Dict[str, Callable[["Options"], Tuple[List[VideoItem],
                                                List[str]]]] = {
    "activitynet": plan_activitynet,
    "activitynet_captions": plan_activitynet_captions,
    "charades_sta": plan_charades_sta,
    "qvhighlights": plan_qvhighlights,
    "coin": plan_coin,
    "kinetics": plan_kinetics,
}


# ---------------------------------------------------------------------------
# Finding the videos.
# ---------------------------------------------------------------------------
def index_videos(videos_dir: str) -> Dict[str, str]:
  """{file name without extension: path} of every video under `videos_dir`.

  Recursive; when a name occurs more than once, the extension earlier in
  `VIDEO_EXTENSIONS` wins, then the lexicographically first path.
  """
  found: Dict[str, Tuple[int, str]] = {}
  if not videos_dir or not os.path.isdir(videos_dir):
    return {}
  for root, dirs, files in os.walk(videos_dir):
    dirs.sort()
    for name in sorted(files):
      stem, ext = os.path.splitext(name)
      ext = ext.lower()
      if ext not in VIDEO_EXTENSIONS:
        continue
      key = (VIDEO_EXTENSIONS.index(ext), os.path.join(root, name))
      if stem not in found or key < found[stem]:
        found[stem] = key
  return {stem: path for stem, (_, path) in found.items()}


def locate_videos(items: Sequence[VideoItem], index: Dict[str, str]) -> None:
  """Sets `path` and `window` of every item (first name found)."""
  for item in items:
    item.path, item.window = None, None
    for name, window in item.names:
      if name in index:
        item.path, item.window = index[name], window
        break


# ---------------------------------------------------------------------------
# Converting one video (runs in the workers).
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Params:
  """What a worker needs besides the item."""

  task: str
  fps: float
  short_side: int
  jpeg_quality: int
  duration_tolerance: float


@dataclasses.dataclass
class VideoResult:
  """The records of one video and the problems found."""

  video_id: str
  serialized: List[bytes]
  issues: List[dict]
  converted: bool = False
  frames: int = 0
  segments: int = 0


def _frame_index(t: float, fps: float) -> int:
  """round(t * fps), half up (`unloc_tf.data.synthetic`'s rule)."""
  return int(math.floor(t * fps + 0.5))


def _decode_jpegs(path: str, params: Params, max_frames: Optional[int]
                  ) -> Tuple[List[bytes], float]:
  """Stored frames as JPEG bytes (encoded as they are decoded) + duration."""
  reader = video_io.VideoReader(path, params.fps, params.short_side,
                                max_frames)
  jpegs: List[bytes] = []
  last = None
  for frame in reader:
    if frame is last:  # the reader repeats a frame (upsampling)
      jpegs.append(jpegs[-1])
      continue
    jpegs.extend(video_io.frames_to_jpeg(frame[None], params.jpeg_quality))
    last = frame
  return jpegs, float(reader.duration)


def convert_video(item: VideoItem, params: Params) -> VideoResult:
  """Decodes one video and serialises its records (module docstring rules).

  Never raises for bad input: missing / undecodable videos and bad segments
  become report entries.
  """
  vid = item.video_id
  result = VideoResult(vid, [], list(item.issues))
  issues = result.issues
  if not item.records:
    return result
  if item.path is None:
    tried = [n for n, _ in item.names]
    issues.append(_issue(MISSING_VIDEO, vid, detail=f"no file named any of"
                         f" {tried} with a video extension"))
    return result
  fps = params.fps
  max_frames = None
  if item.window is not None:
    max_frames = max(1, _frame_index(item.window[1], fps))
  try:
    jpegs, duration = _decode_jpegs(item.path, params, max_frames)
  except video_io.VideoDecodeError as e:
    issues.append(_issue(UNDECODABLE_VIDEO, vid, error=e.reason,
                         detail=str(e)))
    return result
  if item.window is not None:
    start, end = item.window
    first = _frame_index(start, fps)
    if first >= len(jpegs) or start >= duration:
      issues.append(_issue(CLIP_OUTSIDE, vid, annotation=[start, end],
                           video_duration=duration))
      return result
    if end > duration:
      issues.append(_issue(CLIP_CLIPPED, vid, annotation=[start, end],
                           stored=[start, duration],
                           video_duration=duration))
      end = duration
    jpegs = jpegs[first:]
    duration = end - start
  elif item.annotation_duration is not None and abs(
      item.annotation_duration - duration) > params.duration_tolerance:
    issues.append(_issue(DURATION_MISMATCH, vid,
                         annotation_duration=item.annotation_duration,
                         video_duration=duration))
  n = len(jpegs)
  result.converted = True
  result.frames = n
  for rec in item.records:
    ident = dict(record=rec.media_id if rec.example_id is None else None,
                 example_id=rec.example_id)
    segments = []
    for sp in rec.segments:
      where = dict(segment=sp.index, annotation=[sp.start, sp.end], **ident)
      start, end = max(sp.start, 0.0), min(sp.end, duration)
      if end - start < 1e-6:
        issues.append(_issue(SEGMENT_OUTSIDE, vid, video_duration=duration,
                             **where))
        continue
      if (start, end) != (sp.start, sp.end):
        issues.append(_issue(SEGMENT_CLIPPED, vid, stored=[start, end],
                             video_duration=duration, **where))
      si = min(max(_frame_index(start, fps), 0), n - 1)
      ei = min(max(_frame_index(end, fps), si), n - 1)
      segments.append(records.Segment(si, ei, sp.label_index,
                                      sp.label_string, start, end))
    if params.task in (spec.MR, spec.HD) and not segments:
      issues.append(_issue(NO_SEGMENTS, vid, **ident))
      continue
    frame_labels = None
    if params.task == spec.AS:
      labels = [-1] * n
      for seg in segments:  # annotation order: later steps overwrite
        labels[seg.start_index:seg.end_index + 1] = (
            [seg.label_index] * (seg.end_index - seg.start_index + 1))
      frame_labels = [[v] if v >= 0 else [] for v in labels]
    saliency = None
    if rec.saliency is not None:
      clip_ids, scores = rec.saliency
      saliency = records.Saliency(
          clip_ids, np.asarray(scores, np.float32).reshape(len(clip_ids), -1),
          QVH_SECS_PER_CLIP)
    record = records.VideoRecord(
        media_id=rec.media_id, secs_per_timestep=1.0 / fps, frames=jpegs,
        segments=segments, example_id=rec.example_id, duration=duration,
        saliency=saliency, frame_labels=frame_labels,
        clip_labels=rec.clip_labels,
        clip_label_strings=rec.clip_label_strings)
    # Deterministic: map fields (the context) sorted by key, so the bytes
    # do not depend on the process that serialised them.
    result.serialized.append(records.to_sequence_example(
        record, params.task).SerializeToString(deterministic=True))
    result.segments += len(segments)
  return result


def _init_worker() -> None:
  """One thread per worker process: the workers are the parallelism."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:  # already initialised
    pass


def _ordered_results(items: Sequence[VideoItem], params: Params,
                     num_workers: int) -> Iterator[VideoResult]:
  """`convert_video` of every item, in order (workers: spawned processes,
  at most 2 * num_workers videos in flight)."""
  if num_workers <= 1:
    for item in items:
      yield convert_video(item, params)
    return
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=ctx, initializer=_init_worker) as pool:
    pending: collections.deque = collections.deque()
    for item in items:
      if item.path is None or not item.records:  # nothing to decode
        pending.append(convert_video(item, params))
      else:
        pending.append(pool.submit(convert_video, item, params))
      while pending and (len(pending) > 2 * num_workers or not isinstance(
          pending[0], concurrent.futures.Future) or pending[0].done()):
        head = pending.popleft()
        yield head.result() if isinstance(
            head, concurrent.futures.Future) else head
    while pending:
      head = pending.popleft()
      yield head.result() if isinstance(
          head, concurrent.futures.Future) else head


# ---------------------------------------------------------------------------
# The conversion.
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Options:
  """Everything `convert` needs (the flags of the tool).

  Attributes:
    format: one of `FORMATS`.
    annotations: the annotation file.
    videos_dir: folder searched (recursively) for the videos.
    output_dir: where the shards, class lists and the report go.
    split: output name: `<split>-0000i-of-0000N.tfrecord`.
    subset: keep only this annotation subset (ActivityNet / COIN "subset",
      Kinetics "split" column); None keeps every entry.
    task: qvhighlights: highlight_detection (default) or moment_retrieval;
      other formats: None or their own task.
    fps: stored frames per second; None = the format's default.
    short_side: short side of the stored frames in pixels (0 = source
      size).
    jpeg_quality: JPEG quality of the stored frames.
    num_shards: N.
    num_workers: worker processes (1 = in this process).
    class_list: fixed class list file (TAL / AS / CLS).
    charades_csv: Charades csv with the video lengths (charades_sta).
    video_info: BSN's video_info_new.csv (ActivityNet BSN layout with a
      subset).
    duration_tolerance: seconds of annotated vs decoded duration difference
      that are not reported.
    overwrite: rewrite every shard (and the class lists) instead of
      resuming.
    progress: show a progress bar.
  """

  format: str
  annotations: str
  videos_dir: str
  output_dir: str
  split: str = "train"
  subset: Optional[str] = None
  task: Optional[str] = None
  fps: Optional[float] = None
  short_side: int = 256
  jpeg_quality: int = 90
  num_shards: int = 8
  num_workers: int = 1
  class_list: Optional[str] = None
  charades_csv: Optional[str] = None
  video_info: Optional[str] = None
  duration_tolerance: float = 1.0
  overwrite: bool = False
  progress: bool = True

  def task_or_default(self) -> str:
    return self.task or FORMATS[self.format].task

  def fps_or_default(self) -> float:
    return float(self.fps) if self.fps else FORMATS[self.format].fps

  def check(self) -> None:
    if self.format not in FORMATS:
      raise ValueError(f"unknown format {self.format!r}; expected one of"
                       f" {sorted(FORMATS)}")
    own = FORMATS[self.format].task
    allowed = {own, spec.MR} if self.format == "qvhighlights" else {own}
    if self.task is not None and self.task not in allowed:
      raise ValueError(f"--task={self.task} is not available for"
                       f" --format={self.format}; expected one of"
                       f" {sorted(allowed)}")
    if not self.fps_or_default() > 0:
      raise ValueError(f"fps must be positive, got {self.fps}")
    if self.num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
    if self.num_workers < 1:
      raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f"jpeg_quality must be in [1, 100], got"
                       f" {self.jpeg_quality}")
    if self.short_side < 0:
      raise ValueError(f"short_side must be >= 0, got {self.short_side}")
    if not self.split or os.sep in self.split:
      raise ValueError(f"split must be a plain name, got {self.split!r}")
    for name in ("annotations", "class_list", "charades_csv", "video_info"):
      path = getattr(self, name)
      if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"--{name}: no such file: {path}")


def _atomic_write(path: str, text: str) -> None:
  tmp = path + ".incomplete"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)


def _fingerprint(opts: Options, params: Params, classes: Sequence[str],
                 shard_items: Sequence[VideoItem]) -> str:
  """sha1 of everything a shard's bytes depend on."""
  def item_key(item):
    d = dict(vars(item))
    d["path"] = (os.path.relpath(item.path, opts.videos_dir)
                 if item.path else None)
    return d

  payload = {"params": vars(params), "format": opts.format,
             "num_shards": opts.num_shards, "classes": list(classes),
             "items": [item_key(i) for i in shard_items]}
  # vars() of the nested dataclasses: much faster than dataclasses.asdict.
  return hashlib.sha1(json.dumps(payload, sort_keys=True, default=vars)
                      .encode()).hexdigest()


def _write_classes(opts: Options, classes: Sequence[str]) -> None:
  text = "".join(c + "\n" for c in classes)
  path = os.path.join(opts.output_dir, "classes.txt")
  if os.path.exists(path) and not opts.overwrite:
    with open(path, encoding="utf-8") as f:
      old = f.read()
    if old != text:
      raise ValueError(
          f"{path} exists with another class list ({len(old.splitlines())}"
          f" names, now {len(classes)}); pass the same --class_list to every"
          " split of an output_dir, or --overwrite")
  _atomic_write(path, text)
  _atomic_write(os.path.join(opts.output_dir, "classes.json"),
                json.dumps({c: i for i, c in enumerate(classes)}, indent=1)
                + "\n")


class _Bar:
  """tqdm over videos (a no-op without tqdm or with progress=False)."""

  def __init__(self, enabled: bool, total: int, initial: int, desc: str):
    self._bar = None
    if enabled:
      try:
        import tqdm  # pylint: disable=g-import-not-at-top
        self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                              unit="video", dynamic_ncols=True)
      except ImportError:
        pass

  def update(self, k: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(k)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def convert(opts: Options) -> dict:
  """Converts the annotations + videos to shards; returns the report.

  Raises:
    ValueError / FileNotFoundError / formats.FormatError: bad options or a
      malformed annotation file (never for a bad video).
  """
  t0 = time.perf_counter()
  opts.check()
  task = opts.task_or_default()
  fps = opts.fps_or_default()
  params = Params(task, fps, opts.short_side, opts.jpeg_quality,
                  float(opts.duration_tolerance))
  items, classes = PLANNERS[opts.format](opts)
  items.sort(key=lambda it: it.video_id)
  locate_videos(items, index_videos(opts.videos_dir))
  os.makedirs(opts.output_dir, exist_ok=True)
  if task in (spec.TAL, spec.AS, spec.CLS):
    _write_classes(opts, classes)
  num_shards = opts.num_shards
  shard_items = [items[k::num_shards] for k in range(num_shards)]
  paths = records.shard_paths(os.path.join(opts.output_dir, opts.split),
                              num_shards)
  others = sorted(
      set(glob.glob(os.path.join(glob.escape(opts.output_dir),
                                 glob.escape(opts.split) + "-*-of-*.tfrecord")))
      - set(paths))
  if others:
    # `<split>-*.tfrecord` (the pipeline's pattern) would read them too.
    raise ValueError(
        f"{opts.output_dir} holds shards of split {opts.split!r} with"
        f" another --num_shards ({os.path.basename(others[0])}, ...);"
        " remove them or use another --output_dir / --split")
  parts_dir = os.path.join(opts.output_dir, opts.split + ".parts")
  os.makedirs(parts_dir, exist_ok=True)
  part_paths = [os.path.join(parts_dir, f"{k:05d}-of-{num_shards:05d}.json")
                for k in range(num_shards)]
  parts: List[Optional[dict]] = [None] * num_shards
  keys = [_fingerprint(opts, params, classes, s) for s in shard_items]
  for k in range(num_shards):
    if opts.overwrite or not (os.path.exists(paths[k])
                              and os.path.exists(part_paths[k])):
      continue
    with open(part_paths[k], encoding="utf-8") as f:
      part = json.load(f)
    if part.get("fingerprint") != keys[k]:
      raise ValueError(
          f"{paths[k]} exists but was written from other annotations,"
          " videos or options (its fingerprint in"
          f" {part_paths[k]} differs); use a new --output_dir or"
          " --overwrite")
    parts[k] = part
  skipped = sum(p is not None for p in parts)
  todo = [k for k in range(num_shards) if parts[k] is None]
  bar = _Bar(opts.progress, len(items),
             sum(len(shard_items[k]) for k in range(num_shards)
                 if parts[k] is not None), opts.split)
  with contextlib.ExitStack() as stack:
    stack.callback(bar.close)
    jobs = [item for k in todo for item in shard_items[k]]
    results = _ordered_results(jobs, params, opts.num_workers)
    stack.callback(results.close)
    for k in todo:
      tmp = paths[k] + ".incomplete"
      part = {"fingerprint": keys[k], "shard": os.path.basename(paths[k]),
              "videos": len(shard_items[k]), "videos_converted": 0,
              "records": 0, "frames": 0, "segments": 0, "issues": []}
      with tf.io.TFRecordWriter(tmp) as writer:
        for _ in shard_items[k]:
          res = next(results)
          for data in res.serialized:
            writer.write(data)
          part["videos_converted"] += int(res.converted)
          part["records"] += len(res.serialized)
          part["frames"] += res.frames * len(res.serialized)
          part["segments"] += res.segments
          part["issues"].extend(res.issues)
          bar.update()
      # The part first: a shard under its final name always has its part.
      _atomic_write(part_paths[k], json.dumps(part, indent=1) + "\n")
      os.replace(tmp, paths[k])
      parts[k] = part
  report = _report(opts, params, classes, items, paths, parts, skipped,
                   time.perf_counter() - t0)
  report_path = os.path.join(opts.output_dir, opts.split + ".report.json")
  _atomic_write(report_path, json.dumps(report, indent=1) + "\n")
  report["report_path"] = report_path
  return report


def _report(opts: Options, params: Params, classes: Sequence[str],
            items: Sequence[VideoItem], paths: Sequence[str],
            parts: Sequence[dict], skipped: int, seconds: float) -> dict:
  issues = [i for p in parts for i in p["issues"]]
  counts = collections.Counter(i["reason"] for i in issues)
  written = {"videos": sum(p["videos_converted"] for p in parts),
             "records": sum(p["records"] for p in parts),
             "frames": sum(p["frames"] for p in parts),
             "segments": sum(p["segments"] for p in parts)}
  annotated = {"videos": len(items),
               "records": sum(i.num_records for i in items),
               "segments": sum(i.num_segments for i in items)}
  return {
      "format": opts.format,
      "task": params.task,
      "split": opts.split,
      "subset": opts.subset,
      "annotations": os.path.abspath(opts.annotations),
      "videos_dir": os.path.abspath(opts.videos_dir),
      "fps": params.fps,
      "short_side": params.short_side,
      "jpeg_quality": params.jpeg_quality,
      "duration_tolerance": params.duration_tolerance,
      "num_classes": len(classes) if classes else None,
      "shards": [os.path.basename(p) for p in paths],
      "shards_resumed": skipped,
      "annotated": annotated,
      "written": written,
      "dropped": {k: annotated[k] - written[k]
                  for k in ("videos", "records", "segments")},
      "issue_counts": {r: counts.get(r, 0) for r in REASONS},
      "issues": issues,
      "seconds": round(seconds, 2),
  }


def summary_line(report: dict) -> str:
  """The one-line summary printed at the end of a conversion."""
  a, w = report["annotated"], report["written"]
  problems = ", ".join(f"{r} {c}" for r, c in report["issue_counts"].items()
                       if c) or "none"
  return (f"{report['split']}: {w['records']}/{a['records']} records from"
          f" {w['videos']}/{a['videos']} videos ({w['frames']} frames,"
          f" {w['segments']}/{a['segments']} segments) in"
          f" {len(report['shards'])} shards ({report['shards_resumed']}"
          f" resumed), {report['seconds']:.1f} s; issues: {problems};"
          f" report: {report.get('report_path', '')}")


# ---------------------------------------------------------------------------
# The tool.
# ---------------------------------------------------------------------------
def _define_flags() -> None:
  """Defines the flags (called by `run`, not at import: importing the module
  for `convert` defines no flags that could clash with another program's)."""
  fps_help = "; ".join(f"{f.name} {f.fps:g} ({f.fps_source})"
                       for f in FORMATS.values())
  flags.DEFINE_enum("format", None, sorted(FORMATS),
                    "Annotation format (see the module docstring).",
                    required=True)
  flags.DEFINE_string("annotations", None, "The annotation file.",
                      required=True)
  flags.DEFINE_string("videos_dir", None,
                      "Folder searched recursively for <id>.<ext> (also"
                      " v_<id>; Kinetics <id>_<start>_<end>).", required=True)
  flags.DEFINE_string("output_dir", None, "Where the shards go.",
                      required=True)
  flags.DEFINE_string("split", "train",
                      "Output name: <split>-0000i-of-0000N.tfrecord.")
  flags.DEFINE_string("subset", None,
                      "Keep only this subset: ActivityNet / COIN 'subset'"
                      " (training, validation, testing), Kinetics 'split'"
                      " column.  Default: every entry of the file.")
  flags.DEFINE_enum("task", None, [spec.HD, spec.MR],
                    "qvhighlights only: highlight_detection (default) or"
                    " moment_retrieval.")
  flags.DEFINE_float("fps", None,
                     "Stored frames per second.  Defaults: " + fps_help + ".")
  flags.DEFINE_integer("short_side", 256,
                       "Short side of the stored frames in pixels (the"
                       " reference's min_resize; 0 = source size).")
  flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality (1-100).")
  flags.DEFINE_integer("num_shards", 8, "Output shards N.")
  flags.DEFINE_integer("num_workers", 1,
                       "Decoding processes (1 = in this process).")
  flags.DEFINE_string("class_list", None,
                      "Fixed class list (one name per line, or JSON list /"
                      " {name: index}); default: the sorted labels of the"
                      " annotation file.")
  flags.DEFINE_string("charades_csv", None,
                      "charades_sta: Charades_v1_*.csv (annotated lengths,"
                      " compared with the decoded durations).")
  flags.DEFINE_string("video_info", None,
                      "activitynet, BSN layout: video_info_new.csv (needed"
                      " for --subset).")
  flags.DEFINE_float("duration_tolerance", 1.0,
                     "Report annotated vs decoded durations that differ by"
                     " more than this many seconds.")
  flags.DEFINE_bool("overwrite", False,
                    "Rewrite every shard instead of resuming.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  opts = Options(
      format=f.format, annotations=f.annotations, videos_dir=f.videos_dir,
      output_dir=f.output_dir, split=f.split, subset=f.subset, task=f.task,
      fps=f.fps, short_side=f.short_side, jpeg_quality=f.jpeg_quality,
      num_shards=f.num_shards, num_workers=f.num_workers,
      class_list=f.class_list, charades_csv=f.charades_csv,
      video_info=f.video_info, duration_tolerance=f.duration_tolerance,
      overwrite=f.overwrite, progress=f.progress)
  try:
    opts.check()
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  report = convert(opts)
  print(summary_line(report))


def run():
  """Console-script entry point."""
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
