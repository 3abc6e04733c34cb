"""Video decoding and encoding (PyAV): the one module that opens video files.

The training pipeline never decodes videos (its input is JPEG bytes in
TFRecords); the record builder (`unloc_tf.datasets`), the predictor and the
synthetic benchmark's mp4 writer go through here.  PyAV (`av==18.1.0`, the
optional `[data]` extra) is imported on first use, so importing this module
costs nothing.

Sampling rule (every caller relies on it; tests/data/video_test.py checks it
on videos whose frames encode their index):

  * Presentation time of a source frame = (pts - stream start) * time_base,
    in seconds, where the stream start is the video stream's `start_time`
    (the first decoded frame's pts when the stream has none).
  * `duration` = the video stream's duration; else the container's
    (minus the stream start); else the end of the last decoded frame (its
    presentation time + one source frame).
  * Stored frame i (i = 0 .. n-1) represents time t_i = i / fps, with
    n = max(1, floor(duration * fps + 1e-6)) (capped by `max_frames`).
  * Its pixels are those of the LAST decoded source frame whose presentation
    time is <= t_i + 0.5 / source_fps (half a source frame of tolerance, so
    a source frame serves the nearest t_i; an exact tie goes to the later
    frame).  Times before the first frame take the first frame; times after
    the last decoded frame take the last frame.
  * A decode that ends more than max(1 s, 2 source frames) before
    `duration` is a truncated file: `VideoDecodeError` (reason
    "truncated"), not silently repeated frames.

Resizing: the short side becomes `short_side` (aspect ratio kept, the long
side rounded to the nearest pixel; non-square pixels are made square using
the sample aspect ratio) with FFmpeg's swscale: AREA interpolation
(anti-aliased downscaling), ACCURATE_RND, BITEXACT and full-resolution
chroma, one thread, so the output does not depend on the CPU or the thread
count.  `short_side=0` keeps the source size.  Colour conversion uses the
frame's colourspace tags (BT.601 when untagged); rotation metadata is
ignored.  The decoder runs single-threaded, so parallel workers (one process
each) do not oversubscribe the cores.
"""

from __future__ import annotations

import dataclasses
import fractions
import math
import os
from typing import Dict, Iterator, List, Optional

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v", ".flv",
                    ".mpg", ".mpeg", ".3gp", ".ogv", ".wmv", ".ts")
# A decode that stops this long before the stated duration is truncated.
_TRUNCATION_SECONDS = 1.0
_TRUNCATION_FRAMES = 2
_EPS = 1e-6  # seconds; float noise of pts * time_base arithmetic



def _av():
  """The PyAV module, imported on first use (the optional `[data]` extra)."""
  try:
    import av  # pylint: disable=g-import-not-at-top
  except ImportError as e:  # pragma: no cover - depends on the environment.
    raise ImportError(
        "decoding and writing videos needs PyAV: pip install 'av==18.1.0'"
        " (or pip install 'unloc_tf[data]')") from e
  return av


def _interpolation():
  """swscale flags: anti-aliased area averaging, full-resolution chroma,
  bit-exact (no CPU-specific SIMD paths) and correctly rounded."""
  i = _av().video.reformatter.Interpolation
  return (i.AREA | i.ACCURATE_RND | i.BITEXACT | i.FULL_CHR_H_INT
          | i.FULL_CHR_H_INP)


def _decode_errors() -> tuple:
  """Errors PyAV / the OS raise on unreadable input."""
  return (_av().error.FFmpegError, OSError, EOFError, ValueError,
          RuntimeError, MemoryError)


class VideoDecodeError(ValueError):
  """A video that cannot be (fully) decoded; the message names the file.

  Attributes:
    path: the video file.
    reason: "missing", "open" (not a readable container), "no_video_stream",
      "decode" (corrupt data), "no_frames" or "truncated".
  """

  def __init__(self, path: str, reason: str, problem: str):
    super().__init__(f"{path}: {reason}: {problem}")
    self.path = path
    self.reason = reason


@dataclasses.dataclass
class DecodedVideo:
  """Frames sampled at a fixed rate (see the module docstring for the rule).

  Attributes:
    frames: uint8 [n, H, W, 3], the short side resized to `short_side`.
    fps: sampling rate of `frames` (the requested fps); frame i shows time
      i / fps seconds.
    source_fps: the stream's average frame rate (0.0 when unknown).
    duration: seconds, from the stream / container (falls back to the end of
      the last decoded frame).
  """

  frames: np.ndarray
  fps: float
  source_fps: float
  duration: float


def output_size(width: int, height: int, short_side: int) -> tuple[int, int]:
  """(width, height) with the short side = `short_side` (0: unchanged)."""
  if short_side <= 0:
    return width, height
  if height <= width:
    return max(1, int(round(width * short_side / height))), short_side
  return short_side, max(1, int(round(height * short_side / width)))


class VideoReader:
  """Streams the frames of one video at `fps` (the module's sampling rule).

  Iterating yields uint8 [H, W, 3] arrays, one per stored frame, in order;
  the container is closed at the end of the iteration (or by `close`).  Use
  it instead of `decode_video` to JPEG-encode long videos frame by frame
  without holding every decoded frame in memory.

  Attributes:
    path: the video file.
    fps: requested sampling rate.
    source_fps: the stream's average frame rate (0.0 when unknown).
    duration: seconds; None until the end of the iteration when neither the
      stream nor the container states it.
    num_frames: stored frames yielded so far.

  Raises:
    VideoDecodeError: from the constructor (missing file, unreadable
      container, no video stream) or while iterating (corrupt data, no
      frames, truncated file).
  """

  def __init__(self, path: str, fps: float, short_side: int = 256,
               max_frames: Optional[int] = None):
    if not fps > 0:
      raise ValueError(f"fps must be positive, got {fps}")
    if max_frames is not None and max_frames < 1:
      raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    self.path = path
    self.fps = float(fps)
    self.short_side = int(short_side)
    self.max_frames = max_frames
    self.num_frames = 0
    if not os.path.exists(path):
      raise VideoDecodeError(path, "missing", "no such file")
    av = _av()
    self._interpolation = _interpolation()
    try:
      self._container = av.open(path, "r")
    except _decode_errors() as e:
      raise VideoDecodeError(path, "open",
                             f"cannot open the container ({e})") from e
    try:
      if not self._container.streams.video:
        raise VideoDecodeError(path, "no_video_stream",
                               "the container has no video stream")
      stream = self._stream = self._container.streams.video[0]
      stream.codec_context.thread_count = 1
      stream.codec_context.thread_type = "NONE"
      rate = stream.average_rate or stream.guessed_rate or stream.base_rate
      self.source_fps = float(rate) if rate else 0.0
      tb = stream.time_base
      self._start_pts = stream.start_time
      self._sar = (stream.sample_aspect_ratio
                   or stream.codec_context.sample_aspect_ratio)
      self.duration = None
      if stream.duration is not None and tb is not None:
        self.duration = float(stream.duration * tb)
      elif self._container.duration is not None:
        start = float(stream.start_time * tb) if (
            stream.start_time is not None and tb is not None) else 0.0
        self.duration = max(0.0, self._container.duration / av.time_base
                            - start)
      if self.duration is not None and not self.duration > 0:
        self.duration = None  # unusable header value: use the frames
    except VideoDecodeError:
      self._container.close()
      raise
    except _decode_errors() as e:
      self._container.close()
      raise VideoDecodeError(path, "open",
                             f"cannot read the stream header ({e})") from e

  def close(self) -> None:
    self._container.close()

  def _num_targets(self, duration: Optional[float]) -> Optional[int]:
    if duration is None:
      return None
    n = max(1, int(math.floor(duration * self.fps + 1e-6)))
    if self.max_frames is not None:
      n = min(n, self.max_frames)
    return n

  def _rgb(self, frame) -> np.ndarray:  # frame: av.VideoFrame
    width, height = frame.width, frame.height
    sar = self._sar
    if sar is not None and sar > 0 and sar != 1:
      width = max(1, int(round(width * float(sar))))
    w, h = output_size(width, height, self.short_side)
    return frame.reformat(width=w, height=h, format="rgb24",
                          interpolation=self._interpolation,
                          threads=1).to_ndarray()

  def __iter__(self) -> Iterator[np.ndarray]:
    try:
      yield from self._frames()
    finally:
      self._container.close()

  def _frames(self) -> Iterator[np.ndarray]:
    path, fps = self.path, self.fps
    stream = self._stream
    tb = stream.time_base
    step = 1.0 / self.source_fps if self.source_fps > 0 else 0.0
    tol = 0.5 * step + _EPS
    n = self._num_targets(self.duration)
    start_pts = self._start_pts
    prev = prev_time = None
    prev_rgb = None  # the converted `prev` (reused when upsampling)
    i = 0
    try:
      for frame in self._container.decode(stream):
        if frame.pts is None:
          t = (prev_time + step) if prev_time is not None else 0.0
        else:
          if start_pts is None:
            start_pts = frame.pts
          t = float((frame.pts - start_pts) * tb)
        # `prev` is the last frame <= t_i + tol for every target before t.
        while prev is not None and t > i / fps + tol:
          if prev_rgb is None:
            prev_rgb = self._rgb(prev)
          yield prev_rgb
          i += 1
          self.num_frames = i
          if n is not None and i >= n:
            return
          if self.max_frames is not None and i >= self.max_frames:
            return
        prev, prev_time, prev_rgb = frame, t, None
    except _decode_errors() as e:
      raise VideoDecodeError(
          path, "decode", f"decoding failed after {self.num_frames} stored"
          f" frames ({e})") from e
    if prev is None:
      raise VideoDecodeError(path, "no_frames", "no video frame decoded")
    end = prev_time + step
    if self.duration is None:
      self.duration = end
      n = self._num_targets(end)
    elif end < self.duration - max(_TRUNCATION_SECONDS,
                                   _TRUNCATION_FRAMES * step):
      raise VideoDecodeError(
          path, "truncated", f"the frames end at {end:.3f} s but the"
          f" {'stream' if stream.duration is not None else 'container'}"
          f" lasts {self.duration:.3f} s")
    try:
      while i < n:
        if prev_rgb is None:
          prev_rgb = self._rgb(prev)
        yield prev_rgb
        i += 1
        self.num_frames = i
    except _decode_errors() as e:
      raise VideoDecodeError(path, "decode", f"conversion failed ({e})") from e


def decode_video(path: str, fps: float, short_side: int = 256,
                 max_frames: Optional[int] = None) -> DecodedVideo:
  """Decodes a video at `fps` frames per second (module docstring's rule).

  Args:
    path: the video file (any container / codec FFmpeg reads).
    fps: stored frames per second; stored frame i shows time i / fps.
    short_side: the short side of the output frames in pixels (0 keeps the
      source size).
    max_frames: stop after this many stored frames (the first ones).

  Returns:
    `DecodedVideo` with frames uint8 [n, H, W, 3].

  Raises:
    VideoDecodeError: missing, unreadable, corrupt or truncated file (the
      message names the file and what failed).
  """
  reader = VideoReader(path, fps, short_side, max_frames)
  frames = [np.array(f) for f in reader]  # copies: frames may repeat
  return DecodedVideo(frames=np.stack(frames), fps=float(fps),
                      source_fps=reader.source_fps,
                      duration=float(reader.duration))


def frames_to_jpeg(frames: np.ndarray, quality: int = 90) -> List[bytes]:
  """JPEG-encodes uint8 frames [n, H, W, 3] (`records.encode_jpeg`: 4:4:4
  chroma, the same bytes as every other writer of the records)."""
  # TensorFlow is only needed here: importing this module stays light.
  from unloc_tf.data import records  # pylint: disable=g-import-not-at-top

  return records.encode_jpeg(frames, quality=quality)


def write_mp4(path: str, frames: np.ndarray, fps: float,
              container_format: Optional[str] = None,
              options: Optional[Dict[str, str]] = None) -> None:
  """Writes uint8 [n, H, W, 3] frames as h264 / yuv420p, one thread.

  `container_format` overrides the one the file name implies (e.g.
  "matroska", "h264"); `options` are muxer options (e.g.
  {"movflags": "faststart"}).
  """
  av = _av()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  rate = fractions.Fraction(fps).limit_denominator(1001)
  with av.open(path, "w", format=container_format,
               options=options or {}) as container:
    stream = container.add_stream("libx264", rate=rate)
    stream.width = frames.shape[2]
    stream.height = frames.shape[1]
    stream.pix_fmt = "yuv420p"
    # Tiny frames: libx264's per-frame overhead dominates, so "ultrafast".
    stream.options = {"crf": "18", "preset": "ultrafast"}
    stream.codec_context.thread_count = 1
    for f in frames:
      frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f),
                                         format="rgb24")
      for packet in stream.encode(frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
