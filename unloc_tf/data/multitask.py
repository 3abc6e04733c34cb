"""Co-training input: one pipeline per task, one task per step.

Each task keeps its own pipeline (`pipeline.make_dataset` with its own
`InputConfig`, unchanged); `make_datasets` marks every batch of task t with
the key `spec.task_marker(t)` = `task/<t>` (what `unloc_tf.tasks.multitask.MultiTaskModel`
dispatches on).  `TaskSchedule` says which task step s trains: task t with
probability weight_t / sum(weights), drawn from a counter-based hash of
(seed, s), so the schedule is a pure function of the seed and the step:
every worker of a multi-worker run computes the same one without talking to
the others, and a resumed run knows how many batches of each task were
consumed before its step (`counts_before`: what `skip_batches` needs).

A co-training config whose task datasets disagree on what the shared
backbone needs stops before the first step, naming both datasets and the
field: `make_datasets` compares the batches' frame count N0, input mode
and frame / embedding shapes; `check_compatible` compares the tasks'
`InputConfig`s (also the frame rate) before any pipeline is built.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import pipeline
from unloc_tf.data.input_config import InputConfig

# What the shared backbone needs to be the same for every task's batches.
BACKBONE_FIELDS = ("num_frames", "input_mode", "embedding_dim",
                   "secs_per_timestep")


def _mix(x: np.ndarray) -> np.ndarray:
  """splitmix64 finaliser: uint64 -> well-spread uint64."""
  x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
  x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
  return x ^ (x >> np.uint64(31))


@dataclasses.dataclass(frozen=True)
class TaskSchedule:
  """Which task each training step trains (see the module docstring).

  Attributes:
    weights: {task name: sampling weight > 0}, in a fixed order.
    seed: the schedule's seed.
  """

  weights: Mapping[str, float]
  seed: int = 0

  def __post_init__(self):
    if not self.weights:
      raise ValueError("co-training needs at least one task with a"
                       " sampling weight")
    for name, w in self.weights.items():
      try:
        value = float(w)
      except (TypeError, ValueError):
        value = float("nan")
      if not (np.isfinite(value) and value > 0):
        raise ValueError(
            f"task {name!r} has sampling weight {w!r}: weights must be > 0"
            " (a task with weight 0 would never train; leave it out of the"
            " co-training config instead)")

  @property
  def names(self):
    return tuple(self.weights)

  def _indices(self, steps: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
      key = np.uint64(self.seed) * np.uint64(0x9E3779B97F4A7C15)
      u = _mix(steps.astype(np.uint64) + key) >> np.uint64(11)
    u = u.astype(np.float64) / float(1 << 53)            # [0, 1)
    w = np.asarray([self.weights[n] for n in self.names], np.float64)
    edges = np.cumsum(w / w.sum())
    return np.minimum(np.searchsorted(edges, u, side="right"),
                      len(edges) - 1)

  def task_at(self, step: int) -> str:
    """The task of training step `step` (0-based)."""
    return self.names[int(self._indices(np.asarray([step]))[0])]

  def counts_before(self, step: int) -> Dict[str, int]:
    """{task: steps of that task among steps 0 .. step - 1}."""
    counts = np.bincount(self._indices(np.arange(int(step))),
                         minlength=len(self.names))
    return {n: int(c) for n, c in zip(self.names, counts)}


def check_compatible(configs: Mapping[str, InputConfig],
                     files: Optional[Mapping[str, str]] = None) -> None:
  """Raises ValueError when two tasks' inputs disagree on a
  `BACKBONE_FIELDS` field (names both datasets: their file patterns when
  given, else their task names)."""
  names = list(configs)
  if not names:
    raise ValueError("co-training needs at least one task dataset")
  first = names[0]
  where = lambda n: f"{n} ({files[n]})" if files and n in files else n
  for name in names[1:]:
    for field in BACKBONE_FIELDS:
      a, b = getattr(configs[first], field), getattr(configs[name], field)
      if field == "embedding_dim" and "embeddings" not in (
          configs[first].input_mode, configs[name].input_mode):
        continue
      if a != b:
        raise ValueError(
            f"co-trained datasets disagree on {field}: {where(first)} has"
            f" {a!r}, {where(name)} has {b!r}; the shared backbone needs"
            " one value (set it alike in both tasks' configs)")


def make_datasets(data_fns: Mapping[str, Callable[..., tf.data.Dataset]],
                  schedule: TaskSchedule, *, input_context=None,
                  skip_batches: Optional[Mapping[str, int]] = None,
                  **kwargs) -> Dict[str, tf.data.Dataset]:
  """{task: its training dataset, every batch marked with `task/<task>`}.

  Args:
    data_fns: {task: `fn(input_context=..., [skip_batches=...], **kwargs)`}
      (e.g. `functools.partial(pipeline.make_dataset, pattern, config,
      is_training=True, global_batch_size=B)`).
    schedule: the sampling weights (every task must have a dataset and a
      weight, and the other way round).
    input_context: the worker's `tf.distribute.InputContext`.
    skip_batches: {task: batches to skip} (a resumed run: see
      `TaskSchedule.counts_before`); None skips nothing.
    **kwargs: passed to every data fn (e.g. `seed`).

  Raises:
    ValueError: a task with a weight but no dataset, or a dataset without
      a weight.
  """
  missing = [n for n in schedule.names if n not in data_fns]
  if missing:
    raise ValueError(f"tasks {missing} have a sampling weight but no"
                     " dataset: give each co-trained task its data")
  extra = [n for n in data_fns if n not in schedule.weights]
  if extra:
    raise ValueError(f"tasks {extra} have a dataset but no sampling"
                     " weight: give each co-trained task a weight > 0")
  out = {}
  for name in schedule.names:
    extra_args = dict(kwargs)
    if skip_batches:
      extra_args["skip_batches"] = int(skip_batches.get(name, 0))
    ds = data_fns[name](input_context=input_context, **extra_args)
    marker = spec.task_marker(name)
    out[name] = pipeline.keep_source_files(ds.map(
        lambda batch, m=marker: {**batch, m: tf.zeros(
            tf.shape(next(iter(batch.values())))[:1], tf.int32)}), ds)
  _check_batch_shapes(out)
  return out


# Batch keys whose per-example shape the shared backbone fixes: the frame
# count N0 (the frame mask) and the frames or the embedding width.
_SHARED_SHAPES = (spec.FRAME_MASK, spec.FRAMES, spec.FRAME_EMBEDDINGS)


def _check_batch_shapes(datasets: Mapping[str, tf.data.Dataset]) -> None:
  """Raises ValueError, naming both datasets and the field, when two tasks'
  batches disagree on what the shared backbone takes."""
  names = list(datasets)
  specs = {n: datasets[n].element_spec for n in names}

  def where(n):
    files = pipeline.source_files(datasets[n])
    return f"{n} ({files[0]}{', ...' if len(files) > 1 else ''})" if (
        files) else n

  first = names[0]
  for name in names[1:]:
    for key in _SHARED_SHAPES:
      a, b = specs[first].get(key), specs[name].get(key)
      if (a is None) != (b is None):
        raise ValueError(
            f"co-trained datasets disagree on {key}: {where(first)}"
            f" {'has' if a is not None else 'has no'} {key},"
            f" {where(name)} {'has' if b is not None else 'has no'} it; the"
            " shared backbone takes one input mode")
      if a is not None and a.shape[1:] != b.shape[1:]:
        raise ValueError(
            f"co-trained datasets disagree on {key}: {where(first)} gives"
            f" {a.shape[1:]}, {where(name)} gives {b.shape[1:]} per"
            " example; the shared backbone needs one frame count and"
            " width (set them alike in both tasks' configs)")
