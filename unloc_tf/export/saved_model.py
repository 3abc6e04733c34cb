"""SavedModel export of the UnLoc task models for TF Serving.

`export(...)` writes `<export_dir>/<version>/` (TF Serving's layout: an
integer version directory under the model base path; written to a temporary
sibling first and renamed, so a polling server never sees half a model) with
two signatures (`signatures.ServingModule`) that run the task's own decoding,
the post-processing of evaluation:

* `serving_default`: numeric tensors only (core TF ops; any TF binary loads a
  model exported with `text_signature=False`);
* `serving_text`: text as `tf.string`, tokenised in the graph with TF-Text
  ops, which stock TF Serving links (`import tensorflow_text` elsewhere).

Outputs: TAL / HD `segments` [B, M, 2] float32 seconds, `scores` [B, M],
`classes` [B, M] int32 (-1 = padding), `num_detections` [B] (HD also
`saliency` [B, max_clips], 2 s clips); MR `segments` [B, K, M, 2], `scores`
[B, K, M], `num_detections` [B, K] (caption k in row k); AS `frame_classes`
[B, N0] int32 (-1 = background or padding) and `logits` [B, N0, C].

Next to the model: `assets.extra/export_info.json` (task; per signature the
inputs and outputs with their tensor names, dtypes and declared shapes, as
TF Serving's GetModelMetadata reports them (`serving_metadata`), and
`required_shape` where the graph checks a fixed text count; class names,
post-processing settings, op audit),
`assets.extra/tf_serving_warmup_requests` (one valid request of batch 1 per
signature, which TF Serving replays before it serves the version, so the
first client does not pay the graph's warm-up: all-zero frames or
embeddings, every frame real, total_frames = N0, 1 s per frame, and real
text: the export's class names, or "warm up" per text row) and
`assets.extra/operative_config.gin` (the gin config the model was built with,
when given).  Written by `keras.export.ExportArchive` with a named
`tf.TensorSpec` per input (keras_tf_pitfalls.md §5).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Any, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf import version as version_lib
from unloc_tf.data import text as text_lib
from unloc_tf.export import op_audit, serving_metadata, serving_requests
from unloc_tf.export import signatures as signatures_lib
from unloc_tf.tasks import base

SERVING_DEFAULT = "serving_default"
SERVING_TEXT = "serving_text"
# TF-Text ops of the text signature (data.text: RE2 pre-split and Unicode
# NFC).  Both are in TF-Text's `ops_lib`, which TF Serving links.
TEXT_NON_CORE_OPS = ("RegexSplitWithOffsets", "NormalizeUTF8")
INFO_FILENAME = "export_info.json"
GIN_FILENAME = "operative_config.gin"
WARMUP_FILENAME = serving_requests.WARMUP_FILENAME
ASSETS_EXTRA = "assets.extra"
# The text of the warm-up requests when the export has no class names.
WARMUP_TEXT = "warm up"

CLASS_NAMES = signatures_lib.CLASS_NAMES
QUERIES = signatures_lib.QUERIES
# The tasks that serve detections (classification pre-training does not).
TASKS = (spec.TAL, spec.MR, spec.HD, spec.AS)


# ---------------------------------------------------------------------------
# Versions.
# ---------------------------------------------------------------------------
# Sorted integer version subdirectories of a model base path.
existing_versions = serving_metadata.existing_versions


def next_version(export_dir: str) -> int:
  """1 + the largest integer subdirectory of `export_dir` (1 if none)."""
  versions = existing_versions(export_dir)
  return versions[-1] + 1 if versions else 1


def _json_safe(value):
  """Non-finite floats as strings (JSON has no inf / nan)."""
  if isinstance(value, float) and not np.isfinite(value):
    return str(value)
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  return value


def _tensor_info(info, required=None) -> Dict[str, Any]:
  """A signature_def's `TensorInfo` as TF Serving's model metadata gives it
  (`serving_metadata.tensor_info`), with `required_shape` when the graph
  checks a stricter shape (a fixed Nt)."""
  out = serving_metadata.tensor_info(info)
  if required is not None and list(required) != out["shape"]:
    out["required_shape"] = list(required)
  return out


def warmup_requests(module: signatures_lib.ServingModule, names: Sequence[str],
                    class_names: Optional[Sequence[str]],
                    text_mask_rule: str) -> Dict[str, Dict[str, np.ndarray]]:
  """{signature: one valid request of batch 1} for TF Serving's warm-up.

  The video is `module.dummy_batch(1)`'s (all zero, every frame real); the
  text is the class names (TAL / AS, when given and their count fits) or
  WARMUP_TEXT once per text row, as strings for `serving_text` and
  tokenised as the export's `TextTokenizer` does for `serving_default`.
  """
  video = {k: v for k, v in module.dummy_batch(1).items()
           if k not in (spec.TEXT_IDS, spec.TEXT_MASK)}
  if module.text_kind is None:
    return {name: video for name in names}
  count = module.num_text or 1
  texts = [WARMUP_TEXT] * count
  if module.text_kind == base.CLASS_NAMES and class_names and (
      module.num_text in (None, len(class_names))):
    texts = list(class_names)
  rows = texts
  if module.text_kind == base.CLASS_NAMES and module.prompts:
    rows = text_lib.apply_prompts(texts, module.prompts)
  tokenizer = module.tokenizer or text_lib.TextTokenizer(
      module.text_max_length, keep_eos=module.keep_eos,
      mask_rule=text_mask_rule)
  ids, mask = tokenizer(tf.constant(rows))
  out = {}
  for name in names:
    if name == SERVING_TEXT and module.text_kind == base.CLASS_NAMES:
      out[name] = dict(video, **{CLASS_NAMES: np.array(texts, object)})
    elif name == SERVING_TEXT:
      out[name] = dict(video, **{QUERIES: np.array([texts], object)})
    else:
      out[name] = dict(video, **{spec.TEXT_IDS: ids.numpy()[None],
                                 spec.TEXT_MASK: mask.numpy()[None]})
  return out


# ---------------------------------------------------------------------------
# Public entry point.
# ---------------------------------------------------------------------------
def export(
    *,
    model: keras.Model,
    export_dir: str,
    num_frames: int,
    task: Optional[str] = None,
    version: Optional[int] = None,
    input_mode: str = "frames",
    image_size: Optional[int] = None,
    embedding_dim: Optional[int] = None,
    text_max_length: int = 16,
    num_text: Optional[int] = None,
    class_names: Optional[Sequence[str]] = None,
    keep_eos: bool = False,
    text_mask_rule: str = "length",
    prompts: Optional[Sequence[str]] = None,
    settings: base.DecodeSettings = base.DecodeSettings(),
    operative_config: Optional[str] = None,
    text_signature: Optional[bool] = None,
    audit: bool = True,
) -> str:
  """Exports a task model as `<export_dir>/<version>/` for TF Serving.

  Signatures and their inputs / outputs: see `signatures` and the module
  docstring.

  Args:
    model: an `ActionLocalizer` (TAL / HD), `MomentRetriever` (MR) or
      `ActionSegmenter` (AS); built or not (an all-zero batch builds it).
    export_dir: the model base path; versions are its integer subdirs.
    num_frames: N0, frames per request (the model's static length).
    task: the model's task (checked), or None.
    version: the version; None = 1 + the largest existing one.  An existing
      version is never overwritten.
    input_mode: "frames" (uint8 frames through the image tower) or
      "embeddings" (cached frame embeddings).
    image_size: S of the frames; None = the image tower's.
    embedding_dim: D of the cached embeddings; None = the built model's.
    text_max_length: L, ids per text (<= the text tower's max_length).
    num_text: TAL / AS: C classes; MR: K captions per video; HD: 1.
      None = dynamic (any count per request, one text item at a time).
    class_names: the C class names (TAL / AS), recorded in export_info.json
      (the classes output indexes them).
    keep_eos: tokenisation of the text signature (`TextTokenizer`).
    text_mask_rule: its mask rule (`TextTokenizer`): the training's.
    prompts: P prompt templates with "{}" (class names): every class is
      scored with each prompt and the raw outputs are averaged; `text_ids`
      then hold C * P rows, class-major.
    settings: the decoding (post-processing) settings, as evaluation's.
    operative_config: the gin config string, written to
      `assets.extra/operative_config.gin`.
    text_signature: add `serving_text`; None = when the model reads text.
    audit: run `op_audit.audit_ops` on the result (raises on ops beyond
      core TF, and beyond `TEXT_NON_CORE_OPS` with the text signature).

  Returns:
    The version directory `<export_dir>/<version>/`.

  Raises:
    ValueError: on a task / model / argument mismatch, an existing version,
      or disallowed ops.
  """
  if getattr(model, "task", None) not in TASKS:
    raise ValueError(f"export takes a task model of one of {TASKS}, got"
                     f" {type(model).__name__}")
  if task is not None and model.task != task:
    raise ValueError(f"the {type(model).__name__} was built for task"
                     f" {model.task!r}, not {task!r}")
  if input_mode not in ("frames", "embeddings"):
    raise ValueError(f"input_mode must be 'frames' or 'embeddings', got"
                     f" {input_mode!r}")
  backbone = model.backbone
  if input_mode == "frames":
    if backbone.image_encoder is None:
      raise ValueError("input_mode='frames' needs a model with an image"
                       " tower (built with input_mode='frames')")
    tower_size = backbone.image_encoder.image_size
    image_size = int(image_size or tower_size)
    if image_size != tower_size:
      raise ValueError(f"image_size={image_size} but the image tower takes"
                       f" {tower_size}")
  elif embedding_dim is None:
    kernel = getattr(backbone.video_projection, "kernel", None)
    if kernel is None:
      raise ValueError("embedding_dim is needed for an unbuilt model with"
                       " input_mode='embeddings'")
    embedding_dim = int(kernel.shape[0])
  lengths = getattr(model.head, "level_lengths", None)
  if lengths and int(lengths[0]) != num_frames:
    raise ValueError(f"num_frames={num_frames} but the pyramid starts with"
                     f" {lengths[0]} tokens")
  kind = model.text_kind
  if kind is not None and backbone.text_encoder is None:
    raise ValueError("the model takes cached text embeddings; export needs"
                     " a text tower (text_input='tokens')")
  if kind is not None and text_max_length > backbone.text_encoder.max_length:
    raise ValueError(f"text_max_length={text_max_length} exceeds the text"
                     f" tower's max_length={backbone.text_encoder.max_length}")
  fixed = model.texts_per_video
  if fixed is not None:
    if num_text not in (None, fixed):
      raise ValueError(f"a {model.task} model reads {fixed} text(s) per"
                       f" video, got num_text={num_text}")
    num_text = fixed
  if prompts is not None:
    if kind != base.CLASS_NAMES:
      raise ValueError("prompts apply to class names (TAL / AS) only")
    text_lib.apply_prompts(["x"], prompts)  # validates the templates
  if class_names is not None:
    class_names = [str(c) for c in class_names]
    if kind == base.CLASS_NAMES and num_text is not None and (
        len(class_names) != num_text):
      raise ValueError(f"{len(class_names)} class_names but num_text="
                       f"{num_text}")
  if text_signature is None:
    text_signature = kind is not None
  if text_signature and kind is None:
    raise ValueError("a video-only model has no text signature")

  module = signatures_lib.ServingModule(
      model, num_frames=num_frames, input_mode=input_mode,
      image_size=image_size, embedding_dim=embedding_dim,
      text_max_length=text_max_length, num_text=num_text, prompts=prompts,
      keep_eos=keep_eos, settings=settings)

  if version is None:
    version = next_version(export_dir)
  version = int(version)
  if version < 0:
    raise ValueError(f"version must be >= 0, got {version}")
  final_dir = os.path.join(export_dir, str(version))
  if tf.io.gfile.exists(final_dir):
    raise ValueError(f"{final_dir} exists; versions are never overwritten")

  if not model.built:
    model(module.dummy_batch(), training=False)
  archive = keras.export.ExportArchive()
  # No `archive.track(model)`: the endpoints' captured tf.Variables are saved
  # anyway, and tracking the model's keras.Variable wrappers as well stores
  # every weight twice (2x on disk and in the server's RAM;
  # keras-team/keras#23553, Keras 3.15).
  endpoints = {SERVING_DEFAULT: archive.add_endpoint(
      SERVING_DEFAULT, module.serve,
      input_signature=[module.numeric_signature()])}
  if text_signature:
    module.tokenizer = text_lib.TextTokenizer(
        text_max_length, keep_eos=keep_eos, mask_rule=text_mask_rule)
    hub_tokenizer = text_lib.clip_tokenizer(module.tokenizer.vocabulary)
    if not hub_tokenizer.built:  # ExportArchive tracks built layers only.
      hub_tokenizer(tf.constant(["a"]))
    archive.track(hub_tokenizer)
    endpoints[SERVING_TEXT] = archive.add_endpoint(
        SERVING_TEXT, module.serve_text,
        input_signature=[module.text_signature()])

  tf.io.gfile.makedirs(export_dir)
  tmp_dir = tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=export_dir)
  try:
    archive.write_out(tmp_dir, verbose=False)
    audit_result = None
    if audit:
      audit_result = op_audit.audit_ops(
          tmp_dir, TEXT_NON_CORE_OPS if text_signature else ())
      leaked = audit_result["signatures"][SERVING_DEFAULT]["non_core"]
      if leaked:
        raise ValueError(f"{SERVING_DEFAULT} needs non-core ops {leaked}")
    extra = os.path.join(tmp_dir, ASSETS_EXTRA)
    os.makedirs(extra, exist_ok=True)
    if operative_config is not None:
      with open(os.path.join(extra, GIN_FILENAME), "w") as f:
        f.write(operative_config)
    signature_defs = op_audit.read_saved_model(tmp_dir).meta_graphs[
        0].signature_def
    info = _export_info(signature_defs, endpoints, module, version,
                        class_names, audit_result,
                        has_gin=operative_config is not None)
    with open(os.path.join(extra, INFO_FILENAME), "w") as f:
      json.dump(info, f, indent=1)
    serving_requests.write_warmup_requests(
        os.path.join(extra, WARMUP_FILENAME),
        warmup_requests(module, list(endpoints), class_names, text_mask_rule))
    os.rename(tmp_dir, final_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return final_dir + os.sep


def _export_info(signature_defs, endpoints,
                 ex: signatures_lib.ServingModule, version, class_names,
                 audit_result, has_gin) -> Dict[str, Any]:
  """The content of export_info.json; `signatures` holds, per signature,
  what TF Serving's GetModelMetadata returns (read back from the written
  saved_model.pb), plus the shapes the graph requires."""
  signatures = {}
  for name in endpoints:
    sig = signature_defs[name]
    expected = ex.expected_shapes(name == SERVING_TEXT)
    signatures[name] = {
        "method_name": sig.method_name,
        "inputs": {k: _tensor_info(v, expected[k])
                   for k, v in sorted(sig.inputs.items())},
        "outputs": {k: _tensor_info(v) for k, v in sorted(sig.outputs.items())},
    }
    if audit_result is not None:
      signatures[name]["non_core_ops"] = (
          audit_result["signatures"][name]["non_core"])
  lengths = getattr(ex.model.head, "level_lengths", None) or (ex.num_frames,)
  settings = ex.settings
  return {
      "task": ex.model.task,
      "version": version,
      "input_mode": ex.input_mode,
      "num_frames": ex.num_frames,
      "image_size": ex.image_size if ex.input_mode == "frames" else None,
      "embedding_dim": (ex.embedding_dim if ex.input_mode == "embeddings"
                        else None),
      "text_max_length": (ex.text_max_length if ex.text_kind is not None
                          else None),
      "num_text": ex.num_text,
      "text_rows": ex.text_rows,
      "class_names": class_names,
      "prompts": ex.prompts,
      "keep_eos": ex.keep_eos,
      "text_mask_rule": (ex.tokenizer.mask_rule if ex.tokenizer is not None
                         else None),
      "pyramid_level_lengths": [int(n) for n in lengths],
      "postprocess": _json_safe(dataclasses.asdict(settings)),
      "signatures": signatures,
      "non_core_ops": audit_result["non_core"] if audit_result else None,
      "operative_config": GIN_FILENAME if has_gin else None,
      "versions": {"tensorflow": tf.__version__,
                   "keras": keras.__version__,
                   "unloc_tf": version_lib.__version__},
  }
