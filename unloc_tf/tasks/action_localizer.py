"""Temporal action localization (closed-set, zero-shot) and highlight detection.

TAL: every video is fused with every class name (the class list comes with
the batch, so a zero-shot model is evaluated on any class list); HD: video b
is fused with its own query b (one "class").  Outputs, with T_tot the
pyramid tokens of all levels concatenated:

  {"logits":        [B, T_tot, C] relevancy logits,
   "displacements": [B, T_tot, C, 2] distances to start / end in units of
                    the token's level stride,
   "token_mask":    [B, T_tot] int32, 1 = a real token}

matching the targets of `unloc_tf.targets.localization_targets`.  The loss is
`10 * focal + box` (reference_spec.md §4.1, §4.2).

Variants: early fusion (the reference), late fusion (paper §4.2: cosine of
fused frame features with the class text embeddings; the backbone's fusion
has text_mode "none" and the head scoring "late") and video-only (no text:
the head predicts C logits and C displacement pairs).
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from unloc_tf import losses as losses_lib
from unloc_tf import spec
from unloc_tf.layers import heads as heads_lib
from unloc_tf.models import unloc_backbone
from unloc_tf.ops import distribute


def class_text(inputs: Dict[str, tf.Tensor]):
  """Class-name text of a TAL/AS/CLS batch: row 0 of the tiled table.

  Returns:
    (ids [C, L] or None, mask [C, L] or None, embeddings [C, De] or None).
  """
  ids = inputs.get(spec.TEXT_IDS)
  mask = inputs.get(spec.TEXT_MASK)
  emb = inputs.get(spec.TEXT_EMBEDDINGS)
  if ids is not None:
    if len(ids.shape) != 3:
      raise ValueError(f"'{spec.TEXT_IDS}' must be [B, C, L] (one prompt per"
                       f" class); got shape {ids.shape}")
    return ids[0], mask[0], None
  if emb is not None:
    return None, None, emb[0]
  return None, None, None


def fuse_with_class_names(backbone, inputs, training=False):
  """Every video of the batch fused with every class name (TAL/AS/CLS).

  Returns:
    The fusion's dict: tokens [B, C, T, D], mask [B, C, T], text [B, C, D].
  """
  video = backbone.encode_video(inputs, training=training)
  ids, mask, emb = class_text(inputs)
  text, text_mask, _ = backbone.text_features(ids, mask, emb,
                                              training=training)
  return backbone.fuse(video, inputs[spec.FRAME_MASK], text=text,
                       text_mask=text_mask, pairing="all", training=training)


def token_weights(inputs, token_mask):
  """Loss weights per token: token mask × batch mask (eval padding)."""
  weights = tf.cast(token_mask, tf.float32)
  if "batch_mask" in inputs:
    weights *= tf.cast(inputs["batch_mask"], tf.float32)[:, None]
  return weights


@keras.saving.register_keras_serializable(package="unloc_tf")
class ActionLocalizer(keras.Model):
  """UnLoc for TAL (closed-set, zero-shot) and HD.

  Args:
    backbone: an `UnlocBackbone`.
    head: a `LocalizationHead` built for the backbone's pyramid.
    task: `spec.TAL` or `spec.HD` (HD pairs video b with query b).
    box_loss_type: e.g. "iou" (the reference configs), "l1" (the paper),
      "l1+iou", "0.5*l1+1.0*iou", "diou".
    focal_alpha, focal_gamma: sigmoid focal loss parameters.
    classification_loss_alpha: weight of the classification loss (10).
  """

  def __init__(self, backbone, head, task: str = spec.TAL,
               box_loss_type: str = "iou", focal_alpha: float = 0.25,
               focal_gamma: float = 2.0,
               classification_loss_alpha: float = 10.0, **kwargs):
    super().__init__(**kwargs)
    if task not in (spec.TAL, spec.HD):
      raise ValueError(f"ActionLocalizer task must be {spec.TAL} or {spec.HD},"
                       f" got {task!r}")
    losses_lib.parse_box_loss_type(box_loss_type)  # fail early
    self.backbone = unloc_backbone.maybe_deserialize(backbone)
    self.head = unloc_backbone.maybe_deserialize(head)
    self.task = task
    self.box_loss_type = box_loss_type
    self.focal_alpha = focal_alpha
    self.focal_gamma = focal_gamma
    self.classification_loss_alpha = classification_loss_alpha
    self.loss_trackers = {}

  def call(self, inputs, training=False):
    bb = self.backbone
    video = bb.encode_video(inputs, training=training)
    frame_mask = inputs[spec.FRAME_MASK]
    late = self.head.scoring == "late"
    video_only = self.head.num_outputs > 1
    if self.task == spec.HD:
      ids = inputs.get(spec.TEXT_IDS)
      emb = inputs.get(spec.TEXT_EMBEDDINGS)
      ids = ids[:, 0] if ids is not None else None
      mask = inputs[spec.TEXT_MASK][:, 0] if ids is not None else None
      emb = emb[:, 0] if emb is not None else None
      pairing = "paired"
    else:
      ids, mask, emb = class_text(inputs)
      pairing = "all"
    text = text_mask = pooled = None
    if not video_only:
      text, text_mask, pooled = bb.text_features(ids, mask, emb,
                                                 training=training)
    fused = bb.fuse(video, frame_mask, text=None if late else text,
                    text_mask=None if late else text_mask, pairing=pairing,
                    training=training)
    tokens = fused["tokens"]
    if late:
      logits, dist = self.head(tokens, text_embeddings=pooled,
                                training=training)
      if self.task == spec.HD:
        # Video b scores only its own query b.
        b = tf.range(tf.shape(logits)[0])
        logits = tf.gather(logits, b, axis=1, batch_dims=1)[:, None]
        dist = tf.gather(dist, b, axis=1, batch_dims=1)[:, None]
    else:
      logits, dist = self.head(tokens, training=training)
    return {
        "logits": tf.transpose(logits, [0, 2, 1]),
        "displacements": tf.transpose(dist, [0, 2, 1, 3]),
        "token_mask": fused["mask"][:, 0],
    }

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del y, sample_weight, training
    if y_pred is None:
      y_pred = self(x, training=True)
    weights = token_weights(x, y_pred["token_mask"])
    out = losses_lib.localization_loss(
        y_pred["logits"], y_pred["displacements"], x[spec.LABELS],
        x[spec.DISPLACEMENTS], weights, alpha=self.focal_alpha,
        gamma=self.focal_gamma, box_loss_type=self.box_loss_type,
        classification_loss_alpha=self.classification_loss_alpha)
    self.last_losses = out
    return out["loss"] / tf.cast(distribute.num_replicas(), tf.float32)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        backbone=keras.saving.serialize_keras_object(self.backbone),
        head=keras.saving.serialize_keras_object(self.head),
        task=self.task, box_loss_type=self.box_loss_type,
        focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma,
        classification_loss_alpha=self.classification_loss_alpha)
    return config


def build_action_localizer(
    size: str = "tiny",
    *,
    task: str = spec.TAL,
    pyramid_spec: spec.PyramidSpec = None,
    num_conv_layers: int = 4,
    weight_sharing: bool = True,
    classification_bias: float = -5.0,
    regression_bias: float = 2.0,
    distance_normalizer: str = "relu",
    fusion: str = "early",
    num_classes: int = 1,
    box_loss_type: str = "iou",
    **backbone_kwargs,
) -> ActionLocalizer:
  """An ActionLocalizer of a named size (defaults: the ANet TAL-B config).

  Args:
    fusion: "early" (reference), "late" (paper §4.2) or "video_only".
    num_classes: C for the video-only variant (ignored otherwise).
    backbone_kwargs: passed to `unloc_backbone.build_backbone`
      (num_frames is taken from pyramid_spec).
  """
  pyr = pyramid_spec or spec.PyramidSpec(backbone_kwargs.pop("num_frames",
                                                             128))
  backbone_kwargs.pop("num_frames", None)
  if fusion in ("late", "video_only"):
    backbone_kwargs["text_mode"] = "none"
  if fusion == "video_only":
    backbone_kwargs["text_input"] = "none"
  backbone = unloc_backbone.build_backbone(
      size, num_frames=pyr.num_frames, num_levels=pyr.num_levels,
      **backbone_kwargs)
  head = heads_lib.LocalizationHead(
      level_lengths=pyr.level_lengths, hidden_dim=backbone.embed_dim,
      num_conv_layers=num_conv_layers, weight_sharing=weight_sharing,
      classification_bias=classification_bias,
      regression_bias=regression_bias,
      distance_normalizer=distance_normalizer,
      num_outputs=num_classes if fusion == "video_only" else 1,
      scoring="late" if fusion == "late" else "early",
      name=f"{task}_head")
  return ActionLocalizer(backbone, head, task=task,
                         box_loss_type=box_loss_type)
