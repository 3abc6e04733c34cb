"""Video-text classification: the paper's Kinetics pre-training (§4.1.2).

Every video is fused with every class name; the fused text token of each
(video, class) pair gives one logit: does the video show this class?  A
400/700-way binary sigmoid problem.  The paper fine-tunes the image tower
and freezes the text tower (`freeze_text_encoder=True`), and always trains
the fusion.  Outputs {"logits": [B, C]}.
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from unloc_tf import losses as losses_lib
from unloc_tf import spec
from unloc_tf.models import unloc_backbone
from unloc_tf.ops import distribute
from unloc_tf.tasks import action_localizer


@keras.saving.register_keras_serializable(package="unloc_tf")
class VideoTextClassifier(keras.Model):
  """UnLoc with a video-text matching head (pre-training).

  Args:
    backbone: an `UnlocBackbone`.
    init_bias: initial bias of the matching logit (prior log-odds).
  """

  def __init__(self, backbone, init_bias: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    self.backbone = unloc_backbone.maybe_deserialize(backbone)
    self.init_bias = init_bias
    self.classifier = keras.layers.Dense(
        1, kernel_initializer="glorot_normal",
        bias_initializer=keras.initializers.Constant(init_bias),
        name="classification_head")

  def call(self, inputs, training=False):
    fused = action_localizer.fuse_with_class_names(self.backbone, inputs,
                                                   training)
    return {"logits": self.classifier(fused["text"])[..., 0]}

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    del y, sample_weight
    if y_pred is None:
      y_pred = self(x, training=training)
    weights = None
    if "batch_mask" in x:
      weights = tf.cast(x["batch_mask"], tf.float32)
    out = losses_lib.classification_loss(y_pred["logits"], x[spec.LABELS],
                                         weights)
    self.last_losses = out
    return out["loss"] / tf.cast(distribute.num_replicas(), tf.float32)

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(backbone=keras.saving.serialize_keras_object(self.backbone),
                  init_bias=self.init_bias)
    return config


def build_video_text_classifier(size: str = "tiny", *, num_frames: int = 16,
                                freeze_text_encoder: bool = True,
                                **backbone_kwargs) -> VideoTextClassifier:
  """A classifier of a named size: image tower trained, text frozen."""
  backbone = unloc_backbone.build_backbone(
      size, num_frames=num_frames, pyramid="none",
      freeze_text_encoder=freeze_text_encoder, **backbone_kwargs)
  return VideoTextClassifier(backbone)
