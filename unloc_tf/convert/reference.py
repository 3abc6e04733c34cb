"""Scenic UnLoc parameter trees ⇄ unloc_tf task models (reference_spec §2.11).

The reference (google-research/scenic `projects/unloc`, Flax) stores its
parameters as a nested tree.  Flattened with "/" its names are, for the
model parts every task has:

  video_encoder/conv1/kernel                      (p*p*3, Dv)
  video_encoder/class_embedding                   (N0, Dv)   'token' only
  video_encoder/VisionTransformer/positional_embedding   (1+P or P, Dv)
  video_encoder/VisionTransformer/{ln_pre,ln_post}/{scale,bias}
  video_encoder/VisionTransformer/transformer/resblocks.{i}/
      {ln_1,ln_2}/{scale,bias}, attn/{query,key,value,out}/{kernel,bias},
      mlp/{c_fc,c_proj}/{kernel,bias}
  video_projection/kernel                         (Dv, D)
  text_encoder/token_embedding/embedding          (V, Dt)
  text_encoder/positional_embedding               (Lt, Dt)
  text_encoder/transformer/resblocks.{i}/...      (as the image tower)
  text_encoder/ln_final/{scale,bias}
  text_projection/kernel                          (Dt or De, D)
  video_text_fusion/video_text_encoder/
      encoderblock_{i}/{LayerNorm_0,LayerNorm_1}/{scale,bias},
      encoderblock_{i}/MultiHeadAttention_0/{query,key,value,out}/{kernel,bias},
      encoderblock_{i}/MlpBlock_0/{Dense_0,Dense_1}/{kernel,bias},
      output_conv_{l}/{kernel (3, 1, D), bias}, output_ln_{l}/{scale,bias}
        (simple_pyramid, fpn), encoder_norm/{scale,bias} (transformer),
      posembed_input/pos_embedding (1, L, D) ('learned' position embedding)

and per task head (`{task}_head`, task = temporal_localization,
highlight_detection, moment_retrieval, action_segmentation):

  {task}_head/{ClassificationHead,RegressionHead}[_{l}]/
      ln{i}/{scale,bias}, conv{i}/{kernel (k, D, D),bias},
      output_projection/{kernel,bias}
  {task}_head/scale_{l}, {task}_head/shift_{l}      (1,)  shared heads only
  action_segmentation_head/output_projection/{kernel,bias}

Layouts.  Flax Dense kernels are [in, out] like Keras'; the attention
DenseGeneral kernels (D, heads, D/heads) and (heads, D/heads, D) are the
Keras `MultiHeadAttention` EinsumDense layouts (Keras calls `out`
`attention_output`); Conv1D kernels are (k, in, out) in both.  Three
parameters change layout:
  * `conv1/kernel` (p*p*3, Dv), a Dense on patches flattened in (row, col,
    channel) order ⇄ the Conv2D kernel (p, p, 3, Dv): a plain reshape;
  * depthwise `output_conv_{l}/kernel` (3, 1, D) (Flax Conv with
    feature_group_count=D: (k, in/groups, out)) ⇄ Keras DepthwiseConv1D
    (3, D, 1): a transpose of the last two axes;
  * `posembed_input/pos_embedding` (1, L, D) ⇄ (L, D).
LayerNorm `scale`/`bias` are Keras `gamma`/`beta`; `embedding` is Keras'
`embeddings`.

Names for model parts the reference does not have (unloc_tf extensions;
they follow the same convention): late fusion `{task}_head/logit_scale`
and `{task}_head/logit_bias` (1,); the classification task's matching
head `classification_head/output_projection/{kernel,bias}`.  The
video-only head keeps the reference names with C (or 2C) outputs.

Converting.  `import_reference_tree` assigns a tree to a built model and
refuses (`ReferenceTreeMismatch`, nothing assigned) unless every reference
name maps onto a model variable and every model variable gets a value of
the right shape; `export_reference_tree` is the inverse.  `convert` and
`to_reference` do the same between a reference checkpoint file
(`reference_io`) and an unloc_tf workdir checkpoint, given the model; both
build it with their source's cached-embedding widths (frame embeddings Dv
in `video_projection/kernel` [Dv, D], text embeddings De in
`text_projection/kernel` [De, D]), which the model config does not hold.
Reference → unloc_tf → reference is exact (bit for bit).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.convert import reference_io
from unloc_tf.tasks import (
  action_localizer,
  action_segmenter,
  moment_retriever,
  video_text_classifier,
)
from unloc_tf.train import checkpoints

FUSION_PREFIX = "video_text_fusion/video_text_encoder"


class ReferenceTreeMismatch(ValueError):
  """A reference tree that does not map completely onto a model.

  Attributes:
    unmatched: reference names with no model variable, with their shapes.
    missing: (reference name, model variable path, model shape) of model
      variables the tree has no value for.
    shape_mismatches: (reference name, reference shape, expected reference
      shape, model variable path, model shape).
  """

  def __init__(self, message: str, unmatched=(), missing=(),
               shape_mismatches=()):
    super().__init__(message)
    self.unmatched = list(unmatched)
    self.missing = list(missing)
    self.shape_mismatches = list(shape_mismatches)


# ---------------------------------------------------------------------------
# The mapping: reference name ⇄ model variable (+ layout change).
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """One reference parameter and the model variable that holds it.

  Attributes:
    name: reference name ("/"-joined).
    variable: the Keras variable.
    layout: "same", "patch_kernel" ((p*p*3, D) ⇄ (p, p, 3, D)),
      "depthwise_kernel" ((3, 1, D) ⇄ (3, D, 1)) or "posembed" ((1, L, D) ⇄
      (L, D)).
  """

  name: str
  variable: Any
  layout: str = "same"

  @property
  def model_shape(self) -> Tuple[int, ...]:
    return tuple(int(d) for d in self.variable.shape)

  @property
  def reference_shape(self) -> Tuple[int, ...]:
    s = self.model_shape
    if self.layout == "patch_kernel":
      return (s[0] * s[1] * s[2], s[3])
    if self.layout == "depthwise_kernel":
      return (s[0], s[2], s[1])
    if self.layout == "posembed":
      return (1,) + s
    return s

  def to_reference(self, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if self.layout == "depthwise_kernel":
      return np.transpose(value, (0, 2, 1))
    return value.reshape(self.reference_shape)

  def to_model(self, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if self.layout == "depthwise_kernel":
      return np.transpose(value, (0, 2, 1))
    return value.reshape(self.model_shape)


def task_of(model) -> str:
  """The task of a task model (`spec.TAL`, `spec.HD`, `spec.MR`, ...)."""
  if isinstance(model, action_localizer.ActionLocalizer):
    return model.task
  if isinstance(model, moment_retriever.MomentRetriever):
    return spec.MR
  if isinstance(model, action_segmenter.ActionSegmenter):
    return spec.AS
  if isinstance(model, video_text_classifier.VideoTextClassifier):
    return spec.CLS
  raise TypeError(f"not an unloc_tf task model: {type(model).__name__}")


class _Collector:
  def __init__(self):
    self.specs: List[ParamSpec] = []

  def add(self, name: str, variable, layout: str = "same") -> None:
    if variable is not None:
      self.specs.append(ParamSpec(name, variable, layout))

  def layer_norm(self, name: str, layer) -> None:
    if layer is not None and layer.built:
      self.add(f"{name}/scale", layer.gamma)
      self.add(f"{name}/bias", layer.beta)

  def dense(self, name: str, layer) -> None:
    """Dense / Conv1D / EinsumDense: kernel and (optional) bias."""
    if layer is None or not layer.built:
      return
    self.add(f"{name}/kernel", layer.kernel)
    self.add(f"{name}/bias", getattr(layer, "bias", None))

  def attention(self, name: str, mha, out_name: str = "out") -> None:
    self.dense(f"{name}/query", mha.query_dense)
    self.dense(f"{name}/key", mha.key_dense)
    self.dense(f"{name}/value", mha.value_dense)
    self.dense(f"{name}/{out_name}", mha.output_dense)

  def clip_blocks(self, prefix: str, blocks) -> None:
    for i, block in enumerate(blocks):
      p = f"{prefix}/resblocks.{i}"
      self.layer_norm(f"{p}/ln_1", block.layer_norm_1)
      self.attention(f"{p}/attn", block.attention)
      self.layer_norm(f"{p}/ln_2", block.layer_norm_2)
      self.dense(f"{p}/mlp/c_fc", block.dense_1)
      self.dense(f"{p}/mlp/c_proj", block.dense_2)

  def conv_block(self, prefix: str, block) -> None:
    for i, (ln, conv) in enumerate(zip(block.layer_norms, block.convs)):
      self.layer_norm(f"{prefix}/ln{i}", ln)
      self.dense(f"{prefix}/conv{i}", conv)
    self.dense(f"{prefix}/output_projection", block.output_projection)


def _backbone_specs(c: _Collector, bb) -> None:
  image = bb.image_encoder
  if image is not None and image.built:
    c.add("video_encoder/conv1/kernel", image.patch_embedding.kernel,
          "patch_kernel")
    c.add("video_encoder/class_embedding", image.class_embedding)
    vit = "video_encoder/VisionTransformer"
    c.add(f"{vit}/positional_embedding", image.position_embedding)
    c.layer_norm(f"{vit}/ln_pre", image.ln_pre)
    c.clip_blocks(f"{vit}/transformer", image.blocks)
    c.layer_norm(f"{vit}/ln_post", image.ln_post)
  c.dense("video_projection", bb.video_projection)
  text = bb.text_encoder
  if text is not None and text.built:
    c.add("text_encoder/token_embedding/embedding",
          text.token_embedding.embeddings)
    c.add("text_encoder/positional_embedding", text.position_embedding)
    c.clip_blocks("text_encoder/transformer", text.blocks)
    c.layer_norm("text_encoder/ln_final", text.ln_final)
  c.dense("text_projection", bb.text_projection)
  fusion = bb.fusion
  c.add(f"{FUSION_PREFIX}/posembed_input/pos_embedding", fusion.pos_embedding,
        "posembed")
  for i, block in enumerate(fusion.blocks):
    p = f"{FUSION_PREFIX}/encoderblock_{i}"
    c.layer_norm(f"{p}/LayerNorm_0", block.layer_norm_0)
    c.attention(f"{p}/MultiHeadAttention_0", block.attention)
    c.layer_norm(f"{p}/LayerNorm_1", block.layer_norm_1)
    c.dense(f"{p}/MlpBlock_0/Dense_0", block.mlp.dense_0)
    c.dense(f"{p}/MlpBlock_0/Dense_1", block.mlp.dense_1)
  pyramid = fusion.feature_pyramid
  for l, (conv, ln) in enumerate(zip(pyramid.output_convs,
                                     pyramid.output_lns)):
    if conv.built:
      c.add(f"{FUSION_PREFIX}/output_conv_{l}/kernel", conv.kernel,
            "depthwise_kernel")
      c.add(f"{FUSION_PREFIX}/output_conv_{l}/bias", conv.bias)
    c.layer_norm(f"{FUSION_PREFIX}/output_ln_{l}", ln)
  c.layer_norm(f"{FUSION_PREFIX}/encoder_norm", pyramid.encoder_norm)


def _head_specs(c: _Collector, model, head_name: str) -> None:
  if isinstance(model, video_text_classifier.VideoTextClassifier):
    c.dense(f"{head_name}/output_projection", model.classifier)
    return
  head = model.head
  if isinstance(model, action_segmenter.ActionSegmenter):
    c.dense(f"{head_name}/output_projection", head.output_projection)
    return
  shared = head.weight_sharing
  for l, block in enumerate(head.classification_heads):
    c.conv_block(f"{head_name}/ClassificationHead"
                 + ("" if shared else f"_{l}"), block)
  for l, block in enumerate(head.regression_heads):
    c.conv_block(f"{head_name}/RegressionHead" + ("" if shared else f"_{l}"),
                 block)
  for l, (scale, shift) in enumerate(zip(head.scales, head.shifts)):
    c.add(f"{head_name}/scale_{l}", scale)
    c.add(f"{head_name}/shift_{l}", shift)
  c.add(f"{head_name}/logit_scale", head.logit_scale)
  c.add(f"{head_name}/logit_bias", head.logit_bias)


def _is_rng_state(variable) -> bool:
  return "seed_generator" in variable.path


def reference_param_specs(model, head_name: Optional[str] = None
                          ) -> List[ParamSpec]:
  """The reference name and layout of every parameter of a built model.

  Args:
    model: a built unloc_tf task model (called once on a batch).
    head_name: reference name of the head subtree (default `{task}_head`).

  Returns:
    One `ParamSpec` per model variable (dropout / stochastic-depth RNG
    states excepted), in model order.

  Raises:
    ValueError: the model is unbuilt, or has variables this mapping does
      not know (listed).
  """
  if not model.variables:
    raise ValueError(f"model {model.name!r} has no variables yet: call it on"
                     " a batch first (see build_task_model)")
  head_name = head_name or f"{task_of(model)}_head"
  c = _Collector()
  _backbone_specs(c, model.backbone)
  _head_specs(c, model, head_name)
  names = [s.name for s in c.specs]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ValueError(f"reference names used twice: {dupes}")
  covered = {id(s.variable) for s in c.specs}
  unknown = [v.path for v in model.variables
             if id(v) not in covered and not _is_rng_state(v)]
  if unknown:
    raise ValueError(
        f"model {model.name!r} has {len(unknown)} variable(s) with no"
        " reference name (a layer unloc_tf/convert/reference.py does not"
        " map):\n  " + "\n  ".join(unknown))
  return c.specs


def export_reference_tree(model, head_name: Optional[str] = None
                          ) -> Dict[str, np.ndarray]:
  """A built model's weights as a flat reference-named tree.

  Args:
    model: a built unloc_tf task model.
    head_name: reference name of the head subtree (default `{task}_head`).

  Returns:
    {reference name: array in the reference layout} (see the module
    docstring), e.g. for `reference_io.write_reference_tree` or Flax
    `unflatten_dict(..., sep="/")`.
  """
  return {s.name: s.to_reference(keras.ops.convert_to_numpy(s.variable))
          for s in reference_param_specs(model, head_name)}


def _normalize_names(tree: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Accepts `resblocks_{i}` (CLIP's use_underscore_module_name) too."""
  out = {}
  for name, value in tree.items():
    fixed = re.sub(r"(^|/)resblocks_(\d+)(?=/)", r"\1resblocks.\2", name)
    if fixed != name and fixed in tree:
      fixed = name  # Both spellings present: keep both, refuse later.
    out[fixed] = value
  return out


def import_reference_tree(model, tree: Mapping[str, np.ndarray], *,
                          head_name: Optional[str] = None,
                          ignore_regex: Optional[str] = None,
                          source: str = "the reference tree") -> dict:
  """Assigns a reference-named flat tree to a built model, all or nothing.

  Every reference name must map onto a model variable and every model
  variable must get a value of the expected shape; otherwise nothing is
  assigned and `ReferenceTreeMismatch` lists every unmatched reference name,
  every missing model variable and every shape mismatch (with both shapes).

  One exact equivalence is filled in: reference configs with precomputed
  text embeddings (`pass_through_encoder`, TAL-L, COIN-L) have no
  `text_projection`, whereas the unloc_tf model always projects; when the
  model has no text tower, the tree has no `text_projection/kernel` and the
  projection is square (De == D), it is set to the identity (reported in
  "synthesized").

  Args:
    model: a built unloc_tf task model.
    tree: {reference name: array}, e.g. from
      `reference_io.read_reference_tree`.
    head_name: reference name of the head subtree (default `{task}_head`);
      e.g. "temporal_localization_head" to put a TAL head into an HD model.
    ignore_regex: reference names matching it (`re.search`) are dropped
      before matching (e.g. other tasks' heads of a multi-head tree).
    source: the tree's origin (file name) for messages.

  Returns:
    {"loaded": reference names assigned, "ignored": names dropped by
     ignore_regex, "synthesized": names filled in (see above)}.

  Raises:
    ReferenceTreeMismatch: the tree does not map completely.
  """
  specs = reference_param_specs(model, head_name)
  tree = _normalize_names(tree)
  ignore = re.compile(ignore_regex) if ignore_regex else None
  ignored = sorted(n for n in tree if ignore is not None and ignore.search(n))
  tree = {n: v for n, v in tree.items() if n not in set(ignored)}
  by_name = {s.name: s for s in specs}
  synthesized = {}
  proj = by_name.get("text_projection/kernel")
  if (proj is not None and "text_projection/kernel" not in tree
      and model.backbone.text_encoder is None
      and proj.model_shape[0] == proj.model_shape[1]):
    synthesized["text_projection/kernel"] = np.eye(proj.model_shape[0],
                                                   dtype=np.float32)
  values = dict(tree, **synthesized)

  unmatched = [(n, tuple(np.shape(v))) for n, v in sorted(tree.items())
               if n not in by_name]
  missing = [(s.name, s.variable.path, s.model_shape) for s in specs
             if s.name not in values]
  mismatched = []
  for s in specs:
    if s.name in values:
      shape = tuple(np.shape(values[s.name]))
      if shape != s.reference_shape:
        mismatched.append((s.name, shape, s.reference_shape, s.variable.path,
                           s.model_shape))
  if unmatched or missing or mismatched:
    lines = [f"{source} does not map completely onto model {model.name!r}"
             f" (task {task_of(model)}); nothing was assigned."]
    if unmatched:
      lines.append(f"{len(unmatched)} reference name(s) with no model"
                   " variable:")
      lines += [f"  {n}  shape {s}" for n, s in unmatched]
    if missing:
      lines.append(f"{len(missing)} model variable(s) missing from"
                   f" {source}:")
      lines += [f"  {n}  (model variable {p}, shape {s})"
                for n, p, s in missing]
    if mismatched:
      lines.append(f"{len(mismatched)} shape mismatch(es):")
      lines += [f"  {n}: {source} has shape {r}, the model needs {e}"
                f" (model variable {p}, shape {m})"
                for n, r, e, p, m in mismatched]
    raise ReferenceTreeMismatch("\n".join(lines), unmatched, missing,
                                mismatched)
  for s in specs:
    value = s.to_model(values[s.name])
    s.variable.assign(value.astype(keras.backend.standardize_dtype(
        s.variable.dtype)))
  return {"loaded": sorted(n for n in by_name if n not in synthesized),
          "ignored": ignored, "synthesized": sorted(synthesized)}


# ---------------------------------------------------------------------------
# Building a model without data.
# ---------------------------------------------------------------------------
def example_inputs(model, reference_shapes: Optional[Mapping[str, Sequence[
    int]]] = None, batch_size: int = 1, num_texts: int = 2
                   ) -> Dict[str, np.ndarray]:
  """A zero batch with the shapes a task model needs to build its weights.

  Cached-embedding widths are not part of the model config; they come from
  `reference_shapes` (`video_projection/kernel` for frame embeddings,
  `text_projection/kernel` for text embeddings) or default to D.

  Args:
    model: an unbuilt (or built) unloc_tf task model.
    reference_shapes: {reference name: shape} of the tree to convert.
    batch_size: B.
    num_texts: class names (TAL/AS/CLS) or captions (MR) per batch.

  Returns:
    {feature key: array}.
  """
  shapes = dict(reference_shapes or {})
  bb = model.backbone
  task = task_of(model)
  head = getattr(model, "head", None)
  image = bb.image_encoder
  if image is not None:
    n0 = image.num_frames
  elif hasattr(head, "level_lengths"):
    n0 = head.level_lengths[0]
  else:
    n0 = 8
  b = batch_size
  x: Dict[str, np.ndarray] = {spec.FRAME_MASK: np.ones((b, n0), np.int32)}
  if image is not None:
    s = image.image_size
    x[spec.FRAMES] = np.zeros((b, n0, s, s, 3), np.uint8)
  else:
    dv = shapes.get("video_projection/kernel", (bb.embed_dim,))[0]
    x[spec.FRAME_EMBEDDINGS] = np.zeros((b, n0, dv), np.float32)
  nt = {spec.HD: 1, spec.MR: 1}.get(task, num_texts)
  video_only = head is not None and getattr(head, "num_outputs", 1) > 1
  if bb.text_encoder is not None:
    length = bb.text_encoder.max_length
    ids = np.zeros((b, nt, length), np.int32)
    ids[..., 0], ids[..., 1] = 49406, 49407
    x[spec.TEXT_IDS] = ids
    x[spec.TEXT_MASK] = (ids > 0).astype(np.int32)
  elif not video_only:
    de = shapes.get("text_projection/kernel", (bb.embed_dim,))[0]
    x[spec.TEXT_EMBEDDINGS] = np.zeros((b, nt, de), np.float32)
  x[spec.TEXT_VALID] = np.ones((b, nt), np.int32)
  return x


def build_task_model(model, reference_shapes=None):
  """Creates a task model's weights by calling it once on `example_inputs`.

  Returns:
    `model`.
  """
  inputs = example_inputs(model, reference_shapes)
  model({k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()},
        training=False)
  return model


# Reference names of the kernels whose input width is the width of a cached
# input (frame embeddings Dv, text embeddings De), not part of the model
# config: {reference name: backbone attribute of the Dense layer}.
_INPUT_WIDTH_KERNELS = {"video_projection/kernel": "video_projection",
                        "text_projection/kernel": "text_projection"}


def checkpoint_reference_shapes(model, checkpoint_path: str
                                ) -> Dict[str, Tuple[int, ...]]:
  """The input-width kernel shapes saved in an unloc_tf checkpoint.

  A model on cached embeddings sizes `video_projection/kernel` [Dv, D] and
  `text_projection/kernel` [De, D] from its first batch, so rebuilding it
  for a checkpoint needs the checkpoint's Dv / De (e.g. 768 for ViT-B/16
  frame embeddings, whatever D is).

  Args:
    model: an unbuilt (or built) unloc_tf task model.
    checkpoint_path: a checkpoint prefix or directory (its latest) written by
      `checkpoints.Checkpointer`.

  Returns:
    {reference name: shape} for `build_task_model`; a kernel the checkpoint
    does not hold (no such layer, or saved under an unexpected path) is left
    out (the model's default width is used and the restore reports it).
  """
  _, reader, keys = checkpoints._checkpoint_index(checkpoint_path)  # pylint: disable=protected-access
  shape_map = reader.get_variable_to_shape_map()
  out = {}
  for name, attr in _INPUT_WIDTH_KERNELS.items():
    layer = getattr(model.backbone, attr, None)
    if layer is None:
      continue
    suffix = f"{layer.name}/kernel"
    found = [p for p in keys if p == suffix or p.endswith("/" + suffix)]
    if len(found) == 1:
      out[name] = tuple(int(d) for d in shape_map[keys[found[0]]])
  return out


# ---------------------------------------------------------------------------
# Reference checkpoint files ⇄ unloc_tf workdirs.
# ---------------------------------------------------------------------------
def convert(reference_checkpoint: str, model, workdir: str, *,
            output_npz: Optional[str] = None,
            head_name: Optional[str] = None,
            ignore_regex: Optional[str] = None) -> dict:
  """Fills `model` from a reference checkpoint and saves it in `workdir`.

  Writes `<workdir>/checkpoints/ckpt-0` (variable-path index: read by
  `evaluation.restore_model` as "latest" and by `checkpoints.
  restore_partial`), `<workdir>/conversion.json` (the returned report) and,
  with `output_npz`, {variable path: array} (`checkpoints.
  load_weights_npz`).  Nothing is written unless the tree maps completely.

  Args:
    reference_checkpoint: anything `reference_io.read_reference_tree` reads.
    model: an unloc_tf task model of the checkpoint's architecture; its
      weights are created by `build_task_model` with the tree's shapes.
    workdir: output directory, without a checkpoint yet.
    output_npz: also write the weights as a flat .npz of variable paths.
    head_name, ignore_regex: as `import_reference_tree`.

  Returns:
    {"reference_checkpoint", "task", "model", "checkpoint", "output_npz",
     "num_parameters"} and `import_reference_tree`'s report.

  Raises:
    ReferenceTreeMismatch: the checkpoint does not map completely onto the
      model (nothing is written).
    FileExistsError: `workdir` already has checkpoints.
  """
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if tf.train.latest_checkpoint(ckpt_dir):
    raise FileExistsError(
        f"{ckpt_dir} already holds a checkpoint; convert into an empty"
        " --workdir")
  tree = reference_io.read_reference_tree(reference_checkpoint)
  build_task_model(model, {k: v.shape for k, v in tree.items()})
  report = import_reference_tree(
      model, tree, head_name=head_name, ignore_regex=ignore_regex,
      source=reference_checkpoint)
  prefix = checkpoints.Checkpointer(ckpt_dir, model).save(0)
  if output_npz:
    checkpoints.save_weights_npz(model, output_npz)
  summary = {
      "reference_checkpoint": os.path.abspath(reference_checkpoint),
      "task": task_of(model),
      "model": model.name,
      "checkpoint": prefix,
      "output_npz": output_npz,
      "num_parameters": int(sum(v.size for v in tree.values())),
      **report,
  }
  with open(os.path.join(workdir, "conversion.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def to_reference(model, workdir: str, output: str,
                 head_name: Optional[str] = None) -> dict:
  """Writes the reference-named tree of the model saved in `workdir`.

  Args:
    model: an unloc_tf task model of the workdir's architecture, unbuilt:
      it is built here by `build_task_model` with the checkpoint's
      cached-embedding widths (`checkpoint_reference_shapes`).
    workdir: holds `checkpoints/` (its latest checkpoint is read).
    output: `.npz` or Flax msgpack file (`reference_io.write_reference_tree`).
    head_name: as `export_reference_tree`.

  The identity `text_projection/kernel` that `import_reference_tree`
  synthesizes for the reference's pass-through text-embedding configs
  (TAL-L, COIN-L: no text tower, square projection) is left out again, so
  reference → unloc_tf → reference gives back the same names; a trained
  (non-identity) projection is written, though those reference configs
  have no parameter to read it into.

  Returns:
    {"output": output, "num_names": number of reference names written,
     "omitted": names left out (the identity text projection, or none)}.

  Raises:
    ValueError: the checkpoint's variables (names or shapes) differ from
      the model's.
  """
  ckpt_dir = os.path.join(workdir, "checkpoints")
  build_task_model(model, checkpoint_reference_shapes(model, ckpt_dir))
  hint = ("Pass the --gin_file / --gin_bindings the workdir was trained or"
          " converted with (a training run records them in"
          f" {workdir}/operative_config.gin).")
  try:
    report = checkpoints.restore_partial(model, ckpt_dir, adapt_shapes=False)
  except ValueError as e:
    raise ValueError(f"{ckpt_dir} does not fit the gin model {model.name!r}:"
                     f" {e}\n{hint}") from e
  if report["missing"] or report["unused"]:
    raise ValueError(
        f"{ckpt_dir} does not match the gin model {model.name!r}: model"
        f" variables missing from the checkpoint {report['missing']},"
        f" checkpoint variables the model does not have"
        f" {report['unused']}. {hint}")
  tree = export_reference_tree(model, head_name)
  omitted = []
  proj = tree.get("text_projection/kernel")
  if (proj is not None and model.backbone.text_encoder is None
      and proj.ndim == 2 and proj.shape[0] == proj.shape[1]
      and np.array_equal(proj, np.eye(proj.shape[0], dtype=proj.dtype))):
    del tree["text_projection/kernel"]
    omitted.append("text_projection/kernel")
  reference_io.write_reference_tree(output, tree)
  return {"output": output, "num_names": len(tree), "omitted": omitted}
