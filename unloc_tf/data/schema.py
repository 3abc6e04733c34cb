"""THE record contract: parsing and checking `tf.SequenceExample` records.

Keys are the reference's (see `unloc_tf.spec`).  Every field is parsed as
optional and then checked with assertions whose messages name the shard, the
record index inside it and the field, so a bad record stops a job with

  InvalidArgumentError: ... /data/train-00003-of-00008.tfrecord: record 17:
  field 'segment/end/index': segment outside the video ...

instead of a bare parse error.  Records written for the reference (no
`clip/secs_per_timestep`, no `clip/media_id` outside the test split) load:
missing optional fields take the documented defaults.
"""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf

from unloc_tf import spec


def _context_features(embedding_dim: Optional[int]) -> Dict[str, object]:
  del embedding_dim
  i64 = lambda: tf.io.RaggedFeature(tf.int64)  # noqa: E731
  f32 = lambda: tf.io.RaggedFeature(tf.float32)  # noqa: E731
  return {
      spec.CLIP_FRAMES: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
      spec.MEDIA_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
      spec.EXAMPLE_ID: tf.io.FixedLenFeature([], tf.int64, default_value=-1),
      spec.SECS_PER_TIMESTEP: tf.io.FixedLenFeature(
          [], tf.float32, default_value=-1.0
      ),
      spec.DURATION: tf.io.FixedLenFeature([], tf.float32, default_value=-1.0),
      spec.SEGMENT_START_INDEX: i64(),
      spec.SEGMENT_END_INDEX: i64(),
      spec.SEGMENT_START_TIMESTAMP: i64(),
      spec.SEGMENT_END_TIMESTAMP: i64(),
      spec.SEGMENT_LABEL_INDEX: i64(),
      spec.SEGMENT_LABEL_STRING: tf.io.RaggedFeature(tf.string),
      spec.SEGMENT_LABEL_EMBEDDING: f32(),
      spec.CLIP_LABEL_INDEX: i64(),
      spec.CLIP_LABEL_STRING: tf.io.RaggedFeature(tf.string),
      spec.SALIENCY_CLIP_INDEX: i64(),
      spec.SALIENCY_SCORES: f32(),
      spec.SALIENCY_NUM_ANNOTATORS: tf.io.FixedLenFeature(
          [], tf.int64, default_value=0
      ),
      spec.SALIENCY_SECS_PER_CLIP: tf.io.FixedLenFeature(
          [], tf.float32, default_value=2.0
      ),
  }


def parse(
    serialized: tf.Tensor,
    *,
    with_frames: bool = True,
    embedding_key: Optional[str] = None,
    embedding_dim: Optional[int] = None,
    with_frame_labels: bool = False,
) -> Dict[str, tf.Tensor]:
  """Parses one serialized record into raw (unsampled) tensors.

  Args:
    serialized: scalar tf.string.
    with_frames: parse `image/encoded`.
    embedding_key: parse this float feature list of frame embeddings
      (usually `spec.IMAGE_EMBEDDING`); needs `embedding_dim`.
    embedding_dim: D of the embeddings.
    with_frame_labels: parse `frame/label/index`.

  Returns:
    A dict with the record keys of `unloc_tf.spec` as keys: context scalars
    (int64/float32/string), 1-D lists (segment fields, variable length),
    `image/encoded` string [n'], `image/embedding` float32 [n', D] and
    `frame/label/index` int64 RaggedTensor [n', None] where requested.
  """
  sequence = {}
  if with_frames:
    sequence[spec.IMAGE_ENCODED] = tf.io.FixedLenSequenceFeature(
        [], tf.string, allow_missing=True
    )
  if embedding_key:
    if not embedding_dim:
      raise ValueError("embedding_key needs embedding_dim")
    sequence[embedding_key] = tf.io.FixedLenSequenceFeature(
        [embedding_dim], tf.float32, allow_missing=True
    )
  if with_frame_labels:
    sequence[spec.FRAME_LABEL_INDEX] = tf.io.RaggedFeature(tf.int64)
  context, seq = tf.io.parse_single_sequence_example(
      serialized,
      context_features=_context_features(embedding_dim),
      sequence_features=sequence,
  )
  out = dict(context)
  out.update(seq)
  return out


def where(source_file: tf.Tensor, record_index: tf.Tensor, field: str):
  """The prefix of an error message: '<file>: record <i>: field '<f>': '."""
  return tf.strings.join([
      source_file,
      ": record ",
      tf.strings.as_string(record_index),
      f": field {field}: ",
  ])


def _check(cond, source_file, record_index, field, message, *data):
  """An assertion whose message names file, record and field."""
  parts = [where(source_file, record_index, field), message, *data]
  parts = [tf.convert_to_tensor(p) for p in parts]
  parts = [p if p.dtype == tf.string else tf.strings.as_string(p) for p in parts]
  return tf.debugging.Assert(cond, [tf.strings.join(parts)])


def validate(
    parsed: Dict[str, tf.Tensor],
    source_file: tf.Tensor,
    record_index: tf.Tensor,
    *,
    task: str,
    num_classes: Optional[int] = None,
    with_frames: bool = True,
    embedding_key: Optional[str] = None,
) -> Dict[str, tf.Tensor]:
  """Checks a parsed record; returns it with the checks as dependencies.

  Checks: `clip/frames` present and positive (an empty video is an error),
  equal to the number of JPEGs / embeddings; segment lists of equal length;
  segments inside the video, not reversed, of positive length (by their
  timestamps when present); class indices in [0, num_classes) for TAL/AS/CLS;
  one caption per segment for MR and HD (or, unlabeled, captions and no
  segment).

  Raises (when the dataset is iterated):
    tf.errors.InvalidArgumentError naming file, record index and field.
  """
  f, i = source_file, record_index
  n = parsed[spec.CLIP_FRAMES]
  checks = [
      _check(n != -1, f, i, spec.CLIP_FRAMES, "missing (required)"),
      _check(n > 0, f, i, spec.CLIP_FRAMES, "empty video: ", n, " frames"),
  ]
  if with_frames:
    num_jpeg = tf.shape(parsed[spec.IMAGE_ENCODED], out_type=tf.int64)[0]
    checks.append(
        _check(
            tf.equal(num_jpeg, n), f, i, spec.IMAGE_ENCODED,
            "number of JPEG frames ", num_jpeg, " != clip/frames ", n,
        )
    )
  if embedding_key:
    num_emb = tf.shape(parsed[embedding_key], out_type=tf.int64)[0]
    checks.append(
        _check(
            tf.equal(num_emb, n), f, i, embedding_key,
            "number of embeddings ", num_emb, " != clip/frames ", n,
        )
    )
  start = parsed[spec.SEGMENT_START_INDEX]
  end = parsed[spec.SEGMENT_END_INDEX]
  num_seg = tf.size(start, out_type=tf.int64)
  for key in (spec.SEGMENT_END_INDEX, spec.SEGMENT_LABEL_INDEX):
    if key == spec.SEGMENT_LABEL_INDEX and task in (spec.MR, spec.CLS):
      continue
    size = tf.size(parsed[key], out_type=tf.int64)
    checks.append(
        _check(
            tf.equal(size, num_seg), f, i, key, "has ", size,
            " entries but segment/start/index has ", num_seg,
        )
    )
  if task in (spec.MR, spec.HD):
    # One caption per segment; a record without targets (an unlabeled
    # split: QVHighlights test) holds its queries and no segment.
    size = tf.size(parsed[spec.SEGMENT_LABEL_STRING], out_type=tf.int64)
    checks.append(
        _check(
            tf.logical_or(tf.equal(size, num_seg), tf.equal(num_seg, 0)), f,
            i, spec.SEGMENT_LABEL_STRING, "has ", size, " captions for ",
            num_seg, " segments",
        )
    )
    checks.append(
        _check(
            size > 0, f, i, spec.SEGMENT_LABEL_STRING,
            "no caption / query in the record",
        )
    )
  if task != spec.CLS:
    with tf.control_dependencies(checks):
      checks.append(
          _check(
              tf.reduce_all(start >= 0), f, i, spec.SEGMENT_START_INDEX,
              "segment starts before the video: min index ",
              tf.reduce_min(tf.concat([start, [0]], 0)),
          )
      )
      checks.append(
          _check(
              tf.reduce_all(end < n), f, i, spec.SEGMENT_END_INDEX,
              "segment outside the video: max end index ",
              tf.reduce_max(tf.concat([end, [-1]], 0)), " >= clip/frames ", n,
          )
      )
      checks.append(
          _check(
              tf.reduce_all(end >= start), f, i, spec.SEGMENT_END_INDEX,
              "reversed segment (end index < start index)",
          )
      )
      ts = parsed[spec.SEGMENT_START_TIMESTAMP]
      te = parsed[spec.SEGMENT_END_TIMESTAMP]
      has_ts = tf.logical_and(
          tf.equal(tf.size(ts, out_type=tf.int64), num_seg),
          tf.equal(tf.size(te, out_type=tf.int64), num_seg),
      )
      checks.append(
          _check(
              tf.logical_or(
                  tf.logical_not(has_ts),
                  tf.reduce_all(te > ts),
              ),
              f, i, spec.SEGMENT_END_TIMESTAMP,
              "zero-length or reversed segment (end timestamp <= start"
              " timestamp); tools/build_records.py drops and reports these",
          )
      )
  if num_classes is not None and task in (spec.TAL, spec.AS, spec.CLS):
    key = spec.CLIP_LABEL_INDEX if task == spec.CLS else spec.SEGMENT_LABEL_INDEX
    labels = parsed[key]
    checks.append(
        _check(
            tf.reduce_all(tf.logical_and(labels >= 0, labels < num_classes)),
            f, i, key, f"class index outside [0, {num_classes}): ",
            tf.strings.reduce_join(tf.strings.as_string(labels), separator=","),
        )
    )
  with tf.control_dependencies(checks):
    return {k: tf.identity(v) for k, v in parsed.items()}


def check_jpeg(
    jpeg: tf.Tensor,
    source_file: tf.Tensor,
    record_index: tf.Tensor,
    frame_index: tf.Tensor,
) -> tf.Tensor:
  """Asserts that JPEG bytes start with SOI and end with EOI (not truncated).

  `tf.io.decode_jpeg` reports corrupt data without saying which record it
  came from; this check runs on the sampled frames only and names the file,
  the record and the frame.

  Args:
    jpeg: string [N] of JPEG bytes.
    frame_index: int [N] stored-frame index of each.

  Returns:
    `jpeg` with the check as a dependency.
  """
  soi = tf.equal(tf.strings.substr(jpeg, 0, 2), b"\xff\xd8")
  # Trailing padding after EOI is legal: look for EOI in the last 4 bytes.
  padded = tf.strings.join([b"\x00\x00\x00\x00", jpeg])
  eoi = tf.zeros_like(soi)
  for pos in (-2, -3, -4):
    eoi = tf.logical_or(
        eoi, tf.equal(tf.strings.substr(padded, pos, 2), b"\xff\xd9")
    )
  ok = tf.logical_and(soi, eoi)
  bad = tf.argmin(tf.cast(ok, tf.int32))
  assert_op = _check(
      tf.reduce_all(ok), source_file, record_index, spec.IMAGE_ENCODED,
      "corrupt or truncated JPEG at stored frame ",
      tf.gather(frame_index, bad),
  )
  with tf.control_dependencies([assert_op]):
    return tf.identity(jpeg)
