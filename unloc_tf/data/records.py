"""Writers of the record contract: one `tf.train.SequenceExample` per example.

The keys are the reference's (DMVR / MediaSequence, see `unloc_tf.spec` and
reference_spec.md §1.1), so records written here also load in the authors'
code, and records written for the authors' code load here unchanged.

One example is described by a `VideoRecord`; `validate_for_task` checks what a
task needs, `to_sequence_example` serialises it, and `write_shards` writes
TFRecord shards named `<prefix>-00000-of-00008.tfrecord`.

Damaged shards: `count_records` reads only the length headers (one seek per
record) and finds a truncated shard; `check_shard` reads every byte and also
finds a corrupted one (CRC mismatch); `locate_damage` turns TensorFlow's
`DataLossError` ("truncated record at 10779092", no file name) into a
`DamagedShardError` naming the shard and the record.

Task conventions:
  * TAL: one record per video, every segment with `label_index >= 0`.
  * MR: one record per video (ActivityNet Captions) or per query (Charades-STA,
    with `example_id`); the caption of a segment is its `label_string`.
  * HD: one record per (video, query): every relevant window is a segment with
    `label_index = 0` and `label_string = query`; per-clip `saliency`.
  * AS: one record per video, step segments with `label_index`; optional
    per-frame labels (`frame_labels`).
  * CLS: one record per clip with `clip_labels` (Kinetics-style).
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from typing import Iterable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from unloc_tf import spec


@dataclasses.dataclass
class Segment:
  """A temporal segment in stored-frame units.

  Attributes:
    start_index: first stored frame of the segment.
    end_index: last stored frame (inclusive).
    label_index: class index (TAL/AS), 0 for HD, -1 when not applicable (MR).
    label_string: caption (MR), query (HD) or class name (optional elsewhere).
    start_time: start in seconds; defaults to start_index * secs_per_timestep.
    end_time: end in seconds; defaults to end_index * secs_per_timestep (the
      frame-to-time rule the decoder uses, `time = index * secs_per_timestep`),
      so a one-frame segment needs explicit times.
  """

  start_index: int
  end_index: int
  label_index: int = -1
  label_string: str = ""
  start_time: Optional[float] = None
  end_time: Optional[float] = None


@dataclasses.dataclass
class Saliency:
  """Per-clip saliency ratings (QVHighlights: 2 s clips, 3 annotators).

  Attributes:
    clip_index: ids of the rated clips, [R].
    scores: ratings, float [R, A] (A annotators; QVHighlights uses 0..4).
    secs_per_clip: clip length in seconds.
  """

  clip_index: Sequence[int]
  scores: np.ndarray
  secs_per_clip: float = 2.0


@dataclasses.dataclass
class VideoRecord:
  """Everything one record holds.  Give `frames` or `embeddings` (or both).

  Attributes:
    media_id: video id.
    secs_per_timestep: seconds between stored frames (1 / fps).
    frames: JPEG bytes, one per stored frame, [n].
    embeddings: precomputed frame embeddings, float [n, D].
    segments: the annotated segments.
    example_id: per-query integer id (optional).
    duration: duration of the source video in seconds (optional).
    saliency: per-clip saliency (HD, optional).
    frame_labels: per stored frame, a list of class indices ([] = background).
    clip_labels: class indices of the whole clip (classification).
    clip_label_strings: class names of the whole clip (classification).
    segment_embeddings: precomputed caption embeddings, float [S, D].
  """

  media_id: str
  secs_per_timestep: float
  frames: Optional[Sequence[bytes]] = None
  embeddings: Optional[np.ndarray] = None
  segments: Sequence[Segment] = ()
  example_id: Optional[int] = None
  duration: Optional[float] = None
  saliency: Optional[Saliency] = None
  frame_labels: Optional[Sequence[Sequence[int]]] = None
  clip_labels: Sequence[int] = ()
  clip_label_strings: Sequence[str] = ()
  segment_embeddings: Optional[np.ndarray] = None

  @property
  def num_frames(self) -> int:
    if self.frames is not None:
      return len(self.frames)
    if self.embeddings is not None:
      return int(np.shape(self.embeddings)[0])
    return 0


class RecordError(ValueError):
  """A record that breaks the contract; the message names the field."""


def _fail(record: VideoRecord, field: str, message: str) -> None:
  raise RecordError(f"record '{record.media_id}': field '{field}': {message}")


def validate(record: VideoRecord, task: Optional[str] = None) -> None:
  """Checks a record against the contract (and a task's needs).

  Raises:
    RecordError: naming the record and the field at fault.
  """
  n = record.num_frames
  if record.frames is None and record.embeddings is None:
    _fail(record, spec.IMAGE_ENCODED, "neither frames nor embeddings given")
  if n <= 0:
    _fail(record, spec.CLIP_FRAMES, "the video has no frames")
  if record.frames is not None and record.embeddings is not None:
    if len(record.frames) != int(np.shape(record.embeddings)[0]):
      _fail(
          record,
          spec.IMAGE_EMBEDDING,
          f"{np.shape(record.embeddings)[0]} embeddings for"
          f" {len(record.frames)} frames",
      )
  if record.embeddings is not None and np.ndim(record.embeddings) != 2:
    _fail(record, spec.IMAGE_EMBEDDING, "embeddings must be [n, D]")
  if not record.secs_per_timestep > 0:
    _fail(
        record,
        spec.SECS_PER_TIMESTEP,
        f"must be positive, got {record.secs_per_timestep}",
    )
  for k, seg in enumerate(record.segments):
    where = f"segment {k}"
    if seg.end_index < seg.start_index:
      _fail(
          record,
          spec.SEGMENT_END_INDEX,
          f"{where} is reversed ({seg.start_index} > {seg.end_index})",
      )
    if seg.start_index < 0 or seg.end_index >= n:
      _fail(
          record,
          spec.SEGMENT_START_INDEX
          if seg.start_index < 0
          else spec.SEGMENT_END_INDEX,
          f"{where} [{seg.start_index}, {seg.end_index}] is outside the"
          f" video's {n} frames",
      )
    st, et = _segment_times(record, seg)
    if et <= st:
      _fail(
          record,
          spec.SEGMENT_END_TIMESTAMP,
          f"{where} has zero or negative length ({st} s to {et} s)",
      )
  if record.frame_labels is not None and len(record.frame_labels) != n:
    _fail(
        record,
        spec.FRAME_LABEL_INDEX,
        f"{len(record.frame_labels)} frame labels for {n} frames",
    )
  if record.saliency is not None:
    scores = np.asarray(record.saliency.scores)
    if scores.ndim != 2 or scores.shape[0] != len(record.saliency.clip_index):
      _fail(
          record,
          spec.SALIENCY_SCORES,
          f"scores of shape {scores.shape} for"
          f" {len(record.saliency.clip_index)} clips; expected [R, A]",
      )
  if record.segment_embeddings is not None:
    shape = np.shape(record.segment_embeddings)
    if len(shape) != 2 or shape[0] != len(record.segments):
      _fail(
          record,
          spec.SEGMENT_LABEL_EMBEDDING,
          f"shape {shape} for {len(record.segments)} segments",
      )
  if task is None:
    return
  if task in (spec.TAL, spec.AS):
    for k, seg in enumerate(record.segments):
      if seg.label_index < 0:
        _fail(
            record,
            spec.SEGMENT_LABEL_INDEX,
            f"segment {k} has no class (label_index {seg.label_index})",
        )
  elif task == spec.MR:
    if not record.segments:
      _fail(record, spec.SEGMENT_LABEL_STRING, "no captions")
    for k, seg in enumerate(record.segments):
      if not seg.label_string:
        _fail(record, spec.SEGMENT_LABEL_STRING, f"segment {k} has no caption")
  elif task == spec.HD:
    queries = {seg.label_string for seg in record.segments}
    if len(queries) != 1 or "" in queries:
      _fail(
          record,
          spec.SEGMENT_LABEL_STRING,
          "HD records hold one non-empty query shared by all their windows",
      )
    if any(seg.label_index != 0 for seg in record.segments):
      _fail(record, spec.SEGMENT_LABEL_INDEX, "HD windows must have label 0")
  elif task == spec.CLS:
    if not record.clip_labels:
      _fail(record, spec.CLIP_LABEL_INDEX, "no clip label")
  elif task not in spec.TASKS:
    raise ValueError(f"unknown task {task!r}; expected one of {spec.TASKS}")


def _segment_times(record: VideoRecord, seg: Segment):
  start = (
      seg.start_time
      if seg.start_time is not None
      else seg.start_index * record.secs_per_timestep
  )
  end = (
      seg.end_time
      if seg.end_time is not None
      else seg.end_index * record.secs_per_timestep
  )
  return float(start), float(end)


def _int64(values: Iterable[int]) -> tf.train.Feature:
  return tf.train.Feature(
      int64_list=tf.train.Int64List(value=[int(v) for v in values])
  )


def _float(values: Iterable[float]) -> tf.train.Feature:
  return tf.train.Feature(
      float_list=tf.train.FloatList(value=[float(v) for v in values])
  )


def _bytes(values: Iterable[bytes | str]) -> tf.train.Feature:
  return tf.train.Feature(
      bytes_list=tf.train.BytesList(
          value=[v.encode("utf-8") if isinstance(v, str) else v for v in values]
      )
  )


def to_sequence_example(
    record: VideoRecord, task: Optional[str] = None
) -> tf.train.SequenceExample:
  """Serialises a validated record to a `tf.train.SequenceExample`."""
  validate(record, task)
  ex = tf.train.SequenceExample()
  ctx = ex.context.feature
  ctx[spec.CLIP_FRAMES].CopyFrom(_int64([record.num_frames]))
  ctx[spec.MEDIA_ID].CopyFrom(_bytes([record.media_id]))
  ctx[spec.SECS_PER_TIMESTEP].CopyFrom(_float([record.secs_per_timestep]))
  if record.example_id is not None:
    ctx[spec.EXAMPLE_ID].CopyFrom(_int64([record.example_id]))
  if record.duration is not None:
    ctx[spec.DURATION].CopyFrom(_float([record.duration]))
  segs = list(record.segments)
  times = [_segment_times(record, s) for s in segs]
  ctx[spec.SEGMENT_START_INDEX].CopyFrom(_int64(s.start_index for s in segs))
  ctx[spec.SEGMENT_END_INDEX].CopyFrom(_int64(s.end_index for s in segs))
  ctx[spec.SEGMENT_START_TIMESTAMP].CopyFrom(
      _int64(round(t[0] * spec.MICROSECONDS) for t in times)
  )
  ctx[spec.SEGMENT_END_TIMESTAMP].CopyFrom(
      _int64(round(t[1] * spec.MICROSECONDS) for t in times)
  )
  ctx[spec.SEGMENT_LABEL_INDEX].CopyFrom(_int64(s.label_index for s in segs))
  if any(s.label_string for s in segs):
    ctx[spec.SEGMENT_LABEL_STRING].CopyFrom(_bytes(s.label_string for s in segs))
  if record.segment_embeddings is not None:
    ctx[spec.SEGMENT_LABEL_EMBEDDING].CopyFrom(
        _float(np.asarray(record.segment_embeddings, np.float32).reshape(-1))
    )
  if record.clip_labels:
    ctx[spec.CLIP_LABEL_INDEX].CopyFrom(_int64(record.clip_labels))
  if record.clip_label_strings:
    ctx[spec.CLIP_LABEL_STRING].CopyFrom(_bytes(record.clip_label_strings))
  if record.saliency is not None:
    scores = np.asarray(record.saliency.scores, np.float32)
    ctx[spec.SALIENCY_CLIP_INDEX].CopyFrom(_int64(record.saliency.clip_index))
    ctx[spec.SALIENCY_SCORES].CopyFrom(_float(scores.reshape(-1)))
    ctx[spec.SALIENCY_NUM_ANNOTATORS].CopyFrom(_int64([scores.shape[1]]))
    ctx[spec.SALIENCY_SECS_PER_CLIP].CopyFrom(
        _float([record.saliency.secs_per_clip])
    )
  lists = ex.feature_lists.feature_list
  if record.frames is not None:
    fl = lists[spec.IMAGE_ENCODED]
    for jpeg in record.frames:
      fl.feature.add().bytes_list.value.append(jpeg)
  if record.embeddings is not None:
    fl = lists[spec.IMAGE_EMBEDDING]
    for row in np.asarray(record.embeddings, np.float32):
      fl.feature.add().float_list.value.extend(row.tolist())
  if record.frame_labels is not None:
    fl = lists[spec.FRAME_LABEL_INDEX]
    for labels in record.frame_labels:
      fl.feature.add().int64_list.value.extend(int(v) for v in labels)
  return ex


def encode_jpeg(frames: np.ndarray, quality: int = 90) -> List[bytes]:
  """JPEG-encodes uint8 frames [n, H, W, 3] (one JPEG per frame)."""
  frames = np.asarray(frames)
  if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
    raise ValueError(f"expected uint8 [n, H, W, 3], got {frames.dtype}"
                     f" {frames.shape}")
  return [
      tf.io.encode_jpeg(f, quality=quality, chroma_downsampling=False)
      .numpy()
      for f in frames
  ]


def shard_paths(prefix: str, num_shards: int) -> List[str]:
  """`<prefix>-00000-of-0000N.tfrecord` names of the shards."""
  return [
      f"{prefix}-{i:05d}-of-{num_shards:05d}.tfrecord"
      for i in range(num_shards)
  ]


def write_shards(
    records: Iterable[VideoRecord],
    prefix: str,
    num_shards: int,
    task: Optional[str] = None,
) -> List[str]:
  """Writes records round-robin into `num_shards` TFRecord shards.

  Each shard is written to a temporary name and renamed when complete, so a
  killed job never leaves a truncated shard under a final name.

  Returns:
    The shard paths.
  """
  if num_shards <= 0:
    raise ValueError(f"num_shards must be positive, got {num_shards}")
  paths = shard_paths(prefix, num_shards)
  os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
  tmp = [p + ".incomplete" for p in paths]
  writers = [tf.io.TFRecordWriter(p) for p in tmp]
  try:
    for i, record in enumerate(records):
      ex = to_sequence_example(record, task)
      writers[i % num_shards].write(ex.SerializeToString())
  finally:
    for w in writers:
      w.close()
  for t, p in zip(tmp, paths):
    os.replace(t, p)
  return paths


# ---------------------------------------------------------------------------
# Damaged shards.
# ---------------------------------------------------------------------------
_HEADER_BYTES = 12  # uint64 length + masked CRC32C of the length
_FOOTER_BYTES = 4   # masked CRC32C of the data
_TF_DETAIL = re.compile(r"(?:truncated|corrupted) record at \d+")


def data_loss_detail(error: tf.errors.OpError) -> str:
  """The useful part of TensorFlow's reading error ("corrupted record at
  1000160"), without the graph-execution preamble."""
  message = error.message or ""
  match = _TF_DETAIL.search(message)
  if match:
    return match.group(0)
  lines = [line.strip() for line in message.splitlines() if line.strip()]
  return lines[-1] if lines else type(error).__name__


class DamagedShardError(tf.errors.DataLossError):
  """A TFRecord shard that cannot be read to its end.

  Attributes:
    path: the shard.
    record_index: the first record that cannot be read (the records before
      it are intact).
    detail: what is wrong (TensorFlow's message, or the header scan's).
  """

  def __init__(self, path: str, record_index: int, detail: str):
    self.path = path
    self.record_index = int(record_index)
    self.detail = detail
    super().__init__(
        None, None,
        f"{path}: record {record_index}: damaged TFRecord shard ({detail})."
        " The shard was cut short (an interrupted copy or write) or its"
        " bytes changed: copy it again or rebuild it (tools/build_records.py"
        " --overwrite, tools/extract_features.py --overwrite), or leave it"
        " out of the file pattern")

  def __reduce__(self):
    return type(self), (self.path, self.record_index, self.detail)


def count_records(path: str) -> int:
  """Records in a TFRecord shard, from the length headers only (one seek
  per record, no CRC check).

  Raises:
    DamagedShardError: the shard ends inside a record (truncated).
  """
  size = tf.io.gfile.stat(path).length
  count = offset = 0
  with tf.io.gfile.GFile(path, "rb") as f:
    while offset < size:
      header = f.read(_HEADER_BYTES)
      if len(header) < _HEADER_BYTES:
        raise DamagedShardError(
            path, count, f"truncated: {size - offset} bytes after the last"
            f" complete record at byte {offset}, less than a record header")
      (length,) = struct.unpack("<Q", header[:8])
      end = offset + _HEADER_BYTES + length + _FOOTER_BYTES
      if end > size:
        raise DamagedShardError(
            path, count, f"truncated: the record at byte {offset} needs"
            f" {length} bytes of data, the file ends at byte {size}")
      offset = end
      f.seek(offset)
      count += 1
  return count


@tf.function(input_signature=[tf.TensorSpec([], tf.string)])
def _read_all(path):
  """Reads (and CRC-checks) every record of a shard; their number."""
  return tf.data.TFRecordDataset(path).reduce(
      tf.constant(0, tf.int64), lambda n, _: n + 1)


def check_shard(path: str) -> int:
  """Reads every record of a shard, checking the CRCs; their number.

  Raises:
    DamagedShardError: naming the first record that cannot be read.
  """
  count_records(path)  # truncation, without reading the data
  try:
    return int(_read_all(tf.constant(path)))
  except tf.errors.DataLossError as e:
    detail = data_loss_detail(e)
  index = 0
  try:
    for _ in tf.data.TFRecordDataset(path):
      index += 1
  except tf.errors.DataLossError:
    pass
  raise DamagedShardError(path, index, detail)


def find_damaged_shard(files: Sequence[str]
                       ) -> Optional[DamagedShardError]:
  """The first damage in `files` (truncation first: it needs no data
  read), or None when every shard reads to its end."""
  for path in files:
    try:
      count_records(path)
    except DamagedShardError as e:
      return e
  for path in files:
    try:
      check_shard(path)
    except DamagedShardError as e:
      return e
  return None


def locate_damage(files: Sequence[str],
                  error: tf.errors.DataLossError) -> tf.errors.DataLossError:
  """The error to raise for a `DataLossError` met while reading `files`:
  a `DamagedShardError` naming the shard and the record (found by reading
  the shards again), or, when every shard now reads cleanly, a
  `DataLossError` that says so."""
  if isinstance(error, DamagedShardError):
    return error
  found = find_damaged_shard(files)
  if found is not None:
    return found
  return tf.errors.DataLossError(
      None, None,
      f"{data_loss_detail(error)} while reading {len(files)} shard(s) ({files[0]}, ...), but"
      " every one of them reads to its end now: the read failed"
      " transiently (storage or network), or a shard was replaced while"
      " training; run again")
