"""Turn silent training failures into errors that say what to check.

`HealthMonitor` watches the training loop (loss, learning rate, positives
per batch); `check_records_against_config` looks at a few records (and at
the length headers of every shard) before training starts.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Optional, Sequence

import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import pipeline, records


class HealthError(RuntimeError):
  """Training cannot go on usefully; the message says what to check."""


# A dynamic loss scale starts at 2**15 and halves at every step with
# non-finite gradients; below 1 the gradients were not finite at any useful
# scale, and every step is being skipped.
MIN_LOSS_SCALE = 1.0


class HealthMonitor:
  """Checks every training step.

  Args:
    window: batches that must together contain at least one positive label.
    warmup_steps: the schedule's warm-up (LR 0 is expected only before).
    total_steps: steps of the run (the LR may reach 0 at the very end).

  `check_step` raises `HealthError` on:
    * no positive label in the first `window` batches of this run;
    * a NaN or infinite loss;
    * a learning rate <= 0 after the warm-up;
    * a float16 loss scale below `MIN_LOSS_SCALE` (mixed_float16: the
      gradients keep being non-finite, so the steps are skipped).
  """

  def __init__(self, window: int = 20, warmup_steps: int = 0,
               total_steps: Optional[int] = None):
    self.window = int(window)
    self.warmup_steps = int(warmup_steps)
    self.total_steps = total_steps
    self._batches = 0
    self._positives = 0.0

  def check_step(self, step: int, loss: float,
                 num_positive: Optional[float] = None,
                 learning_rate: Optional[float] = None,
                 loss_scale: Optional[float] = None) -> None:
    """Checks the step that just ran.

    Args:
      step: the step's index (`optimizer.iterations` before its update).
      loss: the global training loss of the step.
      num_positive: positive entries of the global batch's `labels` (None
        for batches without labels).
      learning_rate: the base learning rate the step used.
      loss_scale: the float16 loss scale after the step (None without
        loss scaling).
    """
    if not math.isfinite(loss):
      raise HealthError(
          f"the training loss is {loss} at step {step}. Check, in this"
          " order: the learning rate (lower it, or lengthen the warm-up);"
          " the inputs (NaN/Inf in frames or cached embeddings, frames not"
          " uint8 0..255 or CLIP-normalised twice); the masks (an example"
          " whose frame_mask or text_mask is all zeros empties an attention"
          " softmax); the targets (displacements NaN/Inf for segments of"
          " zero length).")
    if learning_rate is not None and step >= self.warmup_steps and (
        self.total_steps is None or step < self.total_steps) and (
            learning_rate <= 0.0):
      raise HealthError(
          f"the learning rate is {learning_rate} at step {step}, after the"
          f" {self.warmup_steps}-step warm-up: the schedule is mis-set"
          " (base_learning_rate 0, a decay factor of 0, decay_events or"
          " total_steps in epochs instead of steps, or the optimizer's step"
          " counter was reset).")
    if loss_scale is not None and loss_scale < MIN_LOSS_SCALE:
      raise HealthError(
          f"the mixed_float16 loss scale fell to {loss_scale:g} at step"
          f" {step}: the gradients were not finite at any scale, so the"
          " steps were skipped and the model does not train. The float16"
          " forward or backward pass overflows or divides by zero (or the"
          " gradients are NaN for another reason): check that it trains"
          " with PRECISION = 'float32', then use 'float32' or"
          " 'mixed_bfloat16' (float32's range).")
    if num_positive is not None and self._batches < self.window:
      self._batches += 1
      self._positives += float(num_positive)
      if self._batches == self.window and self._positives == 0:
        raise HealthError(
            f"no positive label in the first {self.window} training"
            " batches: every entry of `labels` is 0, so the model learns to"
            " say 'nothing' everywhere. Check that the targets match the"
            " data: segment/start,end/index in stored frames and"
            " clip/secs_per_timestep (wrong fps: targets mis-scaled), the"
            " pyramid's regression ranges vs the segment lengths in tokens,"
            " the class list (label indices outside class_names or a wrong"
            " class_subset), and that the records carry segments at all"
            " (check_records_against_config).")


def _classes_file(files: Sequence[str], task: str) -> Optional[str]:
  """classes.txt next to the shards, or in their parent when the shards sit
  in a directory named after the task (the synthetic benchmark's layout:
  <root>/classes.txt, <root>/<task>/train-*)."""
  shard_dir = os.path.dirname(files[0])
  own = os.path.join(shard_dir, "classes.txt")
  if tf.io.gfile.exists(own):
    return own
  if os.path.basename(os.path.normpath(shard_dir)) == task:
    parent = os.path.join(os.path.dirname(os.path.normpath(shard_dir)),
                          "classes.txt")
    if tf.io.gfile.exists(parent):
      return parent
  return None


def _context(ex, key, kind):
  feature = ex.context.feature.get(key)
  if feature is None:
    return []
  return list(getattr(feature, kind).value)


def check_records_against_config(file_pattern,
                                 input_config: pipeline.InputConfig,
                                 num_records: int = 8,
                                 check_secs_per_timestep: bool = True
                                 ) -> None:
  """Looks at the first records before training; raises on a mismatch.

  Checks:
    * every shard ends where its last record ends (`records.count_records`:
      the length headers only, one seek per record -- 3 ms for 64 shards of
      640 frame records).  This finds truncated shards; a corrupted byte
      inside a record (CRC mismatch) needs every byte read (~1 GB/s from
      the page cache, minutes for a real dataset), so it is left to the
      reading itself, whose error names the shard
      (`pipeline.naming_damaged_shards`);
    * classes.txt next to the shards (or in the parent of a directory named
      after the task) lists exactly `config.class_names` (TAL/AS/CLS; with
      `class_subset`, the subset's names when class_names has that many);
    * label indices are < `num_classes`;
    * `clip/secs_per_timestep` equals `config.secs_per_timestep` when the
      records carry it (`check_secs_per_timestep`); the pipeline uses the
      record's value, but the config's is what the reference constants and
      evaluation assume;
    * cached embeddings (input_mode "embeddings") exist with
      `config.embedding_dim` values per frame;
    * TAL/MR/HD: at least one record has a segment;
    * warns if every record has fewer than num_frames / 4 stored frames
      (heavy upsampling: wrong fps or num_frames?).

  Args:
    file_pattern: glob(s) of the training shards.
    input_config: the pipeline's `InputConfig`.
    num_records: records read (from the first shards, in order).
    check_secs_per_timestep: see above.

  Raises:
    ValueError: naming the file, the record index and the field.
    records.DamagedShardError: naming a truncated shard and its record.
  """
  c = input_config
  files = pipeline.list_files(file_pattern)
  for path in files:
    records.count_records(path)
  if c.task in (spec.TAL, spec.AS, spec.CLS) and c.class_names:
    path = _classes_file(files, c.task)
    if path is not None:
      with tf.io.gfile.GFile(path) as f:
        listed = [line.strip() for line in f if line.strip()]
      expected = list(c.class_names)
      if c.class_subset is not None and len(expected) == len(
          c.class_subset) and len(listed) > max(c.class_subset):
        listed = [listed[i] for i in c.class_subset]
      if listed != expected:
        diff = [(i, a, b) for i, (a, b) in enumerate(zip(listed, expected))
                if a != b][:3]
        raise ValueError(
            f"{path}: the class list ({len(listed)} classes) differs from"
            f" config.class_names ({len(expected)} classes); first"
            f" differences (index, file, config): {diff}")
  seen = 0
  lengths = []
  any_segment = False
  for path in files:
    for index, raw in enumerate(tf.data.TFRecordDataset(path)):
      if seen >= num_records:
        break
      seen += 1
      ex = tf.train.SequenceExample.FromString(raw.numpy())
      where = f"{path}, record {index}"
      spt = _context(ex, spec.SECS_PER_TIMESTEP, "float_list")
      if check_secs_per_timestep and spt and spt[0] > 0 and not math.isclose(
          spt[0], c.secs_per_timestep, rel_tol=1e-4):
        raise ValueError(
            f"{where}: field {spec.SECS_PER_TIMESTEP} is {spt[0]:g} s but"
            f" config.secs_per_timestep is {c.secs_per_timestep:g} s (fps"
            f" {1 / spt[0]:g} vs {1 / c.secs_per_timestep:g}); set the"
            " config to the records' frame rate")
      n = _context(ex, spec.CLIP_FRAMES, "int64_list")
      if n:
        lengths.append(int(n[0]))
      label_key = (spec.CLIP_LABEL_INDEX if c.task == spec.CLS
                   else spec.SEGMENT_LABEL_INDEX)
      if c.task in (spec.TAL, spec.AS, spec.CLS):
        labels = _context(ex, label_key, "int64_list")
        bad = [x for x in labels if x >= c.num_classes]
        if bad:
          raise ValueError(
              f"{where}: field {label_key} has label {bad[0]} >="
              f" config.num_classes={c.num_classes}: wrong class list?")
      starts = (_context(ex, spec.SEGMENT_START_INDEX, "int64_list")
                or _context(ex, spec.SEGMENT_START_TIMESTAMP, "int64_list"))
      any_segment = any_segment or any(s >= 0 for s in starts)
      if c.input_mode == "embeddings":
        rows = ex.feature_lists.feature_list.get(c.embedding_key)
        if rows is None or not rows.feature:
          raise ValueError(f"{where}: no feature list {c.embedding_key!r}"
                           " but input_mode='embeddings'")
        dim = len(rows.feature[0].float_list.value)
        if dim != c.embedding_dim:
          raise ValueError(
              f"{where}: field {c.embedding_key} has {dim} values per frame,"
              f" config.embedding_dim={c.embedding_dim}")
    if seen >= num_records:
      break
  if seen == 0:
    raise ValueError(f"no records in {files}")
  if c.task in (spec.TAL, spec.MR, spec.HD) and not any_segment:
    raise ValueError(
        f"none of the first {seen} records of {files[0]} has a segment"
        f" ({spec.SEGMENT_START_INDEX} / {spec.SEGMENT_START_TIMESTAMP}):"
        " training would see no positive labels")
  if lengths and max(lengths) * 4 < c.num_frames:
    warnings.warn(
        f"every one of the first {seen} records has fewer than"
        f" num_frames/4 = {c.num_frames / 4:g} stored frames (max"
        f" {max(lengths)}): frames are repeated many times; check the"
        " records' fps and config.num_frames", stacklevel=2)
