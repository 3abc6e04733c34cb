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

Which frame mask weighs a (video i, caption of video j) pair in that
classification loss: video i's (default: the frames the logits are about)
or, with `frame_mask_from_caption_video=True`, video j's — the reference's
indexing (`moment_retrieval_base_model.py`, reference_spec.md §4.1).  The
two differ only when frames are padded (`frame_mask` not all ones, e.g.
videos shorter than N0 on cached embeddings); the forward pass, the box
loss and the gradients' pipeline are the same either way.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from unloc_tf import losses as losses_lib
from unloc_tf import postprocess, spec
from unloc_tf.layers import heads as heads_lib
from unloc_tf.metrics import formats, retrieval
from unloc_tf.models import unloc_backbone
from unloc_tf.ops import distribute
from unloc_tf.tasks import base


@keras.saving.register_keras_serializable(package="unloc_tf")
class MomentRetriever(base.UnlocTask):
  """UnLoc for moment retrieval.

  Args:
    backbone: an `UnlocBackbone` (text_mode "pooled" or "all_tokens").
    head: a `LocalizationHead`.
    all_pairs: training pairs every video with every caption of the global
      batch (reference `all_gather_loss=True`); evaluation always fuses each
      video with its own captions only.
    box_loss_type, focal_alpha, focal_gamma, classification_loss_alpha: as
      in `ActionLocalizer`.
    frame_mask_from_caption_video: with `all_pairs`, weigh the pair (video
      i, caption of video j) with video j's frame mask, as the reference
      does, instead of video i's (module docstring).
  """

  task = spec.MR

  def __init__(self, backbone, head, all_pairs: bool = True,
               box_loss_type: str = "iou", focal_alpha: float = 0.25,
               focal_gamma: float = 2.0,
               classification_loss_alpha: float = 10.0,
               frame_mask_from_caption_video: bool = False, **kwargs):
    super().__init__(backbone, head, **kwargs)
    losses_lib.parse_box_loss_type(box_loss_type)
    self.all_pairs = all_pairs
    self.box_loss_type = box_loss_type
    self.focal_alpha = focal_alpha
    self.focal_gamma = focal_gamma
    self.classification_loss_alpha = classification_loss_alpha
    self.frame_mask_from_caption_video = bool(frame_mask_from_caption_video)

  @property
  def text_kind(self):
    return base.QUERIES

  @property
  def level_lengths(self):
    return tuple(int(n) for n in self.head.level_lengths)

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

  def loss_terms(self, batch, outputs):
    """`losses.moment_retrieval_loss` of a batch and the model's outputs.

    With `pair_logits` [B, Bc, K, T] (training with all_pairs) the caption
    side — validity [Bc, K], batch mask [Bc] and, for
    `frame_mask_from_caption_video`, the frame masks [Bc, T] — is gathered
    over the replicas like the captions.
    """
    frame_weights = tf.cast(outputs["token_mask"], tf.float32)
    batch_mask = batch.get("batch_mask")
    caption_batch_mask = caption_frame_weights = None
    if "pair_logits" in outputs:
      logits = outputs["pair_logits"]
      caption_valid, _ = distribute.gather_rows(
          tf.identity(tf.cast(batch[spec.TEXT_VALID], tf.float32)))
      if batch_mask is not None:
        caption_batch_mask, _ = distribute.gather_rows(
            tf.identity(tf.cast(batch_mask, tf.float32)))
      if self.frame_mask_from_caption_video:
        caption_frame_weights, _ = distribute.gather_rows(
            tf.identity(frame_weights))
      offset = outputs["caption_offset"]
      all_pairs = True
    else:
      logits = outputs["logits"][:, None]
      caption_valid = tf.cast(batch[spec.TEXT_VALID], tf.float32)
      offset = None
      all_pairs = False
    return losses_lib.moment_retrieval_loss(
        logits, outputs["displacements"], batch[spec.LABELS],
        batch[spec.DISPLACEMENTS], frame_weights, caption_valid,
        batch_mask=batch_mask, caption_offset=offset,
        caption_batch_mask=caption_batch_mask,
        caption_frame_weights=caption_frame_weights,
        all_pairs=all_pairs,
        frame_mask_from_caption_video=(
            all_pairs and self.frame_mask_from_caption_video),
        alpha=self.focal_alpha, gamma=self.focal_gamma,
        box_loss_type=self.box_loss_type,
        classification_loss_alpha=self.classification_loss_alpha)

  def decode(self, outputs, batch, settings=base.DecodeSettings()):
    """{"segments" [B, K, M, 2] s, "scores" [B, K, M], "num_detections"
    [B, K]}: caption k of video b in row (b, k); a caption that is not
    valid (`text_valid` 0, else an all-zero text mask) has none."""
    if spec.TEXT_VALID in batch:
      caption_mask = batch[spec.TEXT_VALID]
    else:
      caption_mask = tf.reduce_any(tf.not_equal(batch[spec.TEXT_MASK], 0),
                                   axis=-1)
    return postprocess.retrieval_detections(
        outputs["logits"], outputs["displacements"], outputs["token_mask"],
        batch[spec.NUM_FRAMES_TOTAL], batch[spec.BATCH_SECS_PER_TIMESTEP],
        pyramid_level_lengths=self.level_lengths,
        num_frames=self.level_lengths[0], caption_mask=caption_mask,
        max_detections=settings.max_detections,
        score_threshold=settings.score_threshold,
        soft_nms_sigma=settings.soft_nms_sigma)

  def new_results(self, settings):
    return RetrievalResults(settings)

  def task_config(self) -> Dict[str, Any]:
    return dict(all_pairs=self.all_pairs, box_loss_type=self.box_loss_type,
                focal_alpha=self.focal_alpha, focal_gamma=self.focal_gamma,
                classification_loss_alpha=self.classification_loss_alpha,
                frame_mask_from_caption_video=(
                    self.frame_mask_from_caption_video))


class RetrievalResults(base.TaskResults):
  """MR: Recall@K,IoU=m and mIoU of the ranked segments of every query, and
  the retrieval candidates file (one JSON line per query)."""

  def __init__(self, settings: base.MetricSettings):
    super().__init__(settings)
    self.rows = []
    self._seen = set()

  def add(self, batch, detections):
    for i in base.real_rows(batch):
      key = base.video_key(batch, i)
      if key in self._seen:
        continue
      self._seen.add(key)
      valid = batch[spec.TEXT_VALID][i]
      for k in range(valid.shape[0]):
        if not valid[k]:
          continue
        n = int(detections["num_detections"][i, k])
        gt = [float(batch[spec.GT_START][i, k]),
              float(batch[spec.GT_END][i, k])]
        self.rows.append({
            "video_id": key,
            "query": batch[spec.TEXT_STRINGS][i, k].decode("utf-8"),
            "caption_index": k, "gt": gt,
            "candidates": [[float(x) for x in detections["segments"][i, k, j]]
                           + [float(detections["scores"][i, k, j])]
                           for j in range(n)]})

  def metrics(self):
    if not self.rows:
      return {}
    s = self.settings
    res = retrieval.recall_at_k(
        [[tuple(c[:2]) for c in row["candidates"]] for row in self.rows],
        [tuple(row["gt"]) for row in self.rows], ks=s.recall_ks,
        thresholds=s.recall_thresholds, rule=s.recall_rule)
    return {k: float(v) for k, v in res.items()}

  def predictions(self):
    return self.rows

  def detections(self):
    out = {}
    for row in self.rows:
      out.setdefault(row["video_id"], []).extend(
          {"query": row["query"], "segment": c[:2], "score": c[2]}
          for c in row["candidates"])
    return out

  def write_predictions(self, path_prefix):
    if not self.rows:
      return None
    path = path_prefix + ".jsonl"
    formats.write_retrieval_candidates(path, self.rows)
    return path


def build_moment_retriever(
    backbone: unloc_backbone.BackboneConfig = unloc_backbone.BackboneConfig(),
    *,
    pyramid_spec: Optional[spec.PyramidSpec] = None,
    num_conv_layers: int = 3,
    weight_sharing: bool = False,
    classification_bias: float = 0.0,
    regression_bias: float = 2.0,
    all_pairs: bool = True,
    box_loss_type: str = "iou",
    frame_mask_from_caption_video: bool = False,
) -> MomentRetriever:
  """A MomentRetriever (defaults: the reference's ANet Captions B config).

  Args:
    backbone: the backbone's configuration.
    pyramid_spec: N0, levels and regression ranges; None = 128 frames with
      the default 4 levels.
    num_conv_layers, weight_sharing, classification_bias, regression_bias:
      the `LocalizationHead`.
    all_pairs, box_loss_type, frame_mask_from_caption_video: see
      `MomentRetriever` (the last: False = each pair weighed by its video's
      frame mask; True = by the caption's video's, the reference's rule).
  """
  pyr = pyramid_spec or spec.PyramidSpec(128)
  bb = unloc_backbone.build_backbone(backbone, num_frames=pyr.num_frames,
                                     num_levels=pyr.num_levels)
  head = heads_lib.LocalizationHead(
      level_lengths=pyr.level_lengths, hidden_dim=bb.embed_dim,
      num_conv_layers=num_conv_layers, weight_sharing=weight_sharing,
      classification_bias=classification_bias,
      regression_bias=regression_bias, name="moment_retrieval_head")
  return MomentRetriever(
      bb, head, all_pairs=all_pairs, box_loss_type=box_loss_type,
      frame_mask_from_caption_video=frame_mask_from_caption_video)
