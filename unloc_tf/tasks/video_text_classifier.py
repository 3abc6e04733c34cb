"""Video-text classification: the paper's Kinetics pre-training (§4.1.2).

Every video is fused with every class name; the fused text token of each
(video, class) pair gives one logit: does the video show this class?  A
400/700-way binary sigmoid problem.  The paper fine-tunes the image tower
and freezes the text tower (`freeze_text_encoder=True`), and always trains
the fusion.  Outputs {"logits": [B, C]}.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import losses as losses_lib
from unloc_tf import spec
from unloc_tf.layers import heads as heads_lib
from unloc_tf.metrics import segmentation
from unloc_tf.models import unloc_backbone
from unloc_tf.tasks import base


@keras.saving.register_keras_serializable(package="unloc_tf")
class VideoTextClassifier(base.UnlocTask):
  """UnLoc with a video-text matching head (pre-training).

  Args:
    backbone: an `UnlocBackbone`.
    init_bias: initial bias of the matching logit (prior log-odds).
  """

  task = spec.CLS

  def __init__(self, backbone, init_bias: float = 0.0, **kwargs):
    super().__init__(backbone, **kwargs)
    self.init_bias = init_bias
    # float32 logits under a mixed precision policy (`heads.output_dtype`).
    self.classifier = keras.layers.Dense(
        1, kernel_initializer="glorot_normal",
        bias_initializer=keras.initializers.Constant(init_bias),
        dtype=heads_lib.output_dtype(self.dtype_policy),
        name="classification_head")

  def call(self, inputs, training=False):
    fused = base.fuse_with_class_names(self.backbone, inputs, training)
    return {"logits": self.classifier(fused["text"])[..., 0]}

  def loss_terms(self, batch, outputs):
    weights = None
    if "batch_mask" in batch:
      weights = tf.cast(batch["batch_mask"], tf.float32)
    return losses_lib.classification_loss(outputs["logits"],
                                          batch[spec.LABELS], weights)

  def decode(self, outputs, batch, settings=base.DecodeSettings()):
    """{"logits": [B, C] float32}: the matching logit of every class."""
    del batch, settings
    return {"logits": tf.cast(outputs["logits"], tf.float32)}

  def new_results(self, settings):
    return ClassificationResults(settings)

  def task_config(self) -> Dict[str, Any]:
    return dict(init_bias=self.init_bias)


class ClassificationResults(base.TaskResults):
  """CLS: top-1 accuracy and mean average precision over classes."""

  def __init__(self, settings: base.MetricSettings):
    super().__init__(settings)
    self.scores, self.labels = [], []

  def add(self, batch, detections):
    rows = base.real_rows(batch)
    self.scores.append(detections["logits"][rows])
    self.labels.append(batch[spec.LABELS][rows])

  def metrics(self):
    scores = np.concatenate(self.scores)
    labels = np.concatenate(self.labels)
    top1 = labels[np.arange(len(labels)), scores.argmax(-1)] > 0
    m = segmentation.mean_average_precision([scores], [labels])
    return {"top1_accuracy": float(top1.mean()), "mAP": float(m)}

  def predictions(self):
    return {"scores": self.scores, "labels": self.labels}

  def detections(self):
    return {}


def build_video_text_classifier(
    backbone: unloc_backbone.BackboneConfig = unloc_backbone.BackboneConfig(
        freeze_text_encoder=True),
    *,
    num_frames: int = 16,
) -> VideoTextClassifier:
  """A classifier (the paper's pre-training: image tower trained, text tower
  frozen).

  Args:
    backbone: the backbone's configuration (its pyramid is "none").
    num_frames: N0.
  """
  bb = unloc_backbone.build_backbone(
      dataclasses.replace(backbone, pyramid="none"), num_frames=num_frames,
      num_levels=1)
  return VideoTextClassifier(bb)
