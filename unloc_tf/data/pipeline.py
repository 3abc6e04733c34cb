"""tf.data input pipelines for every task (reference_spec.md §1 and §3).

    shards ─ interleave (sharded by tf.distribute.InputContext) ─ parse
      ─ check (errors name file, record, field) ─ select segments / captions
      ─ sample frames (linspace or windows) ─ decode JPEG + augment, or gather
        cached embeddings ─ text (CLIP BPE in the graph, or cached embeddings)
      ─ targets (labels + displacements per pyramid level) ─ batch ─ prefetch

This module assembles the dataset (shards, order, seeds, batching); the
per-example steps are `examples.Processor`, the configuration
`input_config.InputConfig`.  Every element has fully static shapes (padding
+ masks), so the same batches feed XLA and TPUs.  The batch keys are the
constants of `unloc_tf.spec`; `describe_batch` lists them per task.
Evaluation batches are padded to the full batch size and carry `batch_mask`.
"""

from __future__ import annotations

import json
import os
from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import examples, input_config, sampling

# Re-exported: gin files bind `pipeline.InputConfig` and callers use these
# through this module.
BATCH_MASK = input_config.BATCH_MASK
InputConfig = input_config.InputConfig
describe_batch = input_config.describe_batch


def list_files(file_pattern: str | Sequence[str]) -> list[str]:
  """Sorted shard paths matching one or several glob patterns."""
  patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no files match {pattern!r}")
    files.extend(matched)
  return files


def _records(files: list[str], is_training: bool, seed: int,
             cycle_length: int, input_context) -> tf.data.Dataset:
  """(source_file, record_index, serialized) from the shards of this host."""
  ds = tf.data.Dataset.from_tensor_slices(files)
  if input_context is not None and input_context.num_input_pipelines > 1:
    if len(files) < input_context.num_input_pipelines:
      raise ValueError(
          f"{len(files)} shards for {input_context.num_input_pipelines} input"
          " pipelines: write at least one shard per pipeline")
    ds = ds.shard(input_context.num_input_pipelines,
                  input_context.input_pipeline_id)
  if is_training:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

  def read(path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda i, r: (path, i, r))

  return ds.interleave(read, cycle_length=min(cycle_length, len(files)),
                       block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def _pad_batch(batch: Dict[str, tf.Tensor], batch_size: int):
  """Pads a final partial batch to `batch_size` rows; adds `batch_mask`."""
  real = tf.shape(next(iter(batch.values())))[0]

  def pad(value):
    paddings = [[0, batch_size - real]] + [[0, 0]] * (len(value.shape) - 1)
    fill = "" if value.dtype == tf.string else 0
    # Full batches (all but the last) are passed through without a copy.
    out = tf.cond(real < batch_size,
                  lambda: tf.pad(value, paddings, constant_values=fill),
                  lambda: value)
    return tf.ensure_shape(out, [batch_size] + value.shape[1:].as_list())

  out = {key: pad(value) for key, value in batch.items()}
  out[BATCH_MASK] = tf.cast(tf.range(batch_size) < real, tf.int32)
  return out


def make_dataset(
    file_pattern: str | Sequence[str],
    config: InputConfig,
    *,
    is_training: bool,
    global_batch_size: int,
    input_context: Optional[tf.distribute.InputContext] = None,
    seed: int = 0,
    deterministic: bool = False,
    shuffle_buffer: int = 256,
    cycle_length: int = 8,
    repeat: Optional[bool] = None,
    validate: bool = True,
    num_parallel_calls: Optional[int] = None,
    prefetch: Optional[int] = None,
) -> tf.data.Dataset:
  """The input pipeline of one task.

  Args:
    file_pattern: glob(s) of TFRecord shards of `tf.SequenceExample`s.
    config: what to produce (`InputConfig`).
    is_training: training (shuffle, repeat, random augmentation, random
      prompts / captions / windows, drop remainder) or evaluation (one pass,
      deterministic, final batch padded with `batch_mask`).
    global_batch_size: batch size over all replicas; with `input_context`
      each pipeline yields its per-replica share.
    input_context: from `strategy.distribute_datasets_from_function`; shards
      the files by input pipeline.
    seed: seeds shuffling and every random augmentation.
    deterministic: a fixed element order (and, with `seed`, identical
      batches on every run); otherwise tf.data may reorder for speed.
    shuffle_buffer: records in the training shuffle buffer.
    cycle_length: shards read concurrently.
    repeat: repeat forever (default: is_training).
    validate: check every record and sampled JPEG (errors name file, record
      and field).  Costs ~1%; keep it on.
    num_parallel_calls: parallel example processing (default AUTOTUNE).
    prefetch: batches to prefetch (default AUTOTUNE).

  Returns:
    A `tf.data.Dataset` of dicts keyed by `unloc_tf.spec` batch keys, with
    fully static shapes.
  """
  files = list_files(file_pattern)
  batch_size = global_batch_size
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
  repeat = is_training if repeat is None else repeat
  parallel = num_parallel_calls or tf.data.AUTOTUNE
  proc = examples.Processor(config, is_training, validate)

  ds = _records(files, is_training, seed, cycle_length, input_context)
  if is_training and shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  # A per-element counter makes the augmentation seeds independent of the
  # order in which parallel workers run.
  ds = ds.enumerate()

  def element_seed(counter):
    return tf.stack([tf.constant(seed, tf.int64), counter])

  if config.task == spec.AS:
    def to_windows(counter, rec):
      s = element_seed(counter)
      p = proc.parse(*rec)
      n = tf.cast(p[spec.CLIP_FRAMES], tf.int32)
      if is_training:
        offsets = sampling.random_window_offset(n, config.num_frames,
                                                s)[None]
      elif config.eval_windows == "center":
        offsets = sampling.center_window_offset(n, config.num_frames)[None]
      else:
        num = sampling.num_sliding_windows(n, config.num_frames)
        offsets = tf.range(num) * config.num_frames
      return offsets, s, p

    ds = ds.map(to_windows, num_parallel_calls=parallel,
                deterministic=deterministic or not is_training)
    ds = ds.flat_map(
        lambda offsets, s, p: tf.data.Dataset.from_tensor_slices(
            (offsets, tf.range(tf.shape(offsets)[0], dtype=tf.int64))).map(
                lambda o, w: (o, tf.random.experimental.stateless_fold_in(
                    s, w), p)))
    ds = ds.map(lambda o, s, p: proc.window_example(p, o, s),
                num_parallel_calls=parallel,
                deterministic=deterministic or not is_training)
  else:
    def example(counter, rec):
      return proc.linspace_example(proc.parse(*rec), element_seed(counter))

    ds = ds.map(example, num_parallel_calls=parallel,
                deterministic=deterministic or not is_training)

  if is_training:
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(lambda b: _pad_batch(b, batch_size))
  ds = ds.prefetch(prefetch or tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = deterministic or not is_training
  options.experimental_optimization.map_parallelization = True
  # The in-graph CLIP tokenizer memoises BPE results in a mutable hash table
  # (external state).  It is only a cache — outputs do not depend on it — so
  # checkpointing the iterator (exact resume) may ignore it.
  options.experimental_external_state_policy = (
      tf.data.experimental.ExternalStatePolicy.IGNORE)
  if input_context is not None:
    # Files are sharded by hand above.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return ds.with_options(options)


def split_pattern(data_dir: str, split: str, subdir: str = "",
                  suffix: str = "-*.tfrecord") -> str:
  """`<data_dir>/<subdir>/<split>-*.tfrecord` (the synthetic and converter
  layout), so configs name a data folder and a split."""
  return os.path.join(data_dir, subdir, split + suffix)


def read_class_names(path: str = "", data_dir: str = "",
                     file_name: str = "classes.txt") -> Tuple[str, ...]:
  """Class names, one per line (blank lines skipped), from `path` or from
  `<data_dir>/<file_name>` (written next to the shards by the converters
  and the synthetic benchmark)."""
  path = path or os.path.join(data_dir, file_name)
  with tf.io.gfile.GFile(path) as f:
    names = tuple(line.strip() for line in f if line.strip())
  if not names:
    raise ValueError(f"{path}: no class names")
  return names


def read_zero_shot_split(path: str, split: int = 0, part: str = "seen"
                         ) -> Tuple[int, ...]:
  """Class indices of one zero-shot split (tools/make_zero_shot_splits.py):
  `part` "seen" (train) or "unseen" (test)."""
  if part not in ("seen", "unseen"):
    raise ValueError(f"part must be 'seen' or 'unseen', got {part!r}")
  with tf.io.gfile.GFile(path) as f:
    splits = json.load(f)["splits"]
  if not 0 <= split < len(splits):
    raise ValueError(f"{path}: split {split} outside [0, {len(splits)})")
  return tuple(int(i) for i in splits[split][f"{part}_indices"])
