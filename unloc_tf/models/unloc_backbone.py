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

import dataclasses
from typing import Any, Dict, Optional, Tuple

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


def serialize_sublayer(layer) -> Optional[Dict[str, Any]]:
  """The serialised config of a sub-layer, without its build config: its
  owner builds it, inside the owner's name scope, so the variable paths
  (which checkpoints and learning-rate multipliers use) survive a
  `from_config` or `.keras` round trip."""
  if layer is None:
    return None
  config = keras.saving.serialize_keras_object(layer)
  config.pop("build_config", None)
  return config


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
        return pooled[:, None, :], tf.ones_like(pooled[:, :1],
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

  def build(self, input_shape: Dict[str, Any]):
    """Builds what `call` uses (the video path) by a symbolic trace; the
    text tower and the fusion build on first use.  Task models build the
    whole backbone through their own `build`."""
    inputs = {k: keras.KerasTensor(shape, "uint8" if k == "frames"
                                   else "float32")
              for k, shape in input_shape.items()}
    self.compute_output_spec(inputs)
    self.built = True

  def call(self, inputs, training=False):
    """Video tokens only (for summaries / building): [B, N0, D]."""
    return self.encode_video(inputs, training=training)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        fusion=serialize_sublayer(self.fusion),
        image_encoder=serialize_sublayer(self.image_encoder),
        text_encoder=serialize_sublayer(self.text_encoder),
        freeze_image_encoder=self.freeze_image_encoder,
        freeze_text_encoder=self.freeze_text_encoder,
        text_pooling=self.text_pooling,
        project_text_embeddings=self.project_text_embeddings,
    )
    return config


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
  """What an experiment chooses about the backbone (bound in gin as
  `unloc_backbone.BackboneConfig.<field>`; the task builders take it).

  Attributes:
    size: "tiny", "base_16" or "large_14" (`models.variants.SIZES`).
    input_mode: "frames" (with the image tower) or "embeddings" (cached).
    text_input: "tokens" (with the text tower), "embeddings" (cached) or
      "none" (video-only; forces text_mode "none").
    frame_token: "token" (per-frame CLS) or "gap" (mean of patch tokens).
    text_mode: "pooled" (one token per text item; the reference),
      "all_tokens" (paper Table 3) or "none" (video-only and late fusion).
    pyramid: "simple" (ViTDet-style), "fpn" (the reference's multi-layer
      FPN) or "none".
    fpn_layer_indices: fusion layers that feed the "fpn" pyramid.
    text_max_length: positions of the text tower (Lt); None = the size's.
    image_size: input side of the image tower; None = the size's.
    freeze_image_encoder, freeze_text_encoder: stop-gradient on the tower
      outputs (the projections still train).
    text_pooling: "eos" (the reference), "token" or "gap".
    dropout_rate, stochastic_depth_rate: fusion regularisation.
    fusion_overrides: `VideoTextFusion` arguments that replace the size's
      (e.g. {"num_layers": 4}); None = the size's.
  """

  size: str = "tiny"
  input_mode: str = "frames"
  text_input: str = "tokens"
  frame_token: str = "token"
  text_mode: str = "pooled"
  pyramid: str = "simple"
  fpn_layer_indices: Tuple[int, ...] = (2, 3, 4, 5)
  text_max_length: Optional[int] = None
  image_size: Optional[int] = None
  freeze_image_encoder: bool = False
  freeze_text_encoder: bool = False
  text_pooling: str = "eos"
  dropout_rate: float = 0.0
  stochastic_depth_rate: float = 0.0
  fusion_overrides: Optional[Dict[str, Any]] = None


def build_backbone(config: BackboneConfig = BackboneConfig(), *,
                   num_frames: int = 128, num_levels: int = 4
                   ) -> UnlocBackbone:
  """The backbone of `config` for N0 = `num_frames` and a pyramid of
  `num_levels` levels (1 without a pyramid)."""
  cfg = variants.size_config(config.size)
  image = None
  if config.input_mode == "frames":
    image_kw = cfg["image_encoder"]
    image = image_lib.CLIPImageEncoder(
        patch_size=image_kw["patch_size"], hidden_dim=image_kw["hidden_dim"],
        num_layers=image_kw["num_layers"], num_heads=image_kw["num_heads"],
        intermediate_dim=image_kw["intermediate_dim"],
        image_size=config.image_size or image_kw["image_size"],
        num_frames=num_frames, frame_token=config.frame_token,
        name="image_encoder")
  elif config.input_mode != "embeddings":
    raise ValueError(f"input_mode must be frames or embeddings, got"
                     f" {config.input_mode!r}")
  text = None
  text_mode = config.text_mode
  if config.text_input == "none":
    text_mode = "none"
  elif config.text_input == "tokens":
    text_kw = cfg["text_encoder"]
    text = text_lib.CLIPTextEncoder(
        vocabulary_size=text_kw["vocabulary_size"],
        hidden_dim=text_kw["hidden_dim"], num_layers=text_kw["num_layers"],
        num_heads=text_kw["num_heads"],
        intermediate_dim=text_kw["intermediate_dim"],
        max_length=config.text_max_length or text_kw["max_length"],
        name="text_encoder")
  elif config.text_input != "embeddings":
    raise ValueError(f"text_input must be tokens, embeddings or none, got"
                     f" {config.text_input!r}")
  fusion_kw = dict(cfg["fusion"], **(config.fusion_overrides or {}))
  fusion = fusion_lib.VideoTextFusion(
      text_mode=text_mode, pyramid=config.pyramid,
      num_levels=num_levels if config.pyramid != "none" else 1,
      fpn_layer_indices=tuple(config.fpn_layer_indices),
      dropout_rate=config.dropout_rate,
      stochastic_depth_rate=config.stochastic_depth_rate, **fusion_kw,
      name="video_text_fusion")
  return UnlocBackbone(
      fusion, image_encoder=image, text_encoder=text,
      freeze_image_encoder=config.freeze_image_encoder,
      freeze_text_encoder=config.freeze_text_encoder,
      text_pooling=config.text_pooling, name="backbone")
