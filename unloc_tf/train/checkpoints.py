"""Training checkpoints, the best checkpoint, and init from other checkpoints.

`Checkpointer` wraps `tf.train.Checkpoint(model, optimizer, iterator, step)`
and a `tf.train.CheckpointManager`: restoring the model, the optimizer
slots, `optimizer.iterations` and the data iterator's position makes a
resumed run bit-identical to an uninterrupted one, even after SIGKILL
(keras_tf_pitfalls.md §3; `CheckpointManager.save` writes the data first and
then atomically rewrites its state file, so a kill mid-save leaves the
previous checkpoint as the latest).

Every checkpoint also carries an index of the model's variables by their
Keras path relative to the model (`variables/<path>`), so
`restore_partial` can initialise ANOTHER model (other task head, other
number of frames, other text length) from it by path, with the shape
adaptations of reference_spec.md §7.3:

  * the per-frame CLS table (`CLIPImageEncoder.class_embedding`, (N, D)) is
    resized along time by linear interpolation (end rows kept);
  * the ViT positional embedding (`CLIPImageEncoder.position_embedding`) is
    interpolated on its square patch grid (CLS row kept);
  * the text positional embedding (`CLIPTextEncoder.position_embedding`) is
    truncated, or extended with the model's own rows;
  * a (p*p*3, D) Dense or (1, p, p, 3, D) 3-D conv patch kernel is
    reshaped to the Conv2D kernel (p, p, 3, D);
  * any other shape mismatch is an error (listing every such variable);
  * model variables absent from the checkpoint keep their initial values
    ("missing"), checkpoint variables absent from the model are "unused".

`load_weights_npz` applies the same rules to a flat .npz of
{variable.path: array} (e.g. written by a CLIP converter).
"""

from __future__ import annotations

import json
import os
import re
from typing import Callable, Dict, Mapping, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from unloc_tf.layers import clip_image_encoder, clip_text_encoder
from unloc_tf.train import optimizers

INDEX_NAME = "variables"


def variables_by_path(model: keras.Model) -> Dict[str, keras.Variable]:
  """{path relative to the model: variable} for every model variable.

  A path that occurs twice (two layers of the same name under one parent)
  gets a "#k" suffix on its k-th repeat.
  """
  out: Dict[str, keras.Variable] = {}
  for v in model.variables:
    key = optimizers.relative_path(v.path)
    if key in out:
      k = 1
      while f"{key}#{k}" in out:
        k += 1
      key = f"{key}#{k}"
    out[key] = v
  return out


class _VariableIndex(tf.Module):
  """Trackable whose children are the model variables named by path."""

  def __init__(self, mapping: Mapping[str, keras.Variable]):
    super().__init__(name="variable_index")
    self._by_path = dict(mapping)

  def _trackable_children(self, save_type="checkpoint", **kwargs):
    del save_type, kwargs
    return dict(self._by_path)


class Checkpointer:
  """Checkpoints of a training run: latest N, plus the best one.

  Args:
    directory: where checkpoints go (`<workdir>/checkpoints`).
    model: the Keras model.
    optimizer: its optimizer (None for model-only checkpoints).
    iterator: the training data iterator (a tf.data or distributed
      iterator), restored to the position of the checkpoint.
    max_to_keep: checkpoints kept (older ones are deleted).
    best_directory: where `save_best` keeps the best checkpoint (default:
      `<parent of directory>/best`).

  The restored step is also `optimizer.iterations` (the trainer checks).
  Create the Checkpointer after the model and the optimizer are built:
  slot variables created later are restored lazily by TensorFlow, but the
  variable-path index only covers variables that exist.
  """

  def __init__(self, directory: str, model: keras.Model,
               optimizer: Optional[keras.optimizers.Optimizer] = None,
               iterator=None, max_to_keep: int = 3,
               best_directory: Optional[str] = None):
    self.directory = directory
    self.best_directory = best_directory or os.path.join(
        os.path.dirname(os.path.normpath(directory)), "best")
    self.model = model
    self.optimizer = optimizer
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    objects = dict(model=model, step=self.step,
                   **{INDEX_NAME: _VariableIndex(variables_by_path(model))})
    if optimizer is not None:
      objects["optimizer"] = optimizer
    if iterator is not None:
      objects["iterator"] = iterator
    self.checkpoint = tf.train.Checkpoint(**objects)
    self.manager = tf.train.CheckpointManager(self.checkpoint, directory,
                                              max_to_keep=max_to_keep)

  @property
  def latest_checkpoint(self) -> Optional[str]:
    return self.manager.latest_checkpoint

  def steps(self) -> list[int]:
    """Steps of the checkpoints on disk (oldest first)."""
    return [int(p.rsplit("-", 1)[1]) for p in self.manager.checkpoints]

  def restore(self, step: int) -> int:
    """Restores the checkpoint of `step` (must be one of `steps()`)."""
    path = os.path.join(self.directory, f"ckpt-{step}")
    if step not in self.steps():
      raise ValueError(f"no checkpoint of step {step} in {self.directory}"
                       f" (have {self.steps()})")
    self.checkpoint.restore(path).assert_existing_objects_matched()
    return int(self.step.numpy())

  def restore_latest(self) -> int:
    """Restores the latest checkpoint; returns its step (0 if none)."""
    path = self.manager.latest_checkpoint
    if path is None:
      return 0
    self.checkpoint.restore(path).assert_existing_objects_matched()
    return int(self.step.numpy())

  def save(self, step: int) -> str:
    """Saves everything as checkpoint `step`; returns its path prefix."""
    self.step.assign(int(step))
    return self.manager.save(checkpoint_number=int(step))

  def best(self) -> Optional[dict]:
    """The content of best/best.json, or None."""
    path = os.path.join(self.best_directory, "best.json")
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path) as f:
      return json.load(f)

  def save_best(self, step: int, metric_name: str, value: float,
                mode: str = "max") -> bool:
    """Keeps `best/` = the model of the best `metric_name` so far.

    `best/` holds one model checkpoint (`best/ckpt-<step>`, with the
    variable index, so `restore_partial` and export can read it) and
    best.json {"step", "metric", "value", "mode", "checkpoint"}.

    Returns:
      True if `value` is a new best (and was saved).
    """
    if mode not in ("max", "min"):
      raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    value = float(value)
    if not np.isfinite(value):
      return False
    old = self.best()
    if old is not None:
      if old.get("metric") != metric_name:
        raise ValueError(
            f"{self.best_directory}/best.json tracks {old.get('metric')!r},"
            f" not {metric_name!r}; use another workdir or delete it")
      better = value > old["value"] if mode == "max" else value < old["value"]
      if not better:
        return False
    tf.io.gfile.makedirs(self.best_directory)
    self.step.assign(int(step))
    ckpt = tf.train.Checkpoint(
        model=self.model, step=self.step,
        **{INDEX_NAME: _VariableIndex(variables_by_path(self.model))})
    prefix = ckpt.write(os.path.join(self.best_directory, f"ckpt-{step}"))
    info = {"step": int(step), "metric": metric_name, "value": value,
            "mode": mode, "checkpoint": os.path.basename(prefix)}
    tmp = os.path.join(self.best_directory, "best.json.tmp")
    with tf.io.gfile.GFile(tmp, "w") as f:
      json.dump(info, f, indent=1)
    tf.io.gfile.rename(tmp, os.path.join(self.best_directory, "best.json"),
                       overwrite=True)
    keep = os.path.basename(prefix)
    for name in tf.io.gfile.listdir(self.best_directory):
      if name.startswith("ckpt-") and not name.startswith(keep + "."):
        tf.io.gfile.remove(os.path.join(self.best_directory, name))
    return True


# ---------------------------------------------------------------------------
# Initialisation from another checkpoint (reference_spec.md §7.3).
# ---------------------------------------------------------------------------
def _adapters(model: keras.Model) -> Dict[int, Tuple[str, object]]:
  """id(variable) -> (kind, layer) for the variables with shape adaptations."""
  out = {}
  for layer in model._flatten_layers(include_self=False):  # pylint: disable=protected-access
    if isinstance(layer, clip_image_encoder.CLIPImageEncoder):
      if layer.class_embedding is not None:
        out[id(layer.class_embedding)] = ("class_embedding", layer)
      if layer.position_embedding is not None:
        out[id(layer.position_embedding)] = ("image_position", layer)
      out[id(layer.patch_embedding.kernel)] = ("patch_kernel", layer)
    elif isinstance(layer, clip_text_encoder.CLIPTextEncoder):
      if layer.position_embedding is not None:
        out[id(layer.position_embedding)] = ("text_position", layer)
  return out


def _adapt(kind: Optional[str], layer, value: np.ndarray,
           current: keras.Variable) -> Optional[np.ndarray]:
  """`value` fitted to `current`'s shape, or None if there is no rule."""
  shape = tuple(current.shape)
  try:
    if kind == "class_embedding" and value.ndim == 2 and (
        value.shape[1] == shape[1]):
      return clip_image_encoder.adapt_class_embedding(value, shape[0])
    if kind == "image_position" and value.ndim == 2 and (
        value.shape[1] == shape[1]):
      return clip_image_encoder.adapt_position_embedding(
          value, shape[0], has_cls=layer.frame_token == "token")
    if kind == "text_position":
      return clip_text_encoder.adapt_text_position_embedding(
          value, keras.ops.convert_to_numpy(current))
    if kind == "patch_kernel" and (
        value.ndim == 2 or (value.ndim == 5 and value.shape[0] == 1)) and (
            value.size == int(np.prod(shape))
            and value.shape[-1] == shape[-1]):
      # (p*p*3, D) Dense or (1, p, p, 3, D) 3-D conv kernels: (row, col,
      # channel) order, a plain reshape.
      return value.reshape(shape)
  except ValueError:
    return None
  return None


def _assign_by_path(model: keras.Model, shapes: Mapping[str, Tuple[int, ...]],
                    read: Callable[[str], np.ndarray], source: str,
                    skip_regex: Optional[str], adapt_shapes: bool) -> dict:
  """Copies source arrays into model variables by relative path."""
  skip = re.compile(skip_regex) if skip_regex else None
  targets = variables_by_path(model)
  adapters = _adapters(model)
  report = {"loaded": [], "adapted": [], "missing": [], "unused": [],
            "skipped": []}
  errors = []
  pending = []
  for path, var in targets.items():
    if skip is not None and skip.search(path):
      report["skipped"].append(path)
      continue
    if path not in shapes:
      report["missing"].append(path)
      continue
    src_shape = tuple(shapes[path])
    dst_shape = tuple(var.shape)
    if src_shape == dst_shape:
      pending.append((path, var, None))
      continue
    kind, layer = adapters.get(id(var), (None, None))
    value = None
    if adapt_shapes and kind is not None:
      value = _adapt(kind, layer, read(path), var)
    if value is None or tuple(value.shape) != dst_shape:
      errors.append(f"  {path}: {source} has shape {src_shape}, the model"
                    f" {dst_shape}")
      continue
    pending.append((path, var, value))
  if errors:
    raise ValueError(
        f"shape mismatch between {source} and the model for"
        f" {len(errors)} variable(s) (no §7.3 adaptation applies"
        f"{'' if adapt_shapes else '; adapt_shapes=False'}):\n"
        + "\n".join(errors))
  for path, var, value in pending:
    if value is None:
      var.assign(read(path).astype(var.dtype))
      report["loaded"].append(path)
    else:
      var.assign(value.astype(var.dtype))
      report["adapted"].append(path)
  used = set(targets)
  report["unused"] = sorted(p for p in shapes if p not in used and not (
      skip is not None and skip.search(p)))
  return report


def _checkpoint_index(checkpoint_path: str):
  """(reader, {relative path: checkpoint key}) of an unloc_tf checkpoint."""
  if tf.io.gfile.isdir(checkpoint_path):
    latest = tf.train.latest_checkpoint(checkpoint_path)
    if latest is None:
      best = os.path.join(checkpoint_path, "best.json")
      if tf.io.gfile.exists(best):
        with tf.io.gfile.GFile(best) as f:
          latest = os.path.join(checkpoint_path, json.load(f)["checkpoint"])
    if latest is None:
      raise ValueError(f"no checkpoint in directory {checkpoint_path}")
    checkpoint_path = latest
  reader = tf.train.load_checkpoint(checkpoint_path)
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  root = graph.nodes[0]
  index = [c.node_id for c in root.children if c.local_name == INDEX_NAME]
  if not index:
    raise ValueError(
        f"{checkpoint_path} has no variable index ('{INDEX_NAME}'): it was"
        " not written by unloc_tf.train.checkpoints.Checkpointer")
  keys = {}
  for child in graph.nodes[index[0]].children:
    attrs = graph.nodes[child.node_id].attributes
    for attr in attrs:
      if attr.name == "VARIABLE_VALUE":
        keys[child.local_name] = attr.checkpoint_key
  return checkpoint_path, reader, keys


def restore_partial(model: keras.Model, checkpoint_path: str,
                    skip_regex: Optional[str] = None,
                    adapt_shapes: bool = True) -> dict:
  """Initialises `model` from another unloc_tf checkpoint, by variable path.

  Args:
    model: a built model (its variables exist).
    checkpoint_path: a checkpoint prefix (`.../ckpt-500`), a checkpoint
      directory (its latest checkpoint) or a best/ directory.
    skip_regex: relative paths matching it (`re.search`) are not loaded.
    adapt_shapes: apply the §7.3 shape adaptations (module docstring);
      False makes every shape mismatch an error.

  Returns:
    {"loaded": paths copied as they are, "adapted": paths copied with a
     shape adaptation, "missing": model paths absent from the checkpoint
     (kept at their init), "unused": checkpoint paths absent from the
     model, "skipped": paths matching skip_regex}.

  Raises:
    ValueError: listing every variable whose shape differs with no
      adaptation rule (nothing is assigned then), or a checkpoint without
      the variable index.
  """
  path, reader, keys = _checkpoint_index(checkpoint_path)
  shape_map = reader.get_variable_to_shape_map()
  shapes = {p: tuple(shape_map[k]) for p, k in keys.items()}
  return _assign_by_path(model, shapes, lambda p: reader.get_tensor(keys[p]),
                         path, skip_regex, adapt_shapes)


def load_weights_npz(model: keras.Model, path: str,
                     skip_regex: Optional[str] = None,
                     adapt_shapes: bool = True) -> dict:
  """`restore_partial` from a flat .npz of {variable path: array}.

  Keys are Keras `variable.path`s.  If every key starts with the same
  component and that component is not a top-level name inside the model
  (i.e. it is some model's own name, "moment_retriever"), it is dropped, so
  files written from another instance of the model load by relative path.

  Args:
    model: a built model.
    path: the .npz file.
    skip_regex, adapt_shapes: as in `restore_partial`.

  Returns:
    The report of `restore_partial`.
  """
  with np.load(path) as data:
    arrays = {k: data[k] for k in data.files}
  heads = {k.split("/", 1)[0] for k in arrays}
  inner = {p.split("/", 1)[0] for p in variables_by_path(model)}
  if len(heads) == 1 and all("/" in k for k in arrays) and not (
      heads & inner):
    arrays = {optimizers.relative_path(k): v for k, v in arrays.items()}
  shapes = {k: tuple(v.shape) for k, v in arrays.items()}
  return _assign_by_path(model, shapes, lambda p: np.asarray(arrays[p]),
                         path, skip_regex, adapt_shapes)


def save_weights_npz(model: keras.Model, path: str) -> None:
  """Writes {variable.path: array} of every model variable (a test aid and
  the converter's format)."""
  np.savez(path, **{v.path: keras.ops.convert_to_numpy(v)
                    for v in model.variables})
