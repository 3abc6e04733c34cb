"""One video -> its serialised records (what the worker processes run).

`convert_video` decodes the video of a planned `common.VideoItem` with
`unloc_tf.data.video` (stored frame i = time i / fps, short side resized
down to `short_side`; a smaller video is stored at its source size, never
upscaled, and reported: stored_at_source_size), encodes the frames as JPEG
and serialises each planned record as a `tf.SequenceExample` of
`unloc_tf.data.records`:

  * segments are clipped to [0, decoded duration] (segment_clipped; nothing
    left: segment_outside_video) and indexed start_index = round(start *
    fps), end_index = min(round(end * fps), n - 1) (round half up, clamped
    to the n stored frames, end inclusive), as `unloc_tf.data.synthetic` and
    the pipeline read them; timestamps keep the (clipped) annotated times in
    microseconds;
  * an MR / HD record left without a segment is dropped (no_segments);
    an unlabeled record (`RecordPlan.queries`) has no segment by design and
    is written with its queries in `segment/label/string`;
  * AS: per-frame labels, later steps overwrite earlier ones, no step =
    background (no label);
  * Kinetics: a full video is cut to the clip window (clip_clipped /
    clip_outside_video); otherwise an annotated duration that differs from
    the decoded one by more than the tolerance is reported
    (duration_mismatch).

The context map fields are serialised sorted by key, so the bytes do not
depend on the process.  Never raises for bad input: missing / undecodable
videos and bad segments become report entries (`common.REASONS`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
from typing import Iterator, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf import spec
from unloc_tf.data import records
from unloc_tf.data import video as video_lib
from unloc_tf.datasets import common, qvhighlights


@dataclasses.dataclass(frozen=True)
class Params:
  """What a worker needs besides the item."""

  task: str
  fps: float
  short_side: int
  jpeg_quality: int
  duration_tolerance: float
  upscale: bool = False


@dataclasses.dataclass
class VideoResult:
  """The records of one video and the problems found."""

  video_id: str
  serialized: List[bytes]
  issues: List[dict]
  converted: bool = False
  frames: int = 0
  segments: int = 0
  without_targets: int = 0
  max_queries: int = 0


def _frame_index(t: float, fps: float) -> int:
  """round(t * fps), half up (`unloc_tf.data.synthetic`'s rule)."""
  return int(math.floor(t * fps + 0.5))


def source_size(path: str, fps: float) -> Tuple[int, int]:
  """(width, height) of the video's first frame at the source size (square
  pixels), from a one-frame decode.

  Raises:
    video_lib.VideoDecodeError: the file cannot be decoded.
  """
  frames = iter(video_lib.VideoReader(path, fps, 0, max_frames=1))
  try:
    height, width = next(frames).shape[:2]
  finally:
    frames.close()  # closes the container
  return int(width), int(height)


def stored_short_side(path: str, params: Params) -> Tuple[int, Optional[dict]]:
  """The short side to decode `path` at and, for a video smaller than
  `params.short_side` (not upscaled: 0 = the source size), the report
  fields that say so.

  Raises:
    video_lib.VideoDecodeError: the file cannot be decoded.
  """
  if params.upscale or params.short_side <= 0:
    return params.short_side, None
  width, height = source_size(path, params.fps)
  if min(width, height) >= params.short_side:
    return params.short_side, None
  return 0, {"source_size": [width, height],
             "short_side": params.short_side,
             "detail": f"short side {min(width, height)} < --short_side="
                       f"{params.short_side}: stored at the source size,"
                       " not upscaled"}


def _decode_jpegs(path: str, params: Params, short_side: int,
                  max_frames: Optional[int]) -> Tuple[List[bytes], float]:
  """Stored frames as JPEG bytes (encoded as they are decoded) + duration."""
  reader = video_lib.VideoReader(path, params.fps, short_side, max_frames)
  jpegs: List[bytes] = []
  last = None
  for frame in reader:
    if frame is last:  # the reader repeats a frame (upsampling)
      jpegs.append(jpegs[-1])
      continue
    jpegs.extend(video_lib.frames_to_jpeg(frame[None], params.jpeg_quality))
    last = frame
  return jpegs, float(reader.duration)


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
  """`path` itself, or for a URL (gs://..., any `tf.io.gfile` file system:
  the decoder reads local files) a temporary local copy, deleted after."""
  if "://" not in path:
    yield path
    return
  import tensorflow as tf  # noqa: PLC0415 (only for remote videos)
  fd, local = tempfile.mkstemp(suffix=os.path.splitext(path)[1])
  os.close(fd)
  try:
    try:
      tf.io.gfile.copy(path, local, overwrite=True)
    except (tf.errors.OpError, OSError) as e:
      raise video_lib.VideoDecodeError(
          path, "open", f"cannot copy it here to decode it: {e}") from e
    try:
      yield local
    except video_lib.VideoDecodeError as e:  # name the URL, not the copy
      problem = str(e).split(": ", 2)[-1]
      raise video_lib.VideoDecodeError(path, e.reason, problem) from e
  finally:
    os.remove(local)


def convert_video(item: common.VideoItem, params: Params) -> VideoResult:
  """Decodes one video and serialises its records (the module's rules).

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
    issues.append(common.issue(
        common.MISSING_VIDEO, vid,
        detail=f"no file named any of {tried} with a video extension"))
    return result
  fps = params.fps
  max_frames = None
  if item.window is not None:
    max_frames = max(1, _frame_index(item.window[1], fps))
  try:
    with local_copy(item.path) as path:
      short_side, kept = stored_short_side(path, params)
      jpegs, duration = _decode_jpegs(path, params, short_side, max_frames)
  except video_lib.VideoDecodeError as e:
    issues.append(common.issue(common.UNDECODABLE_VIDEO, vid, error=e.reason,
                               detail=str(e)))
    return result
  if kept is not None:
    issues.append(common.issue(common.SOURCE_SIZE_KEPT, vid, **kept))
  if item.window is not None:
    start, end = item.window
    first = _frame_index(start, fps)
    if first >= len(jpegs) or start >= duration:
      issues.append(common.issue(common.CLIP_OUTSIDE, vid,
                                 annotation=[start, end],
                                 video_duration=duration))
      return result
    if end > duration:
      issues.append(common.issue(common.CLIP_CLIPPED, vid,
                                 annotation=[start, end],
                                 stored=[start, duration],
                                 video_duration=duration))
      end = duration
    jpegs = jpegs[first:]
    duration = end - start
  elif item.annotation_duration is not None and abs(
      item.annotation_duration - duration) > params.duration_tolerance:
    issues.append(common.issue(common.DURATION_MISMATCH, vid,
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
        issues.append(common.issue(common.SEGMENT_OUTSIDE, vid,
                                   video_duration=duration, **where))
        continue
      if (start, end) != (sp.start, sp.end):
        issues.append(common.issue(common.SEGMENT_CLIPPED, vid,
                                   stored=[start, end],
                                   video_duration=duration, **where))
      si = min(max(_frame_index(start, fps), 0), n - 1)
      ei = min(max(_frame_index(end, fps), si), n - 1)
      segments.append(records.Segment(si, ei, sp.label_index,
                                      sp.label_string, start, end))
    if params.task in (spec.MR, spec.HD) and not segments and (
        not rec.queries):
      issues.append(common.issue(common.NO_SEGMENTS, vid, **ident))
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
          qvhighlights.SECS_PER_CLIP)
    record = records.VideoRecord(
        media_id=rec.media_id, secs_per_timestep=1.0 / fps, frames=jpegs,
        segments=segments, example_id=rec.example_id, duration=duration,
        saliency=saliency, frame_labels=frame_labels,
        clip_labels=rec.clip_labels,
        clip_label_strings=rec.clip_label_strings)
    # Deterministic: map fields (the context) sorted by key, so the bytes
    # do not depend on the process that serialised them.
    result.serialized.append(serialize(record, params.task, rec.queries)
                             .SerializeToString(deterministic=True))
    result.segments += len(segments)
    result.without_targets += int(not segments and not rec.clip_labels)
    result.max_queries = max(result.max_queries,
                             len(segments) + len(rec.queries))
  return result


def serialize(record: records.VideoRecord, task: str,
               queries: Sequence[str]):
  """The record's `tf.SequenceExample`; an unlabeled record (`queries`, no
  segment) holds its queries in `segment/label/string`."""
  if not queries:
    return records.to_sequence_example(record, task)
  if record.segments or record.saliency is not None:
    raise ValueError(f"record {record.media_id!r}: an unlabeled record"
                     " (queries without segments) has no segment or"
                     " saliency")
  # The task checks need targets: the contract checks only, then the
  # queries (unlabeled MR / HD: captions without segments).
  ex = records.to_sequence_example(record, None)
  ex.context.feature[spec.SEGMENT_LABEL_STRING].bytes_list.value.extend(
      q.encode("utf-8") for q in queries)
  return ex
