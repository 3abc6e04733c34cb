"""What the dataset planners share: the plan, the report reasons, the class
list and the video lookup.

A planner (`plan_<format>` of the dataset modules) reads an annotation file,
without any video, into `VideoItem`s: one per video (Kinetics: per clip),
each holding the records to write from it, in annotation order, and the
problems found in the annotations (report entries).  `Planner` applies the
checks every format shares.  `unloc_tf.datasets.builder` then decodes the
videos and writes the records.

Report entries are dicts `{"reason", "video_id", ...}` naming the record
(`record` = media id, or `example_id` for per-query records), the segment
(its index in the annotation list) and the annotated / stored times; the
reasons (`REASONS`, in report order):
  missing_video, undecodable_video (with the decoder's reason: open, decode,
  truncated, no_frames, ...) - the video's records are dropped;
  duration_mismatch - annotated vs decoded duration differ by more than the
  tolerance (converted with the decoded duration);
  segment_clipped - a segment reaching outside [0, duration] is clipped to
  the video; segment_outside_video, segment_zero_length, segment_reversed,
  unknown_class (label not in the class list), empty_caption - the segment
  is dropped; no_segments (MR / HD record left without a segment), no_label
  (Kinetics row without a label) - the record is dropped; clip_clipped,
  clip_outside_video - Kinetics clip windows; duplicate_annotation - a
  repeated Kinetics row (one record is written); stored_at_source_size -
  the video's short side is smaller than the requested one: its frames are
  stored at the source size, never upscaled (the record is written).

Unlabeled splits (QVHighlights test, ActivityNet "testing"): records are
written without targets.  MR / HD records hold their queries
(`RecordPlan.queries`) in `segment/label/string` with no segment and no
saliency; TAL / AS records have no segment.

Videos (`index_videos`, `locate_videos`): `<videos_dir>/**/<name>.<ext>` for
the extensions of `unloc_tf.data.video.VIDEO_EXTENSIONS`; the names tried
for an id are the id, `v_<id>` (ActivityNet downloads) and, for ids that
have it, the id without its `v_` (`video_names`).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from unloc_tf.data import video
from unloc_tf.metrics import formats

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
SOURCE_SIZE_KEPT = "stored_at_source_size"
REASONS = (MISSING_VIDEO, UNDECODABLE_VIDEO, DURATION_MISMATCH,
           SEGMENT_CLIPPED, SEGMENT_OUTSIDE, SEGMENT_ZERO, SEGMENT_REVERSED,
           UNKNOWN_CLASS, EMPTY_CAPTION, NO_SEGMENTS, NO_LABEL, CLIP_CLIPPED,
           CLIP_OUTSIDE, DUPLICATE, SOURCE_SIZE_KEPT)


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
    queries: MR / HD queries of an unlabeled record (no segment; written
      to `segment/label/string` without segment indices).
  """

  media_id: str
  segments: List[SegmentPlan] = dataclasses.field(default_factory=list)
  example_id: Optional[int] = None
  saliency: Optional[Tuple[List[int], List[List[float]]]] = None
  clip_labels: Tuple[int, ...] = ()
  clip_label_strings: Tuple[str, ...] = ()
  queries: Tuple[str, ...] = ()


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


def issue(reason: str, video_id: str, **fields) -> dict:
  """A report entry; fields that are None are left out."""
  out = {"reason": reason, "video_id": video_id}
  out.update({k: v for k, v in fields.items() if v is not None})
  return out


def video_names(video_id: str) -> List[Tuple[str, None]]:
  """`VideoItem.names` of a video id: the id, `v_<id>`, the id without
  its `v_`."""
  names = [video_id, "v_" + video_id]
  if video_id.startswith("v_") and len(video_id) > 2:
    names.append(video_id[2:])
  return [(n, None) for n in names]


class Planner:
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
      item.issues.append(issue(SEGMENT_ZERO, item.video_id, **where))
      return
    if end < start:
      item.issues.append(issue(SEGMENT_REVERSED, item.video_id, **where))
      return
    if self.class_index is not None:
      if label not in self.class_index:
        item.issues.append(issue(UNKNOWN_CLASS, item.video_id, label=label,
                                 **where))
        return
      label_index = self.class_index[label]
      text = text or label
    elif text == "" and label == "":
      item.issues.append(issue(EMPTY_CAPTION, item.video_id, **where))
      return
    rec.segments.append(SegmentPlan(k, float(start), float(end), label_index,
                                    text))

  def finish(self, item: VideoItem, rec: RecordPlan, required: bool) -> None:
    """Keeps `rec` unless it needs segments and has none (an unlabeled
    record, with `queries`, needs none)."""
    item.num_records += 1
    if required and not rec.segments and not rec.queries:
      item.issues.append(issue(
          NO_SEGMENTS, item.video_id,
          record=rec.media_id if rec.example_id is None else None,
          example_id=rec.example_id))
      return
    item.records.append(rec)


# (items, classes): a planner's result; classes are empty for MR / HD.
Plan = Tuple[List[VideoItem], List[str]]


def read_class_list(path: str) -> List[str]:
  """Class names in label-index order, from a class-list file.

  Accepted:
    * `.json`: a list of names; `{name: index}` with indices 0..C-1; or an
      ActivityNet ground truth (any layout `activitynet.read_activitynet`
      reads), whose sorted distinct annotation labels are the classes.
    * any other file: text, one name per line; surrounding whitespace is
      removed, blank lines and lines starting with "#" are skipped.

  Args:
    path: the file.

  Returns:
    The class names: in file / index order, sorted for an ActivityNet file.

  Raises:
    formats.FormatError (a ValueError): duplicate names (in a text file,
      naming the lines), indices that are not 0..C-1, no class, or a
      malformed file.
  """
  if path.endswith(".json"):
    data = formats.load_json(path)
    if formats.activitynet_layout(data) != "unknown":
      # activitynet imports this module, so it is imported here.
      from unloc_tf.datasets import activitynet  # noqa: PLC0415

      gt, _ = activitynet.read_activitynet(path)
      names = activitynet.activitynet_class_names(gt)
      if not names:
        raise formats.FormatError(path, None, None, "no class label found")
      return names
    if isinstance(data, dict):
      names = sorted(data, key=lambda k: data[k])
      if [data[n] for n in names] != list(range(len(names))):
        raise formats.FormatError(path, None, None, "indices must be 0..C-1")
    elif isinstance(data, list):
      names = [str(n) for n in data]
    else:
      raise formats.FormatError(
          path, None, None, "expected a list of names, {name: index} or an"
          " ActivityNet ground truth")
    if len(set(names)) != len(names):
      dup = sorted({n for n in names if names.count(n) > 1})
      raise formats.FormatError(path, None, None, f"duplicate names {dup}")
  else:
    names, first_line = [], {}
    with open(path, encoding="utf-8") as f:
      for lineno, line in enumerate(f, 1):
        name = line.strip()
        if not name or name.startswith("#"):
          continue
        if name in first_line:
          raise formats.FormatError(
              path, f"line {lineno}", None,
              f"class {name!r} duplicates line {first_line[name]}")
        first_line[name] = lineno
        names.append(name)
  if not names:
    raise formats.FormatError(path, None, None, "no class names")
  return names


def resolve_classes(labels: Iterable[str],
                    class_list: Optional[str]) -> List[str]:
  """`read_class_list(class_list)`, else the sorted distinct `labels`."""
  if class_list:
    return read_class_list(class_list)
  return sorted(set(labels))


def index_videos(videos_dir: str) -> Dict[str, str]:
  """{file name without extension: path} of every video under `videos_dir`.

  Recursive; when a name occurs more than once, the extension earlier in
  `video.VIDEO_EXTENSIONS` wins, then the lexicographically first path.  A
  URL (gs://..., any file system of `tf.io.gfile`) is listed through
  TensorFlow, as Beam workers on Dataflow read their videos.
  """
  found: Dict[str, Tuple[int, str]] = {}
  if not videos_dir:
    return {}
  if "://" in videos_dir:  # gs://, s3://, hdfs://: TensorFlow's file system
    import tensorflow as tf  # noqa: PLC0415 (only for remote folders)
    if not tf.io.gfile.isdir(videos_dir):
      return {}
    walk = tf.io.gfile.walk(videos_dir)
  elif os.path.isdir(videos_dir):
    walk = os.walk(videos_dir)
  else:
    return {}
  for root, dirs, files in walk:
    dirs.sort()
    for name in sorted(files):
      stem, ext = os.path.splitext(name)
      ext = ext.lower()
      if ext not in video.VIDEO_EXTENSIONS:
        continue
      key = (video.VIDEO_EXTENSIONS.index(ext), os.path.join(root, name))
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
