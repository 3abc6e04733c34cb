"""One backbone for every task: the co-training model.

`MultiTaskModel(tasks, loss_weights)` holds task models (`UnlocTask`s: TAL
/ HD localizers, the MR retriever, the AS segmenter, the video-text
classifier) that share ONE `UnlocBackbone` instance -- towers, fusion and
pyramid -- each with its own head.  `share_backbone` makes them from models
built the usual way (the task builders), refusing backbones that disagree.

A batch holds one task's examples, as that task's own pipeline makes them,
plus a marker key (`spec.task_marker(name)`, added by
`unloc_tf.data.multitask`): the model runs that task's model and its loss,
times the task's weight.  Why one task per batch, not a fixed number of
examples of each task: every task keeps its own static shapes (MR's K
captions per video, AS's per-frame labels, TAL's class list), so each
task's train step is one XLA / TPU program without padding to the union of
the inputs; which task a step trains comes from a seeded schedule
(`unloc_tf.data.multitask.TaskSchedule`) that every worker computes alike,
so every replica runs the same program at every step, as the gradient
all-reduce requires.

Outputs and losses are those of the task's model; `last_losses` holds its
parts prefixed with the task name (`temporal_localization/loss`, ...).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence

import keras
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.models import unloc_backbone
from unloc_tf.tasks import base

# Backbone settings that may differ between tasks (at any depth of its
# config): AS and classification read the level-0 tokens, and their
# builders set no pyramid; the shared backbone is the first task's.
_TASK_OWNED_BACKBONE_FIELDS = ("pyramid", "num_levels", "fpn_layer_indices",
                               "name")


task_key = spec.task_marker  # the batch key that marks task `name`'s batch


def task_of(batch: Mapping[str, Any]) -> str:
  """The task a batch belongs to (its marker key; static under tracing).

  Raises:
    ValueError: no marker, or more than one.
  """
  prefix = spec.TASK_MARKER_PREFIX
  names = [k[len(prefix):] for k in batch if k.startswith(prefix)]
  if len(names) != 1:
    raise ValueError(
        f"a co-training batch carries exactly one task marker"
        f" ({spec.TASK_MARKER_PREFIX}<task>, added by"
        " unloc_tf.data.multitask), got"
        f" {sorted(names) or 'none'} among keys {sorted(batch)[:8]}")
  return names[0]


def without_marker(batch: Mapping[str, Any]) -> Dict[str, Any]:
  return {k: v for k, v in batch.items()
          if not k.startswith(spec.TASK_MARKER_PREFIX)}


def _without_task_fields(config: Any) -> Any:
  if isinstance(config, dict):
    return {k: _without_task_fields(v) for k, v in config.items()
            if k not in _TASK_OWNED_BACKBONE_FIELDS}
  if isinstance(config, (list, tuple)):
    return [_without_task_fields(v) for v in config]
  return config


def _backbone_config(model: base.UnlocTask) -> Dict[str, Any]:
  """The backbone's serialised config without what a task may choose."""
  return _without_task_fields(
      unloc_backbone.serialize_sublayer(model.backbone))


def _first_difference(a: Any, b: Any, path: str = "") -> Optional[str]:
  """The first field (dotted path) where two configs differ, or None."""
  if isinstance(a, dict) and isinstance(b, dict):
    for key in sorted(set(a) | set(b)):
      if key not in a or key not in b:
        return f"{path}{key}"
      found = _first_difference(a[key], b[key], f"{path}{key}.")
      if found:
        return found
    return None
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    if len(a) != len(b):
      return path.rstrip(".")
    for i, (x, y) in enumerate(zip(a, b)):
      found = _first_difference(x, y, f"{path}{i}.")
      if found:
        return found
    return None
  return None if a == b else path.rstrip(".")


def share_backbone(models: Mapping[str, base.UnlocTask]
                   ) -> Dict[str, base.UnlocTask]:
  """Task models (unbuilt, from the task builders) rebuilt around one shared
  backbone: the first model's (give a localizer or retriever first: its
  backbone has the pyramid).  Each keeps its own head and task settings.

  Raises:
    ValueError: no model, a built model, or backbones that differ in
      anything but the pyramid (names both tasks and the first field).
  """
  if not models:
    raise ValueError("co-training needs at least one task model")
  names = list(models)
  first = names[0]
  reference = _backbone_config(models[first])
  for name in names:
    if models[name].built:
      raise ValueError(f"task {name!r}: pass unbuilt models (the shared"
                       " backbone's variables are created once)")
    field = _first_difference(reference, _backbone_config(models[name]))
    if field is not None:
      raise ValueError(
          f"tasks {first!r} and {name!r} need different backbones"
          f" (field {field!r}): co-trained tasks share one backbone; give"
          " them the same model size, frame count and input mode")
  shared = models[first].backbone
  out = {}
  for name in names:
    m = models[name]
    kwargs = dict(m.task_config())
    # Named after the task: stable variable paths in checkpoints.
    if m.head is not None:
      out[name] = type(m)(shared, m.head, name=name, **kwargs)
    else:
      out[name] = type(m)(shared, name=name, **kwargs)
  return out


class MultiTaskModel(keras.Model):
  """Task models sharing one backbone (see the module docstring).

  Args:
    tasks: {task name: task model}, sharing one backbone
      (`share_backbone`).
    loss_weights: {task name: weight of its loss}; default 1 each.
  """

  def __init__(self, tasks: Mapping[str, base.UnlocTask],
               loss_weights: Optional[Mapping[str, float]] = None,
               **kwargs):
    super().__init__(**kwargs)
    if not tasks:
      raise ValueError("MultiTaskModel needs at least one task")
    backbones = {id(m.backbone) for m in tasks.values()}
    if len(backbones) != 1:
      raise ValueError("the task models do not share one backbone: make"
                       " them with multitask.share_backbone")
    weights = dict(loss_weights or {})
    unknown = sorted(set(weights) - set(tasks))
    if unknown:
      raise ValueError(f"loss_weights name tasks {unknown} that are not"
                       f" co-trained ({sorted(tasks)})")
    for name, w in weights.items():
      if not w > 0:
        raise ValueError(f"loss weight of task {name!r} is {w}: it must be"
                         " > 0 (leave the task out instead)")
    self.task_names = tuple(tasks)
    self.tasks = dict(tasks)
    self.loss_weights = {n: float(weights.get(n, 1.0)) for n in tasks}
    self.backbone = next(iter(tasks.values())).backbone
    self.last_losses = {}

  def task_model(self, name: str) -> base.UnlocTask:
    if name not in self.tasks:
      raise ValueError(f"no task {name!r} in this model ({self.task_names})")
    return self.tasks[name]

  def build(self, input_shape: Mapping[str, Sequence]):
    """Builds the task model of a (marked) batch's shapes; the other task
    models build on their first batch (the trainer runs one of each)."""
    self.tasks[task_of(input_shape)].build(without_marker(input_shape))
    self.built = True

  def call(self, inputs, training=False):
    name = task_of(inputs)
    return self.tasks[name](without_marker(inputs), training=training)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del y, sample_weight
    name = task_of(x)
    model = self.tasks[name]
    batch = without_marker(x)
    loss = model.compute_loss(x=batch, y_pred=y_pred, training=training)
    self.last_losses = {f"{name}/{k}": v
                        for k, v in dict(model.last_losses).items()}
    return loss * tf.cast(self.loss_weights[name], loss.dtype)

  def get_config(self) -> Dict[str, Any]:
    raise NotImplementedError(
        "a MultiTaskModel is saved as a checkpoint or exported per task,"
        " not serialised as a Keras config")
