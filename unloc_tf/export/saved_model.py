"""SavedModel export of the UnLoc task models for TF Serving.

`export(...)` writes `<export_dir>/<version>/` (TF Serving's layout: an
integer version directory under the model base path; written to a temporary
sibling first and renamed, so a polling server never sees half a model) with
two signatures that run the SAME post-processing as evaluation
(`unloc_tf.postprocess`, as in `unloc_tf.train.evaluation`):

`serving_default`: numeric tensors only (core TF ops; any TF binary loads a
model exported with `text_signature=False`).  Inputs (dynamic batch B; every
other dim is checked in the graph, with an error naming the input):

  frames            uint8   [B, N0, S, S, 3]  (input_mode "frames"; the
                                               image tower normalises) or
  frame_embeddings  float32 [B, N0, D]        (input_mode "embeddings")
  frame_mask        int32   [B, N0]           1 = real frame
  text_ids          int32   [B, Nt, L]        CLIP ids (data.text.TextTokenizer)
  text_mask         int32   [B, Nt, L]        1 = real token
  total_frames      int32   [B]               stored frames n of each video
  secs_per_timestep float32 [B]               seconds per stored frame

  Nt: TAL / AS the class list, C * P rows (P prompts per class, class-major
  as `data.text.apply_prompts`; P = 1 without prompts), the same in every
  row (the model scores row 0's list; checked); MR the K captions of each
  video (a caption whose text_mask is all 0 is padding: no detections); HD
  the video's query (Nt = 1).  `num_text=None` exports a dynamic Nt.
  Video-only TAL models take no text inputs.

  Outputs:
    TAL, HD  segments [B, M, 2] float32 seconds, scores [B, M] float32,
             classes [B, M] int32 (-1 = padding), num_detections [B] int32;
             HD also saliency [B, max_clips] float32 (2 s clips).
    MR       segments [B, Nt, M, 2], scores [B, Nt, M], num_detections
             [B, Nt] (detections of caption k in row k).
    AS       frame_classes [B, N0] int32 (-1 = background or padding),
             logits [B, N0, C] float32 (prompt-averaged).

`serving_text`: the same, but text as `tf.string`, tokenised in the graph
with `data.text.TextTokenizer` (TF-Text ops; stock TF Serving links them):
`class_names` [C] (TAL / AS; the export's prompts are applied in the graph)
or `queries` [B, K] (MR; an empty string is a padding caption) / [B, 1] (HD).
A SavedModel with this signature only loads where TF-Text's ops are
registered (`import tensorflow_text`, or TF Serving); pass
`text_signature=False` for a model that plain TensorFlow loads.

Next to the model: `assets.extra/export_info.json` (task, inputs and outputs
with their shapes, class names, post-processing settings, op audit) and
`assets.extra/operative_config.gin` (the gin config the model was built with,
when given).  Everything is written by `keras.export.ExportArchive` with a
named `tf.TensorSpec` per input (keras_tf_pitfalls.md §5).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import postprocess, spec
from unloc_tf.data import text as text_lib
from unloc_tf.export import op_audit
from unloc_tf.tasks import action_localizer, action_segmenter, moment_retriever

SERVING_DEFAULT = "serving_default"
SERVING_TEXT = "serving_text"
# TF-Text ops of the text signature (data.text: RE2 pre-split and Unicode
# NFC).  Both are in TF-Text's `ops_lib`, which TF Serving links.
TEXT_NON_CORE_OPS = ("RegexSplitWithOffsets", "NormalizeUTF8")
INFO_FILENAME = "export_info.json"
GIN_FILENAME = "operative_config.gin"
ASSETS_EXTRA = "assets.extra"

CLASS_NAMES = "class_names"
QUERIES = "queries"
TASKS = (spec.TAL, spec.MR, spec.HD, spec.AS)

_MODEL_CLASSES = {
    spec.TAL: action_localizer.ActionLocalizer,
    spec.HD: action_localizer.ActionLocalizer,
    spec.MR: moment_retriever.MomentRetriever,
    spec.AS: action_segmenter.ActionSegmenter,
}
_VERSION_DIR = re.compile(r"^\d+$")


# ---------------------------------------------------------------------------
# Versions.
# ---------------------------------------------------------------------------
def existing_versions(export_dir: str) -> List[int]:
  """Sorted integer version subdirectories of a model base path."""
  if not tf.io.gfile.isdir(export_dir):
    return []
  names = [n.rstrip("/") for n in tf.io.gfile.listdir(export_dir)]
  return sorted(int(n) for n in names if _VERSION_DIR.match(n)
                and tf.io.gfile.isdir(os.path.join(export_dir, n)))


def next_version(export_dir: str) -> int:
  """1 + the largest integer subdirectory of `export_dir` (1 if none)."""
  versions = existing_versions(export_dir)
  return versions[-1] + 1 if versions else 1


# ---------------------------------------------------------------------------
# In-graph input checks.
# ---------------------------------------------------------------------------
def _describe(dims) -> str:
  return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


def _checked(name: str, x: tf.Tensor, expected: Sequence[Any],
             what: str) -> tf.Tensor:
  """`x` after an in-graph check of its dims, with a static shape.

  Args:
    name: the signature input's name (it starts the error message).
    x: the tensor.
    expected: per dim, an int, a scalar int32 tensor (e.g. the batch of
      another input) or None (any).
    what: the expected shape in words, e.g. "[B, N0=8]".

  Returns:
    `x`, run after the check, with the static dims of `expected`.
  """
  rank = len(expected)
  actual = tf.shape(x, out_type=tf.int32)
  # A loaded signature (and a model server) runs the graph on tensors of any
  # rank; the rank is counted from the shape's values, since anything
  # computed from its static length (rank, size, ones_like) is folded to the
  # traced rank.  Padding keeps the per-dim reads in bounds.
  runtime_rank = tf.math.count_nonzero(actual >= 0, dtype=tf.int32)
  dims = tf.pad(actual, [[0, rank]])[:rank]
  conds = [tf.equal(runtime_rank, rank)]
  conds += [tf.equal(dims[i], e) for i, e in enumerate(expected)
            if e is not None]
  ok = tf.reduce_all(tf.stack(conds))
  check = tf.debugging.Assert(
      ok, [f"input {name} must have shape {what}; got shape", actual],
      summarize=16, name=f"check_{name}")
  with tf.control_dependencies([check]):
    x = tf.identity(x)
  # set_shape, not tf.ensure_shape: a runtime EnsureShape was seen to fail
  # before the Assert ran (1-D input), hiding the message naming the input.
  x.set_shape([e if isinstance(e, int) else None for e in expected])
  return x


def _pad_to_one_row(x: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
  """Appends one all-zero row when the batch is empty (see `_Exporter`)."""
  pad = tf.maximum(1 - batch, 0)
  zeros = tf.zeros(tf.concat([[pad], tf.shape(x)[1:]], 0), x.dtype)
  padded = tf.concat([x, zeros], 0)
  padded.set_shape(x.shape)
  return padded


# ---------------------------------------------------------------------------
# The exporter.
# ---------------------------------------------------------------------------
class _Exporter:
  """Builds the serving functions of one task model (see module docstring).

  Batch 0: a TAL / AS model reads the class list from row 0 of `text_ids`,
  so an empty batch gets one all-zero row before the model and the outputs
  are cut back to the real rows (every task, for one code path).
  """

  def __init__(self, model, *, task, num_frames, input_mode, image_size,
               embedding_dim, text_max_length, num_text, level_lengths,
               max_detections, score_threshold, soft_nms_sigma, per_class,
               prompts, keep_eos, background_logit_threshold,
               saliency_max_clips, secs_per_clip):
    self.model = model
    self.task = task
    self.num_frames = int(num_frames)
    self.input_mode = input_mode
    self.image_size = image_size
    self.embedding_dim = embedding_dim
    self.text_max_length = int(text_max_length)
    self.num_text = num_text
    self.level_lengths = tuple(int(n) for n in level_lengths)
    self.max_detections = int(max_detections)
    self.score_threshold = float(score_threshold)
    self.soft_nms_sigma = float(soft_nms_sigma)
    self.per_class = bool(per_class)
    self.prompts = list(prompts) if prompts is not None else None
    self.num_prompts = len(self.prompts) if self.prompts else 1
    self.keep_eos = keep_eos
    self.background_logit_threshold = float(background_logit_threshold)
    self.saliency_max_clips = int(saliency_max_clips)
    self.secs_per_clip = float(secs_per_clip)
    self.uses_text = _uses_text(model, task)
    # Text rows per video in the numeric signature.
    if not self.uses_text:
      self.text_rows = None
    elif num_text is None:
      self.text_rows = None
    elif task in (spec.TAL, spec.AS):
      self.text_rows = int(num_text) * self.num_prompts
    else:
      self.text_rows = int(num_text)
    self.tokenizer = None

  # -- signatures ----------------------------------------------------------
  @property
  def video_key(self) -> str:
    return spec.FRAMES if self.input_mode == "frames" else spec.FRAME_EMBEDDINGS

  def _video_specs(self) -> Dict[str, tf.TensorSpec]:
    if self.input_mode == "frames":
      video = tf.TensorSpec([None] * 5, tf.uint8, name=spec.FRAMES)
    else:
      video = tf.TensorSpec([None] * 3, tf.float32, name=spec.FRAME_EMBEDDINGS)
    return {
        self.video_key: video,
        spec.FRAME_MASK: tf.TensorSpec([None, None], tf.int32,
                                       name=spec.FRAME_MASK),
        spec.NUM_FRAMES_TOTAL: tf.TensorSpec([None], tf.int32,
                                             name=spec.NUM_FRAMES_TOTAL),
        spec.BATCH_SECS_PER_TIMESTEP: tf.TensorSpec(
            [None], tf.float32, name=spec.BATCH_SECS_PER_TIMESTEP),
    }

  def numeric_signature(self) -> Dict[str, tf.TensorSpec]:
    specs = self._video_specs()
    if self.uses_text:
      for key in (spec.TEXT_IDS, spec.TEXT_MASK):
        specs[key] = tf.TensorSpec([None, None, None], tf.int32, name=key)
    return specs

  def text_signature(self) -> Dict[str, tf.TensorSpec]:
    specs = self._video_specs()
    if self.task in (spec.TAL, spec.AS):
      specs[CLASS_NAMES] = tf.TensorSpec([None], tf.string, name=CLASS_NAMES)
    else:
      specs[QUERIES] = tf.TensorSpec([None, None], tf.string, name=QUERIES)
    return specs

  def expected_shapes(self, text: bool) -> Dict[str, list]:
    """Shapes a request must have (None = any), for export_info.json."""
    video = ([None, self.num_frames, self.image_size, self.image_size, 3]
             if self.input_mode == "frames"
             else [None, self.num_frames, self.embedding_dim])
    shapes = {self.video_key: video,
              spec.FRAME_MASK: [None, self.num_frames],
              spec.NUM_FRAMES_TOTAL: [None],
              spec.BATCH_SECS_PER_TIMESTEP: [None]}
    if not self.uses_text:
      return shapes
    if text and self.task in (spec.TAL, spec.AS):
      shapes[CLASS_NAMES] = [self.num_text]
    elif text:
      shapes[QUERIES] = [None, self.num_text]
    else:
      for key in (spec.TEXT_IDS, spec.TEXT_MASK):
        shapes[key] = [None, self.text_rows, self.text_max_length]
    return shapes

  # -- input checks ----------------------------------------------------------
  def _check_inputs(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    video_key = self.video_key
    video = inputs[video_key]
    n0 = self.num_frames
    if self.input_mode == "frames":
      s = self.image_size
      video = _checked(video_key, video, [None, n0, s, s, 3],
                       f"[B, N0={n0}, {s}, {s}, 3]")
    else:
      d = self.embedding_dim
      video = _checked(video_key, video, [None, n0, d], f"[B, N0={n0}, {d}]")
    batch = tf.shape(video, out_type=tf.int32)[0]
    of_video = f"(B = the batch of {video_key})"
    out = {video_key: video}
    out[spec.FRAME_MASK] = _checked(
        spec.FRAME_MASK, inputs[spec.FRAME_MASK], [batch, n0],
        f"[B, N0={n0}] {of_video}")
    for key in (spec.NUM_FRAMES_TOTAL, spec.BATCH_SECS_PER_TIMESTEP):
      out[key] = _checked(key, inputs[key], [batch], f"[B] {of_video}")
    if not self.uses_text:
      return out
    rows, length = self.text_rows, self.text_max_length
    what = (f"[B, {'Nt' if rows is None else rows}, L={length}]"
            f" {of_video}")
    ids = _checked(spec.TEXT_IDS, inputs[spec.TEXT_IDS],
                   [batch, rows, length], what)
    rows_t = tf.shape(ids, out_type=tf.int32)[1]
    mask = _checked(spec.TEXT_MASK, inputs[spec.TEXT_MASK],
                    [batch, rows_t, length],
                    f"{what}, the shape of {spec.TEXT_IDS}")
    if self.task in (spec.TAL, spec.AS):
      same = tf.reduce_all(tf.equal(ids, ids[:1]))
      same = tf.logical_and(same, tf.reduce_all(tf.equal(mask, mask[:1])))
      check = tf.debugging.Assert(
          same, [f"input {spec.TEXT_IDS} (and {spec.TEXT_MASK}): every"
                 " row of a request must hold the same class list (the"
                 " model scores the list of row 0)"],
          name="check_class_list")
      with tf.control_dependencies([check]):
        ids = tf.identity(ids)
    out[spec.TEXT_IDS], out[spec.TEXT_MASK] = ids, mask
    return out

  # -- model + post-processing -------------------------------------------------
  def _video_features(self, x):
    """Frames → frame embeddings once (for the per-text-item paths)."""
    if self.input_mode != "frames":
      return x[spec.FRAME_EMBEDDINGS]
    return self.model.backbone.image_encoder(x[spec.FRAMES], training=False)

  def _forward(self, x: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Model outputs for a (padded) batch; dynamic Nt runs item by item."""
    model = self.model
    if not self.uses_text or self.text_rows is not None:
      return model(x, training=False)
    feats = self._video_features(x)
    ids, mask = x[spec.TEXT_IDS], x[spec.TEXT_MASK]
    length = self.text_max_length
    if self.task in (spec.MR, spec.HD):
      # Video b repeated once per caption, one caption each: exactly the
      # pairs the model itself forms for a static K.
      batch, rows = tf.shape(ids)[0], tf.shape(ids)[1]
      y = {spec.FRAME_EMBEDDINGS: tf.repeat(feats, rows, axis=0),
           spec.FRAME_MASK: tf.repeat(x[spec.FRAME_MASK], rows, axis=0),
           spec.TEXT_IDS: tf.reshape(ids, [-1, 1, length]),
           spec.TEXT_MASK: tf.reshape(mask, [-1, 1, length])}
      out = model(y, training=False)
      t_tot = out["logits"].shape[-1]
      token_mask = tf.reshape(out["token_mask"], [batch, rows, t_tot])
      return {
          "logits": tf.reshape(out["logits"], [batch, rows, t_tot]),
          "displacements": tf.reshape(out["displacements"],
                                      [batch, rows, t_tot, 2]),
          "token_mask": tf.reduce_max(token_mask, axis=1),
      }
    # TAL / AS: the model fuses every (video, class) pair on its own, so one
    # class at a time gives the same logits as the whole list at once.
    base = {spec.FRAME_EMBEDDINGS: feats, spec.FRAME_MASK: x[spec.FRAME_MASK]}

    keys = {"logits": tf.float32, "token_mask": tf.int32}
    if self.task == spec.TAL:
      keys["displacements"] = tf.float32

    def one_class(item):
      item_ids, item_mask = item  # [B, L]
      out = model(dict(base, **{spec.TEXT_IDS: item_ids[:, None],
                                spec.TEXT_MASK: item_mask[:, None]}),
                  training=False)
      return {k: tf.cast(out[k], dtype) for k, dtype in keys.items()}

    t_tot = sum(self.level_lengths)
    shapes = {"logits": [None, t_tot, 1], "token_mask": [None, t_tot],
              "displacements": [None, t_tot, 1, 2]}
    per_class = tf.map_fn(
        one_class,
        (tf.transpose(ids, [1, 0, 2]), tf.transpose(mask, [1, 0, 2])),
        fn_output_signature={k: tf.TensorSpec(shapes[k], dtype)
                             for k, dtype in keys.items()})  # [Nt, B, ...]
    out = {"logits": tf.transpose(per_class["logits"][..., 0], [1, 2, 0]),
           "token_mask": tf.reduce_max(per_class["token_mask"], axis=0)}
    if "displacements" in per_class:
      out["displacements"] = tf.transpose(
          per_class["displacements"][:, :, :, 0], [1, 2, 0, 3])
    return out

  def _ensemble(self, out):
    """Averages the raw outputs of the P prompts of each class (§5.1)."""
    p = self.num_prompts
    if p == 1:
      return out
    logits = out["logits"]  # [B, T, C * P]
    shape = tf.shape(logits)
    stacked = {"logits": tf.transpose(
        tf.reshape(logits, [shape[0], shape[1], -1, p]), [3, 0, 1, 2])}
    if "displacements" in out:
      stacked["displacements"] = tf.transpose(
          tf.reshape(out["displacements"], [shape[0], shape[1], -1, p, 2]),
          [3, 0, 1, 2, 4])
    result = dict(out)
    result.update(postprocess.ensemble_prompts(stacked))
    return result

  def serve(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The numeric signature: checks → model → post-processing."""
    x = self._check_inputs(inputs)
    batch = tf.shape(x[self.video_key])[0]
    x = {k: _pad_to_one_row(v, batch) for k, v in x.items()}
    out = self._forward(x)
    if self.task in (spec.TAL, spec.AS):
      out = self._ensemble(out)
    total = x[spec.NUM_FRAMES_TOTAL]
    spt = x[spec.BATCH_SECS_PER_TIMESTEP]
    common = dict(pyramid_level_lengths=self.level_lengths,
                  num_frames=self.num_frames,
                  max_detections=self.max_detections,
                  score_threshold=self.score_threshold,
                  soft_nms_sigma=self.soft_nms_sigma)
    if self.task in (spec.TAL, spec.HD):
      result = postprocess.localization_detections(
          out["logits"], out["displacements"], out["token_mask"], total, spt,
          per_class=self.per_class, **common)
      if self.task == spec.HD:
        result["saliency"] = postprocess.highlight_saliency(
            out["logits"], out["token_mask"], total, spt,
            level_lengths=self.level_lengths, num_frames=self.num_frames,
            secs_per_clip=self.secs_per_clip,
            max_clips=self.saliency_max_clips)
    elif self.task == spec.MR:
      caption_mask = tf.reduce_any(
          tf.not_equal(x[spec.TEXT_MASK], 0), axis=-1)
      result = postprocess.retrieval_detections(
          out["logits"], out["displacements"], out["token_mask"], total, spt,
          caption_mask=caption_mask, **common)
    else:
      logits = tf.cast(out["logits"], tf.float32)
      result = {
          "frame_classes": postprocess.segmentation_predictions(
              logits, self.background_logit_threshold,
              token_mask=x[spec.FRAME_MASK]),
          "logits": logits,
      }
    return {k: v[:batch] for k, v in result.items()}

  def serve_text(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The string signature: tokenise in the graph, then `serve`."""
    x = {k: v for k, v in inputs.items() if k not in (CLASS_NAMES, QUERIES)}
    batch = tf.shape(inputs[self.video_key])[0]
    length = self.text_max_length
    if self.task in (spec.TAL, spec.AS):
      names = inputs[CLASS_NAMES]
      if self.num_text is not None:
        names = _checked(CLASS_NAMES, names, [int(self.num_text)],
                         f"[C={self.num_text}]")
      texts = names
      if self.prompts:
        # apply_prompts in the graph: class-major, prompt p = prefix + name
        # + suffix.
        parts = [p.format("\x00").split("\x00") for p in self.prompts]
        texts = tf.reshape(tf.stack(
            [tf.strings.join([pre, names, post]) for pre, post in parts],
            axis=1), [-1])
      ids, mask = self.tokenizer(texts)  # [C * P, L]
      x[spec.TEXT_IDS] = tf.tile(ids[None], [batch, 1, 1])
      x[spec.TEXT_MASK] = tf.tile(mask[None], [batch, 1, 1])
    else:
      queries = inputs[QUERIES]
      if self.num_text is not None:
        queries = _checked(QUERIES, queries, [batch, int(self.num_text)],
                           f"[B, {self.num_text}] (B = the batch of"
                           f" {self.video_key})")
      ids, mask = self.tokenizer(tf.reshape(queries, [-1]))
      real = tf.cast(tf.not_equal(tf.reshape(queries, [-1]), ""),
                     tf.int32)[:, None]
      shape = tf.concat([tf.shape(queries), [length]], 0)
      x[spec.TEXT_IDS] = tf.reshape(ids * real, shape)
      x[spec.TEXT_MASK] = tf.reshape(mask * real, shape)
    return self.serve(x)

  # -- building ------------------------------------------------------------
  def dummy_batch(self, batch: int = 1) -> Dict[str, np.ndarray]:
    """An all-zero numeric request (builds the model)."""
    n0 = self.num_frames
    x = {spec.FRAME_MASK: np.ones((batch, n0), np.int32),
         spec.NUM_FRAMES_TOTAL: np.full((batch,), n0, np.int32),
         spec.BATCH_SECS_PER_TIMESTEP: np.ones((batch,), np.float32)}
    if self.input_mode == "frames":
      s = self.image_size
      x[spec.FRAMES] = np.zeros((batch, n0, s, s, 3), np.uint8)
    else:
      x[spec.FRAME_EMBEDDINGS] = np.zeros((batch, n0, self.embedding_dim),
                                          np.float32)
    if self.uses_text:
      rows = self.text_rows or 1
      ids = np.zeros((batch, rows, self.text_max_length), np.int32)
      ids[..., 0], ids[..., 1] = text_lib.BOS_ID, text_lib.EOS_ID
      x[spec.TEXT_IDS] = ids
      x[spec.TEXT_MASK] = (ids != 0).astype(np.int32)
    return x


def _uses_text(model, task: str) -> bool:
  """False for video-only TAL models (a head with one output per class)."""
  if task in (spec.TAL, spec.HD):
    return getattr(model.head, "num_outputs", 1) == 1
  return True


def _json_safe(value):
  if isinstance(value, float) and not np.isfinite(value):
    return str(value)
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  return value


def _spec_info(tensor_spec, shape=None) -> Dict[str, Any]:
  dims = shape if shape is not None else tensor_spec.shape.as_list()
  return {"dtype": tensor_spec.dtype.name, "shape": list(dims)}


# ---------------------------------------------------------------------------
# Public entry point.
# ---------------------------------------------------------------------------
def export(
    *,
    model: keras.Model,
    export_dir: str,
    version: Optional[int] = None,
    task: str,
    num_frames: int,
    input_mode: str = "frames",
    image_size: Optional[int] = None,
    embedding_dim: Optional[int] = None,
    text_max_length: int = 16,
    num_text: Optional[int] = None,
    pyramid_level_lengths: Optional[Sequence[int]] = None,
    max_detections: int = 100,
    score_threshold: float = 0.001,
    soft_nms_sigma: float = 0.3,
    per_class: bool = False,
    class_names: Optional[Sequence[str]] = None,
    keep_eos: bool = False,
    prompts: Optional[Sequence[str]] = None,
    operative_config: Optional[str] = None,
    text_signature: Optional[bool] = None,
    background_logit_threshold: float = 0.0,
    saliency_max_clips: int = 75,
    secs_per_clip: float = 2.0,
    audit: bool = True,
) -> str:
  """Exports a task model as `<export_dir>/<version>/` for TF Serving.

  Signatures and their inputs / outputs: see the module docstring.

  Args:
    model: an `ActionLocalizer` (TAL / HD), `MomentRetriever` (MR) or
      `ActionSegmenter` (AS); built or not (an all-zero batch builds it).
    export_dir: the model base path; versions are its integer subdirs.
    version: the version; None = 1 + the largest existing one.  An existing
      version is never overwritten.
    task: `spec.TAL`, `spec.MR`, `spec.HD` or `spec.AS`.
    num_frames: N0, frames per request (the model's static length).
    input_mode: "frames" (uint8 frames through the image tower) or
      "embeddings" (cached frame embeddings).
    image_size: S of the frames; None = the image tower's.
    embedding_dim: D of the cached embeddings; None = the built model's.
    text_max_length: L, ids per text (<= the text tower's max_length).
    num_text: TAL / AS: C classes; MR: K captions per video; HD: 1.
      None = dynamic (any count per request; TAL / AS then run the model
      once per class, MR once per caption, in one batch).
    pyramid_level_lengths: tokens per pyramid level; None = the head's.
    max_detections, score_threshold, soft_nms_sigma, per_class: the
      post-processing of `postprocess.localization_detections` /
      `retrieval_detections` (as evaluation).
    class_names: the C class names (TAL / AS), recorded in export_info.json
      (the classes output indexes them).
    keep_eos: tokenisation of the text signature (`TextTokenizer`).
    prompts: P prompt templates with "{}" (TAL / AS): every class is scored
      with each prompt and the raw outputs are averaged; `text_ids` then
      hold C * P rows, class-major.
    operative_config: the gin config string, written to
      `assets.extra/operative_config.gin`.
    text_signature: add `serving_text`; None = when the model has text.
    background_logit_threshold: AS background rule.
    saliency_max_clips, secs_per_clip: HD saliency clips.
    audit: run `op_audit.audit_ops` on the result (raises on ops beyond
      core TF, and beyond `TEXT_NON_CORE_OPS` with the text signature).

  Returns:
    The version directory `<export_dir>/<version>/`.

  Raises:
    ValueError: on a task / model / argument mismatch, an existing version,
      or disallowed ops.
  """
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
  expected_cls = _MODEL_CLASSES[task]
  if not isinstance(model, expected_cls):
    raise ValueError(f"task {task!r} needs a {expected_cls.__name__}, got"
                     f" {type(model).__name__}")
  if task in (spec.TAL, spec.HD) and model.task != task:
    raise ValueError(f"the model was built for task {model.task!r}, not"
                     f" {task!r}")
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
  if pyramid_level_lengths is None:
    pyramid_level_lengths = getattr(model.head, "level_lengths",
                                    None) or (num_frames,)
  pyramid_level_lengths = tuple(
      int(n) for n in getattr(pyramid_level_lengths, "level_lengths",
                              pyramid_level_lengths))
  if pyramid_level_lengths[0] != num_frames:
    raise ValueError(f"num_frames={num_frames} but the pyramid starts with"
                     f" {pyramid_level_lengths[0]} tokens")
  uses_text = _uses_text(model, task)
  if uses_text and backbone.text_encoder is None:
    raise ValueError("the model takes cached text embeddings; export needs"
                     " a text tower (text_input='tokens')")
  if uses_text and text_max_length > backbone.text_encoder.max_length:
    raise ValueError(f"text_max_length={text_max_length} exceeds the text"
                     f" tower's max_length={backbone.text_encoder.max_length}")
  if task == spec.HD:
    if num_text not in (None, 1):
      raise ValueError(f"highlight detection has one query per video, got"
                       f" num_text={num_text}")
    num_text = 1
  if prompts is not None:
    if task not in (spec.TAL, spec.AS):
      raise ValueError("prompts apply to class names (TAL / AS) only")
    text_lib.apply_prompts(["x"], prompts)  # validates the templates
  if class_names is not None:
    class_names = [str(c) for c in class_names]
    if task in (spec.TAL, spec.AS) and num_text is not None and (
        len(class_names) != num_text):
      raise ValueError(f"{len(class_names)} class_names but num_text="
                       f"{num_text}")
  if text_signature is None:
    text_signature = uses_text
  if text_signature and not uses_text:
    raise ValueError("a video-only model has no text signature")

  ex = _Exporter(
      model, task=task, num_frames=num_frames, input_mode=input_mode,
      image_size=image_size, embedding_dim=embedding_dim,
      text_max_length=text_max_length, num_text=num_text,
      level_lengths=pyramid_level_lengths, max_detections=max_detections,
      score_threshold=score_threshold, soft_nms_sigma=soft_nms_sigma,
      per_class=per_class, prompts=prompts, keep_eos=keep_eos,
      background_logit_threshold=background_logit_threshold,
      saliency_max_clips=saliency_max_clips, secs_per_clip=secs_per_clip)

  if version is None:
    version = next_version(export_dir)
  version = int(version)
  if version < 0:
    raise ValueError(f"version must be >= 0, got {version}")
  final_dir = os.path.join(export_dir, str(version))
  if tf.io.gfile.exists(final_dir):
    raise ValueError(f"{final_dir} exists; versions are never overwritten")

  if not model.built:
    model(ex.dummy_batch(), training=False)
  archive = keras.export.ExportArchive()
  # No `archive.track(model)`: the endpoints' captured tf.Variables are saved
  # anyway, and tracking the model's keras.Variable wrappers as well stores
  # every weight twice (2x on disk and in the server's RAM;
  # keras-team/keras#23553, Keras 3.15).
  endpoints = {SERVING_DEFAULT: archive.add_endpoint(
      SERVING_DEFAULT, ex.serve, input_signature=[ex.numeric_signature()])}
  if text_signature:
    ex.tokenizer = text_lib.TextTokenizer(text_max_length, keep_eos=keep_eos)
    hub_tokenizer = text_lib.clip_tokenizer(ex.tokenizer.vocabulary)
    if not hub_tokenizer.built:  # ExportArchive tracks built layers only.
      hub_tokenizer(tf.constant(["a"]))
    archive.track(hub_tokenizer)
    endpoints[SERVING_TEXT] = archive.add_endpoint(
        SERVING_TEXT, ex.serve_text, input_signature=[ex.text_signature()])

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
    info = _export_info(endpoints, ex, version, class_names, audit_result,
                        has_gin=operative_config is not None)
    with open(os.path.join(extra, INFO_FILENAME), "w") as f:
      json.dump(info, f, indent=1)
    os.rename(tmp_dir, final_dir)
  except BaseException:
    shutil.rmtree(tmp_dir, ignore_errors=True)
    raise
  return final_dir + os.sep


def _export_info(endpoints, ex: _Exporter, version, class_names,
                 audit_result, has_gin) -> Dict[str, Any]:
  import unloc_tf

  signatures = {}
  for name, fn in endpoints.items():
    text = name == SERVING_TEXT
    specs = ex.text_signature() if text else ex.numeric_signature()
    expected = ex.expected_shapes(text)
    outputs = fn.get_concrete_function().structured_outputs
    signatures[name] = {
        "inputs": {k: _spec_info(s, expected[k]) for k, s in specs.items()},
        "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()}
                    for k, v in outputs.items()},
    }
    if audit_result is not None:
      signatures[name]["non_core_ops"] = (
          audit_result["signatures"][name]["non_core"])
  return {
      "task": ex.task,
      "version": version,
      "input_mode": ex.input_mode,
      "num_frames": ex.num_frames,
      "image_size": ex.image_size if ex.input_mode == "frames" else None,
      "embedding_dim": (ex.embedding_dim if ex.input_mode == "embeddings"
                        else None),
      "text_max_length": ex.text_max_length if ex.uses_text else None,
      "num_text": ex.num_text,
      "text_rows": ex.text_rows,
      "class_names": class_names,
      "prompts": ex.prompts,
      "keep_eos": ex.keep_eos,
      "pyramid_level_lengths": list(ex.level_lengths),
      "postprocess": _json_safe({
          "max_detections": ex.max_detections,
          "score_threshold": ex.score_threshold,
          "soft_nms_sigma": ex.soft_nms_sigma,
          "per_class": ex.per_class,
          "background_logit_threshold": ex.background_logit_threshold,
          "saliency_max_clips": ex.saliency_max_clips,
          "secs_per_clip": ex.secs_per_clip,
      }),
      "signatures": signatures,
      "non_core_ops": audit_result["non_core"] if audit_result else None,
      "operative_config": GIN_FILENAME if has_gin else None,
      "versions": {"tensorflow": tf.__version__,
                   "keras": keras.__version__,
                   "unloc_tf": unloc_tf.__version__},
  }
