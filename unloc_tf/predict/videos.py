"""Video files → the records evaluation would read for them.

A video is decoded as `unloc_tf.datasets` converts one (`data.video`
sampling at `fps`, short side `short_side`, JPEG), so the detections of a
prediction equal what evaluation reports for records built from the same
file: stored frame i shows time i / fps.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf import spec
from unloc_tf.data import records
from unloc_tf.data import video as video_lib


def list_videos(videos: Sequence[str] = (), videos_dir: Optional[str] = None
                ) -> List[str]:
  """`--video` paths, then the video files of `--videos_dir` (sorted)."""
  out = list(videos or ())
  if videos_dir:
    if not os.path.isdir(videos_dir):
      raise FileNotFoundError(f"--videos_dir: no such directory: {videos_dir}")
    found = sorted(
        os.path.join(videos_dir, f) for f in os.listdir(videos_dir)
        if f.lower().endswith(video_lib.VIDEO_EXTENSIONS))
    if not found:
      raise FileNotFoundError(f"{videos_dir}: no video files"
                              f" ({', '.join(video_lib.VIDEO_EXTENSIONS)})")
    out += found
  if not out:
    raise ValueError("no video: give --video or --videos_dir")
  for path in out:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"--video: no such file: {path}")
  return out


def output_names(paths: Sequence[str]) -> List[str]:
  """Output names: the file name without extension, made unique."""
  names, seen = [], {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    k = seen.get(stem, 0)
    seen[stem] = k + 1
    names.append(stem if k == 0 else f"{stem}_{k}")
  return names


@dataclasses.dataclass
class Video:
  """One decoded video.

  Attributes:
    path: the file.
    name: output name (unique).
    jpegs: stored frames, JPEG bytes [n] (frame i shows time i / fps).
    fps: the sampling rate.
    duration: seconds.
  """

  path: str
  name: str
  jpegs: List[bytes]
  fps: float
  duration: float

  @property
  def num_frames(self) -> int:
    return len(self.jpegs)


def jpegs(reader: Iterable[np.ndarray], jpeg_quality: int = 90
          ) -> Iterator[bytes]:
  """The stored frames of a `data.video.VideoReader` as JPEG bytes, each
  encoded as it is decoded (the same bytes as `frames_to_jpeg` of
  `decode_video`'s frames; a repeated frame, when upsampling, is encoded
  once)."""
  last = jpeg = None
  for frame in reader:
    if frame is not last:
      jpeg = video_lib.frames_to_jpeg(frame[None], jpeg_quality)[0]
      last = frame
    yield jpeg


def decode(path: str, name: str, fps: float, short_side: int,
           jpeg_quality: int = 90) -> Video:
  """Decodes a whole video as the record builder does (JPEG bytes of every
  stored frame in memory; never all of its pixels)."""
  reader = video_lib.VideoReader(path, fps, short_side)
  frames = list(jpegs(reader, jpeg_quality))
  return Video(path, name, frames, float(fps), float(reader.duration))


def video_records(video: Video, task: str, queries: Sequence[str],
                  num_captions: int) -> List[Tuple[records.VideoRecord,
                                                   List[str]]]:
  """The records evaluation would read for this video and these texts.

  TAL / AS: one record, no segments (class names come with the config).
  MR: one record per `num_captions` queries (`example_id` = chunk index);
  HD: one record per query (`example_id` = query index).  A query rides on a
  dummy segment spanning the video (the pipeline reads captions from the
  segments); it only affects the evaluator's metrics, never detections.

  Returns:
    [(record, the queries of the record)].
  """
  n = video.num_frames
  spt = 1.0 / video.fps
  base = dict(media_id=video.name, secs_per_timestep=spt,
              frames=video.jpegs, duration=video.duration)
  if task in (spec.TAL, spec.AS):
    return [(records.VideoRecord(**base), [])]
  end = max(video.duration, n * spt)

  def seg(query, label):
    return records.Segment(0, n - 1, label, query, 0.0, end)

  if task == spec.HD:
    return [(records.VideoRecord(**base, segments=[seg(q, 0)],
                                 example_id=i), [q])
            for i, q in enumerate(queries)]
  out = []
  for c in range(0, len(queries), num_captions):
    chunk = list(queries[c:c + num_captions])
    out.append((records.VideoRecord(
        **base, segments=[seg(q, -1) for q in chunk],
        example_id=c // num_captions), chunk))
  return out


def temporal_resolution(task: str, num_stored: int, num_tokens: int,
                        fps: float) -> float:
  """Seconds between consecutive level-0 model tokens."""
  if task == spec.AS or num_stored <= num_tokens:
    return 1.0 / fps  # every stored frame is a token (AS windows, or
    # linspace with repeated frames)
  return (num_stored - 1) / (num_tokens - 1) / fps
