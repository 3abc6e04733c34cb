"""Frame and text embeddings of the frozen towers, as the pipeline sees them.

Per-frame CLS rows.  A "token" image tower prepends the CLS vector of the
frame's POSITION in the sampled clip (reference_spec.md §2.2), so a frame's
embedding depends on where the task's sampling puts it (`frame_slots`):
  shared    row 0 for every frame: exact when all rows are equal (fresh CLIP
            initialisation tiles one vector);
  linspace  the position the frame takes in `int(linspace(0, n-1, N0))`
            (TAL / MR / HD / classification); exact for videos with
            n >= N0 (shorter videos repeat frames at several positions: the
            first is used);
  window    position i mod N0 (AS non-overlapping sliding windows); exact.
"gap" towers have no CLS token: always exact.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from unloc_tf.data import augment, sampling
from unloc_tf.data import text as text_lib
from unloc_tf.features.towers import Towers
from unloc_tf.layers import clip_image_encoder
from unloc_tf.ops import pooling

_TEXT_BATCH = 32


def frame_slots(num_stored: int, num_frames: int, mode: str
                ) -> Tuple[Optional[np.ndarray], bool]:
  """CLS row of every stored frame (see the module docstring).

  Args:
    num_stored: n, stored frames of the record.
    num_frames: N0.
    mode: "shared", "linspace" or "window" (resolved, not "auto").

  Returns:
    (int array [n] of CLS rows, exact): `exact` is False when a frame
    takes several positions (linspace with n < N0).
  """
  if mode == "shared":
    return np.zeros([num_stored], np.int64), True
  if mode == "window":
    return np.arange(num_stored) % num_frames, True
  if mode != "linspace":
    raise ValueError(f"unknown CLS slot mode {mode!r}")
  idx = sampling.linspace_indices(tf.constant(num_stored),
                                  num_frames).numpy()
  # Frames that are never sampled take their proportional position.
  scale = (num_frames - 1) / max(num_stored - 1, 1)
  slots = np.clip(np.round(np.arange(num_stored) * scale), 0,
                  num_frames - 1).astype(np.int64)
  for pos in range(num_frames - 1, -1, -1):  # the first position wins
    slots[idx[pos]] = pos
  return slots, bool(len(np.unique(idx)) == num_frames)


class FrameEmbedder:
  """The frozen image tower on batches of stored frames.

  Frames are independent in the tower, so a batch of `batch_size` frames of
  one record (the last one padded by repeating a frame) gives each frame the
  embedding it gets inside a clip.  In "token" mode a probe encoder that
  shares every layer and weight of the tower, except its CLS table of
  `batch_size` rows, runs the tower's own `call` with the CLS row of each
  frame's slot.

  Args:
    towers: the `Towers`.
    batch_size: frames per forward pass.
  """

  def __init__(self, towers: Towers, batch_size: int = 64):
    enc = towers.image_encoder
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if enc.image_size != towers.crop_size:
      raise ValueError(f"the image tower takes {enc.image_size} px frames but"
                       f" the config crops {towers.crop_size} px")
    self.encoder = enc
    self.crop_size = towers.crop_size
    self.min_resize = towers.min_resize
    self.batch_size = int(batch_size)
    self.dim = enc.hidden_dim
    self.token = enc.frame_token == "token"
    self.table = (keras.ops.convert_to_numpy(enc.class_embedding)
                  if self.token else None)
    self.probe = self._probe() if self.token else None
    row_spec = tf.TensorSpec([self.batch_size, self.dim], tf.float32)
    self._fn = tf.function(
        self._embed, input_signature=[
            tf.TensorSpec([self.batch_size], tf.string), row_spec])

  @property
  def rows_equal(self) -> bool:
    """Whether every CLS row is the same (or there is none)."""
    return self.table is None or bool(np.all(self.table == self.table[:1]))

  def _probe(self):
    enc = self.encoder
    config = enc.get_config()
    config.update(num_frames=self.batch_size, name=f"{enc.name}_probe")
    probe = clip_image_encoder.CLIPImageEncoder.from_config(config)
    # Shared layers and weights: only the CLS table is the probe's own.
    for attr in ("patch_embedding", "ln_pre", "ln_post", "blocks"):
      setattr(probe, attr, getattr(enc, attr))
    probe.position_embedding = enc.position_embedding
    probe.class_embedding = keras.Variable(
        np.zeros((self.batch_size, self.dim), np.float32), trainable=False,
        name="class_embedding")
    probe.built = True
    return probe

  def _embed(self, jpegs, cls_rows):
    frames = augment.decode_eval_frames(jpegs, self.crop_size,
                                        self.min_resize)[None]
    if not self.encoder.normalize_input:
      frames = augment.normalize(frames)
    if self.token:
      self.probe.class_embedding.assign(cls_rows)
      out = self.probe(frames, training=False)
    else:
      out = self.encoder(frames, training=False)
    return tf.cast(out[0], tf.float32)

  def __call__(self, jpegs: Sequence[bytes],
               slots: Optional[np.ndarray] = None) -> np.ndarray:
    """Embeddings float32 [n, Dv] of n JPEG frames (CLS rows `slots` [n])."""
    n, b = len(jpegs), self.batch_size
    out = np.zeros((n, self.dim), np.float32)
    for start in range(0, n, b):
      chunk = list(jpegs[start:start + b])
      real = len(chunk)
      chunk += [chunk[-1]] * (b - real)
      rows = np.zeros((b, self.dim), np.float32)
      if self.token:
        s = np.zeros([b], np.int64)
        if slots is not None:
          s[:real] = slots[start:start + real]
        rows = self.table[s].astype(np.float32)
      emb = self._fn(tf.constant(chunk, tf.string), tf.constant(rows))
      out[start:start + real] = emb.numpy()[:real]
    return out


class TextEmbedder:
  """Pooled text-tower states of texts (what cached text mode consumes).

  Args:
    towers: the `Towers` (with a text tower).
  """

  def __init__(self, towers: Towers):
    if towers.text_encoder is None:
      raise ValueError("--text_embeddings needs a model with a text tower"
                       " (TEXT_INPUT='tokens')")
    self.encoder = towers.text_encoder
    self.pooling = towers.text_pooling
    self.tokenizer = text_lib.TextTokenizer(
        towers.text_max_length, keep_eos=towers.keep_eos,
        mask_rule=towers.text_mask_rule)
    self.dim = self.encoder.hidden_dim
    self._fn = tf.function(self._embed, input_signature=[
        tf.TensorSpec([_TEXT_BATCH], tf.string)])

  def _embed(self, texts):
    ids, mask = self.tokenizer(texts)
    states = self.encoder(ids, padding_mask=mask, training=False)
    pooled = pooling.pool_text(states, ids, mask, mode=self.pooling)
    return tf.cast(pooled, tf.float32)

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    """float32 [N, Dt] for N texts."""
    texts = list(texts)
    out = np.zeros((len(texts), self.dim), np.float32)
    for start in range(0, len(texts), _TEXT_BATCH):
      chunk = texts[start:start + _TEXT_BATCH]
      real = len(chunk)
      chunk += [""] * (_TEXT_BATCH - real)
      out[start:start + real] = self._fn(tf.constant(chunk)).numpy()[:real]
    return out
