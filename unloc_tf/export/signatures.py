"""The serving functions of a task model: input checks → model → decoding.

`ServingModule(model, ...)` builds the two functions that `saved_model.export`
writes as signatures.  Both run the task's own `forward` (prompt averaging)
and `decode` (the post-processing of evaluation), so a served model answers
exactly as `tools/evaluate.py` scores it.

`serve` — numeric tensors only (core TF ops).  Inputs (the signature
declares every dim but the batch B and the text count Nt, which is what TF
Serving's model metadata reports; the graph checks every dim and value
again, with an `InvalidArgumentError` naming the input and the rule, since
a model server feeds tensors of any shape):

  frames            uint8   [B, N0, S, S, 3]  (input_mode "frames"; the
                                               image tower normalises) or
  frame_embeddings  float32 [B, N0, D]        (input_mode "embeddings")
  frame_mask        int32   [B, N0]           1 = real frame
  text_ids          int32   [B, Nt, L]        CLIP ids (data.text.TextTokenizer)
  text_mask         int32   [B, Nt, L]        1 = real token
  total_frames      int32   [B]               stored frames n of each
                                              video, > 0
  secs_per_timestep float32 [B]               seconds per stored frame,
                                              finite and > 0

  Nt: a class list (TAL / AS) has C * P rows (P prompts per class,
  class-major as `data.text.apply_prompts`; P = 1 without prompts), the same
  in every row (the model scores row 0's list; checked); queries are the K
  captions of each video (MR; a caption whose text_mask is all 0 is padding)
  or its one query (HD).  `num_text=None` serves any Nt, one text item at a
  time.  Video-only TAL models take no text inputs.  Every class row and
  every caption that is not padding must hold a text (an id besides BOS,
  EOS and 0 where text_mask is 1), a class list at least one row and every
  video at least one caption.

`serve_text` — the same, but text as `tf.string`, tokenised in the graph
(TF-Text ops): `class_names` [C] (the export's prompts are applied in the
graph) or `queries` [B, K] (MR; "" is a padding caption) / [B, 1] (HD).
A class name or a query must hold a word: an empty or whitespace-only class
name, a whitespace-only query, an empty class list and a video without a
query are rejected, naming `class_names` / `queries`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import text as text_lib
from unloc_tf.tasks import base

CLASS_NAMES = "class_names"
QUERIES = "queries"


def checked(name: str, x: tf.Tensor, expected: Sequence[Any],
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


def asserted(ok: tf.Tensor, message: str, data: Sequence[tf.Tensor],
             *tensors: tf.Tensor, name: str) -> Sequence[tf.Tensor]:
  """`tensors`, run after an in-graph check that `ok` holds.

  Args:
    ok: scalar bool.
    message: the error's text; it starts with "input <name>" and states the
      rule.
    data: tensors printed after the message (e.g. the offending values).
    *tensors: the tensors to gate (what the model reads next).
    name: the Assert op's name.

  Returns:
    The gated tensors (a list, in order).
  """
  check = tf.debugging.Assert(ok, [message, *data], summarize=16, name=name)
  with tf.control_dependencies([check]):
    return [tf.identity(t) for t in tensors]


def has_text(ids: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """[..., L] CLIP ids and mask -> [...] bool: an id besides BOS, EOS, 0.

  What a tokenised empty or whitespace-only string lacks (it is
  `[BOS, EOS, 0, ...]`).
  """
  word = ((mask > 0) & (ids != text_lib.BOS_ID) & (ids != text_lib.EOS_ID)
          & (ids != text_lib.PAD_ID))
  return tf.reduce_any(word, axis=-1)


def _pad_to_one_row(x: tf.Tensor, batch: tf.Tensor) -> tf.Tensor:
  """Appends one all-zero row when the batch is empty (see ServingModule)."""
  pad = tf.maximum(1 - batch, 0)
  zeros = tf.zeros(tf.concat([[pad], tf.shape(x)[1:]], 0), x.dtype)
  padded = tf.concat([x, zeros], 0)
  padded.set_shape(x.shape)
  return padded


class ServingModule:
  """The serving functions of one task model (see the module docstring).

  Batch 0: a class-name model reads the class list from row 0 of
  `text_ids`, so an empty batch gets one all-zero row before the model and
  the outputs are cut back to the real rows (every task, one code path).

  Args:
    model: a built `UnlocTask`.
    num_frames: N0.
    input_mode: "frames" or "embeddings".
    image_size: S (frames); embedding_dim: D (embeddings).
    text_max_length: L.
    num_text: C classes / K captions per request, or None (any).
    prompts: the P prompt templates of the class names, or None.
    keep_eos: tokenisation rule of `serve_text`.
    settings: the decoding settings.
  """

  def __init__(self, model, *, num_frames: int, input_mode: str,
               image_size: Optional[int], embedding_dim: Optional[int],
               text_max_length: int, num_text: Optional[int],
               prompts: Optional[Sequence[str]], keep_eos: bool,
               settings: base.DecodeSettings):
    self.model = model
    self.text_kind = model.text_kind
    self.num_frames = int(num_frames)
    self.input_mode = input_mode
    self.image_size = image_size
    self.embedding_dim = embedding_dim
    self.text_max_length = int(text_max_length)
    self.num_text = num_text
    self.prompts = list(prompts) if prompts is not None else None
    self.num_prompts = len(self.prompts) if self.prompts else 1
    self.keep_eos = keep_eos
    self.settings = settings
    # Text rows per video in the numeric signature (None: any).
    self.text_rows = None
    if self.text_kind is not None and num_text is not None:
      self.text_rows = int(num_text) * (
          self.num_prompts if self.text_kind == base.CLASS_NAMES else 1)
    self.tokenizer = None

  # -- signatures ----------------------------------------------------------
  @property
  def video_key(self) -> str:
    return spec.FRAMES if self.input_mode == "frames" else spec.FRAME_EMBEDDINGS

  # Every fixed dim is declared (TF Serving's GetModelMetadata reports these
  # shapes) except the batch and the text count Nt / C / K: the graph checks
  # Nt when num_text is fixed.  A fully defined spec (class_names [C]) would
  # let TF fold `tf.shape` of the input to a constant, in the graph of
  # `tf.saved_model.load(...).signatures` too, so no in-graph check could
  # see a wrong C (measured, TF 2.21).
  def _video_specs(self) -> Dict[str, tf.TensorSpec]:
    n0 = self.num_frames
    if self.input_mode == "frames":
      s = self.image_size
      video = tf.TensorSpec([None, n0, s, s, 3], tf.uint8, name=spec.FRAMES)
    else:
      video = tf.TensorSpec([None, n0, self.embedding_dim], tf.float32,
                            name=spec.FRAME_EMBEDDINGS)
    return {
        self.video_key: video,
        spec.FRAME_MASK: tf.TensorSpec([None, n0], tf.int32,
                                       name=spec.FRAME_MASK),
        spec.NUM_FRAMES_TOTAL: tf.TensorSpec([None], tf.int32,
                                             name=spec.NUM_FRAMES_TOTAL),
        spec.BATCH_SECS_PER_TIMESTEP: tf.TensorSpec(
            [None], tf.float32, name=spec.BATCH_SECS_PER_TIMESTEP),
    }

  def numeric_signature(self) -> Dict[str, tf.TensorSpec]:
    """The inputs of `serve`: [B, N0, S, S, 3] frames etc. (module doc)."""
    specs = self._video_specs()
    if self.text_kind is not None:
      for key in (spec.TEXT_IDS, spec.TEXT_MASK):
        specs[key] = tf.TensorSpec([None, None, self.text_max_length],
                                   tf.int32, name=key)
    return specs

  def text_signature(self) -> Dict[str, tf.TensorSpec]:
    """The inputs of `serve_text`: class_names [C] or queries [B, K]."""
    specs = self._video_specs()
    if self.text_kind == base.CLASS_NAMES:
      specs[CLASS_NAMES] = tf.TensorSpec([None], tf.string, name=CLASS_NAMES)
    else:
      specs[QUERIES] = tf.TensorSpec([None, None], tf.string, name=QUERIES)
    return specs

  def expected_shapes(self, text: bool) -> Dict[str, list]:
    """Shapes a request must have (None = any): the signature's, with a
    fixed text count Nt / C / K filled in."""
    specs = self.text_signature() if text else self.numeric_signature()
    shapes = {k: s.shape.as_list() for k, s in specs.items()}
    if CLASS_NAMES in shapes:
      shapes[CLASS_NAMES] = [self.num_text]
    elif QUERIES in shapes:
      shapes[QUERIES] = [None, self.num_text]
    elif spec.TEXT_IDS in shapes:
      for key in (spec.TEXT_IDS, spec.TEXT_MASK):
        shapes[key][1] = self.text_rows
    return shapes

  # -- input checks ----------------------------------------------------------
  def _check_inputs(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    video_key = self.video_key
    video = inputs[video_key]
    n0 = self.num_frames
    if self.input_mode == "frames":
      s = self.image_size
      video = checked(video_key, video, [None, n0, s, s, 3],
                      f"[B, N0={n0}, {s}, {s}, 3]")
    else:
      d = self.embedding_dim
      video = checked(video_key, video, [None, n0, d], f"[B, N0={n0}, {d}]")
    batch = tf.shape(video, out_type=tf.int32)[0]
    of_video = f"(B = the batch of {video_key})"
    out = {video_key: video}
    out[spec.FRAME_MASK] = checked(
        spec.FRAME_MASK, inputs[spec.FRAME_MASK], [batch, n0],
        f"[B, N0={n0}] {of_video}")
    for key in (spec.NUM_FRAMES_TOTAL, spec.BATCH_SECS_PER_TIMESTEP):
      out[key] = checked(key, inputs[key], [batch], f"[B] {of_video}")
    out.update(self._check_times(out[spec.NUM_FRAMES_TOTAL],
                                 out[spec.BATCH_SECS_PER_TIMESTEP]))
    if self.text_kind is None:
      return out
    rows, length = self.text_rows, self.text_max_length
    what = (f"[B, {'Nt' if rows is None else rows}, L={length}]"
            f" {of_video}")
    ids = checked(spec.TEXT_IDS, inputs[spec.TEXT_IDS],
                  [batch, rows, length], what)
    rows_t = tf.shape(ids, out_type=tf.int32)[1]
    mask = checked(spec.TEXT_MASK, inputs[spec.TEXT_MASK],
                   [batch, rows_t, length],
                   f"{what}, the shape of {spec.TEXT_IDS}")
    if self.text_kind == base.CLASS_NAMES:
      same = tf.reduce_all(tf.equal(ids, ids[:1]))
      same = tf.logical_and(same, tf.reduce_all(tf.equal(mask, mask[:1])))
      check = tf.debugging.Assert(
          same, [f"input {spec.TEXT_IDS} (and {spec.TEXT_MASK}): every"
                 " row of a request must hold the same class list (the"
                 " model scores the list of row 0)"],
          name="check_class_list")
      with tf.control_dependencies([check]):
        ids = tf.identity(ids)
    out[spec.TEXT_IDS], out[spec.TEXT_MASK] = self._check_texts(ids, mask)
    return out

  @staticmethod
  def _check_times(total_frames: tf.Tensor, secs: tf.Tensor
                   ) -> Dict[str, tf.Tensor]:
    """total_frames [B] > 0; secs_per_timestep [B] finite and > 0."""
    total_frames, = asserted(
        tf.reduce_all(total_frames > 0),
        f"input {spec.NUM_FRAMES_TOTAL} must be > 0 (the number of stored"
        " frames of each video); got", [total_frames], total_frames,
        name=f"check_{spec.NUM_FRAMES_TOTAL}_values")
    secs, = asserted(
        tf.reduce_all(tf.math.is_finite(secs) & (secs > 0)),
        f"input {spec.BATCH_SECS_PER_TIMESTEP} must be finite and > 0"
        " (seconds per stored frame); got", [secs], secs,
        name=f"check_{spec.BATCH_SECS_PER_TIMESTEP}_values")
    return {spec.NUM_FRAMES_TOTAL: total_frames,
            spec.BATCH_SECS_PER_TIMESTEP: secs}

  def _check_texts(self, ids: tf.Tensor, mask: tf.Tensor):
    """The rules on text rows [B, Nt, L] (module docstring); (ids, mask)."""
    words = has_text(ids, mask)  # [B, Nt]
    if self.text_kind == base.CLASS_NAMES:
      ids, mask = asserted(
          tf.shape(ids)[1] > 0,
          f"input {spec.TEXT_IDS} must hold at least one class row; got"
          " shape", [tf.shape(ids)], ids, mask, name="check_class_rows")
      return asserted(
          tf.reduce_all(words),
          f"input {spec.TEXT_IDS} must hold a class name in every row (an id"
          " besides BOS, EOS and 0 where text_mask is 1); empty"
          " [video, row]:", [tf.where(~words)], ids, mask,
          name="check_class_texts")
    padding = tf.reduce_all(mask == 0, axis=-1)  # [B, Nt]
    empty = ~padding & ~words
    ids, mask = asserted(
        ~tf.reduce_any(empty),
        f"input {spec.TEXT_IDS} must hold a text in every caption whose"
        " text_mask is not all 0 (an id besides BOS, EOS and 0); empty"
        " [video, caption]:", [tf.where(empty)], ids, mask,
        name="check_caption_texts")
    no_caption = tf.reduce_all(padding, axis=-1)  # [B]
    return asserted(
        ~tf.reduce_any(no_caption),
        f"input {spec.TEXT_MASK} must mark at least one caption of every"
        " video (a caption whose text_mask is all 0 is padding); videos"
        " without one:", [tf.where(no_caption)[:, 0]], ids, mask,
        name="check_captions")

  # -- model ---------------------------------------------------------------
  def _forward(self, x: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Dense outputs of a (padded) batch, prompt-averaged."""
    if self.text_kind is None or self.text_rows is not None:
      return self.model.forward(x, num_prompts=self.num_prompts)
    if self.text_kind == base.QUERIES:
      return self._forward_each_query(x)
    out = self._forward_each_class(x)
    if self.num_prompts > 1:
      out = base.average_class_major_prompts(out, self.num_prompts)
    return out

  def _video_features(self, x):
    """Frames → frame embeddings once (for the per-text-item paths)."""
    if self.input_mode != "frames":
      return x[spec.FRAME_EMBEDDINGS]
    return self.model.backbone.image_encoder(x[spec.FRAMES], training=False)

  def _forward_each_query(self, x):
    """Any number of queries: video b repeated once per query, one query
    each — exactly the pairs the model forms for a static K."""
    ids, mask = x[spec.TEXT_IDS], x[spec.TEXT_MASK]
    batch, rows = tf.shape(ids)[0], tf.shape(ids)[1]
    length = self.text_max_length
    y = {spec.FRAME_EMBEDDINGS: tf.repeat(self._video_features(x), rows,
                                          axis=0),
         spec.FRAME_MASK: tf.repeat(x[spec.FRAME_MASK], rows, axis=0),
         spec.TEXT_IDS: tf.reshape(ids, [-1, 1, length]),
         spec.TEXT_MASK: tf.reshape(mask, [-1, 1, length])}
    out = self.model(y, training=False)
    t_tot = out["logits"].shape[-1]
    token_mask = tf.reshape(out["token_mask"], [batch, rows, t_tot])
    return {
        "logits": tf.reshape(out["logits"], [batch, rows, t_tot]),
        "displacements": tf.reshape(out["displacements"],
                                    [batch, rows, t_tot, 2]),
        "token_mask": tf.reduce_max(token_mask, axis=1),
    }

  def _forward_each_class(self, x):
    """Any number of classes: the model fuses every (video, class) pair on
    its own, so one class at a time gives the logits of the whole list."""
    model = self.model
    video = {spec.FRAME_EMBEDDINGS: self._video_features(x),
             spec.FRAME_MASK: x[spec.FRAME_MASK]}
    ids = tf.transpose(x[spec.TEXT_IDS], [1, 0, 2])  # [Nt, B, L]
    mask = tf.transpose(x[spec.TEXT_MASK], [1, 0, 2])

    def inputs(item_ids, item_mask):
      return dict(video, **{spec.TEXT_IDS: item_ids[:, None],
                            spec.TEXT_MASK: item_mask[:, None]})

    # The outputs of one class (shapes and dtypes), traced without running.
    one = model.compute_output_spec(
        {k: keras.KerasTensor(v.shape, v.dtype.name)
         for k, v in inputs(ids[0], mask[0]).items()})
    per_class = tf.map_fn(
        lambda item: model(inputs(*item), training=False), (ids, mask),
        fn_output_signature={k: tf.TensorSpec(v.shape, v.dtype)
                             for k, v in one.items()})  # [Nt, B, ...]
    out = {"logits": tf.transpose(per_class["logits"][..., 0], [1, 2, 0]),
           "token_mask": tf.reduce_max(per_class["token_mask"], axis=0)}
    if "displacements" in per_class:
      out["displacements"] = tf.transpose(
          per_class["displacements"][:, :, :, 0], [1, 2, 0, 3])
    return out

  # -- the signatures --------------------------------------------------------
  def serve(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The numeric signature: checks → model → the task's decoding."""
    x = self._check_inputs(inputs)
    batch = tf.shape(x[self.video_key])[0]
    x = {k: _pad_to_one_row(v, batch) for k, v in x.items()}
    result = self.model.decode(self._forward(x), x, self.settings)
    return {k: v[:batch] for k, v in result.items()}

  def serve_text(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The string signature: tokenise in the graph, then `serve`."""
    x = {k: v for k, v in inputs.items() if k not in (CLASS_NAMES, QUERIES)}
    batch = tf.shape(inputs[self.video_key])[0]
    length = self.text_max_length
    if self.text_kind == base.CLASS_NAMES:
      names, ids, mask = self._check_class_names(inputs[CLASS_NAMES])
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
      k = self.num_text
      queries = checked(QUERIES, queries,
                        [batch, None if k is None else int(k)],
                        f"[B, {'K' if k is None else k}] (B = the batch of"
                        f" {self.video_key})")
      ids, mask = self.tokenizer(tf.reshape(queries, [-1]))
      ids, mask = self._check_queries(queries, ids, mask)
      real = tf.cast(tf.not_equal(tf.reshape(queries, [-1]), ""),
                     tf.int32)[:, None]
      shape = tf.concat([tf.shape(queries), [length]], 0)
      x[spec.TEXT_IDS] = tf.reshape(ids * real, shape)
      x[spec.TEXT_MASK] = tf.reshape(mask * real, shape)
    return self.serve(x)

  def _check_class_names(self, names: tf.Tensor):
    """class_names [C]: rank, C, at least one, none empty.

    Returns:
      (names [C], ids [C, L], mask [C, L]), run after the checks.
    """
    c = self.num_text
    names = checked(CLASS_NAMES, names, [None if c is None else int(c)],
                    "[C]" if c is None else f"[C={c}]")
    names, = asserted(
        tf.size(names) > 0,
        f"input {CLASS_NAMES} must hold at least one class name; got shape",
        [tf.shape(names)], names, name="check_class_names_count")
    ids, mask = self.tokenizer(names)
    empty = ~has_text(ids, mask)  # [C]
    return asserted(
        ~tf.reduce_any(empty),
        f"input {CLASS_NAMES} must not hold an empty or whitespace-only class"
        " name; at index", [tf.where(empty)[:, 0]], names, ids, mask,
        name="check_class_names_text")

  def _check_queries(self, queries: tf.Tensor, ids: tf.Tensor,
                     mask: tf.Tensor):
    """queries [B, K] ("" = padding) and their ids / mask [B * K, L]:
    no whitespace-only query, at least one query per video.

    Returns:
      (ids, mask), run after the checks.
    """
    shape = tf.shape(queries)
    real = tf.not_equal(queries, "")  # [B, K]
    blank = real & ~tf.reshape(has_text(ids, mask), shape)
    ids, mask = asserted(
        ~tf.reduce_any(blank),
        f"input {QUERIES} must not hold a whitespace-only query (an empty"
        " string is a padding caption); at [video, query]:",
        [tf.where(blank)], ids, mask, name="check_queries_text")
    none = ~tf.reduce_any(real, axis=1)  # [B]
    return asserted(
        ~tf.reduce_any(none),
        f"input {QUERIES} must hold at least one non-empty query per video;"
        " videos without one:", [tf.where(none)[:, 0]], ids, mask,
        name="check_queries_count")

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
    if self.text_kind is not None:
      rows = self.text_rows or 1
      ids = np.zeros((batch, rows, self.text_max_length), np.int32)
      ids[..., 0], ids[..., 1] = text_lib.BOS_ID, text_lib.EOS_ID
      x[spec.TEXT_IDS] = ids
      x[spec.TEXT_MASK] = (ids != 0).astype(np.int32)
    return x
