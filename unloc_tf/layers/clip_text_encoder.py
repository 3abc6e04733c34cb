"""CLIP text tower returning every token state (reference_spec.md §2.3).

`CLIPTextEncoder` maps token ids [N, L] to token states [N, L, Dt]: token
embedding + learned positional embedding (the first L of `max_length` rows)
-> `num_layers` keras-hub `CLIPEncoderLayer` blocks with the causal mask ->
`ln_final`. Pooling to one vector per text (EOS / first token / masked mean)
is left to the fusion module (`unloc_tf.ops.pooling.pool_text`); there is no
CLIP `text_projection` inside the tower.

Masking. The reference masks attention with (query and key are not padding,
`id > 0`) AND causal. keras-hub's `CLIPEncoderLayer` has no mask argument and
applies the causal mask only. With right-padded ids (the data pipeline pads
with 0 at the end) no real token can attend to a later padding position, so
the states of all real tokens are exactly the reference's. Only the states at
padding positions differ (the reference's fully masked query rows attend
uniformly to every key): they carry no information and are masked out
downstream; pass `padding_mask` to zero them. (One more corner of the
reference rule that is not reproduced: id 0 is also CLIP's "!" token, which
the reference would mask as padding inside a caption.)

Weights, for a checkpoint converter (Keras paths under the layer's name;
reference names from §2.11 in brackets):
  * `token_embedding.embeddings` (vocabulary_size, Dt)
    [`token_embedding/embedding`];
  * `position_embedding` (max_length, Dt) [`positional_embedding` (Lt, Dt):
    CLIP's 77 rows truncated, see `adapt_text_position_embedding`];
  * `blocks[i]` = keras-hub `CLIPEncoderLayer` named `resblocks_{i}`
    [`transformer/resblocks.{i}`], same sub-layers as the image tower
    (see `clip_image_encoder`);
  * `ln_final.{gamma,beta}` [`ln_final`].

Dimensions: N texts, L tokens per text (L <= max_length), Dt = hidden_dim.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from unloc_tf.layers import clip_image_encoder

# keras-hub 0.32 has no public alias of CLIPEncoderLayer (keras_hub.layers
# exports only the image converters), hence the `src` import above.


@keras.saving.register_keras_serializable(package="unloc_tf")
class CLIPTextEncoder(keras.layers.Layer):
  """Causal CLIP text transformer returning all token states.

  Args:
    vocabulary_size: Number of token ids (49408 for CLIP's BPE).
    hidden_dim: Width Dt (512 B/16, 768 L/14).
    num_layers: Number of residual attention blocks (12).
    num_heads: Attention heads per block (8 B/16, 12 L/14).
    intermediate_dim: Hidden width of the MLPs (4 * hidden_dim in CLIP).
    max_length: Rows of the positional embedding, i.e. the longest text the
      layer accepts (CLIP: 77; UnLoc configs use 16 or 32).
    layer_norm_epsilon: Epsilon of `ln_final` (CLIP: 1e-5; note keras-hub's
      own CLIPTextEncoder uses 1e-6 there, dependencies.md §B). The blocks'
      LayerNorms use keras-hub's fixed 1e-5.
    **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

  Call args:
    token_ids: int [N, L], right padded with 0, L static and <= max_length.
    padding_mask: Optional [N, L] (bool or 0/1), 1 on real tokens. If given,
      the states at padding positions are set to 0; real-token states never
      depend on it (see the module docstring).
    training: Forwarded to the blocks (no dropout in CLIP).

  Returns:
    Float tensor [N, L, hidden_dim]: every token state after `ln_final`.
  """

  def __init__(
      self,
      vocabulary_size: int = 49408,
      hidden_dim: int = 512,
      num_layers: int = 12,
      num_heads: int = 8,
      intermediate_dim: int = 2048,
      max_length: int = 77,
      layer_norm_epsilon: float = 1e-5,
      **kwargs,
  ):
    super().__init__(**kwargs)
    if hidden_dim % num_heads:
      raise ValueError(
          f"hidden_dim ({hidden_dim}) must be divisible by num_heads "
          f"({num_heads}).")
    # === Config ===
    self.vocabulary_size = int(vocabulary_size)
    self.hidden_dim = int(hidden_dim)
    self.num_layers = int(num_layers)
    self.num_heads = int(num_heads)
    self.intermediate_dim = int(intermediate_dim)
    self.max_length = int(max_length)
    self.layer_norm_epsilon = float(layer_norm_epsilon)

    # === Layers ===
    # Initialisers follow OpenAI CLIP: token N(0, 0.02), positions N(0, 0.01).
    self.token_embedding = keras.layers.Embedding(
        self.vocabulary_size,
        self.hidden_dim,
        embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
        dtype=self.dtype_policy,
        name="token_embedding",
    )
    self.blocks = clip_image_encoder.clip_blocks(
        self.num_layers, self.hidden_dim, self.num_heads,
        self.intermediate_dim, causal=True, dtype=self.dtype_policy)
    self.ln_final = keras.layers.LayerNormalization(
        epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy,
        name="ln_final")
    self.position_embedding = None

  def build(self, token_ids_shape=None):
    if token_ids_shape is not None:
      self._check_shape(token_ids_shape)
    self.position_embedding = self.add_weight(
        shape=(self.max_length, self.hidden_dim),
        initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="position_embedding",
    )
    self.token_embedding.build((None, self.max_length))
    state_shape = (None, self.max_length, self.hidden_dim)
    for block in self.blocks:
      block.build(state_shape)
    self.ln_final.build(state_shape)
    self.built = True

  def _check_shape(self, shape):
    shape = tuple(shape)
    if len(shape) != 2:
      raise ValueError(
          f"CLIPTextEncoder expects token_ids [N, L], got shape {shape}.")
    if shape[1] is None or shape[1] > self.max_length:
      raise ValueError(
          f"CLIPTextEncoder(max_length={self.max_length}) needs a static "
          f"L <= max_length, got token_ids of shape {shape}.")

  def call(self, token_ids, padding_mask=None, training=False):
    self._check_shape(token_ids.shape)
    length = token_ids.shape[1]
    x = self.token_embedding(token_ids)                     # [N, L, Dt]
    x = x + ops.cast(self.position_embedding[:length], x.dtype)[None]
    for block in self.blocks:
      x = block(x, training=training)
    x = self.ln_final(x)
    if padding_mask is not None:
      x = x * ops.cast(padding_mask, x.dtype)[..., None]
    return x

  def compute_output_shape(self, token_ids_shape):
    return (token_ids_shape[0], token_ids_shape[1], self.hidden_dim)

  def get_config(self):
    config = super().get_config()
    config.update({
        "vocabulary_size": self.vocabulary_size,
        "hidden_dim": self.hidden_dim,
        "num_layers": self.num_layers,
        "num_heads": self.num_heads,
        "intermediate_dim": self.intermediate_dim,
        "max_length": self.max_length,
        "layer_norm_epsilon": self.layer_norm_epsilon,
    })
    return config


def adapt_text_position_embedding(pos: np.ndarray,
                                  current: np.ndarray) -> np.ndarray:
  """Fits a pretrained text positional embedding to the current length.

  Reference `model_utils.init_text_posemb`: a longer pretrained table (CLIP's
  77 rows) is truncated to the current length; a shorter one fills the first
  rows and the extra rows keep their current (fresh) values.

  Args:
    pos: (L_src, D) pretrained embedding.
    current: (L, D) current `CLIPTextEncoder.position_embedding` value.

  Returns:
    (L, D) array of `current`'s dtype.
  """
  pos = np.asarray(pos)
  current = np.asarray(current)
  if pos.ndim != 2 or current.ndim != 2 or pos.shape[1] != current.shape[1]:
    raise ValueError(
        f"Cannot adapt a text positional embedding of shape {pos.shape} to "
        f"{current.shape}.")
  n = current.shape[0]
  if pos.shape[0] >= n:
    return pos[:n].astype(current.dtype)
  return np.concatenate([pos, current[pos.shape[0]:]], 0).astype(current.dtype)
