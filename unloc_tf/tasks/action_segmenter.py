"""Action segmentation: per-frame classes of a window (reference §2.5, §4.3).

Every video window is fused with every class name (no pyramid; the fusion
ends with a LayerNorm) and a linear head scores each (frame, class) token.
Outputs {"logits": [B, N0, C], "token_mask": [B, N0]}.  Background is the
all-zero target; prediction takes the argmax class where the max logit is
above a threshold (postprocessing).
"""

from __future__ import annotations

import collections
import dataclasses
from typing import List

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import losses as losses_lib
from unloc_tf import postprocess, spec
from unloc_tf.layers import heads as heads_lib
from unloc_tf.metrics import segmentation
from unloc_tf.models import unloc_backbone
from unloc_tf.tasks import base


@keras.saving.register_keras_serializable(package="unloc_tf")
class ActionSegmenter(base.UnlocTask):
  """UnLoc for action segmentation.

  Args:
    backbone: an `UnlocBackbone` whose fusion has pyramid "none".
    head: a `SegmentationHead`.
  """

  task = spec.AS

  def call(self, inputs, training=False):
    fused = base.fuse_with_class_names(self.backbone, inputs, training)
    # The level-0 tokens: all of them with the AS backbone (no pyramid);
    # the first N0 of the pyramid when co-trained on a shared backbone
    # (unloc_tf.tasks.multitask).
    n0 = inputs[spec.FRAME_MASK].shape[-1]
    return {"logits": self.head(fused["tokens"][:, :, :n0]),
            "token_mask": fused["mask"][:, 0, :n0]}

  def loss_terms(self, batch, outputs):
    weights = base.token_weights(batch, outputs["token_mask"])
    return losses_lib.segmentation_loss(outputs["logits"], batch[spec.LABELS],
                                        weights)

  def decode(self, outputs, batch, settings=base.DecodeSettings()):
    """{"frame_classes" [B, N0] (-1 = background or padding), "logits"
    [B, N0, C] float32}."""
    logits = tf.cast(outputs["logits"], tf.float32)
    return {
        "frame_classes": postprocess.segmentation_predictions(
            logits, settings.background_logit_threshold,
            token_mask=batch[spec.FRAME_MASK]),
        "logits": logits,
    }

  def new_results(self, settings):
    return SegmentationResults(settings)


class SegmentationResults(base.TaskResults):
  """AS: windows stitched back into whole videos (`assemble_windows_np`),
  then frame accuracy, frame mAP, edit score and F1@{10,25,50} over the
  frames some window covers (background counted)."""

  def __init__(self, settings: base.MetricSettings):
    super().__init__(settings)
    self.windows = collections.defaultdict(list)
    self.totals = {}

  def add(self, batch, detections):
    for i in base.real_rows(batch):
      key = base.video_key(batch, i)
      self.windows[key].append((int(batch[spec.WINDOW_OFFSET][i]),
                                detections["logits"][i],
                                batch[spec.FRAME_MASK][i],
                                batch[spec.LABELS][i]))
      self.totals[key] = (int(batch[spec.NUM_FRAMES_TOTAL][i]),
                          float(batch[spec.BATCH_SECS_PER_TIMESTEP][i]))

  def video_logits(self, key: str):
    """(logits [n, C] per stored frame (NaN: no window covers it), labels
    [n, C], seconds per stored frame) of one video."""
    wins = self.windows[key]
    total, spt = self.totals[key]
    offsets = [w[0] for w in wins]
    masks = np.stack([w[2] for w in wins])
    logits = postprocess.assemble_windows_np(
        np.stack([w[1] for w in wins]), offsets, masks, total)
    labels = postprocess.assemble_windows_np(
        np.stack([w[3] for w in wins]), offsets, masks, total, fill_value=0)
    return logits, labels, spt

  def _frames(self):
    """Per video: (predicted class per covered frame (-1 = background),
    true class (-1 = background), logits of the covered frames)."""
    threshold = self.settings.decode.background_logit_threshold
    out = []
    for key in self.windows:
      logits, labels, _ = self.video_logits(key)
      covered = ~np.isnan(logits).any(-1)
      logits, labels = logits[covered], labels[covered]
      pred = np.where(logits.max(-1) > threshold, logits.argmax(-1), -1)
      true = np.where(labels.max(-1) > 0, labels.argmax(-1), -1)
      out.append((pred, true, logits))
    return out

  def metrics(self):
    frames = self._frames()
    if not frames:
      return {}
    preds, labels, scores = zip(*frames)
    res = segmentation.evaluate_segmentation(list(preds), list(labels),
                                             scores=list(scores))
    return {k: float(v) for k, v in res.items() if np.isscalar(v)}

  def predictions(self):
    frames = self._frames()
    return {"predictions": [f[0] for f in frames],
            "labels": [f[1] for f in frames]}

  def detections(self):
    """Runs of frames predicted as one class, as scored segments."""
    out = {}
    for key in self.windows:
      logits, _, secs_per_timestep = self.video_logits(key)
      out[key] = segments_from_frame_logits(
          logits, secs_per_timestep, self.settings.class_names or (),
          self.settings.decode.background_logit_threshold)
    return out


def segments_from_frame_logits(logits: np.ndarray, secs_per_timestep: float,
                               class_names, background_logit_threshold=0.0
                               ) -> List[dict]:
  """Runs of frames predicted as one class → scored segments (seconds).

  A frame's class is the argmax where the max logit is above the threshold,
  else background (also frames that no window covered, NaN rows).  The run
  of frames a..b becomes [a * spt, (b + 1) * spt], scored by the class's
  mean sigmoid over the run.

  Args:
    logits: float [n, C] per stored frame.
    secs_per_timestep: seconds per stored frame.
    class_names: the C names.
    background_logit_threshold: the background rule.
  """
  logits = np.asarray(logits, np.float32)
  covered = ~np.isnan(logits).any(-1)
  safe = np.where(covered[:, None], logits, -np.inf)
  pred = np.where(covered & (safe.max(-1) > background_logit_threshold),
                  safe.argmax(-1), -1)
  out = []
  start = 0
  for i in range(1, len(pred) + 1):
    if i < len(pred) and pred[i] == pred[start]:
      continue
    c = int(pred[start])
    if c >= 0:
      prob = 1.0 / (1.0 + np.exp(-logits[start:i, c].astype(np.float64)))
      out.append({"label": class_names[c] if c < len(class_names) else str(c),
                  "segment": [start * secs_per_timestep,
                              i * secs_per_timestep],
                  "score": float(prob.mean())})
    start = i
  return out


def build_action_segmenter(
    backbone: unloc_backbone.BackboneConfig = unloc_backbone.BackboneConfig(),
    *,
    num_frames: int = 512,
    init_bias: float = -6.6,
) -> ActionSegmenter:
  """An ActionSegmenter (defaults: the reference's COIN config).

  Args:
    backbone: the backbone's configuration (its pyramid is "none": the
      segmenter scores every frame of the fusion's output).
    num_frames: N0, the frames of a window.
    init_bias: the head's prior logit.
  """
  bb = unloc_backbone.build_backbone(
      dataclasses.replace(backbone, pyramid="none"), num_frames=num_frames,
      num_levels=1)
  head = heads_lib.SegmentationHead(init_bias=init_bias,
                                    name="action_segmentation_head")
  return ActionSegmenter(bb, head)
