"""Chunked inference: a long video in windows of stored frames.

With N0 linspace tokens over a whole video, one token of a 2-hour video at
10 fps covers 56 s.  Chunked inference covers the video with windows of W
stored frames (W = N0 by default: one token per stored frame), runs the
model on each window as on a video of its own and merges the windows'
detections in video time (`tasks.chunks.WindowMerger`).

Windows (`WindowPlan`): the stride is `W - overlap_frames`; window k starts
at stored frame `k * stride` while it ends inside the video, and one more
window ends exactly at the video's end when those do not reach it, so every
window holds W real frames and every stored frame is in at least one.  An
action up to `overlap_frames` long always lies entirely inside some window.

When (`Chunking.mode`):

  "off"   whole-video mode for every video: linspace sampling of N0 frames
          (TAL, MR, HD), the non-overlapping (or centre) windows of
          `InputConfig.eval_windows` (AS).  What the paper and the reference
          evaluate.
  "on"    windows for every video longer than one window (a shorter video
          is its own single window, i.e. whole-video mode).
  "auto"  windows when whole-video mode would put more than
          `auto_secs_per_token` seconds (default 2.0) between tokens: a video
          of n stored frames at `fps` is chunked iff
          `(n - 1) / (N0 - 1) / fps > auto_secs_per_token` (and n > W).  With
          N0 = 128 at 10 fps that is videos longer than 254 s; QVHighlights
          (N0 = 144 at 1 fps) 287 s; the synthetic benchmark (64 at 5 fps)
          25 s.  Shorter videos keep whole-video mode exactly.

A window example (`examples.Processor.chunk_example`) has `total_frames` =
W, so the task's decoding gives seconds from the window's start, plus the
keys `spec.CHUNK_OFFSET` (the stored frame where its frame axis starts),
`spec.VIDEO_FRAMES` and `spec.CHUNK_LAST`.  Whole-video examples carry them
too (offset 0, one window), and the merge leaves them unchanged.

Two sources of window examples:

* `make_dataset` (evaluation, `tools/evaluate.py --chunking`): records, each
  cut into windows in the graph.  The parsed record holds every frame's
  JPEG bytes (or embedding), as the record format implies; only the
  window's frames are decoded.
* `window_dataset` (the predictor): a Python generator of records that are
  each already one window (or one whole short video), from `stream`, which
  cuts a stream of stored frames into windows as the frames arrive and
  keeps at most about two windows of them (memory flat in the video's
  length).
"""

from __future__ import annotations

import dataclasses
import math
from typing import (
  Callable,
  Generic,
  Iterable,
  Iterator,
  List,
  Optional,
  Tuple,
  TypeVar,
)

import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import examples, input_config, pipeline, sampling

MODES = ("auto", "on", "off")
_T = TypeVar("_T")


@dataclasses.dataclass(frozen=True)
class Chunking:
  """How long videos are cut into windows (module docstring).

  Attributes:
    mode: "auto", "on" or "off".
    window_frames: W, stored frames per window; default (None) the model's
      N0.  Must be >= N0 (AS: exactly N0, one token per frame).
    overlap: overlap of consecutive windows as a fraction of W, in [0, 1).
    overlap_frames: the overlap in stored frames (< W); overrides `overlap`.
    auto_secs_per_token: "auto" chunks a video whose whole-video tokens
      would be more than this many seconds apart.
  """

  mode: str = "auto"
  window_frames: Optional[int] = None
  overlap: float = 0.25
  overlap_frames: Optional[int] = None
  auto_secs_per_token: float = 2.0

  def __post_init__(self):
    if self.mode not in MODES:
      raise ValueError(f"chunking must be one of {MODES}, got {self.mode!r}")
    if self.window_frames is not None and self.window_frames < 1:
      raise ValueError(f"window_frames={self.window_frames}: a window holds"
                       " at least one stored frame (default: the model's N0)")
    if not 0.0 <= self.overlap < 1.0:
      raise ValueError(
          f"window_overlap={self.overlap} must be in [0, 1) (a fraction of"
          " the window): an overlap as long as the window (1.0) never"
          " advances to the next window")
    if self.overlap_frames is not None and self.overlap_frames < 0:
      raise ValueError(f"window_overlap_frames={self.overlap_frames} must be"
                       " >= 0")
    if not self.auto_secs_per_token > 0:
      raise ValueError(f"auto_secs_per_token={self.auto_secs_per_token} must"
                       " be > 0")

  def plan(self, task: str, num_frames: int, fps: float,
           as_windows: str = "all") -> "WindowPlan":
    """The windows for a model of N0 = `num_frames` tokens on videos stored
    at `fps`.

    Args:
      task: one of `spec.TASKS` (classification is never chunked).
      num_frames: the model's N0.
      fps: stored frames per second.
      as_windows: AS whole-video windows, `InputConfig.eval_windows`.

    Raises:
      ValueError: a window shorter than N0 (or, AS, not N0), an overlap not
        shorter than the window, or chunking a classification model.
    """
    n0 = int(num_frames)
    window = n0 if self.window_frames is None else int(self.window_frames)
    if window < n0:
      raise ValueError(
          f"window_frames={window} is shorter than the model's N0={n0}"
          f" frames: a window must hold at least N0 stored frames (one per"
          f" model token; default N0 = {n0})")
    if task == spec.AS and window != n0:
      raise ValueError(
          f"window_frames={window}: action segmentation scores every stored"
          f" frame, so its windows are the model's N0={n0} frames")
    if task == spec.CLS and self.mode != "off":
      raise ValueError("classification takes one clip per video: use"
                       " chunking 'off'")
    if self.overlap_frames is not None:
      overlap = int(self.overlap_frames)
      if overlap >= window:
        raise ValueError(
            f"window_overlap_frames={overlap} >= the window of {window}"
            " frames: the overlap must be shorter than the window (the"
            " windows would not advance)")
    else:
      overlap = int(round(self.overlap * window))
      if overlap >= window:  # overlap < 1, so only for tiny windows
        overlap = window - 1
    if not fps > 0:
      raise ValueError(f"fps must be > 0, got {fps}")
    # Whole-video tokens are (n - 1) / (N0 - 1) / fps seconds apart.
    spacing = self.auto_secs_per_token * fps * max(n0 - 1, 1)
    auto_frames = int(math.floor(spacing + 1e-6)) + 1
    return WindowPlan(task=task, mode=self.mode, num_frames=n0,
                      window=window, stride=window - overlap,
                      auto_frames=max(auto_frames, window),
                      as_windows=as_windows)


@dataclasses.dataclass(frozen=True)
class WindowPlan:
  """`Chunking` resolved for one model and frame rate (plain integers).

  Attributes:
    task: the task.
    mode: "auto", "on" or "off".
    num_frames: N0.
    window: W, stored frames per window.
    stride: frames between consecutive window starts (W - overlap).
    auto_frames: "auto" chunks videos of more stored frames than this.
    as_windows: AS whole-video windows ("all" or "center").
  """

  task: str
  mode: str
  num_frames: int
  window: int
  stride: int
  auto_frames: int
  as_windows: str = "all"

  @property
  def overlap(self) -> int:
    return self.window - self.stride

  def chunked(self, n: int) -> bool:
    """Whether a video of n stored frames is cut into windows."""
    if self.mode == "off":
      return False
    return n > (self.window if self.mode == "on" else self.auto_frames)

  def offsets(self, n: int) -> List[int]:
    """First stored frame of each window of a chunked video of n frames."""
    if n <= self.window:
      return [0]
    out = list(range(0, n - self.window + 1, self.stride))
    if out[-1] < n - self.window:
      out.append(n - self.window)
    return out

  def num_windows(self, n: int) -> int:
    """Model windows of a video of n frames (whole-video mode: 1; AS: the
    config's windows)."""
    if self.chunked(n):
      return len(self.offsets(n))
    if self.task == spec.AS:
      return 1 if self.as_windows == "center" else -(-n // self.num_frames)
    return 1

  def describe(self, n: int) -> str:
    """How a video of n stored frames is sampled, for a report line."""
    if self.chunked(n):
      return (f"{len(self.offsets(n))} windows of {self.window} frames"
              f" (overlap {self.overlap})")
    if self.task == spec.AS:
      return f"{self.num_windows(n)} window(s) of {self.num_frames} frames"
    return f"{self.num_frames} tokens (linspace)"

  def secs_per_token(self, n: int, fps: float) -> float:
    """Seconds between consecutive level-0 tokens for a video of n frames."""
    if self.task == spec.AS:
      return 1.0 / fps
    frames = self.window if self.chunked(n) else n
    if frames <= self.num_frames:
      return 1.0 / fps
    return (frames - 1) / (self.num_frames - 1) / fps

  # -- in the graph ----------------------------------------------------------
  def record_windows(self, n: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """(offsets, lengths), int32 [K]: the examples of a record of n frames
    (`offsets` as `offsets`; whole-video mode: offset 0 and length n, or
    the AS windows of N0 frames)."""
    n = tf.cast(n, tf.int32)
    if self.task == spec.AS:
      if self.as_windows == "center":
        whole = sampling.center_window_offset(n, self.num_frames)[None]
      else:
        whole = tf.range(sampling.num_sliding_windows(n, self.num_frames)
                         ) * self.num_frames
      whole_len = tf.fill(tf.shape(whole), self.num_frames)
    else:
      whole, whole_len = tf.zeros([1], tf.int32), n[None]
    if self.mode == "off":
      return whole, whole_len
    limit = self.window if self.mode == "on" else self.auto_frames

    def chunks():
      count = (n - self.window) // self.stride + 1
      offsets = tf.range(count) * self.stride
      last = n - self.window
      offsets = tf.cond(offsets[-1] < last,
                        lambda: tf.concat([offsets, last[None]], 0),
                        lambda: offsets)
      return offsets, tf.fill(tf.shape(offsets), self.window)

    return tf.cond(n > limit, chunks, lambda: (whole, whole_len))


# ---------------------------------------------------------------------------
# Windows of a stream of frames (the predictor).
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Window(Generic[_T]):
  """Stored frames of one window (or of a whole short video).

  Attributes:
    offset: the video's stored frame shown by `frames[0]`.
    frames: the window's frames, in order.
    video_frames: stored frames of the video (exact on the last window;
      before it, the frames seen so far).
    last: the video's last window.
  """

  offset: int
  frames: List[_T]
  video_frames: int
  last: bool


def stream(frames: Iterable[_T], plan: WindowPlan) -> Iterator[Window[_T]]:
  """Cuts a stream of stored frames into the windows of `plan`.

  A window is yielded once the frame after it (or the end) is read, so its
  `last` flag is known; frames are held only until no later window needs
  them.  At most W + the pending window's W frames are held, or, before
  "auto" decides to chunk, the frames read so far (at most
  `plan.auto_frames`).  A video that is not chunked is one `Window` with
  every frame (whole-video mode).

  Yields:
    `Window`s in video order; the same offsets as `plan.offsets(n)`.
  """
  buf: List[_T] = []
  start = 0  # the video frame of buf[0]
  count = 0
  chunked = False
  k = 0  # the next window
  pending: Optional[Window[_T]] = None
  for frame in frames:
    buf.append(frame)
    count += 1
    chunked = chunked or plan.chunked(count)
    if not chunked:
      continue
    while k * plan.stride + plan.window <= count:
      o = k * plan.stride
      if pending is not None:
        yield pending
      pending = Window(o, buf[o - start:o - start + plan.window], count,
                       False)
      k += 1
    drop = count - plan.window - start  # keep the last W frames
    if drop > 0:
      del buf[:drop]
      start += drop
  if not chunked:
    if count:
      yield Window(0, buf, count, True)
    return
  if (k - 1) * plan.stride < count - plan.window:  # end-aligned last window
    yield pending
    pending = Window(count - plan.window, buf[-plan.window:], count, False)
  pending.video_frames = count
  pending.last = True
  yield pending


# ---------------------------------------------------------------------------
# Datasets of window examples.
# ---------------------------------------------------------------------------
def _window_examples(ds: tf.data.Dataset, proc: examples.Processor,
                     plan: WindowPlan, parallel) -> tf.data.Dataset:
  """(source_file, record_index, serialized, chunk_offset, video_frames,
  last) → one example per window of each record."""

  def windows(source, index, serialized, base, video_frames, last):
    p = proc.parse(source, index, serialized)
    n = tf.cast(p[spec.CLIP_FRAMES], tf.int32)
    offsets, lengths = plan.record_windows(n)
    count = tf.shape(offsets)[0]
    video_frames = tf.where(video_frames > 0, video_frames, n)
    meta = {
        spec.CHUNK_OFFSET: base + (0 * offsets if plan.task == spec.AS
                                   else offsets),
        spec.VIDEO_FRAMES: tf.fill([count], video_frames),
        spec.CHUNK_LAST: tf.cast(tf.logical_and(
            last > 0, tf.range(count) == count - 1), tf.int32),
    }
    return offsets, lengths, meta, p

  def example(offset, length, meta, p):
    seed = tf.stack([tf.constant(0, tf.int64), tf.cast(offset, tf.int64)])
    if plan.task == spec.AS:
      out = proc.window_example(p, offset, seed)
    else:
      out = proc.chunk_example(p, offset, length, seed)
    out.update(meta)
    return out

  ds = ds.map(windows, num_parallel_calls=parallel, deterministic=True)
  ds = ds.flat_map(lambda o, n, m, p: tf.data.Dataset.from_tensor_slices(
      (o, n, m)).map(lambda o1, n1, m1: (o1, n1, m1, p)))
  return ds.map(example, num_parallel_calls=parallel, deterministic=True)


def _batches(ds: tf.data.Dataset, batch_size: int,
             prefetch: Optional[int]) -> tf.data.Dataset:
  ds = ds.batch(batch_size, drop_remainder=False)
  ds = ds.map(lambda b: pipeline.pad_batch(b, batch_size))
  ds = ds.prefetch(prefetch or tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = True
  options.experimental_external_state_policy = (  # the BPE cache
      tf.data.experimental.ExternalStatePolicy.IGNORE)
  return ds.with_options(options)


def make_dataset(file_pattern, config: input_config.InputConfig,
                 chunking: Chunking, *, global_batch_size: int,
                 validate: bool = True,
                 num_parallel_calls: Optional[int] = None,
                 prefetch: Optional[int] = None) -> tf.data.Dataset:
  """Evaluation batches of records cut into windows (module docstring).

  Shards are read one after the other, records in order, each record's
  windows in order; batches are padded and carry `batch_mask` as
  `pipeline.make_dataset(..., is_training=False)`'s.  With chunking "off"
  the examples equal that pipeline's, plus the chunk keys.

  Args:
    file_pattern: glob(s) of the TFRecord shards.
    config: the evaluation `InputConfig` (its `secs_per_timestep` is the
      frame rate of the "auto" rule).
    chunking: the windows.
    global_batch_size: windows per batch.
    validate: check every record and sampled JPEG.
    num_parallel_calls: parallel example processing (default AUTOTUNE).
    prefetch: batches to prefetch (default AUTOTUNE).
  """
  plan = chunking.plan(config.task, config.num_frames,
                       1.0 / config.secs_per_timestep, config.eval_windows)
  files = pipeline.list_files(file_pattern)
  parallel = num_parallel_calls or tf.data.AUTOTUNE

  def read(path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda i, r: (path, i, r, 0, -1, 1))

  ds = tf.data.Dataset.from_tensor_slices(files).flat_map(read)
  ds = _window_examples(ds, examples.Processor(config, False, validate),
                        plan, parallel)
  return _batches(ds, global_batch_size, prefetch)


# A record for `window_dataset`: (source name, index, serialized
# SequenceExample, chunk_offset, video_frames, last).
WindowRecord = Tuple[str, int, bytes, int, int, int]


def window_dataset(records_fn: Callable[[], Iterator[WindowRecord]],
                   config: input_config.InputConfig, *,
                   global_batch_size: int, validate: bool = True,
                   prefetch: int = 2) -> tf.data.Dataset:
  """Evaluation batches of records that are each one window (or one whole
  short video), made by a Python generator (the predictor's `stream`).

  Each record is sampled in whole-video mode (a window of W >= N0 frames:
  linspace over it; AS: its N0-frame window); its `chunk_offset`,
  `video_frames` and `last` come with it.  Few batches are prefetched, so
  the generator runs at most a few windows ahead of the model.
  """
  plan = Chunking(mode="off").plan(config.task, config.num_frames,
                                   1.0 / config.secs_per_timestep,
                                   config.eval_windows)
  signature = (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64),
               tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32),
               tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32))
  ds = tf.data.Dataset.from_generator(records_fn, output_signature=signature)
  ds = _window_examples(ds, examples.Processor(config, False, validate),
                        plan, 2)
  return _batches(ds, global_batch_size, prefetch)
