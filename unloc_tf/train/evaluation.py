"""Evaluation with the official metrics: model → post-processing → metrics.

`Evaluator(task, ...)` is the `evaluator(model, dataset, step)` hook of
`trainer.train` and the core of `tools/evaluate.py`.  It runs the model over
an evaluation dataset (`make_dataset(..., is_training=False)`: padded final
batch with `batch_mask`), applies the same TF post-processing as the exported
SavedModel, gathers per-video results on the host, and scores them with
`unloc_tf.metrics` (numpy, official rules):

  TAL / HD   ActivityNet mAP@tIoU (mAP@0.5, mAP@0.75, average mAP 0.5:0.95)
  MR         Recall@{1,5}, IoU={0.3,0.5,0.7} (">=" as UnLoc) and mIoU
  AS         frame accuracy (micro, background counted) over whole videos
             assembled from the sliding windows
  CLS        mean average precision over classes and top-1 accuracy

Predictions can also be written in the official formats (`write_*`).
"""

from __future__ import annotations

import collections
from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from unloc_tf import postprocess, spec
from unloc_tf.metrics import localization, retrieval, segmentation

BATCH_MASK = "batch_mask"


def _numeric(batch):
  return {k: v for k, v in batch.items() if v.dtype != tf.string}


def _video_key(batch, i) -> str:
  vid = batch[spec.VIDEO_ID][i]
  vid = vid.decode() if isinstance(vid, bytes) else str(vid)
  eid = int(batch[spec.EXAMPLE_ID_KEY][i]) if spec.EXAMPLE_ID_KEY in batch else -1
  return f"{vid}#{eid}" if eid >= 0 else vid


def forward_with_prompts(forward, batch):
  """`forward(numeric batch)` with prompt ensembling.

  A batch whose text holds P prompts per class (pipeline `prompt_index=-1`:
  text ids / embeddings [B, P, C, ...]) is run once per prompt and the RAW
  outputs are averaged before any post-processing (reference §5.1);
  other batches are run once.  String features are dropped first.
  """
  batch = _numeric(batch)
  ids = batch.get(spec.TEXT_IDS)
  emb = batch.get(spec.TEXT_EMBEDDINGS)
  prompted = ids if ids is not None else emb
  if prompted is None or len(prompted.shape) != 4:
    return forward(batch)
  outs = []
  for p in range(prompted.shape[1]):
    b = dict(batch)
    for k in (spec.TEXT_IDS, spec.TEXT_MASK, spec.TEXT_EMBEDDINGS,
              spec.TEXT_VALID):
      if k in b and len(b[k].shape) >= 3:
        b[k] = b[k][:, p]
    outs.append(forward(b))
  return postprocess.ensemble_prompts(outs)


class Evaluator:
  """Official metrics for one task.

  Args:
    task: one of `spec.TASKS`.
    pyramid: the model's `PyramidSpec` (TAL/MR/HD).
    class_names: names of the classes (TAL/HD/AS/CLS results).
    class_subset: the indices kept by the input pipeline (zero-shot splits);
      output class c is `class_names[class_subset[c]]`.
    max_detections, score_threshold, soft_nms_sigma, per_class: Soft-NMS.
    tiou_thresholds: ActivityNet thresholds.
    recall_ks, recall_thresholds, recall_rule: MR Recall@K.
    background_logit_threshold: AS background rule.
    jit_compile: run the model forward under XLA.
  """

  def __init__(self, task: str, pyramid: Optional[spec.PyramidSpec] = None,
               class_names: Optional[Sequence[str]] = None,
               class_subset: Optional[Sequence[int]] = None,
               max_detections: int = 100, score_threshold: float = 0.001,
               soft_nms_sigma: float = 0.3, per_class: bool = False,
               tiou_thresholds: Sequence[float] = tuple(
                   localization.DEFAULT_TIOU_THRESHOLDS),
               recall_ks: Sequence[int] = (1, 5),
               recall_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
               recall_rule: str = ">=",
               background_logit_threshold: float = 0.0,
               jit_compile: bool = False):
    if task not in spec.TASKS:
      raise ValueError(f"unknown task {task!r}")
    self.task = task
    self.pyramid = pyramid
    self.class_names = list(class_names) if class_names else None
    if self.class_names and class_subset is not None:
      self.class_names = [self.class_names[i] for i in class_subset]
    self.max_detections = max_detections
    self.score_threshold = score_threshold
    self.soft_nms_sigma = soft_nms_sigma
    self.per_class = per_class
    self.tiou_thresholds = np.asarray(tiou_thresholds, np.float64)
    self.recall_ks = tuple(recall_ks)
    self.recall_thresholds = tuple(recall_thresholds)
    self.recall_rule = recall_rule
    self.background_logit_threshold = background_logit_threshold
    self.jit_compile = jit_compile
    self.last_predictions: Any = None
    self._forward = {}

  def _run(self, model, batch):
    key = id(model)
    if key not in self._forward:
      self._forward[key] = tf.function(
          lambda b: model(b, training=False), jit_compile=self.jit_compile)
    return forward_with_prompts(self._forward[key], batch)

  def _class_name(self, c: int) -> str:
    if self.class_names and 0 <= c < len(self.class_names):
      return self.class_names[c]
    return str(c)

  # -- per task ----------------------------------------------------------------
  def __call__(self, model, dataset, step: int = 0) -> Dict[str, float]:
    del step
    if self.task in (spec.TAL, spec.HD):
      return self._localization(model, dataset)
    if self.task == spec.MR:
      return self._retrieval(model, dataset)
    if self.task == spec.AS:
      return self._segmentation(model, dataset)
    return self._classification(model, dataset)

  def _localization(self, model, dataset):
    gt, preds = {}, {}
    for batch in dataset:
      out = self._run(model, batch)
      det = postprocess.localization_detections(
          out["logits"], out["displacements"], out["token_mask"],
          batch[spec.NUM_FRAMES_TOTAL], batch[spec.BATCH_SECS_PER_TIMESTEP],
          pyramid_level_lengths=self.pyramid.level_lengths,
          num_frames=self.pyramid.num_frames,
          max_detections=self.max_detections,
          score_threshold=self.score_threshold,
          soft_nms_sigma=self.soft_nms_sigma, per_class=self.per_class)
      b = {k: v.numpy() for k, v in batch.items()}
      d = {k: v.numpy() for k, v in det.items()}
      for i in range(len(b[BATCH_MASK])):
        if not b[BATCH_MASK][i]:
          continue
        vid = _video_key(b, i)
        if vid in gt:
          continue
        gt[vid] = [
            {"segment": [float(s), float(e)], "label": self._class_name(int(c))}
            for s, e, c, v in zip(b[spec.GT_START][i], b[spec.GT_END][i],
                                  b[spec.GT_LABEL][i], b[spec.GT_VALID][i])
            if v]
        n = int(d["num_detections"][i])
        preds[vid] = [
            {"segment": [float(x) for x in d["segments"][i, j]],
             "label": self._class_name(int(d["classes"][i, j])),
             "score": float(d["scores"][i, j])} for j in range(n)]
    self.last_predictions = {"ground_truth": gt, "results": preds}
    classes = sorted({a["label"] for anns in gt.values() for a in anns})
    if not classes:
      return {"mAP@0.5": 0.0, "average_mAP": 0.0}
    res = localization.evaluate_detection(
        gt, preds, self.tiou_thresholds, classes=classes,
        ignore_unknown_labels=True)
    out = {"average_mAP": float(res["average_mAP"])}
    for t, v in zip(self.tiou_thresholds, res["mAP"]):
      out[f"mAP@{t:.2f}".rstrip("0").rstrip(".")] = float(v)
    return out

  def _retrieval(self, model, dataset):
    ranked, gts, rows = [], [], []
    seen = set()
    for batch in dataset:
      out = self._run(model, batch)
      det = postprocess.retrieval_detections(
          out["logits"], out["displacements"], out["token_mask"],
          batch[spec.NUM_FRAMES_TOTAL], batch[spec.BATCH_SECS_PER_TIMESTEP],
          pyramid_level_lengths=self.pyramid.level_lengths,
          num_frames=self.pyramid.num_frames,
          caption_mask=batch[spec.TEXT_VALID],
          max_detections=self.max_detections,
          score_threshold=self.score_threshold,
          soft_nms_sigma=self.soft_nms_sigma)
      b = {k: v.numpy() for k, v in batch.items()}
      d = {k: v.numpy() for k, v in det.items()}
      for i in range(len(b[BATCH_MASK])):
        vid = _video_key(b, i)
        if not b[BATCH_MASK][i] or vid in seen:
          continue
        seen.add(vid)
        for k in range(b[spec.TEXT_VALID].shape[1]):
          if not b[spec.TEXT_VALID][i, k]:
            continue
          n = int(d["num_detections"][i, k])
          cands = [tuple(float(x) for x in d["segments"][i, k, j])
                   for j in range(n)]
          ranked.append(cands)
          gt = (float(b[spec.GT_START][i, k]), float(b[spec.GT_END][i, k]))
          gts.append(gt)
          query = b[spec.TEXT_STRINGS][i, k].decode("utf-8")
          rows.append({"video_id": vid, "query": query, "caption_index": k,
                       "gt": list(gt),
                       "candidates": [list(c) + [float(d["scores"][i, k, j])]
                                      for j, c in enumerate(cands)]})
    self.last_predictions = rows
    if not gts:
      return {}
    res = retrieval.recall_at_k(ranked, gts, ks=self.recall_ks,
                                thresholds=self.recall_thresholds,
                                rule=self.recall_rule)
    return {k: float(v) for k, v in res.items()}

  def _segmentation(self, model, dataset):
    windows = collections.defaultdict(list)
    totals = {}
    for batch in dataset:
      out = self._run(model, batch)
      b = {k: v.numpy() for k, v in batch.items()}
      logits = out["logits"].numpy()
      for i in range(len(b[BATCH_MASK])):
        if not b[BATCH_MASK][i]:
          continue
        vid = _video_key(b, i)
        windows[vid].append((int(b[spec.WINDOW_OFFSET][i]), logits[i],
                             b[spec.FRAME_MASK][i], b[spec.LABELS][i]))
        totals[vid] = int(b[spec.NUM_FRAMES_TOTAL][i])
    preds, labels, scores = [], [], []
    for vid, wins in windows.items():
      n = totals[vid]
      num_classes = wins[0][1].shape[-1]
      full = np.full((n, num_classes), np.nan, np.float32)
      lab = np.zeros((n, num_classes), np.int32)
      for offset, lg, mask, y in wins:
        idx = offset + np.arange(len(mask))
        keep = (mask > 0) & (idx < n)
        full[idx[keep]] = lg[keep]
        lab[idx[keep]] = y[keep]
      covered = ~np.isnan(full).any(-1)
      full, lab = full[covered], lab[covered]
      pred = np.where(full.max(-1) > self.background_logit_threshold,
                      full.argmax(-1), -1)
      preds.append(pred)
      labels.append(np.where(lab.max(-1) > 0, lab.argmax(-1), -1))
      scores.append(full)
    self.last_predictions = {"predictions": preds, "labels": labels}
    if not preds:
      return {}
    res = segmentation.evaluate_segmentation(preds, labels, scores=scores)
    return {k: float(v) for k, v in res.items() if np.isscalar(v)}

  def _classification(self, model, dataset):
    all_scores, all_labels = [], []
    for batch in dataset:
      out = self._run(model, batch)
      mask = batch[BATCH_MASK].numpy() > 0
      all_scores.append(out["logits"].numpy()[mask])
      all_labels.append(batch[spec.LABELS].numpy()[mask])
    scores = np.concatenate(all_scores)
    labels = np.concatenate(all_labels)
    top1 = labels[np.arange(len(labels)), scores.argmax(-1)] > 0
    m = segmentation.mean_average_precision([scores], [labels])
    return {"top1_accuracy": float(top1.mean()), "mAP": float(m)}


def restore_model(model, workdir: str, checkpoint: str = "latest") -> int:
  """Restores model weights from a training workdir.

  Args:
    model: a built model.
    workdir: the training workdir.
    checkpoint: "latest" (workdir/checkpoints), "best" (workdir/best) or a
      checkpoint path prefix.

  Returns:
    The step of the restored checkpoint.

  Raises:
    FileNotFoundError: when there is no such checkpoint.
  """
  import os  # noqa: PLC0415

  from unloc_tf.train import checkpoints  # noqa: PLC0415

  ck = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), model)
  if checkpoint == "latest":
    path = ck.latest_checkpoint
  elif checkpoint == "best":
    info = ck.best()
    path = (os.path.join(ck.best_directory, info["checkpoint"]) if info
            else None)
  else:
    path = checkpoint
  if not path:
    raise FileNotFoundError(f"no {checkpoint} checkpoint under {workdir}")
  ck.checkpoint.restore(path).expect_partial()
  return int(ck.step.numpy())


def evaluate(*, workdir: str, model_fn, eval_data_fn, evaluator: Evaluator,
             checkpoint: str = "latest", strategy=None) -> Dict[str, Any]:
  """Restores a checkpoint, evaluates it, writes metrics and predictions.

  Writes `<workdir>/eval/metrics_<step>.json` and the predictions in the
  benchmark's official format (`predictions_<step>.json`: ActivityNet
  results for TAL/HD, retrieval candidates for MR).
  """
  import json  # noqa: PLC0415
  import os  # noqa: PLC0415

  from unloc_tf.metrics import formats  # noqa: PLC0415

  del strategy  # evaluation runs on one device (post-processing on host)
  model = model_fn()
  dataset = eval_data_fn()
  model(_numeric(next(iter(dataset))), training=False)
  step = restore_model(model, workdir, checkpoint)
  metrics = evaluator(model, dataset, step)
  out_dir = os.path.join(workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, f"metrics_{step}.json"), "w") as f:
    json.dump({"step": step, "checkpoint": checkpoint, **metrics}, f,
              indent=2)
  preds = evaluator.last_predictions
  path = os.path.join(out_dir, f"predictions_{step}.json")
  if evaluator.task in (spec.TAL, spec.HD) and preds:
    formats.write_activitynet_results(path, preds["results"])
  elif evaluator.task == spec.MR and preds:
    formats.write_retrieval_candidates(path + "l", preds)
  return {"step": step, "metrics": metrics}
