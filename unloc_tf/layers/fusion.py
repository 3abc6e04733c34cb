"""Early video-text fusion transformer + feature pyramid (reference_spec.md §2.5-§2.7).

Reference: `scenic/projects/unloc/video_text_fusion.py`
(`VideoTextSelfAttentionFusion`, `VideoTextEmbSelfAttentionFusion`,
`SimplePyramidEncoder`, `FeaturePyramidEncoder`) and
`encoders.py::TransformerEncoder`.

Every (video, text item) pair is one sequence `[N0 video tokens ; text
token(s)]`.  The reference vmaps the encoder over the text items; here the
pairs are tiled into one batch of B * Nt sequences and the blocks run once
(no Python loop over text items), then the result is reshaped to
[B, Nt, ...].  Steps, per sequence:

1. key mask = video mask ⊕ text mask (a pooled text token is always valid);
2. position embedding added once over the whole [video; text] length
   (fixed sinusoid / learned N(0, 0.02) / none), then dropout;
3. blocks `encoderblock_{i}` with stochastic depth i / (L - 1) * rate;
   * "simple" / "none": all blocks at full resolution with the level-0 mask;
   * "fpn": after every block whose index is in `fpn_layer_indices` the video
     tokens become the next pyramid level and (unless it is the last block)
     the video part is downsampled (window 2, stride 2: max_pool, avg_pool or
     subsample) while the text tokens are kept; later blocks use the key mask
     of the new level;
4. pyramid on the video tokens only ("none": the final LayerNorm
   `encoder_norm` over the whole sequence, so the fused text token is
   normalised too, as in the reference `transformer` encoder).

Padded video frames are excluded as attention keys but still flow through the
pyramid convolutions unmasked, as in the reference (all reference pyramid
configs use all-ones masks; the only padded task, AS, has no pyramid).

Known differences from the reference (none affects a released config):
* the level masks are computed here from the level-0 video mask
  (`ops.masks.pyramid_masks`, max over each window) instead of being read
  from a [B, T_tot] input mask;
* fpn "subsample" keeps every other token of the *current* level; the
  reference indexes the current level with level-0 strides
  (`arange(0, N0, 2**level)`), which runs past its end from the second
  downsampling on (JAX clamps the indices);
* all_tokens: the fused text embedding is the masked mean of the text states
  (the reference pools with the text classifier, 'eos' in its configs);
* dropout / stochastic-depth masks are drawn independently for every (video,
  text) sequence; the reference's `jax.vmap` over text items reuses one RNG,
  so its masks repeat across text items (all configs use rate 0).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from unloc_tf.layers import feature_pyramid as pyramid_lib
from unloc_tf.layers import transformer as transformer_lib
from unloc_tf.ops import masks as masks_lib
from unloc_tf.ops import position as position_lib

_PACKAGE = "unloc_tf"
TEXT_MODES = ("pooled", "all_tokens", "none")
PAIRINGS = ("all", "paired")
POSITION_EMBEDDINGS = ("sinusoid", "learned", "none")
FPN_DOWNSAMPLE = ("max_pool", "avg_pool", "subsample")


def _downsample_tokens(x: tf.Tensor, mode: str) -> tf.Tensor:
  """[B, N, D] → [B, N // 2, D] (window 2, stride 2, VALID)."""
  n = x.shape[1]
  half = n // 2
  if mode == "subsample":
    return x[:, : 2 * half : 2]
  pairs = tf.reshape(x[:, : 2 * half], [-1, half, 2, x.shape[-1]])
  if mode == "max_pool":
    return tf.reduce_max(pairs, axis=2)
  return tf.reduce_mean(pairs, axis=2)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class VideoTextFusion(keras.layers.Layer):
  """The video-text fusion transformer + feature pyramid.

  (Reference `video_text_self_attention` / `video_text_emb_self_attention`
  fusion with the `simple_pyramid` / `fpn` / `transformer` encoders.)

  Args:
    hidden_dim: D.
    num_layers: number of transformer blocks.
    num_heads: attention heads.
    mlp_dim: MLP hidden width.
    dropout_rate: dropout after the position embedding, after attention and
      in the MLP.
    attention_dropout_rate: dropout on attention probabilities.
    stochastic_depth_rate: the maximum rate; block i uses
      i / max(num_layers - 1, 1) * rate.
    text_mode: "pooled" (one text token per text item, text [Nt, D]),
      "all_tokens" (text [Nt, Lt, D] + mask [Nt, Lt]) or "none" (video only).
    pyramid: "simple", "fpn" or "none".
    num_levels: pyramid levels L (ignored for pyramid "none": one level).
    fpn_layer_indices: for "fpn", the L block indices that emit a level
      (strictly increasing, the last one must be num_layers - 1).
    fpn_downsample: "max_pool", "avg_pool" or "subsample" (fpn only).
    position_embedding: "sinusoid", "learned" (needs max_length) or "none".
    max_length: number of learned positions (>= N0 + text tokens).
    layer_norm_epsilon: LayerNorm epsilon (1e-6).
  """

  def __init__(self, hidden_dim: int = 512, num_layers: int = 6,
               num_heads: int = 8, mlp_dim: int = 2048,
               dropout_rate: float = 0.0, attention_dropout_rate: float = 0.0,
               stochastic_depth_rate: float = 0.0, text_mode: str = "pooled",
               pyramid: str = "simple", num_levels: int = 4,
               fpn_layer_indices=(2, 3, 4, 5),
               fpn_downsample: str = "max_pool",
               position_embedding: str = "sinusoid",
               max_length: Optional[int] = None,
               layer_norm_epsilon: float = 1e-6, **kwargs):
    super().__init__(**kwargs)
    if text_mode not in TEXT_MODES:
      raise ValueError(f"text_mode must be one of {TEXT_MODES}, got"
                       f" {text_mode!r}")
    if pyramid not in pyramid_lib.MODES:
      raise ValueError(f"pyramid must be one of {pyramid_lib.MODES}, got"
                       f" {pyramid!r}")
    if position_embedding not in POSITION_EMBEDDINGS:
      raise ValueError(f"position_embedding must be one of"
                       f" {POSITION_EMBEDDINGS}, got {position_embedding!r}")
    if fpn_downsample not in FPN_DOWNSAMPLE:
      raise ValueError(f"fpn_downsample must be one of {FPN_DOWNSAMPLE}, got"
                       f" {fpn_downsample!r}")
    if position_embedding == "learned" and not max_length:
      raise ValueError("position_embedding='learned' needs max_length")
    if num_layers < 1 or num_levels < 1:
      raise ValueError("num_layers and num_levels must be >= 1")
    self.hidden_dim = int(hidden_dim)
    self.num_layers = int(num_layers)
    self.num_heads = int(num_heads)
    self.mlp_dim = int(mlp_dim)
    self.dropout_rate = float(dropout_rate)
    self.attention_dropout_rate = float(attention_dropout_rate)
    self.stochastic_depth_rate = float(stochastic_depth_rate)
    self.text_mode = text_mode
    self.pyramid = pyramid
    self.num_levels = int(num_levels)
    self.fpn_layer_indices = tuple(int(i) for i in fpn_layer_indices)
    self.fpn_downsample = fpn_downsample
    self.position_embedding = position_embedding
    self.max_length = int(max_length) if max_length else None
    self.layer_norm_epsilon = float(layer_norm_epsilon)
    if pyramid == "fpn":
      idx = self.fpn_layer_indices
      if (len(idx) != self.num_levels or list(idx) != sorted(set(idx))
          or idx[0] < 0 or idx[-1] != self.num_layers - 1):
        # The reference would index past its per-level masks otherwise.
        raise ValueError(
            f"fpn needs num_levels={self.num_levels} strictly increasing"
            f" fpn_layer_indices ending at num_layers-1={self.num_layers - 1},"
            f" got {idx}")

    self.blocks = [
        transformer_lib.TransformerBlock(
            hidden_dim=self.hidden_dim, num_heads=self.num_heads,
            mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate,
            attention_dropout_rate=self.attention_dropout_rate,
            stochastic_depth_rate=(
                i / max(self.num_layers - 1, 1) * self.stochastic_depth_rate),
            layer_norm_epsilon=self.layer_norm_epsilon,
            name=f"encoderblock_{i}")
        for i in range(self.num_layers)
    ]
    self.feature_pyramid = pyramid_lib.FeaturePyramid(
        mode=pyramid, num_levels=self.num_levels, hidden_dim=self.hidden_dim,
        layer_norm_epsilon=self.layer_norm_epsilon, name="feature_pyramid")
    self.embedding_dropout = keras.layers.Dropout(self.dropout_rate,
                                                  name="dropout")
    self.pos_embedding = None

  @property
  def output_levels(self) -> int:
    """Number of pyramid levels in the output (1 for pyramid "none")."""
    return self.feature_pyramid.output_levels

  def total_tokens(self, num_frames: int) -> int:
    """T_tot for N0 = num_frames."""
    return sum(num_frames // 2**l for l in range(self.output_levels))

  def build(self, video_shape):
    del video_shape  # Widths come from the constructor.
    shape = (None, None, self.hidden_dim)
    for layer in (*self.blocks, self.feature_pyramid):
      if not layer.built:
        layer.build(shape)
    if self.position_embedding == "learned" and self.pos_embedding is None:
      self.pos_embedding = self.add_weight(
          name="posembed_input", shape=(self.max_length, self.hidden_dim),
          initializer=keras.initializers.RandomNormal(stddev=0.02))

  # ---------------------------------------------------------------------------
  def _text_tokens(self, text, text_mask):
    """Text input → (tokens [Nt, Lt', D], key mask int32 [Nt, Lt'])."""
    text = tf.convert_to_tensor(text)
    if self.text_mode == "pooled":
      if text.shape.rank != 2:
        raise ValueError(f"pooled text must be [Nt, D], got {text.shape}")
      text = text[:, None, :]
      return text, tf.ones([tf.shape(text)[0], 1], tf.int32)
    if text.shape.rank != 3:
      raise ValueError(f"all_tokens text must be [Nt, Lt, D], got"
                       f" {text.shape}")
    if text_mask is None:
      text_mask = tf.ones(tf.shape(text)[:2], tf.int32)
    return text, masks_lib.downsample_mask(text_mask, 1)

  def _add_position_embedding(self, x):
    length = x.shape[1]
    if self.position_embedding == "sinusoid":
      table = position_lib.sinusoid_position_embedding(length, self.hidden_dim)
      return x + tf.cast(table, x.dtype)[None]
    if self.position_embedding == "learned":
      if length > self.max_length:
        raise ValueError(f"sequence length {length} > max_length"
                         f" {self.max_length}")
      return x + tf.cast(self.pos_embedding[:length], x.dtype)[None]
    return x

  def call(self, video, video_mask, text=None, text_mask=None,
           pairing: str = "all", training=False) -> Dict[str, tf.Tensor]:
    """Fuses every video with its text item(s).

    Args:
      video: [B, N0, D] video tokens (N0, D static).
      video_mask: [B, N0] (1 = real frame).
      text: pooled: [Nt, D]; all_tokens: [Nt, Lt, D]; none: None.
      text_mask: all_tokens: [Nt, Lt] (1 = real token; None = all real);
        ignored otherwise.
      pairing: "all": every video with every text item (TAL/AS class names,
        MR every caption of the batch) → Nt' = Nt; "paired": video b with text
        item b (HD; Nt == B) → Nt' = 1.  Ignored for text_mode "none"
        (Nt' = 1).
      training: enables dropout / stochastic depth.

    Returns:
      {"tokens": [B, Nt', T_tot, D] fused video tokens, pyramid levels
         concatenated along time (T_tot = sum_l N0 // 2**l; N0 for "none"),
       "mask": [B, Nt', T_tot] int32 level masks
         (`ops.masks.pyramid_masks(video_mask, levels)`),
       "text": [B, Nt', D] the fused text token after the last block
         (all_tokens: masked mean over the real text positions; text_mode
         "none": zeros)}.
    """
    if pairing not in PAIRINGS:
      raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    video = tf.convert_to_tensor(video)
    n0, dim = video.shape[1], video.shape[2]
    if n0 is None or dim != self.hidden_dim:
      raise ValueError(f"video must be [B, N0, {self.hidden_dim}] with a"
                       f" static N0, got {video.shape}")
    batch = tf.shape(video)[0]
    video_mask = masks_lib.downsample_mask(video_mask, 1)  # int32 0/1

    # -- 1. the B * Nt' sequences ---------------------------------------------
    if self.text_mode == "none":
      if text is not None:
        raise ValueError("text_mode='none' takes no text")
      num_items = 1
      video_seq, video_mask_seq = video, video_mask
      text_seq = tf.zeros([batch, 0, dim], video.dtype)
      text_mask_seq = tf.zeros([batch, 0], tf.int32)
    else:
      if text is None:
        raise ValueError(f"text_mode={self.text_mode!r} needs text")
      text_tok, text_valid = self._text_tokens(text, text_mask)
      text_tok = tf.cast(text_tok, video.dtype)
      if pairing == "paired":
        num_items = 1
        if (text_tok.shape[0] is not None and video.shape[0] is not None
            and text_tok.shape[0] != video.shape[0]):
          raise ValueError(f"paired fusion needs one text item per video,"
                           f" got {text_tok.shape[0]} for {video.shape[0]}")
        video_seq, video_mask_seq = video, video_mask
        text_seq, text_mask_seq = text_tok, text_valid
      else:
        num_items = text_tok.shape[0]
        if num_items is None:
          raise ValueError("the number of text items must be static")
        lt = text_tok.shape[1]
        # b-major order: sequence b * Nt + j pairs video b with text j.
        video_seq = tf.reshape(
            tf.broadcast_to(video[:, None], [batch, num_items, n0, dim]),
            [-1, n0, dim])
        video_mask_seq = tf.reshape(
            tf.broadcast_to(video_mask[:, None], [batch, num_items, n0]),
            [-1, n0])
        text_seq = tf.reshape(
            tf.broadcast_to(text_tok[None], [batch, num_items, lt, dim]),
            [-1, lt, dim])
        text_mask_seq = tf.reshape(
            tf.broadcast_to(text_valid[None], [batch, num_items, lt]),
            [-1, lt])
    num_text = text_seq.shape[1]

    # -- 2. position embedding over [video; text] ------------------------------
    x = tf.concat([video_seq, text_seq], axis=1)
    x = self._add_position_embedding(x)
    x = self.embedding_dropout(x, training=training)

    # -- 3. blocks (+ fpn levels) ---------------------------------------------
    levels = self.output_levels
    if self.pyramid == "fpn":
      emitted = []
      level = 0
      n_cur = n0
      key_mask = tf.concat([video_mask_seq, text_mask_seq], axis=1)
      for i, block in enumerate(self.blocks):
        x = block(x, key_mask=key_mask, training=training)
        if i in self.fpn_layer_indices:
          emitted.append(x[:, :n_cur])
          level += 1
          if i < self.num_layers - 1:
            video_part = _downsample_tokens(x[:, :n_cur], self.fpn_downsample)
            x = tf.concat([video_part, x[:, n_cur:]], axis=1)
            n_cur = video_part.shape[1]
            key_mask = tf.concat(
                [masks_lib.downsample_mask(video_mask_seq, 2**level),
                 text_mask_seq], axis=1)
      fused_text = x[:, n_cur:]
      outputs = self.feature_pyramid(emitted)
    else:
      key_mask = tf.concat([video_mask_seq, text_mask_seq], axis=1)
      for block in self.blocks:
        x = block(x, key_mask=key_mask, training=training)
      if self.pyramid == "none":
        # encoder_norm over the whole sequence (text included).
        x = self.feature_pyramid(x)[0]
        outputs = [x[:, :n0]]
      else:
        outputs = self.feature_pyramid(x[:, :n0])
      fused_text = x[:, n0:]

    # -- 4. outputs -------------------------------------------------------------
    tokens = tf.concat(outputs, axis=1)
    t_tot = tokens.shape[1]
    tokens = tf.reshape(tokens, [-1, num_items, t_tot, dim])
    level_mask = masks_lib.pyramid_masks(video_mask, levels)
    level_mask = tf.broadcast_to(level_mask[:, None],
                                 [batch, num_items, t_tot])
    if num_text == 0:
      text_out = tf.zeros([batch, num_items, dim], tokens.dtype)
    elif self.text_mode == "pooled":
      text_out = tf.reshape(fused_text[:, 0], [-1, num_items, dim])
    else:
      weights = tf.cast(text_mask_seq, fused_text.dtype)[..., None]
      total = tf.reduce_sum(fused_text * weights, axis=1)
      count = tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
      text_out = tf.reshape(total / count, [-1, num_items, dim])
    return {"tokens": tokens, "mask": level_mask, "text": text_out}

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        hidden_dim=self.hidden_dim,
        num_layers=self.num_layers,
        num_heads=self.num_heads,
        mlp_dim=self.mlp_dim,
        dropout_rate=self.dropout_rate,
        attention_dropout_rate=self.attention_dropout_rate,
        stochastic_depth_rate=self.stochastic_depth_rate,
        text_mode=self.text_mode,
        pyramid=self.pyramid,
        num_levels=self.num_levels,
        fpn_layer_indices=list(self.fpn_layer_indices),
        fpn_downsample=self.fpn_downsample,
        position_embedding=self.position_embedding,
        max_length=self.max_length,
        layer_norm_epsilon=self.layer_norm_epsilon,
    )
    return config
