"""Moment retrieval: captions → relevant segments (reference_spec.md §2.5, §4).

Batch text: K captions per video, `text_ids` [B, K, L] (or cached
`text_embeddings` [B, K, De]) with `text_valid` [B, K].  Outputs:

  {"logits":        [B, K, T_tot] each video with its own captions,
   "displacements": [B, K, T_tot, 2] (level-stride units),
   "token_mask":    [B, T_tot],
   "pair_logits":   [B, Bc, K, T_tot] (training with all_pairs): video i
                    fused with caption k of video j, Bc = videos whose
                    captions were gathered over all replicas,
   "caption_offset": int32 scalar, this replica's first video in Bc}

With `all_pairs` (the reference configs' `all_gather_loss`), training fuses
every video with every caption of the GLOBAL batch (gathered across
replicas); the other videos' captions are negatives at every frame.
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


@keras.saving.register_keras_serializable(package="unloc_tf")
class MomentRetriever(keras.Model):
  """UnLoc for moment retrieval.

  Args:
    backbone: an `UnlocBackbone` (text_mode "pooled" or "all_tokens").
    head: a `LocalizationHead`.
    all_pairs: training pairs every video with every caption of the global
      batch (reference `all_gather_loss=True`); evaluation always fuses each
      video with its own captions only.
    box_loss_type, focal_alpha, focal_gamma, classification_loss_alpha: as
      in `ActionLocalizer`.
  """

  def __init__(self, backbone, head, all_pairs: bool = True,
               box_loss_type: str = "iou", focal_alpha: float = 0.25,
               focal_gamma: float = 2.0,
               classification_loss_alpha: float = 10.0, **kwargs):
    super().__init__(**kwargs)
    losses_lib.parse_box_loss_type(box_loss_type)
    self.backbone = unloc_backbone.maybe_deserialize(backbone)
    self.head = unloc_backbone.maybe_deserialize(head)
    self.all_pairs = all_pairs
    self.box_loss_type = box_loss_type
    self.focal_alpha = focal_alpha
    self.focal_gamma = focal_gamma
    self.classification_loss_alpha = classification_loss_alpha

  def _captions(self, inputs, training):
    """Caption features flattened to [B*K, ...] and K."""
    ids = inputs.get(spec.TEXT_IDS)
    emb = inputs.get(spec.TEXT_EMBEDDINGS)
    if ids is not None:
      k = ids.shape[1]
      flat_ids = tf.reshape(ids, [-1, ids.shape[-1]])
      flat_mask = tf.reshape(inputs[spec.TEXT_MASK], [-1, ids.shape[-1]])
      return self.backbone.text_features(flat_ids, flat_mask, None,
                                         training=training), k
    if emb is None:
      raise ValueError("moment retrieval needs 'text_ids' or"
                       " 'text_embeddings'")
    k = emb.shape[1]
    flat = tf.reshape(emb, [-1, emb.shape[-1]])
    return self.backbone.text_features(None, None, flat,
                                       training=training), k

  def call(self, inputs, training=False):
    bb = self.backbone
    video = bb.encode_video(inputs, training=training)
    frame_mask = inputs[spec.FRAME_MASK]
    (text, text_mask, _), k = self._captions(inputs, training)
    batch = tf.shape(video)[0]
    out = {}
    if training and self.all_pairs:
      # Captions of every replica: [R*B*K, ...].
      text_all, offset_rows = distribute.gather_rows(tf.identity(text))
      mask_all = None
      if text_mask is not None:
        mask_all, _ = distribute.gather_rows(tf.identity(text_mask))
      fused = bb.fuse(video, frame_mask, text=text_all, text_mask=mask_all,
                      pairing="all", training=training)
      logits, dist = self.head(fused["tokens"], training=training)
      t_tot = logits.shape[-1]
      pair_logits = tf.reshape(logits, [batch, -1, k, t_tot])
      offset = offset_rows // k
      rows = tf.range(batch) + offset
      own = tf.gather(pair_logits, rows, axis=1, batch_dims=1)
      dist5 = tf.reshape(dist, [batch, -1, k, t_tot, 2])
      own_dist = tf.gather(dist5, rows, axis=1, batch_dims=1)
      out.update(pair_logits=pair_logits, caption_offset=offset)
    else:
      # Each video with its own K captions: repeat videos K times, pair.
      video_k = tf.repeat(video, k, axis=0)
      mask_k = tf.repeat(frame_mask, k, axis=0)
      fused = bb.fuse(video_k, mask_k, text=text, text_mask=text_mask,
                      pairing="paired", training=training)
      logits, dist = self.head(fused["tokens"], training=training)
      t_tot = logits.shape[-1]
      own = tf.reshape(logits, [batch, k, t_tot])
      own_dist = tf.reshape(dist, [batch, k, t_tot, 2])
      fused = {"mask": tf.reshape(fused["mask"], [batch, k, t_tot])}
    out.update(logits=own, displacements=own_dist,
               token_mask=fused["mask"][:, 0])
    return out

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del y, sample_weight
    if y_pred is None:
      y_pred = self(x, training=training)
    frame_weights = tf.cast(y_pred["token_mask"], tf.float32)
    batch_mask = x.get("batch_mask")
    if "pair_logits" in y_pred:
      logits = y_pred["pair_logits"]
      caption_valid, _ = distribute.gather_rows(
          tf.identity(tf.cast(x[spec.TEXT_VALID], tf.float32)))
      offset = y_pred["caption_offset"]
      all_pairs = True
    else:
      logits = y_pred["logits"][:, None]
      caption_valid = tf.cast(x[spec.TEXT_VALID], tf.float32)
      offset = None
      all_pairs = False
    out = losses_lib.moment_retrieval_loss(
        logits, y_pred["displacements"], x[spec.LABELS],
        x[spec.DISPLACEMENTS], frame_weights, caption_valid,
        batch_mask=batch_mask, caption_offset=offset, all_pairs=all_pairs,
        alpha=self.focal_alpha, gamma=self.focal_gamma,
        box_loss_type=self.box_loss_type,
        classification_loss_alpha=self.classification_loss_alpha)
    self.last_losses = out
    return out["loss"] / tf.cast(distribute.num_replicas(), tf.float32)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        backbone=keras.saving.serialize_keras_object(self.backbone),
        head=keras.saving.serialize_keras_object(self.head),
        all_pairs=self.all_pairs, box_loss_type=self.box_loss_type,
        focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma,
        classification_loss_alpha=self.classification_loss_alpha)
    return config


def build_moment_retriever(
    size: str = "tiny",
    *,
    pyramid_spec: spec.PyramidSpec = None,
    num_conv_layers: int = 3,
    weight_sharing: bool = False,
    classification_bias: float = 0.0,
    regression_bias: float = 2.0,
    all_pairs: bool = True,
    box_loss_type: str = "iou",
    **backbone_kwargs,
) -> MomentRetriever:
  """A MomentRetriever of a named size (defaults: ANet Captions B config)."""
  pyr = pyramid_spec or spec.PyramidSpec(backbone_kwargs.pop("num_frames",
                                                             128))
  backbone_kwargs.pop("num_frames", None)
  backbone = unloc_backbone.build_backbone(
      size, num_frames=pyr.num_frames, num_levels=pyr.num_levels,
      **backbone_kwargs)
  head = heads_lib.LocalizationHead(
      level_lengths=pyr.level_lengths, hidden_dim=backbone.embed_dim,
      num_conv_layers=num_conv_layers, weight_sharing=weight_sharing,
      classification_bias=classification_bias,
      regression_bias=regression_bias, name="moment_retrieval_head")
  return MomentRetriever(backbone, head, all_pairs=all_pairs,
                         box_loss_type=box_loss_type)
