"""Cached-embedding records: frame records in, records with embeddings out.

`extract(input_patterns, output_dir, towers)` runs the frozen image tower
on every stored frame at the input pipeline's evaluation preprocessing and
writes the same records plus `image/embedding` (float [n, Dv], the tower
output before `video_projection`: what the pipeline's
`input_mode="embeddings"` feeds the model).  With `text_embeddings`, the
text tower also embeds every record's `segment/label/string` into
`segment/label/embedding` ([S * Dt]) and the class names (with the config's
prompts) into `<output_dir>/class_name_embeddings.npy` [C, P, Dt].  A text
embedding is the pooled text-tower state (the backbone's `text_pooling`,
before `text_projection`), so a model with cached text and
`text_mode="pooled"` computes exactly what the tokens model computes.

Shards: `<output_dir>/<input shard basename>`, one per input shard, written
to `<name>.incomplete` and renamed when complete.  A restarted run skips the
shards that exist (`overwrite` recomputes them).  The embeddings of a shard
do not depend on the other shards or on the run, so a recomputed shard is
byte-identical.  The choices are recorded in
`<output_dir>/extract_features.json`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from unloc_tf import spec
from unloc_tf.data import pipeline, records
from unloc_tf.data import text as text_lib
from unloc_tf.features.embedders import FrameEmbedder, TextEmbedder, frame_slots
from unloc_tf.features.towers import Towers

MANIFEST_NAME = "extract_features.json"
CLASS_NAME_EMBEDDINGS = "class_name_embeddings.npy"
INCOMPLETE_SUFFIX = ".incomplete"
CLS_SLOT_MODES = ("auto", "shared", "linspace", "window")


def _embedders(towers: Towers, batch_size: int, text: bool):
  """The towers' traced embedders, reused by later calls."""
  key = ("frames", int(batch_size))
  if key not in towers.cache:
    towers.cache[key] = FrameEmbedder(towers, batch_size)
  if text and "text" not in towers.cache:
    towers.cache["text"] = TextEmbedder(towers)
  return towers.cache[key], towers.cache.get("text") if text else None


def count_records(path: str) -> int:
  """Records in a TFRecord file, from the length headers only (seeks);
  `records.DamagedShardError` names a truncated one."""
  return records.count_records(path)


def _bytes_list(ex, key) -> List[bytes]:
  fl = ex.feature_lists.feature_list
  if key not in fl:
    return []
  return [f.bytes_list.value[0] if f.bytes_list.value else b""
          for f in fl[key].feature]


def process_record(serialized: bytes, where: str, frames: FrameEmbedder,
                   slot_mode: str, num_frames: int,
                   text: Optional[TextEmbedder] = None,
                   keep_frames: bool = True) -> Tuple[bytes, bool]:
  """One record with `image/embedding` (and caption embeddings) added.

  Args:
    serialized: a `tf.SequenceExample`.
    where: "<shard>: record <i>" for error messages.
    frames: the `FrameEmbedder`.
    slot_mode: resolved CLS slot mode ("shared", "linspace", "window") or
      None for "gap" towers.
    num_frames: N0.
    text: caption embedder, or None.
    keep_frames: keep `image/encoded`.

  Returns:
    (serialized record, exact): `exact` is False when the CLS slots cannot
    reproduce every position (see `frame_slots`).
  """
  ex = tf.train.SequenceExample.FromString(serialized)
  jpegs = _bytes_list(ex, spec.IMAGE_ENCODED)
  ctx = ex.context.feature
  if spec.CLIP_FRAMES in ctx and ctx[spec.CLIP_FRAMES].int64_list.value:
    n = int(ctx[spec.CLIP_FRAMES].int64_list.value[0])
  else:
    n = len(jpegs)
  if not jpegs:
    raise ValueError(f"{where}: field '{spec.IMAGE_ENCODED}': no JPEG"
                     " frames (records must hold frames to embed)")
  if n != len(jpegs):
    raise ValueError(f"{where}: field '{spec.IMAGE_ENCODED}': {len(jpegs)}"
                     f" JPEG frames but {spec.CLIP_FRAMES} = {n}")
  exact = True
  slots = None
  if slot_mode is not None:
    slots, exact = frame_slots(n, num_frames, slot_mode)
  try:
    emb = frames(jpegs, slots)
  except tf.errors.InvalidArgumentError as e:
    raise ValueError(f"{where}: field '{spec.IMAGE_ENCODED}': cannot decode"
                     f" the frames: {e.message.splitlines()[0]}") from e
  lists = ex.feature_lists.feature_list
  if spec.IMAGE_EMBEDDING in lists:
    del lists[spec.IMAGE_EMBEDDING]
  fl = lists[spec.IMAGE_EMBEDDING]
  for row in emb:
    fl.feature.add().float_list.value.extend(row.tolist())
  if not keep_frames:
    del lists[spec.IMAGE_ENCODED]
  if text is not None and spec.SEGMENT_LABEL_STRING in ctx:
    strings = [s.decode("utf-8") for s in
               ctx[spec.SEGMENT_LABEL_STRING].bytes_list.value]
    if strings:
      value = text(strings).reshape(-1)
      feature = ctx[spec.SEGMENT_LABEL_EMBEDDING]
      feature.Clear()
      feature.float_list.value.extend(value.tolist())
  return ex.SerializeToString(deterministic=True), exact


def output_path(input_path: str, output_dir: str) -> str:
  return os.path.join(output_dir, os.path.basename(input_path))


def _resolve_slot_mode(mode: str, frames: FrameEmbedder, towers: Towers
                       ) -> Optional[str]:
  if mode not in CLS_SLOT_MODES:
    raise ValueError(f"cls_slots must be one of {CLS_SLOT_MODES}, got"
                     f" {mode!r}")
  if not frames.token:
    return None
  if mode != "auto":
    if mode == "shared" and not frames.rows_equal:
      logging.warning("--cls_slots=shared with a CLS table whose rows"
                      " differ: the cached embeddings are NOT the frames"
                      " model's")
    return mode
  if frames.rows_equal:
    return "shared"
  if towers.task is None:
    logging.warning("the CLS rows differ and the task is unknown"
                    " (--model_size): using linspace slots; pass"
                    " --cls_slots=window for action segmentation")
  return "window" if towers.task == spec.AS else "linspace"


def _write_manifest(output_dir: str, info: dict) -> None:
  path = os.path.join(output_dir, MANIFEST_NAME)
  tmp = path + INCOMPLETE_SUFFIX
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(info, f, indent=1)
  tf.io.gfile.rename(tmp, path, overwrite=True)


@dataclasses.dataclass
class _Plan:
  """What `prepare` decided: the input shards to process, the outputs that
  exist, the CLS slot mode and the manifest (`summary`)."""

  todo: List[str]
  skipped: List[str]
  slot_mode: Optional[str]
  summary: dict
  records: int


def prepare(input_patterns: Sequence[str], output_dir: str, towers: Towers,
            *, batch_size: int = 64, keep_frames: bool = True,
            text_embeddings: bool = False,
            class_names: Optional[Sequence[str]] = None,
            cls_slots: str = "auto", overwrite: bool = False) -> _Plan:
  """Lists the input shards, writes the manifest and the class-name
  embeddings, finds the outputs that exist and counts the records to do
  (`extract`'s arguments; a truncated input shard raises
  `records.DamagedShardError` here)."""
  files = pipeline.list_files(list(input_patterns))
  names = [os.path.basename(f) for f in files]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise ValueError(f"input shards share basenames {dup}: the outputs"
                     " (<output_dir>/<basename>) would collide")
  tf.io.gfile.makedirs(output_dir)
  frames, text = _embedders(towers, batch_size, text_embeddings)
  slot_mode = _resolve_slot_mode(cls_slots, frames, towers)
  summary = {
      "embedding_key": spec.IMAGE_EMBEDDING,
      "embedding_dim": frames.dim,
      "text_embedding_dim": text.dim if text else None,
      "frame_token": towers.image_encoder.frame_token,
      "cls_slots": slot_mode,
      "num_frames": towers.num_frames,
      "crop_size": towers.crop_size,
      "min_resize": towers.min_resize,
      "task": towers.task,
      "keep_frames": keep_frames,
      "source": towers.source,
      "class_name_embeddings": None,
  }
  names = class_names or towers.class_names
  if text is not None and names:
    texts = text_lib.apply_prompts(list(names), towers.prompts)
    table = text(texts).reshape(len(names), -1, text.dim)
    npy = os.path.join(output_dir, CLASS_NAME_EMBEDDINGS)
    with tf.io.gfile.GFile(npy + INCOMPLETE_SUFFIX, "wb") as f:
      np.save(f, table)
    tf.io.gfile.rename(npy + INCOMPLETE_SUFFIX, npy, overwrite=True)
    summary["class_name_embeddings"] = npy
    summary["class_names"] = list(names)
    summary["prompts"] = list(towers.prompts) if towers.prompts else None
  _write_manifest(output_dir, summary)

  todo, skipped = [], []
  for path in files:
    out = output_path(path, output_dir)
    if tf.io.gfile.exists(out) and not overwrite:
      skipped.append(out)
    else:
      todo.append(path)
  for out in skipped:
    logging.info("%s exists: skipped", out)
  # From the length headers: a truncated shard fails here, before any work.
  total = sum(count_records(p) for p in todo)
  return _Plan(todo, skipped, slot_mode, summary, total)


def extract_shard(path: str, output_dir: str, towers: Towers,
                  slot_mode: Optional[str], *, batch_size: int = 64,
                  keep_frames: bool = True, text_embeddings: bool = False,
                  on_record: Optional[Callable[[], None]] = None) -> int:
  """Writes `<output_dir>/<basename of path>` (via `.incomplete`).

  Returns:
    The number of records whose CLS slots are inexact (`frame_slots`).

  Raises:
    records.DamagedShardError: the input does not read (names the record).
    ValueError: a record without frames or with undecodable ones.
  """
  frames, text = _embedders(towers, batch_size, text_embeddings)
  out = output_path(path, output_dir)
  tmp = out + INCOMPLETE_SUFFIX
  inexact = 0
  with tf.io.TFRecordWriter(tmp) as writer:
    i = 0
    try:
      for i, raw in enumerate(tf.data.TFRecordDataset(path)):
        record, exact = process_record(
            raw.numpy(), f"{path}: record {i}", frames, slot_mode,
            towers.num_frames, text, keep_frames)
        inexact += not exact
        writer.write(record)
        if on_record is not None:
          on_record()
        i += 1
    except tf.errors.DataLossError as e:
      # TensorFlow's message names no file; `i` records were read.
      raise records.DamagedShardError(
          path, i, records.data_loss_detail(e)) from e
  tf.io.gfile.rename(tmp, out, overwrite=True)
  return inexact


def warn_inexact(inexact: int, num_frames: int) -> None:
  if inexact:
    logging.warning(
        "%d record(s) have fewer stored frames than num_frames=%d: with"
        " linspace CLS slots their repeated frames use the CLS row of their"
        " first position, so cached outputs differ slightly from the"
        " frames model for them", inexact, num_frames)


def extract(input_patterns: Sequence[str], output_dir: str, towers: Towers,
            *, batch_size: int = 64, keep_frames: bool = True,
            text_embeddings: bool = False,
            class_names: Optional[Sequence[str]] = None,
            cls_slots: str = "auto", overwrite: bool = False,
            progress: bool = True) -> dict:
  """Writes embedding records for every input shard (module docstring).

  Args:
    input_patterns: globs of input shards.
    output_dir: where `<basename>` shards go (created).
    towers: the `Towers`.
    batch_size: frames per forward pass of the image tower.
    keep_frames: keep the JPEGs in the output.
    text_embeddings: also embed captions / queries and class names.
    class_names: class names to embed (default: the config's).
    cls_slots: "auto", "shared", "linspace" or "window".
    overwrite: recompute shards that exist.
    progress: show a progress bar over records.

  Returns:
    A summary: {"written": [paths], "skipped": [paths], "embedding_dim",
    "text_embedding_dim", "cls_slots", "inexact_records",
    "class_name_embeddings"}.
  """
  plan = prepare(input_patterns, output_dir, towers, batch_size=batch_size,
                 keep_frames=keep_frames, text_embeddings=text_embeddings,
                 class_names=class_names, cls_slots=cls_slots,
                 overwrite=overwrite)
  bar = None
  if progress and plan.todo:
    try:
      from tqdm import tqdm  # noqa: PLC0415 (the optional [data] extra)
    except ImportError:
      tqdm = None
    if tqdm is not None:
      bar = tqdm(total=plan.records, unit="record", desc="extract_features")
  written, inexact = [], 0
  try:
    for k, path in enumerate(plan.todo):
      if bar is not None:
        bar.set_postfix_str(f"shard {k + 1}/{len(plan.todo)}")
      inexact += extract_shard(
          path, output_dir, towers, plan.slot_mode, batch_size=batch_size,
          keep_frames=keep_frames, text_embeddings=text_embeddings,
          on_record=bar.update if bar is not None else None)
      written.append(output_path(path, output_dir))
  finally:
    if bar is not None:
      bar.close()
  warn_inexact(inexact, towers.num_frames)
  summary = dict(plan.summary)
  summary.update(written=written, skipped=plan.skipped,
                 inexact_records=inexact)
  return summary
