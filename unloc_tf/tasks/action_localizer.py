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

import dataclasses
from typing import Any, Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

from unloc_tf import losses as losses_lib
from unloc_tf import postprocess, spec
from unloc_tf.layers import heads as heads_lib
from unloc_tf.metrics import formats, localization
from unloc_tf.models import unloc_backbone
from unloc_tf.tasks import base


@keras.saving.register_keras_serializable(package="unloc_tf")
class ActionLocalizer(base.UnlocTask):
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
    super().__init__(backbone, head, **kwargs)
    if task not in (spec.TAL, spec.HD):
      raise ValueError(f"ActionLocalizer task must be {spec.TAL} or {spec.HD},"
                       f" got {task!r}")
    losses_lib.parse_box_loss_type(box_loss_type)  # fail early
    self.task = task
    self.box_loss_type = box_loss_type
    self.focal_alpha = focal_alpha
    self.focal_gamma = focal_gamma
    self.classification_loss_alpha = classification_loss_alpha

  @property
  def text_kind(self):
    if self.head.num_outputs > 1:  # video-only: one output per class
      return None
    return base.QUERIES if self.task == spec.HD else base.CLASS_NAMES

  @property
  def texts_per_video(self):
    return 1 if self.task == spec.HD else None

  @property
  def level_lengths(self):
    return tuple(int(n) for n in self.head.level_lengths)

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
      ids, mask, emb = base.class_text(inputs)
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

  def loss_terms(self, batch, outputs):
    weights = base.token_weights(batch, outputs["token_mask"])
    return losses_lib.localization_loss(
        outputs["logits"], outputs["displacements"], batch[spec.LABELS],
        batch[spec.DISPLACEMENTS], weights, alpha=self.focal_alpha,
        gamma=self.focal_gamma, box_loss_type=self.box_loss_type,
        classification_loss_alpha=self.classification_loss_alpha)

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None,
                   training=True):
    # The reference's TAL loss always runs the model in training mode.
    del training
    return super().compute_loss(x, y, y_pred, sample_weight, training=True)

  def decode(self, outputs, batch, settings=base.DecodeSettings()):
    """{"segments" [B, M, 2] s, "scores" [B, M], "classes" [B, M] (-1 =
    padding), "num_detections" [B]}; HD also "saliency" [B, clips]."""
    total = batch[spec.NUM_FRAMES_TOTAL]
    spt = batch[spec.BATCH_SECS_PER_TIMESTEP]
    result = postprocess.localization_detections(
        outputs["logits"], outputs["displacements"], outputs["token_mask"],
        total, spt, pyramid_level_lengths=self.level_lengths,
        num_frames=self.level_lengths[0],
        max_detections=settings.max_detections,
        score_threshold=settings.score_threshold,
        soft_nms_sigma=settings.soft_nms_sigma, per_class=settings.per_class)
    if self.task == spec.HD:
      result["saliency"] = postprocess.highlight_saliency(
          outputs["logits"], outputs["token_mask"], total, spt,
          level_lengths=self.level_lengths, num_frames=self.level_lengths[0],
          secs_per_clip=settings.secs_per_clip,
          max_clips=settings.saliency_max_clips)
    return result

  def new_results(self, settings):
    return LocalizationResults(settings, queries=self.task == spec.HD)

  def task_config(self) -> Dict[str, Any]:
    return dict(task=self.task, box_loss_type=self.box_loss_type,
                focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma,
                classification_loss_alpha=self.classification_loss_alpha)


class LocalizationResults(base.TaskResults):
  """TAL / HD: ActivityNet mAP@tIoU of the detections (official toolkit
  rules), and the ActivityNet results file.

  Args:
    settings: the metric settings.
    queries: HD (each record's detections answer its query).
  """

  def __init__(self, settings: base.MetricSettings, queries: bool = False):
    super().__init__(settings)
    self.queries = queries
    self.ground_truth: Dict[str, List[dict]] = {}
    self.results: Dict[str, List[dict]] = {}
    self.query_of: Dict[str, str] = {}

  def add(self, batch, detections):
    name = self.settings.class_name
    for i in base.real_rows(batch):
      key = base.video_key(batch, i)
      if key in self.ground_truth:
        continue
      rows = zip(batch[spec.GT_START][i], batch[spec.GT_END][i],
                 batch[spec.GT_LABEL][i], batch[spec.GT_VALID][i])
      self.ground_truth[key] = [
          {"segment": [float(s), float(e)], "label": name(int(c))}
          for s, e, c, v in rows if v]
      n = int(detections["num_detections"][i])
      self.results[key] = [
          {"segment": [float(x) for x in detections["segments"][i, j]],
           "label": name(int(detections["classes"][i, j])),
           "score": float(detections["scores"][i, j])} for j in range(n)]
      if self.queries and spec.TEXT_STRINGS in batch:
        self.query_of[key] = batch[spec.TEXT_STRINGS][i, 0].decode("utf-8")

  def metrics(self):
    gt = self.ground_truth
    classes = sorted({a["label"] for anns in gt.values() for a in anns})
    if not classes:
      return {"mAP@0.5": 0.0, "average_mAP": 0.0}
    thresholds = np.asarray(self.settings.tiou_thresholds, np.float64)
    res = localization.evaluate_detection(
        gt, self.results, thresholds, classes=classes,
        ignore_unknown_labels=True)
    out = {"average_mAP": float(res["average_mAP"])}
    for t, v in zip(thresholds, res["mAP"]):
      out[f"mAP@{t:.2f}".rstrip("0").rstrip(".")] = float(v)
    return out

  def predictions(self):
    return {"ground_truth": self.ground_truth, "results": self.results}

  def detections(self):
    out = {}
    for key, dets in self.results.items():
      if self.queries:
        out[key] = [{"query": self.query_of.get(key, ""),
                     "segment": d["segment"], "score": d["score"]}
                    for d in dets]
      else:
        out[key] = [dict(d) for d in dets]
    return out

  def write_predictions(self, path_prefix):
    if not self.results:
      return None
    path = path_prefix + ".json"
    formats.write_activitynet_results(path, self.results)
    return path


def build_action_localizer(
    backbone: unloc_backbone.BackboneConfig = unloc_backbone.BackboneConfig(),
    *,
    task: str = spec.TAL,
    pyramid_spec: Optional[spec.PyramidSpec] = None,
    num_conv_layers: int = 4,
    weight_sharing: bool = True,
    classification_bias: float = -5.0,
    regression_bias: float = 2.0,
    distance_normalizer: str = "relu",
    fusion: str = "early",
    num_classes: int = 1,
    box_loss_type: str = "iou",
) -> ActionLocalizer:
  """An ActionLocalizer (defaults: the reference's ANet TAL-B config).

  Args:
    backbone: the backbone's configuration.
    task: `spec.TAL` or `spec.HD`.
    pyramid_spec: N0, levels and regression ranges; None = 128 frames with
      the default 4 levels.
    num_conv_layers, weight_sharing, classification_bias, regression_bias,
      distance_normalizer: the `LocalizationHead`.
    fusion: "early" (reference), "late" (paper §4.2: the fusion sees no text
      and the head scores the cosine with the class text) or "video_only"
      (no text at all: the head predicts `num_classes` outputs).
    num_classes: C of the video-only head (ignored otherwise).
    box_loss_type: see `ActionLocalizer`.
  """
  pyr = pyramid_spec or spec.PyramidSpec(128)
  if fusion in ("late", "video_only"):
    backbone = dataclasses.replace(backbone, text_mode="none")
  if fusion == "video_only":
    backbone = dataclasses.replace(backbone, text_input="none")
  bb = unloc_backbone.build_backbone(backbone, num_frames=pyr.num_frames,
                                     num_levels=pyr.num_levels)
  head = heads_lib.LocalizationHead(
      level_lengths=pyr.level_lengths, hidden_dim=bb.embed_dim,
      num_conv_layers=num_conv_layers, weight_sharing=weight_sharing,
      classification_bias=classification_bias,
      regression_bias=regression_bias,
      distance_normalizer=distance_normalizer,
      num_outputs=num_classes if fusion == "video_only" else 1,
      scoring="late" if fusion == "late" else "early",
      name=f"{task}_head")
  return ActionLocalizer(bb, head, task=task, box_loss_type=box_loss_type)
