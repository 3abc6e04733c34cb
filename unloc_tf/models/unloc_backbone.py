"""The UnLoc backbone: towers → projections → video-text fusion + pyramid.

reference_spec.md §2.1–§2.7.  One layer serves both input modes:

* video: uint8/float frames through `CLIPImageEncoder`, or cached frame
  embeddings (the frozen tower's output, `spec.FRAME_EMBEDDINGS`);
* text: token ids through `CLIPTextEncoder`, or cached text embeddings
  (`spec.TEXT_EMBEDDINGS`), or none (video-only models).

Both go through bias-free projections to the fusion width D.  `freeze_*`
stops the gradient at the encoder output only; the projection still trains
(§2.4).  Task models call `encode_video`, `encode_text` and `fuse`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from unloc_tf.layers import clip_image_encoder as image_lib
from unloc_tf.layers import clip_text_encoder as text_lib
from unloc_tf.layers import fusion as fusion_lib
from unloc_tf.models import variants
from unloc_tf.ops import pooling


def maybe_deserialize(obj):
  """A layer given as itself or as its serialised config (from_config)."""
  if obj is None or isinstance(obj, keras.layers.Layer):
    return obj
  return keras.saving.deserialize_keras_object(obj)


@keras.saving.register_keras_serializable(package="unloc_tf")
class UnlocBackbone(keras.layers.Layer):
  """Towers, projections and the fusion transformer with its pyramid.

  Args:
    fusion: a `VideoTextFusion` (its `hidden_dim` is D).
    image_encoder: a `CLIPImageEncoder`, or None for cached frame embeddings.
    text_encoder: a `CLIPTextEncoder`, or None for cached text embeddings or
      video-only models.
    freeze_image_encoder: stop-gradient on the image tower output.
    freeze_text_encoder: stop-gradient on the text tower output.
    text_pooling: "eos" (the reference's: state at argmax of the ids),
      "token" (position 0) or "gap" (masked mean) — how a text item becomes
      one token when the fusion's text_mode is "pooled".
    project_text_embeddings: project cached text embeddings to D (else they
      must already have D channels, as the reference's L/14 class-name
      embeddings).
  """

  def __init__(self, fusion, image_encoder=None, text_encoder=None,
               freeze_image_encoder: bool = False,
               freeze_text_encoder: bool = False, text_pooling: str = "eos",
               project_text_embeddings: bool = True, **kwargs):
    super().__init__(**kwargs)
    if text_pooling not in ("eos", "token", "gap"):
      raise ValueError(f"text_pooling must be eos, token or gap, got"
                       f" {text_pooling!r}")
    self.fusion = maybe_deserialize(fusion)
    self.image_encoder = maybe_deserialize(image_encoder)
    self.text_encoder = maybe_deserialize(text_encoder)
    self.freeze_image_encoder = freeze_image_encoder
    self.freeze_text_encoder = freeze_text_encoder
    self.text_pooling = text_pooling
    self.project_text_embeddings = project_text_embeddings
    dim = self.fusion.hidden_dim
    self.video_projection = keras.layers.Dense(
        dim, use_bias=False, name="video_projection")
    self.text_projection = keras.layers.Dense(
        dim, use_bias=False, name="text_projection")

  @property
  def embed_dim(self) -> int:
    return self.fusion.hidden_dim

  @property
  def text_mode(self) -> str:
    return self.fusion.text_mode

  # -- encoders ----------------------------------------------------------------
  def encode_video(self, inputs: Dict[str, tf.Tensor],
                   training: bool = False) -> tf.Tensor:
    """Frames [B, N0, H, W, 3] or cached embeddings [B, N0, Dv] → [B, N0, D]."""
    if "frames" in inputs and self.image_encoder is not None:
      feats = self.image_encoder(inputs["frames"], training=training)
      if self.freeze_image_encoder:
        feats = tf.stop_gradient(feats)
    elif "frame_embeddings" in inputs:
      feats = tf.cast(inputs["frame_embeddings"], self.compute_dtype)
    else:
      raise ValueError(
          "the model needs 'frames' (with an image encoder) or"
          f" 'frame_embeddings'; got keys {sorted(inputs)}")
    return self.video_projection(feats)

  def encode_text(self, token_ids: tf.Tensor, mask: tf.Tensor,
                  training: bool = False):
    """Token ids [N, L] + mask → (tokens [N, L, D], pooled [N, D])."""
    if self.text_encoder is None:
      raise ValueError("this backbone has no text encoder: feed"
                       " 'text_embeddings' instead of token ids")
    states = self.text_encoder(token_ids, padding_mask=mask,
                               training=training)
    if self.freeze_text_encoder:
      states = tf.stop_gradient(states)
    tokens = self.text_projection(states)
    pooled = pooling.pool_text(tokens, token_ids, mask, mode=self.text_pooling)
    return tokens, pooled

  def encode_text_embeddings(self, embeddings: tf.Tensor) -> tf.Tensor:
    """Cached text embeddings [N, De] → [N, D]."""
    embeddings = tf.cast(embeddings, self.compute_dtype)
    if self.project_text_embeddings:
      return self.text_projection(embeddings)
    return embeddings

  def text_features(self, ids: Optional[tf.Tensor], mask: Optional[tf.Tensor],
                    embeddings: Optional[tf.Tensor], training: bool = False):
    """Text items → what the fusion takes, plus pooled embeddings [N, D].

    Args:
      ids, mask: [N, L] token ids and mask (tokens mode), or None.
      embeddings: [N, De] cached embeddings, or None.

    Returns:
      (text, text_mask, pooled): text [N, D] (pooled mode) or [N, L, D]
      (all_tokens mode), its mask ([N, L] or None) and pooled [N, D].
    """
    if embeddings is not None:
      pooled = self.encode_text_embeddings(embeddings)
      if self.text_mode == "all_tokens":
        return pooled[:, None, :], tf.ones_like(pooled[:, :1, 0],
                                                tf.int32), pooled
      return pooled, None, pooled
    tokens, pooled = self.encode_text(ids, mask, training=training)
    if self.text_mode == "all_tokens":
      return tokens, mask, pooled
    return pooled, None, pooled

  def fuse(self, video, video_mask, text=None, text_mask=None,
           pairing: str = "all", training: bool = False):
    """See `VideoTextFusion.call`: {tokens, mask, text}."""
    if self.text_mode in ("none",):
      text, text_mask = None, None
    return self.fusion(video, video_mask, text=text, text_mask=text_mask,
                       pairing=pairing, training=training)

  def call(self, inputs, training=False):
    """Video tokens only (for summaries / building): [B, N0, D]."""
    return self.encode_video(inputs, training=training)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    ser = keras.saving.serialize_keras_object
    config.update(
        fusion=ser(self.fusion),
        image_encoder=ser(self.image_encoder) if self.image_encoder else None,
        text_encoder=ser(self.text_encoder) if self.text_encoder else None,
        freeze_image_encoder=self.freeze_image_encoder,
        freeze_text_encoder=self.freeze_text_encoder,
        text_pooling=self.text_pooling,
        project_text_embeddings=self.project_text_embeddings,
    )
    return config


def build_backbone(
    size: str = "tiny",
    *,
    num_frames: int = 128,
    input_mode: str = "frames",
    text_input: str = "tokens",
    frame_token: str = "token",
    text_mode: str = "pooled",
    pyramid: str = "simple",
    num_levels: int = 4,
    fpn_layer_indices=(2, 3, 4, 5),
    text_max_length: Optional[int] = None,
    freeze_image_encoder: bool = False,
    freeze_text_encoder: bool = False,
    text_pooling: str = "eos",
    image_size: Optional[int] = None,
    dropout_rate: float = 0.0,
    stochastic_depth_rate: float = 0.0,
    fusion_overrides: Optional[Dict[str, Any]] = None,
) -> UnlocBackbone:
  """A backbone of a named size (`models.variants.SIZES`).

  Args:
    size: "tiny", "base_16" or "large_14".
    num_frames: N0.
    input_mode: "frames" (with the image tower) or "embeddings" (cached).
    text_input: "tokens" (with the text tower), "embeddings" (cached) or
      "none" (video-only; forces text_mode "none").
    frame_token: "token" (per-frame CLS) or "gap".
    text_mode: "pooled" (one token per text item; the reference),
      "all_tokens" (paper Table 3) or "none" (video-only and late fusion).
    pyramid: "simple", "fpn" or "none".
    num_levels: pyramid levels.
    text_max_length: positions of the text tower (Lt).
    image_size: overrides the size's image resolution.
  """
  cfg = variants.size_config(size)
  image = None
  if input_mode == "frames":
    kw = dict(cfg["image_encoder"], num_frames=num_frames,
              frame_token=frame_token)
    if image_size:
      kw["image_size"] = image_size
    image = image_lib.CLIPImageEncoder(**kw, name="image_encoder")
  elif input_mode != "embeddings":
    raise ValueError(f"input_mode must be frames or embeddings, got"
                     f" {input_mode!r}")
  text = None
  if text_input == "none":
    text_mode = "none"
  elif text_input == "tokens":
    kw = dict(cfg["text_encoder"])
    if text_max_length:
      kw["max_length"] = text_max_length
    text = text_lib.CLIPTextEncoder(**kw, name="text_encoder")
  elif text_input != "embeddings":
    raise ValueError(f"text_input must be tokens, embeddings or none, got"
                     f" {text_input!r}")
  fusion_kw = dict(cfg["fusion"], text_mode=text_mode, pyramid=pyramid,
                   num_levels=num_levels if pyramid != "none" else 1,
                   fpn_layer_indices=tuple(fpn_layer_indices),
                   dropout_rate=dropout_rate,
                   stochastic_depth_rate=stochastic_depth_rate)
  fusion_kw.update(fusion_overrides or {})
  fusion = fusion_lib.VideoTextFusion(**fusion_kw, name="video_text_fusion")
  return UnlocBackbone(
      fusion, image_encoder=image, text_encoder=text,
      freeze_image_encoder=freeze_image_encoder,
      freeze_text_encoder=freeze_text_encoder, text_pooling=text_pooling,
      name="backbone")
