"""Prediction heads of UnLoc (reference_spec.md §2.8, §2.10, §2.11).

* `ConvBlock`: {LayerNorm -> Conv1D -> ReLU} x M -> Dense, the building block
  of the localization heads (reference `heads.ConvBlock`).
* `LocalizationHead`: per pyramid token, a relevancy logit and the distances
  to the segment start and end, in units of the level's stride (TAL, MR, HD;
  reference `QueryDependentLocalizationHead`). It also implements two paper
  ablations that the reference lacks (paper §4.2, reference_spec.md §8 "in the
  paper but missing", item 3): the video-only variant (`num_outputs=C`: C
  logits and C displacement pairs per token) and late fusion
  (`scoring="late"`: the logit is a scaled cosine between the token and the
  text embedding).
* `SegmentationHead`: the linear action segmentation head (reference
  `LinearHead`).

Sub-layer and weight names follow the reference parameter tree (§2.11), so a
checkpoint converter can map them one to one:
`ClassificationHead[_l]/{ln{i}, conv{i}, output_projection}`,
`RegressionHead[_l]/...`, `scale_{l}`, `shift_{l}`, and `output_projection`
for the segmentation head.

Mixed precision (a `mixed_bfloat16` / `mixed_float16` dtype policy): the
LayerNorms and convolutions compute in the policy's compute dtype, but the
output projections compute in the variables' dtype (float32), and so do the
per-level scale / shift, the distance normalizer and the late-fusion cosine:
the heads return float32 logits and distances whatever the policy, and the
losses, decoding and metrics downstream stay float32.  Under the float32
policy nothing changes.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf

DISTANCE_NORMALIZERS = ("relu", "sigmoid", "relu_clip")
SCORING_MODES = ("early", "late")
# CLIP's initial temperature: logits = exp(logit_scale) * cosine.
_INIT_LOGIT_SCALE = math.log(1.0 / 0.07)
_L2_EPSILON = 1e-12


def output_dtype(policy) -> str:
  """The dtype an output projection computes in under `policy`: its
  variables' (float32 under the mixed policies, so the logits are float32;
  the policy's own under a float32 or pure bfloat16 / float16 policy)."""
  return keras.dtype_policies.get(policy).variable_dtype


def _l2_normalize(x: tf.Tensor) -> tf.Tensor:
  """x / max(||x||, 1e-6) along the last axis (tf.math.l2_normalize)."""
  return tf.math.l2_normalize(x, axis=-1, epsilon=_L2_EPSILON)


@keras.saving.register_keras_serializable(package="unloc_tf")
class ConvBlock(keras.layers.Layer):
  """Multi-layer temporal convolution followed by a linear projection.

  `num_conv_layers` times {LayerNorm(eps) -> Conv1D(hidden_dim, kernel_size,
  stride 1, SAME zero padding, bias; lecun_normal kernel, zero bias) -> ReLU},
  no residual, then Dense(output_dim) with a glorot-normal kernel and the
  constant bias `init_proj_bias`. These are the Flax defaults of the reference
  (Keras' own defaults differ: LayerNorm eps 1e-3, glorot_uniform kernels).

  The convolution runs along axis -2. All leading axes are folded into the
  batch, so a [B, Nt, T, D] input is convolved per (b, text) row and the
  zero padding sits at both ends of the T axis.

  With `hidden_dim` equal to the input width this is exactly the reference
  block (which uses the input width for the convolutions).

  Args:
    output_dim: Width of the final projection.
    num_conv_layers: Number M of LayerNorm/Conv1D/ReLU repetitions.
    hidden_dim: Channels of every Conv1D.
    kernel_size: Temporal kernel size of every Conv1D.
    init_proj_bias: Constant initial value of the projection bias.
    layer_norm_epsilon: Epsilon of every LayerNorm.
    **kwargs: Base `keras.layers.Layer` arguments (`name`, `dtype`, ...).

  Call args:
    x: Float tensor [..., T, D_in] (at least rank 3).
    training: Unused (no dropout); accepted for a uniform call signature.

  Returns:
    Float tensor [..., T, output_dim], in the variables' dtype (float32
    under a mixed policy: the projection computes in it).
  """

  def __init__(
    self,
    output_dim: int,
    num_conv_layers: int = 3,
    hidden_dim: int = 512,
    kernel_size: int = 3,
    init_proj_bias: float = 0.0,
    layer_norm_epsilon: float = 1e-6,
    **kwargs,
  ):
    super().__init__(**kwargs)
    if num_conv_layers < 0:
      raise ValueError(f"num_conv_layers must be >= 0, got {num_conv_layers}.")
    self.output_dim = int(output_dim)
    self.num_conv_layers = int(num_conv_layers)
    self.hidden_dim = int(hidden_dim)
    self.kernel_size = int(kernel_size)
    self.init_proj_bias = float(init_proj_bias)
    self.layer_norm_epsilon = float(layer_norm_epsilon)

    self.layer_norms = []
    self.convs = []
    for i in range(self.num_conv_layers):
      self.layer_norms.append(
        keras.layers.LayerNormalization(
          epsilon=self.layer_norm_epsilon,
          dtype=self.dtype_policy,
          name=f"ln{i}",
        )
      )
      self.convs.append(
        keras.layers.Conv1D(
          self.hidden_dim,
          self.kernel_size,
          strides=1,
          padding="same",
          use_bias=True,
          kernel_initializer="lecun_normal",
          bias_initializer="zeros",
          dtype=self.dtype_policy,
          name=f"conv{i}",
        )
      )
    # In the variables' dtype (float32 under a mixed policy): float32
    # outputs, whatever the policy of the convolutions.
    self.output_projection = keras.layers.Dense(
      self.output_dim,
      kernel_initializer="glorot_normal",
      bias_initializer=keras.initializers.Constant(self.init_proj_bias),
      dtype=output_dtype(self.dtype_policy),
      name="output_projection",
    )

  def build(self, input_shape):
    input_shape = tuple(input_shape)
    if len(input_shape) < 3:
      raise ValueError(
        f"ConvBlock expects inputs [..., T, D] of rank >= 3, got shape "
        f"{input_shape}."
      )
    width = input_shape[-1]
    num_frames = input_shape[-2]
    for ln, conv in zip(self.layer_norms, self.convs):
      ln.build((None, num_frames, width))
      conv.build((None, num_frames, width))
      width = self.hidden_dim
    self.output_projection.build((None, num_frames, width))

  def call(self, x, training=False):
    del training  # No dropout.
    x = tf.convert_to_tensor(x, dtype=self.compute_dtype)
    shape = tf.shape(x)
    # Fold every leading axis into the batch: [N, T, D_in].
    y = tf.reshape(x, tf.stack([-1, shape[-2], shape[-1]]))
    y.set_shape([None, x.shape[-2], x.shape[-1]])
    for ln, conv in zip(self.layer_norms, self.convs):
      y = tf.nn.relu(conv(ln(y)))
    y = self.output_projection(y)
    y = tf.reshape(y, tf.concat([shape[:-1], [self.output_dim]], axis=0))
    y.set_shape(x.shape[:-1].concatenate([self.output_dim]))
    return y

  def compute_output_shape(self, input_shape):
    return tuple(input_shape)[:-1] + (self.output_dim,)

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "output_dim": self.output_dim,
        "num_conv_layers": self.num_conv_layers,
        "hidden_dim": self.hidden_dim,
        "kernel_size": self.kernel_size,
        "init_proj_bias": self.init_proj_bias,
        "layer_norm_epsilon": self.layer_norm_epsilon,
      }
    )
    return config


@keras.saving.register_keras_serializable(package="unloc_tf")
class LocalizationHead(keras.layers.Layer):
  """Relevancy logits + start/end distances per pyramid token (TAL, MR, HD).

  The tokens of all pyramid levels are concatenated along time
  (`T_tot = sum(level_lengths)`, level 0 first). They are split back by
  `level_lengths` before the heads run, so every level is convolved
  separately (zero padding at the level boundaries), and the per-level
  outputs are concatenated again.

  Two ConvBlocks, `ClassificationHead` (output 1 logit, or C in the
  video-only variant) and `RegressionHead` (output 2 distances per pair):
  * `weight_sharing=True`: one of each, shared by all levels, plus per-level
    learnable scalars `scale_{l}` (init 1) and `shift_{l}` (init 0) applied to
    the raw distances: `d = normalizer(raw * scale_l + shift_l)`.
  * `weight_sharing=False`: `ClassificationHead_{l}` / `RegressionHead_{l}`
    per level, no scale/shift: `d = normalizer(raw)`.
  Distances are in units of the level's stride (targets are built that way,
  reference_spec.md §3.3, §5.2).

  Distance normalizers: `"relu"` (all reference configs), `"sigmoid"`,
  `"relu_clip"` (relu, then clipped at 1).

  Variants:
  * early scoring (`scoring="early"`, the UnLoc model): tokens are the fused
    video-text tokens [B, Nt, T_tot, D], one row per (video, text item).
    With `output_per_class_displacements=False` the regression input is
    averaged over the text axis and a single pair per token is predicted,
    then broadcast to every text item (reference: `(B, T_tot, C+2)` layout).
  * video-only (`num_outputs=C > 1`, paper §4.2 "no-text"): tokens
    [B, 1, T_tot, D] from a video-only temporal encoder; the classification
    head predicts C logits and the regression head 2C distances per token
    (laid out `[start_0, end_0, start_1, end_1, ...]`), or a single pair
    broadcast to all classes when `output_per_class_displacements=False`.
  * late scoring (`scoring="late"`, paper §4.2 "late fusion"): tokens
    [B, 1, T_tot, D] from a video-only encoder and text embeddings [Nt, D]
    (or per video [B, Nt, D]); the logit is
    `exp(logit_scale) * cos(token, text) + logit_bias` (learnable scalars,
    init log(1/0.07) as in CLIP, and `classification_bias`; no clamp). There
    is no ClassificationHead. Distances come from the RegressionHead on the
    video tokens (one pair per token, whatever
    `output_per_class_displacements` says, since the tokens carry no text)
    and are broadcast over Nt.

  Args:
    level_lengths: Number of tokens of each pyramid level, level 0 first
      (e.g. `(128, 64, 32, 16)`).
    hidden_dim: Conv channels of the ConvBlocks (the fusion width D in the
      reference).
    num_conv_layers: LayerNorm/Conv1D/ReLU repetitions per ConvBlock.
    kernel_size: Temporal kernel size.
    weight_sharing: Share the ConvBlocks across levels (with per-level
      scale/shift) or use one pair of ConvBlocks per level.
    classification_bias: Initial bias of the classification projection (the
      logit prior; TAL uses -5.0), or of `logit_bias` for late scoring.
    regression_bias: Initial bias of the regression projection.
    distance_normalizer: `"relu"`, `"sigmoid"` or `"relu_clip"`.
    output_per_class_displacements: One (start, end) pair per text item /
      class (True) or one pair per token (False).
    num_outputs: Logits per token row: 1 for text-conditioned tokens, C for
      the video-only variant.
    scoring: `"early"` (conv classification head on fused tokens) or
      `"late"` (cosine between video tokens and text embeddings).
    layer_norm_epsilon: Epsilon of the ConvBlock LayerNorms.
    **kwargs: Base `keras.layers.Layer` arguments.

  Call args:
    tokens: Float [B, Nt, T_tot, D]; Nt must be 1 for the video-only and
      late variants.
    text_embeddings: Late scoring only: float [Nt, D] (shared by the batch)
      or [B, Nt, D]. Ignored by early scoring.
    training: Unused (no dropout).

  Returns:
    A tuple `(logits, distances)`:
    * early, `num_outputs=1`: [B, Nt, T_tot] and [B, Nt, T_tot, 2];
    * video-only: [B, C, T_tot] and [B, C, T_tot, 2];
    * late: [B, Nt, T_tot] and [B, Nt, T_tot, 2] (Nt of `text_embeddings`).
    Distances are >= 0, in units of each level's stride.  Both are in the
    variables' dtype: float32 under a mixed policy.
  """

  def __init__(
    self,
    level_lengths: tuple[int, ...],
    hidden_dim: int = 512,
    num_conv_layers: int = 3,
    kernel_size: int = 3,
    weight_sharing: bool = True,
    classification_bias: float = 0.0,
    regression_bias: float = 2.0,
    distance_normalizer: str = "relu",
    output_per_class_displacements: bool = True,
    num_outputs: int = 1,
    scoring: str = "early",
    layer_norm_epsilon: float = 1e-6,
    **kwargs,
  ):
    super().__init__(**kwargs)
    level_lengths = tuple(int(n) for n in level_lengths)
    if not level_lengths or min(level_lengths) < 1:
      raise ValueError(
        f"level_lengths must be non-empty and positive, got {level_lengths}."
      )
    if distance_normalizer not in DISTANCE_NORMALIZERS:
      raise ValueError(
        f"Unknown distance_normalizer {distance_normalizer!r}; expected one "
        f"of {DISTANCE_NORMALIZERS}."
      )
    if scoring not in SCORING_MODES:
      raise ValueError(
        f"Unknown scoring {scoring!r}; expected one of {SCORING_MODES}."
      )
    if num_outputs < 1:
      raise ValueError(f"num_outputs must be >= 1, got {num_outputs}.")
    if scoring == "late" and num_outputs != 1:
      raise ValueError(
        "Late scoring takes its classes from text_embeddings; num_outputs "
        f"must be 1, got {num_outputs}."
      )
    self.level_lengths = level_lengths
    self.hidden_dim = int(hidden_dim)
    self.num_conv_layers = int(num_conv_layers)
    self.kernel_size = int(kernel_size)
    self.weight_sharing = bool(weight_sharing)
    self.classification_bias = float(classification_bias)
    self.regression_bias = float(regression_bias)
    self.distance_normalizer = distance_normalizer
    self.output_per_class_displacements = bool(output_per_class_displacements)
    self.num_outputs = int(num_outputs)
    self.scoring = scoring
    self.layer_norm_epsilon = float(layer_norm_epsilon)

    # Number of (start, end) pairs the regression head predicts per token.
    self._num_pairs = (
      self.num_outputs if self.output_per_class_displacements else 1
    )
    num_blocks = 1 if self.weight_sharing else len(self.level_lengths)

    def _name(base, level):
      return base if self.weight_sharing else f"{base}_{level}"

    def _block(output_dim, bias, name):
      return ConvBlock(
        output_dim,
        num_conv_layers=self.num_conv_layers,
        hidden_dim=self.hidden_dim,
        kernel_size=self.kernel_size,
        init_proj_bias=bias,
        layer_norm_epsilon=self.layer_norm_epsilon,
        dtype=self.dtype_policy,
        name=name,
      )

    self.classification_heads = []
    if self.scoring == "early":
      self.classification_heads = [
        _block(
          self.num_outputs,
          self.classification_bias,
          _name("ClassificationHead", l),
        )
        for l in range(num_blocks)
      ]
    self.regression_heads = [
      _block(
        2 * self._num_pairs, self.regression_bias, _name("RegressionHead", l)
      )
      for l in range(num_blocks)
    ]
    self.scales = []
    self.shifts = []
    self.logit_scale = None
    self.logit_bias = None

  @property
  def total_length(self) -> int:
    """T_tot, the number of tokens of all levels together."""
    return sum(self.level_lengths)

  def build(self, tokens_shape):
    tokens_shape = tuple(tokens_shape)
    if len(tokens_shape) != 4:
      raise ValueError(
        f"LocalizationHead expects tokens [B, Nt, T_tot, D], got shape "
        f"{tokens_shape}."
      )
    lead = tokens_shape[:2]
    width = tokens_shape[-1]
    for level, length in enumerate(self.level_lengths):
      if level == 0 or not self.weight_sharing:
        index = 0 if self.weight_sharing else level
        shape = lead + (length, width)
        if self.classification_heads:
          self.classification_heads[index].build(shape)
        self.regression_heads[index].build(shape)
    if self.weight_sharing:
      for level in range(len(self.level_lengths)):
        # Read in float32 under a mixed policy (autocast=False), with the
        # float32 outputs of the projections.
        self.scales.append(
          self.add_weight(
            name=f"scale_{level}",
            shape=(1,),
            initializer="ones",
            autocast=False,
          )
        )
        self.shifts.append(
          self.add_weight(
            name=f"shift_{level}",
            shape=(1,),
            initializer="zeros",
            autocast=False,
          )
        )
    if self.scoring == "late":
      self.logit_scale = self.add_weight(
        name="logit_scale",
        shape=(1,),
        initializer=keras.initializers.Constant(_INIT_LOGIT_SCALE),
        autocast=False,
      )
      self.logit_bias = self.add_weight(
        name="logit_bias",
        shape=(1,),
        initializer=keras.initializers.Constant(self.classification_bias),
        autocast=False,
      )

  def normalize_distances(self, distances: tf.Tensor) -> tf.Tensor:
    """Applies `distance_normalizer` to raw (scaled, shifted) distances."""
    if self.distance_normalizer == "relu":
      return tf.nn.relu(distances)
    if self.distance_normalizer == "sigmoid":
      return tf.sigmoid(distances)
    return tf.minimum(tf.nn.relu(distances), 1.0)  # relu_clip

  def _check_tokens(self, tokens: tf.Tensor) -> None:
    if tokens.shape.rank != 4:
      raise ValueError(
        f"tokens must be [B, Nt, T_tot, D], got shape {tokens.shape}."
      )
    if tokens.shape[2] is not None and tokens.shape[2] != self.total_length:
      raise ValueError(
        f"tokens have {tokens.shape[2]} time steps but level_lengths "
        f"{self.level_lengths} sum to {self.total_length}."
      )
    if self.num_outputs > 1 or self.scoring == "late":
      if tokens.shape[1] is not None and tokens.shape[1] != 1:
        raise ValueError(
          "The video-only and late-scoring variants take video tokens "
          f"[B, 1, T_tot, D], got shape {tokens.shape}."
        )

  def call(self, tokens, text_embeddings=None, training=False):
    tokens = tf.convert_to_tensor(tokens, dtype=self.compute_dtype)
    self._check_tokens(tokens)
    if self.scoring == "late" and text_embeddings is None:
      raise ValueError("Late scoring needs text_embeddings.")

    levels = tf.split(tokens, list(self.level_lengths), axis=2)
    all_logits = []
    all_distances = []
    for level, x in enumerate(levels):
      index = 0 if self.weight_sharing else level
      if self.classification_heads:
        # [B, Nt, T_l, num_outputs]
        all_logits.append(
          self.classification_heads[index](x, training=training)
        )
      if not self.output_per_class_displacements:
        x = tf.reduce_mean(x, axis=1, keepdims=True)  # [B, 1, T_l, D]
      # [B, Nt or 1, T_l, 2 * num_pairs], float32
      raw = self.regression_heads[index](x, training=training)
      if self.weight_sharing:
        raw = raw * self.scales[level] + self.shifts[level]
      all_distances.append(self.normalize_distances(raw))
    distances = tf.concat(all_distances, axis=2)

    batch_size = tf.shape(tokens)[0]
    num_frames = self.total_length
    if self.scoring == "late":
      logits = self._cosine_logits(tokens[:, 0], text_embeddings)
    elif self.num_outputs == 1:
      logits = tf.concat(all_logits, axis=2)[..., 0]  # [B, Nt, T_tot]
    else:
      # Video-only: [B, 1, T_tot, C] -> [B, C, T_tot].
      logits = tf.transpose(tf.concat(all_logits, axis=2)[:, 0], [0, 2, 1])
      # [B, 1, T_tot, 2P] -> [B, T_tot, P, 2] -> [B, P, T_tot, 2].
      distances = tf.reshape(
        distances[:, 0], [batch_size, num_frames, self._num_pairs, 2]
      )
      distances = tf.transpose(distances, [0, 2, 1, 3])
    target_shape = tf.concat([tf.shape(logits), [2]], axis=0)
    distances = tf.broadcast_to(distances, target_shape)
    distances.set_shape(logits.shape.concatenate([2]))
    return logits, distances

  def _cosine_logits(self, video: tf.Tensor, text: tf.Tensor) -> tf.Tensor:
    """Scaled cosine similarity.

    Args:
      video: Float [B, T_tot, D] video tokens.
      text: Float [Nt, D] or [B, Nt, D] text embeddings.

    Returns:
      Float [B, Nt, T_tot] logits, in the variables' dtype (float32 under a
      mixed policy, like the cosine itself).
    """
    text = tf.convert_to_tensor(text)
    if text.shape[-1] is not None and text.shape[-1] != video.shape[-1]:
      raise ValueError(
        f"text_embeddings width {text.shape[-1]} != token width "
        f"{video.shape[-1]}."
      )
    dtype = self.variable_dtype
    video = _l2_normalize(tf.cast(video, dtype))
    text = _l2_normalize(tf.cast(text, dtype))
    if text.shape.rank == 2:
      cosine = tf.einsum("btd,nd->bnt", video, text)
    elif text.shape.rank == 3:
      cosine = tf.einsum("btd,bnd->bnt", video, text)
    else:
      raise ValueError(
        f"text_embeddings must be [Nt, D] or [B, Nt, D], got {text.shape}."
      )
    return tf.exp(self.logit_scale) * cosine + self.logit_bias

  def get_config(self):
    config = super().get_config()
    config.update(
      {
        "level_lengths": list(self.level_lengths),
        "hidden_dim": self.hidden_dim,
        "num_conv_layers": self.num_conv_layers,
        "kernel_size": self.kernel_size,
        "weight_sharing": self.weight_sharing,
        "classification_bias": self.classification_bias,
        "regression_bias": self.regression_bias,
        "distance_normalizer": self.distance_normalizer,
        "output_per_class_displacements": self.output_per_class_displacements,
        "num_outputs": self.num_outputs,
        "scoring": self.scoring,
        "layer_norm_epsilon": self.layer_norm_epsilon,
      }
    )
    return config


@keras.saving.register_keras_serializable(package="unloc_tf")
class SegmentationHead(keras.layers.Layer):
  """Linear action segmentation head (reference `LinearHead`).

  `Dense(1, glorot_uniform kernel, constant bias init_bias)` named
  `output_projection` on every fused (class, frame) token, squeezed. The
  default bias -6.6 is COIN's prior (sigmoid(-6.6) ~ 1/736 for 778 classes).

  Args:
    init_bias: Initial value of the projection bias.
    **kwargs: Base `keras.layers.Layer` arguments.

  Call args:
    tokens: Float [B, C, T, D]: every class text fused with the video.

  Returns:
    Float logits [B, T, C], in the variables' dtype (float32 under a mixed
    policy: the projection computes in it).
  """

  def __init__(self, init_bias: float = -6.6, **kwargs):
    super().__init__(**kwargs)
    self.init_bias = float(init_bias)
    self.output_projection = keras.layers.Dense(
      1,
      kernel_initializer="glorot_uniform",
      bias_initializer=keras.initializers.Constant(self.init_bias),
      dtype=output_dtype(self.dtype_policy),
      name="output_projection",
    )

  def build(self, tokens_shape):
    tokens_shape = tuple(tokens_shape)
    if len(tokens_shape) != 4:
      raise ValueError(
        f"SegmentationHead expects tokens [B, C, T, D], got shape "
        f"{tokens_shape}."
      )
    self.output_projection.build(tokens_shape)

  def call(self, tokens):
    tokens = tf.convert_to_tensor(tokens, dtype=self.compute_dtype)
    logits = self.output_projection(tokens)[..., 0]  # [B, C, T]
    return tf.transpose(logits, [0, 2, 1])

  def compute_output_shape(self, tokens_shape):
    b, c, t, _ = tuple(tokens_shape)
    return (b, t, c)

  def get_config(self):
    config = super().get_config()
    config.update({"init_bias": self.init_bias})
    return config
