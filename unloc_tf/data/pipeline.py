"""tf.data input pipelines for every task (reference_spec.md §1 and §3).

    shards ─ interleave (sharded by tf.distribute.InputContext;
      training: a seeded order per epoch, restartable at any batch) ─ parse
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

A damaged shard surfaces as TensorFlow's `DataLossError`, which names no
file; `naming_damaged_shards(source_files(dataset))` around the reading
loop re-raises it naming the shard and the record.
"""

from __future__ import annotations

import contextlib
import json
import os
import weakref
from typing import Dict, Optional, Sequence, Tuple

import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import examples, input_config, records, sampling

# Re-exported: gin files bind `pipeline.InputConfig` and callers use these
# through this module.
BATCH_MASK = input_config.BATCH_MASK
InputConfig = input_config.InputConfig
describe_batch = input_config.describe_batch

ORDERS = ("epochs", "buffer")
# make_dataset's datasets -> the shards they read (`source_files`).
_SOURCE_FILES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


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


def pipeline_files(files: Sequence[str], input_context=None) -> list[str]:
  """The shards one input pipeline reads: every `num_input_pipelines`-th
  file from its `input_pipeline_id` (all of them without a context)."""
  files = list(files)
  if input_context is None or input_context.num_input_pipelines <= 1:
    return files
  if len(files) < input_context.num_input_pipelines:
    raise ValueError(
        f"{len(files)} shards for {input_context.num_input_pipelines} input"
        " pipelines: write at least one shard per pipeline")
  return files[input_context.input_pipeline_id::
               input_context.num_input_pipelines]


def _read_shards(paths: tf.data.Dataset, num_files: int,
                 cycle_length: int) -> tf.data.Dataset:
  """(source_file, record_index, serialized) of the shards in `paths`,
  `cycle_length` shards at a time, one record from each in turn."""

  def read(path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda i, r: (path, i, r))

  return paths.interleave(read, cycle_length=min(cycle_length, num_files),
                          block_length=1,
                          num_parallel_calls=tf.data.AUTOTUNE,
                          deterministic=True)


def _records(files: list[str], is_training: bool, seed: int,
             cycle_length: int) -> tf.data.Dataset:
  """One pass over `files` (order "buffer": shuffled by tf.data's seeded,
  reshuffling file shuffle when training)."""
  ds = tf.data.Dataset.from_tensor_slices(files)
  if is_training:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  return _read_shards(ds, len(files), cycle_length)


# Salt of the epoch-order seeds, so that they differ from the augmentation
# seeds [seed, element index].
_ORDER_SALT = 0x5EED0


def _permutation(size, seed) -> tf.Tensor:
  """A permutation of range(size), a pure function of the stateless seed."""
  keys = tf.random.stateless_uniform([size], seed=seed)
  return tf.argsort(keys, stable=True)


def _epoch_records(files: tf.Tensor, epoch: tf.Tensor, seed: int,
                   cycle_length: int, window: int) -> tf.data.Dataset:
  """The records of one training epoch in an order that is a pure function
  of (seed, epoch): the shards in a seeded permutation, read
  `cycle_length` at a time, then every `window` consecutive records in a
  seeded permutation (seeded by (seed, epoch, window index))."""
  key = tf.random.experimental.stateless_fold_in(
      tf.stack([tf.constant(seed, tf.int64), epoch]), _ORDER_SALT)
  num_files = int(files.shape[0])
  order = _permutation(num_files,
                       tf.random.experimental.stateless_fold_in(key, 0))
  ds = _read_shards(
      tf.data.Dataset.from_tensor_slices(tf.gather(files, order)),
      num_files, cycle_length)
  if window <= 1:
    return ds
  window_key = tf.random.experimental.stateless_fold_in(key, 1)

  def permute(index, block):
    perm = _permutation(
        tf.shape(block[0])[0],
        tf.random.experimental.stateless_fold_in(window_key, index))
    return tuple(tf.gather(x, perm) for x in block)

  return ds.batch(window).enumerate().map(permute).unbatch()


def _training_records(files: list[str], seed: int, cycle_length: int,
                      window: int, repeat: bool, start: int
                      ) -> tf.data.Dataset:
  """Training records from record `start` of the stream epoch 0, 1, ...
  (order "epochs"): whole epochs before `start` are not read, the records
  of its epoch before it are read but not parsed."""
  if sum(tf.io.gfile.stat(f).length for f in files) == 0:
    raise ValueError(f"no records in {files}")
  first_epoch, offset = 0, 0
  if start:
    per_epoch = sum(records.count_records(f) for f in files)
    first_epoch, offset = divmod(start, per_epoch)
    if not repeat and first_epoch:
      raise ValueError(f"cannot start at record {start} of a single pass"
                       f" over {per_epoch} records")
  files_t = tf.constant(files)
  epochs = (tf.data.Dataset.counter(first_epoch) if repeat
            else tf.data.Dataset.range(first_epoch, 1))
  ds = epochs.flat_map(
      lambda e: _epoch_records(files_t, e, seed, cycle_length, window))
  return ds.skip(offset) if offset else ds


def pad_batch(batch: Dict[str, tf.Tensor], batch_size: int):
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
    deterministic: bool = True,
    shuffle_buffer: int = 256,
    cycle_length: int = 8,
    repeat: Optional[bool] = None,
    validate: bool = True,
    num_parallel_calls: Optional[int] = None,
    prefetch: Optional[int] = None,
    order: str = "epochs",
    skip_batches: int = 0,
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
      batches on every run); False lets tf.data reorder training examples
      for speed, and then a run resumed with `skip_batches` may see a few
      examples around the resume point twice or not at all.
    shuffle_buffer: training records shuffled together: the window of
      order "epochs", the shuffle buffer of order "buffer".
    cycle_length: shards read concurrently.
    repeat: repeat forever (default: is_training).
    validate: check every record and sampled JPEG (errors name file, record
      and field).  Costs ~1%; keep it on.
    num_parallel_calls: parallel example processing (default AUTOTUNE).
    prefetch: batches to prefetch (default AUTOTUNE).
    order: the training order.  "epochs" (default): epoch e reads the
      shards in a permutation seeded by (seed, e), `cycle_length` at a time,
      and permutes every `shuffle_buffer` consecutive records with a seed of
      (seed, e, window index) -- a pure function of (seed, position), so a
      run can restart at any batch (`skip_batches`) without stored state.
      "buffer": tf.data's seeded file shuffle and shuffle buffer, reshuffled
      every epoch (the reference's DMVR order).  Also restartable at any
      batch, but by replaying the stream: every record consumed before the
      start is read again (cheap for cached embeddings, not for frames).
    skip_batches: training batches of this pipeline already consumed: the
      dataset starts with the next one, exactly the batch an uninterrupted
      pipeline yields then (with `deterministic`).  Order "epochs" jumps
      over whole epochs, and in the current epoch reads the records before
      the start without parsing them (the shards' record counts are read
      from their headers first); order "buffer" reads, without parsing,
      every record before the start.  Augmentation seeds follow the element
      index, so they resume too.

  Returns:
    A `tf.data.Dataset` of dicts keyed by `unloc_tf.spec` batch keys, with
    fully static shapes.
  """
  if order not in ORDERS:
    raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
  if skip_batches and not is_training:
    raise ValueError("skip_batches needs is_training=True")
  files = pipeline_files(list_files(file_pattern), input_context)
  batch_size = global_batch_size
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
  repeat = is_training if repeat is None else repeat
  parallel = num_parallel_calls or tf.data.AUTOTUNE
  proc = examples.Processor(config, is_training, validate)

  # Every training record yields one example (AS: one random window), so
  # `skip_batches` batches are that many * batch_size records.
  start = int(skip_batches) * batch_size
  if is_training and order == "epochs":
    ds = _training_records(files, seed, cycle_length, shuffle_buffer, repeat,
                           start)
  else:
    ds = _records(files, is_training, seed, cycle_length)
    if is_training and shuffle_buffer > 1:
      ds = ds.shuffle(shuffle_buffer, seed=seed,
                      reshuffle_each_iteration=True)
    if repeat:
      ds = ds.repeat()
    if start:
      # The seeded shuffles replay the same stream; the records before the
      # start are read again (not parsed).
      ds = ds.skip(start)
  # A per-element counter (the element's index in the whole stream) makes
  # the augmentation seeds independent of the order in which parallel
  # workers run, and of where a resumed run starts.
  ds = ds.enumerate(start=start)

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
    ds = ds.map(lambda b: pad_batch(b, batch_size))
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
  ds = ds.with_options(options)
  _SOURCE_FILES[ds] = tuple(files)
  return ds


def source_files(dataset: tf.data.Dataset) -> Optional[Tuple[str, ...]]:
  """The shards a dataset of `make_dataset` reads (None for other
  datasets, including datasets derived from one with map etc., unless
  `keep_source_files` says so)."""
  return _SOURCE_FILES.get(dataset)


def keep_source_files(derived: tf.data.Dataset,
                      source: tf.data.Dataset) -> tf.data.Dataset:
  """Records that `derived` (e.g. `source.map(f)`) reads `source`'s shards,
  so errors name them; returns `derived`."""
  files = _SOURCE_FILES.get(source)
  if files is not None:
    _SOURCE_FILES[derived] = files
  return derived


@contextlib.contextmanager
def naming_damaged_shards(files: Optional[Sequence[str]]):
  """Turns a `DataLossError` raised inside (TensorFlow's "truncated record
  at 10779092", which names no file) into a `records.DamagedShardError`
  naming the shard and the record, found by reading `files` again."""
  try:
    yield
  except tf.errors.DataLossError as e:
    if not files or isinstance(e, records.DamagedShardError):
      raise
    raise records.locate_damage(files, e) from e


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


def count_class_names(default: Optional[int] = None, path: str = "",
                      data_dir: str = "", file_name: str = "classes.txt"
                      ) -> int:
  """The number of classes in the class list (`read_class_names`'s file)
  when it exists, else `default` (the dataset's published count), so a
  converted subset with fewer classes needs no NUM_CLASSES binding."""
  path = path or os.path.join(data_dir, file_name)
  if tf.io.gfile.exists(path):
    return len(read_class_names(path))
  if default is None:
    raise FileNotFoundError(f"no class list at {path}: write it (one class"
                            " per line) or bind NUM_CLASSES")
  return int(default)


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
