"""Action segmentation: per-frame classes of a window (reference §2.5, §4.3).

Every video window is fused with every class name (no pyramid; the fusion
ends with a LayerNorm) and a linear head scores each (frame, class) token.
Outputs {"logits": [B, N0, C], "token_mask": [B, N0]}.  Background is the
all-zero target; prediction takes the argmax class where the max logit is
above a threshold (postprocessing).
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
from unloc_tf.tasks import action_localizer


@keras.saving.register_keras_serializable(package="unloc_tf")
class ActionSegmenter(keras.Model):
  """UnLoc for action segmentation.

  Args:
    backbone: an `UnlocBackbone` whose fusion has pyramid "none".
    head: a `SegmentationHead`.
  """

  def __init__(self, backbone, head, **kwargs):
    super().__init__(**kwargs)
    self.backbone = unloc_backbone.maybe_deserialize(backbone)
    self.head = unloc_backbone.maybe_deserialize(head)

  def call(self, inputs, training=False):
    fused = action_localizer.fuse_with_class_names(self.backbone, inputs,
                                                   training)
    return {"logits": self.head(fused["tokens"]),
            "token_mask": fused["mask"][:, 0]}

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del y, sample_weight
    if y_pred is None:
      y_pred = self(x, training=training)
    weights = action_localizer.token_weights(x, y_pred["token_mask"])
    out = losses_lib.segmentation_loss(y_pred["logits"], x[spec.LABELS],
                                       weights)
    self.last_losses = out
    return out["loss"] / tf.cast(distribute.num_replicas(), tf.float32)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        backbone=keras.saving.serialize_keras_object(self.backbone),
        head=keras.saving.serialize_keras_object(self.head))
    return config


def build_action_segmenter(size: str = "tiny", *, num_frames: int = 512,
                           init_bias: float = -6.6,
                           **backbone_kwargs) -> ActionSegmenter:
  """An ActionSegmenter of a named size (defaults: the COIN config)."""
  backbone = unloc_backbone.build_backbone(
      size, num_frames=num_frames, pyramid="none", **backbone_kwargs)
  head = heads_lib.SegmentationHead(init_bias=init_bias,
                                    name="action_segmentation_head")
  return ActionSegmenter(backbone, head)
