"""Evaluation with the official metrics: model → decoding → metrics.

`Evaluator(...)` is the `evaluator(model, dataset, step)` hook of
`trainer.train` and the core of `tools/evaluate.py`.  It runs a task model
over an evaluation dataset (`make_dataset(..., is_training=False)`: padded
final batch with `batch_mask`), decodes every batch with the task's own
`decode` (the post-processing the exported SavedModel runs) and hands the
results to the task's `TaskResults`, which computes the official metrics on
the host (numpy):

  TAL / HD   ActivityNet mAP@tIoU (mAP@0.5, mAP@0.75, average mAP 0.5:0.95)
  MR         Recall@{1,5}, IoU={0.3,0.5,0.7} (">=" as UnLoc) and mIoU
  AS         frame accuracy (micro, background counted) over whole videos
             assembled from the sliding windows
  CLS        mean average precision over classes and top-1 accuracy

A dataset of windows of long videos (`data.chunks.make_dataset`, chunked
inference) is decoded window by window and merged into one row per video
(`tasks.chunks.WindowMerger`) before the metrics.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import pipeline
from unloc_tf.metrics import formats, localization
from unloc_tf.tasks import base, chunks
from unloc_tf.train import checkpoints

BATCH_MASK = "batch_mask"


def _numeric(batch):
  return {k: v for k, v in batch.items() if v.dtype != tf.string}


class Evaluator:
  """Official metrics for a task model.

  Args:
    task: the task the model must be for (checked), or None.
    class_names: names of the classes (TAL/HD/AS/CLS results).
    class_subset: the indices kept by the input pipeline (zero-shot splits);
      output class c is `class_names[class_subset[c]]`.
    max_detections, score_threshold, soft_nms_sigma, per_class: Soft-NMS.
    tiou_thresholds: ActivityNet thresholds.
    recall_ks, recall_thresholds, recall_rule: MR Recall@K.
    background_logit_threshold: AS background rule.
    jit_compile: run the model forward under XLA.
  """

  def __init__(self, task: Optional[str] = None,
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
    if task is not None and task not in spec.TASKS:
      raise ValueError(f"unknown task {task!r}")
    self.task = task
    names = list(class_names) if class_names else None
    if names and class_subset is not None:
      names = [names[i] for i in class_subset]
    self.decode_settings = base.DecodeSettings(
        max_detections=max_detections, score_threshold=score_threshold,
        soft_nms_sigma=soft_nms_sigma, per_class=per_class,
        background_logit_threshold=background_logit_threshold)
    self.metric_settings = base.MetricSettings(
        class_names=tuple(names) if names else None,
        tiou_thresholds=tuple(float(t) for t in tiou_thresholds),
        recall_ks=tuple(recall_ks),
        recall_thresholds=tuple(recall_thresholds), recall_rule=recall_rule,
        decode=self.decode_settings)
    self.jit_compile = jit_compile
    self.last_results: Optional[base.TaskResults] = None
    self.last_submission: Optional[Submission] = None
    self._forward = {}

  @property
  def class_names(self):
    return self.metric_settings.class_names

  def forward(self, model, batch) -> Dict[str, tf.Tensor]:
    """The model's dense outputs (prompt-ensembled) for one batch."""
    key = id(model)
    if key not in self._forward:
      self._forward[key] = tf.function(model.forward,
                                       jit_compile=self.jit_compile)
    return self._forward[key](_numeric(batch))

  def results(self, model, dataset) -> base.TaskResults:
    """Runs and decodes every batch; the task's filled `TaskResults`."""
    if self.task is not None and model.task != self.task:
      raise ValueError(f"the evaluator is for {self.task} but the model is"
                       f" a {model.task} model")
    results = model.new_results(self.metric_settings)
    self.last_submission = Submission(model.task)
    # Windows of long videos (data.chunks datasets) → one row per video.
    merger = chunks.WindowMerger(model.task, self.decode_settings)

    def add(rows):
      for host in rows:
        results.add(*host)
        self.last_submission.add(*host)

    # A damaged shard: the error names it (pipeline.make_dataset datasets).
    with pipeline.naming_damaged_shards(pipeline.source_files(dataset)):
      for batch in dataset:
        detections = model.decode(self.forward(model, batch), batch,
                                  self.decode_settings)
        add(merger.add({k: v.numpy() for k, v in batch.items()},
                       {k: v.numpy() for k, v in detections.items()}))
    add(merger.flush())
    return results

  def __call__(self, model, dataset, step: int = 0) -> Dict[str, float]:
    del step
    self.last_results = self.results(model, dataset)
    if not self.last_submission.labeled:
      logging.info(
          "no ground truth in the %d evaluated examples (an unlabeled split,"
          " e.g. QVHighlights test): metrics skipped; evaluate() writes the"
          " predictions and the submission file", self.last_submission.count)
      return {}
    return self.last_results.metrics()

  @property
  def last_predictions(self) -> Any:
    """The predictions of the last call (the task's structure)."""
    return self.last_results.predictions() if self.last_results else None


# The metric of each task that model selection uses (the task gin files'
# best_metric).
PRIMARY_METRICS = {
    spec.TAL: "mAP@0.5", spec.HD: "mAP@0.5", spec.MR: "R@1,IoU=0.5",
    spec.AS: "accuracy", spec.CLS: "mAP"}
MULTITASK_MEAN = "mean_primary"


class MultiTaskEvaluator:
  """Each co-trained task's official metrics on its own split.

  `evaluator(model, datasets, step)` runs `evaluators[t]` on
  `model.task_model(t)` and `datasets[t]` for every task t and returns
  {"<t>/<metric>": value} side by side, plus `mean_primary`: the mean over
  the tasks of their `PRIMARY_METRICS` (each in [0, 1]; the stated
  combination for best-checkpoint selection).

  Args:
    evaluators: {task name: `Evaluator`} (task names as the model's).
  """

  def __init__(self, evaluators: Dict[str, "Evaluator"]):
    if not evaluators:
      raise ValueError("MultiTaskEvaluator needs at least one evaluator")
    self.evaluators = dict(evaluators)

  def __call__(self, model, datasets, step: int = 0) -> Dict[str, float]:
    missing = sorted(set(self.evaluators) - set(datasets))
    if missing:
      raise ValueError(f"tasks {missing} have an evaluator but no"
                       " evaluation dataset")
    out, primary = {}, []
    for name, evaluator in self.evaluators.items():
      task_model = model.task_model(name)
      metrics = evaluator(task_model, datasets[name], step)
      out.update({f"{name}/{k}": v for k, v in metrics.items()})
      key = PRIMARY_METRICS[task_model.task]
      if key in metrics:
        primary.append(float(metrics[key]))
    if primary:
      out[MULTITASK_MEAN] = float(np.mean(primary))
    return out


def checkpoint_path(workdir: str, checkpoint: str = "latest") -> str:
  """The checkpoint prefix `restore_model` restores, found without a model
  (so a job can fail before building one).

  Args:
    workdir: the training workdir.
    checkpoint: "latest" (workdir/checkpoints), "best" (workdir/best, from
      its best.json) or a checkpoint path prefix.

  Raises:
    FileNotFoundError: saying what to do, when there is no such checkpoint.
  """
  if checkpoint not in ("latest", "best"):
    if not tf.io.gfile.glob(checkpoint + ".index"):
      raise FileNotFoundError(f"checkpoint {checkpoint} not found (no"
                              f" {checkpoint}.index)")
    return checkpoint
  if not tf.io.gfile.isdir(workdir):
    raise FileNotFoundError(
        f"workdir {workdir} does not exist: train first (tools/train.py"
        f" --workdir={workdir} ...) or pass the workdir of a trained run")
  path = None
  if checkpoint == "latest":
    path = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  else:
    best = os.path.join(workdir, "best", "best.json")
    if tf.io.gfile.exists(best):
      with tf.io.gfile.GFile(best) as f:
        path = os.path.join(workdir, "best", json.load(f)["checkpoint"])
  if not path:
    raise FileNotFoundError(
        f"no {checkpoint} checkpoint in {workdir} yet: train first"
        f" (tools/train.py --workdir={workdir} ...)"
        + (", with evaluation during training (EVAL_EVERY) for a best"
           " checkpoint" if checkpoint == "best" else ""))
  return path


def restore_model(model, workdir: str, checkpoint: str = "latest") -> int:
  """Restores model weights from a training workdir.

  Args:
    model: a built model.
    workdir: the training workdir.
    checkpoint: see `checkpoint_path`.

  Returns:
    The step of the restored checkpoint.

  Raises:
    FileNotFoundError: when there is no such checkpoint.
  """
  path = checkpoint_path(workdir, checkpoint)
  ck = checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"), model)
  ck.checkpoint.restore(path).expect_partial()
  return int(ck.step.numpy())


def evaluate(*, workdir: str, model_fn, eval_data_fn, evaluator: Evaluator,
             checkpoint: str = "latest") -> Dict[str, Any]:
  """Restores a checkpoint, evaluates it, writes metrics and predictions.

  Writes `<workdir>/eval/metrics_<step>.json` and the predictions in the
  benchmark's official format (`predictions_<step>.json`: ActivityNet
  results for TAL/HD; `.jsonl` retrieval candidates for MR), and
  `submission_<step>.jsonl`, the QVHighlights submission (HD; MR of an
  unlabeled split with per-query records).  On an unlabeled split (no
  ground truth in any example) no metric is computed: the metrics file
  holds `"unlabeled": true` and the paths written.
  """
  model = model_fn()
  dataset = eval_data_fn()
  if not model.built:
    model(_numeric(next(iter(dataset))), training=False)
  step = restore_model(model, workdir, checkpoint)
  metrics = evaluator(model, dataset, step)
  out_dir = os.path.join(workdir, "eval")
  os.makedirs(out_dir, exist_ok=True)
  written = {
      "predictions": evaluator.last_results.write_predictions(
          os.path.join(out_dir, f"predictions_{step}")),
      "submission": evaluator.last_submission.write(
          os.path.join(out_dir, f"submission_{step}.jsonl"))}
  written = {k: v for k, v in written.items() if v}
  info = {"step": step, "checkpoint": checkpoint, **metrics}
  if not evaluator.last_submission.labeled:
    info.update(unlabeled=True, **written)
    logging.info("unlabeled split: no metrics; wrote %s", written)
  with open(os.path.join(out_dir, f"metrics_{step}.json"), "w") as f:
    json.dump(info, f, indent=2)
  return {"step": step, "metrics": metrics, **written}


class Submission:
  """What an evaluation needs besides the task's results: whether the split
  is labeled, and the QVHighlights submission rows.

  A split is unlabeled when none of its examples has a ground-truth segment
  (`gt_valid` all 0: records without targets, e.g. QVHighlights test or
  ActivityNet "testing"); classification batches always count as labeled.
  Rows (`formats.write_qvhighlights_submission`): one per HD example, or per
  MR caption, of the records with an example id (QVHighlights); qid =
  `example_id`, vid = `media_id`, windows [s, e, score] in seconds, HD
  saliency = one score per 2 s clip of the video (`saliency_mask`).
  Records without an example id get no row (an unlabeled MR split of
  another benchmark: the predictions file only).
  """

  def __init__(self, task: str):
    self.task = task
    self.count = 0
    self.labeled = task == spec.CLS
    self.rows: List[dict] = []
    self._seen = set()

  def add(self, batch: Dict[str, Any], detections: Dict[str, Any]) -> None:
    """One host batch and its decoded detections (numpy)."""
    for i in base.real_rows(batch):
      self.count += 1
      if spec.GT_VALID in batch and batch[spec.GT_VALID][i].any():
        self.labeled = True
      key = base.video_key(batch, i)
      if self.task not in (spec.HD, spec.MR) or key in self._seen:
        continue
      self._seen.add(key)
      qid = int(batch[spec.EXAMPLE_ID_KEY][i])
      if qid < 0:  # no example id: not a QVHighlights record
        continue
      vid = batch[spec.VIDEO_ID][i].decode("utf-8")
      if self.task == spec.HD:
        n = int(detections["num_detections"][i])
        clips = int(batch[spec.SALIENCY_MASK][i].sum())
        self.rows.append(dict(
            qid=qid, vid=vid,
            query=batch[spec.TEXT_STRINGS][i, 0].decode("utf-8"),
            pred_relevant_windows=_windows(detections["segments"][i],
                                           detections["scores"][i], n),
            pred_saliency_scores=[
                float(v) for v in detections["saliency"][i][:clips]]))
        continue
      for k in range(batch[spec.TEXT_VALID].shape[1]):
        if batch[spec.TEXT_VALID][i, k]:
          n = int(detections["num_detections"][i, k])
          self.rows.append(dict(
              qid=qid, vid=vid,
              query=batch[spec.TEXT_STRINGS][i, k].decode("utf-8"),
              pred_relevant_windows=_windows(detections["segments"][i, k],
                                             detections["scores"][i, k], n)))

  def write(self, path: str) -> Optional[str]:
    """Writes the QVHighlights submission jsonl (HD always; MR of an
    unlabeled split); returns the path, or None when nothing is written."""
    if not self.rows or (self.task == spec.MR and self.labeled):
      return None
    formats.write_qvhighlights_submission(path, self.rows)
    return path


def _windows(segments, scores, n: int) -> List[List[float]]:
  """The first n detections as [start, end, score] (seconds)."""
  return [[float(segments[j][0]), float(segments[j][1]), float(scores[j])]
          for j in range(n)]
