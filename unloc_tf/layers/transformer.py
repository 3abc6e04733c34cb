"""The pre-LN transformer block of the fusion module (reference_spec.md §2.6).

Reference: `scenic/projects/unloc/encoders.py::TransformerEncoder1DBlock`.

    y = LN(x)                        # eps 1e-6 (Flax default)
    y = MHA(y, y, key_mask)          # biases, xavier_uniform kernels
    y = Dropout(y); y = StochasticDepth(y); x = x + y
    z = LN(x)
    z = Dense(mlp) -> GELU(tanh) -> Dropout -> Dense(D) -> Dropout
    z = StochasticDepth(z); x = x + z

Sub-layer names follow the reference parameter tree (§2.11): `LayerNorm_0`,
`MultiHeadAttention_0/{query,key,value,attention_output}` (Keras calls the
reference's `out` projection `attention_output`; the EinsumDense kernels have
the reference layouts (D, heads, D/heads) and (heads, D/heads, D)),
`LayerNorm_1`, `MlpBlock_0/{Dense_0,Dense_1}`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from unloc_tf.ops import masks as masks_lib

_PACKAGE = "unloc_tf"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class XavierUniformWithFans(keras.initializers.Initializer):
  """Xavier (Glorot) uniform with explicit fans: U(±sqrt(6 / (in + out))).

  Flax's `DenseGeneral` applies `xavier_uniform` to the kernel flattened to
  (prod(input axes), prod(output axes)), i.e. (D, D) for every attention
  projection.  Keras' `glorot_uniform` on the 3-D EinsumDense kernel
  (D, heads, D/heads) would treat D as a receptive field and give a much
  smaller range, so the fans are given explicitly.

  Args:
    fan_in: number of input units.
    fan_out: number of output units.
    seed: optional int seed (None: Keras' global seed generator).
  """

  def __init__(self, fan_in: int, fan_out: int, seed: Optional[int] = None):
    self.fan_in = int(fan_in)
    self.fan_out = int(fan_out)
    self.seed = seed

  def __call__(self, shape, dtype=None):
    limit = math.sqrt(6.0 / (self.fan_in + self.fan_out))
    # Keras' own initializer handles seed=None safely (also while Keras
    # builds a model symbolically, where the global seed state is absent).
    return keras.initializers.RandomUniform(-limit, limit, seed=self.seed)(
        shape, dtype=dtype or "float32")

  def get_config(self) -> Dict[str, Any]:
    return {"fan_in": self.fan_in, "fan_out": self.fan_out, "seed": self.seed}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class StochasticDepth(keras.layers.Layer):
  """Drops a whole residual branch per example (timm / Scenic drop-path).

  In training, example `b` of `x` is multiplied by `keep_b / (1 - rate)` with
  `keep_b ~ Bernoulli(1 - rate)`, independently per example and per call.
  In inference (or with rate 0) it is the identity.

  Args:
    rate: drop probability in [0, 1).
    seed: optional int seed of the layer's seed generator.
  """

  def __init__(self, rate: float = 0.0, seed: Optional[int] = None, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"stochastic depth rate must be in [0, 1), got {rate}")
    self.rate = float(rate)
    self.seed = seed
    self.seed_generator = None
    if self.rate > 0.0:
      self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, x, training=False):
    """x [B, ...] → [B, ...]."""
    if not training or self.rate == 0.0:
      return x
    keep_prob = 1.0 - self.rate
    shape = (keras.ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
    u = keras.random.uniform(shape, dtype=x.dtype, seed=self.seed_generator)
    keep = tf.cast(u < keep_prob, x.dtype)
    return x * (keep / keep_prob)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(rate=self.rate, seed=self.seed)
    return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MlpBlock(keras.layers.Layer):
  """Dense(mlp_dim) → GELU (tanh approximation) → Dropout → Dense → Dropout.

  Kernels xavier_uniform, biases N(0, 1e-6) (Scenic `MlpBlock`).

  Args:
    mlp_dim: hidden width.
    out_dim: output width.
    dropout_rate: dropout after the activation and after the output Dense.
  """

  def __init__(self, mlp_dim: int = 2048, out_dim: int = 512,
               dropout_rate: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.mlp_dim = int(mlp_dim)
    self.out_dim = int(out_dim)
    self.dropout_rate = float(dropout_rate)
    self.dense_0 = keras.layers.Dense(
        self.mlp_dim, kernel_initializer="glorot_uniform",
        bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
        name="Dense_0")
    self.dense_1 = keras.layers.Dense(
        self.out_dim, kernel_initializer="glorot_uniform",
        bias_initializer=keras.initializers.RandomNormal(stddev=1e-6),
        name="Dense_1")
    self.dropout_0 = keras.layers.Dropout(self.dropout_rate, name="dropout_0")
    self.dropout_1 = keras.layers.Dropout(self.dropout_rate, name="dropout_1")

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    if not self.dense_0.built:
      self.dense_0.build(input_shape)
    if not self.dense_1.built:
      self.dense_1.build(input_shape[:-1] + (self.mlp_dim,))

  def call(self, x, training=False):
    """x [..., Din] → [..., out_dim]."""
    y = self.dense_0(x)
    y = keras.activations.gelu(y, approximate=True)
    y = self.dropout_0(y, training=training)
    y = self.dense_1(y)
    return self.dropout_1(y, training=training)

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)[:-1] + (self.out_dim,)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(mlp_dim=self.mlp_dim, out_dim=self.out_dim,
                  dropout_rate=self.dropout_rate)
    return config


@keras.saving.register_keras_serializable(package=_PACKAGE)
class TransformerBlock(keras.layers.Layer):
  """Pre-LN transformer encoder block with a key-padding mask.

  Args:
    hidden_dim: D, the token width (= qkv width = output width).
    num_heads: attention heads (D must be divisible by it).
    mlp_dim: hidden width of the MLP.
    dropout_rate: dropout after attention and inside the MLP.
    attention_dropout_rate: dropout on the attention probabilities
      (independent per element, Flax `broadcast_dropout=False`).
    stochastic_depth_rate: per-example drop probability of each residual
      branch of this block (the encoder passes `i / (L - 1) * rate`).
    layer_norm_epsilon: LayerNorm epsilon (Flax default 1e-6).
  """

  def __init__(self, hidden_dim: int = 512, num_heads: int = 8,
               mlp_dim: int = 2048, dropout_rate: float = 0.0,
               attention_dropout_rate: float = 0.0,
               stochastic_depth_rate: float = 0.0,
               layer_norm_epsilon: float = 1e-6, **kwargs):
    super().__init__(**kwargs)
    if hidden_dim % num_heads:
      raise ValueError(f"hidden_dim={hidden_dim} must be divisible by"
                       f" num_heads={num_heads}")
    self.hidden_dim = int(hidden_dim)
    self.num_heads = int(num_heads)
    self.mlp_dim = int(mlp_dim)
    self.dropout_rate = float(dropout_rate)
    self.attention_dropout_rate = float(attention_dropout_rate)
    self.stochastic_depth_rate = float(stochastic_depth_rate)
    self.layer_norm_epsilon = float(layer_norm_epsilon)

    self.layer_norm_0 = keras.layers.LayerNormalization(
        epsilon=self.layer_norm_epsilon, name="LayerNorm_0")
    self.attention = keras.layers.MultiHeadAttention(
        num_heads=self.num_heads,
        key_dim=self.hidden_dim // self.num_heads,
        dropout=self.attention_dropout_rate,
        use_bias=True,
        kernel_initializer=XavierUniformWithFans(self.hidden_dim,
                                                 self.hidden_dim),
        bias_initializer="zeros",
        name="MultiHeadAttention_0")
    self.attention_output_dropout = keras.layers.Dropout(
        self.dropout_rate, name="dropout")
    self.drop_path_0 = StochasticDepth(self.stochastic_depth_rate,
                                       name="stochastic_depth_0")
    self.layer_norm_1 = keras.layers.LayerNormalization(
        epsilon=self.layer_norm_epsilon, name="LayerNorm_1")
    self.mlp = MlpBlock(self.mlp_dim, self.hidden_dim, self.dropout_rate,
                        name="MlpBlock_0")
    self.drop_path_1 = StochasticDepth(self.stochastic_depth_rate,
                                       name="stochastic_depth_1")

  def build(self, input_shape):
    shape = tuple(input_shape)[:-1] + (self.hidden_dim,)
    for layer in (self.layer_norm_0, self.layer_norm_1, self.mlp):
      if not layer.built:
        layer.build(shape)
    if not self.attention.built:
      self.attention.build(shape, shape)

  def call(self, x, key_mask=None, training=False):
    """Applies the block.

    Args:
      x: [B, S, D] tokens.
      key_mask: optional [B, S] (1 = real token, may be attended to).  Padded
        keys get a large negative logit for every query; padded queries are
        still computed (their outputs are meaningless but finite).
      training: enables dropout and stochastic depth.

    Returns:
      [B, S, D].
    """
    attention_mask = None
    if key_mask is not None:
      attention_mask = masks_lib.attention_mask_from_key_mask(key_mask)
    y = self.layer_norm_0(x)
    y = self.attention(y, y, attention_mask=attention_mask, training=training)
    y = self.attention_output_dropout(y, training=training)
    y = self.drop_path_0(y, training=training)
    x = x + y
    z = self.layer_norm_1(x)
    z = self.mlp(z, training=training)
    z = self.drop_path_1(z, training=training)
    return x + z

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        hidden_dim=self.hidden_dim,
        num_heads=self.num_heads,
        mlp_dim=self.mlp_dim,
        dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate,
        stochastic_depth_rate=self.stochastic_depth_rate,
        layer_norm_epsilon=self.layer_norm_epsilon,
    )
    return config
