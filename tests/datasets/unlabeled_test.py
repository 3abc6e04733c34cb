"""Unlabeled splits (QVHighlights test, ActivityNet "testing"): records
without targets evaluate without metrics (a logged line) and write the
official submission file."""

from __future__ import annotations

import functools
import json
import logging
import os

import numpy as np
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import pipeline, records
from unloc_tf.datasets import video_records
from unloc_tf.metrics import formats
from unloc_tf.tasks import action_localizer, moment_retriever
from unloc_tf.train import checkpoints, evaluation

N0, SPT, N_FRAMES = 8, 2.0, 16  # 16 frames of 2 s: 32 s, 16 saliency clips
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 3),
                                                            (3, np.inf)))
QUERIES = {7: ("a dog runs", "vid_a"), 9: ("a cat jumps", "vid_a"),
           12: ("someone cooks", "vid_b")}
UNLABELED_LINE = "no ground truth in the 3 evaluated examples (an unlabeled"


def _write_queries(tmp_path, task, labeled=False):
  """QVHighlights-style records, one per query (example_id = qid), as the
  converter writes them: unlabeled = the query without segment."""
  path = str(tmp_path / "test-00000-of-00001.tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    for qid, (query, vid) in QUERIES.items():
      segs = [records.Segment(2, 9, 0 if task == spec.HD else -1, query)
              ] if labeled else []
      rec = fixtures.video_record(vid, n=N_FRAMES, spt=SPT, embeddings_dim=2,
                                  with_frames=False, segments=segs,
                                  example_id=qid, duration=N_FRAMES * SPT)
      ex = video_records.serialize(rec, task, () if labeled else (query,))
      w.write(ex.SerializeToString())
  return str(tmp_path / "test-*.tfrecord")


def _config(task, **kw):
  args = dict(task=task, num_frames=N0, pyramid=PYR, input_mode="embeddings",
              embedding_dim=2, max_text_length=6, secs_per_timestep=SPT)
  if task == spec.HD:
    args.update(num_classes=1, max_saliency_clips=20)
  if task == spec.TAL:
    args.update(num_classes=2, class_names=("jump", "run"))
  args.update(kw)
  return pipeline.InputConfig(**args)


@functools.lru_cache(maxsize=None)
def _model(task):
  """One tiny model per task for the module (built once: tracing is the
  slow part)."""
  common = dict(pyramid_spec=PYR, input_mode="embeddings",
                text_max_length=6, num_conv_layers=1)
  if task == spec.MR:
    return fixtures.build_task(moment_retriever.build_moment_retriever,
                               "tiny", **common)
  if task == spec.HD:
    common.update(task=spec.HD, num_classes=1)
  return fixtures.build_task(action_localizer.build_action_localizer, "tiny",
                             **common)


@functools.lru_cache(maxsize=None)
def _evaluator(task, class_names):
  return evaluation.Evaluator(task, class_names=class_names)


def _dataset(pattern, config, validate=True):
  return pipeline.make_dataset(pattern, config, is_training=False,
                               global_batch_size=2, validate=validate)


def _evaluate(tmp_path, task, pattern, config, validate=True):
  """`evaluation.evaluate` of a tiny model from a saved checkpoint."""
  model = _model(task)
  ds = _dataset(pattern, config, validate)
  if not model.built:
    batch = next(iter(ds))
    model({k: v for k, v in batch.items() if v.dtype != tf.string},
          training=False)
  workdir = str(tmp_path / "w")
  checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"),
                           model).save(3)
  ev = _evaluator(task, config.class_names)
  return evaluation.evaluate(workdir=workdir, model_fn=lambda: model,
                             eval_data_fn=lambda: ds, evaluator=ev), ev


def _check_submission(path, task):
  rows = formats.read_qvhighlights_predictions(path)
  assert sorted(r["qid"] for r in rows) == sorted(QUERIES)
  for row in rows:
    assert (row["query"], row["vid"]) == QUERIES[row["qid"]]
    windows = row["pred_relevant_windows"]
    assert windows and all(0 <= s <= e <= N_FRAMES * SPT
                           for s, e, _ in windows)
    scores = [w[2] for w in windows]
    assert scores == sorted(scores, reverse=True)
    if task == spec.HD:
      assert len(row["pred_saliency_scores"]) == N_FRAMES * SPT / 2
    else:
      assert "pred_saliency_scores" not in row
  return rows


def test_unlabeled_hd_writes_the_qvhighlights_submission(tmp_path, caplog):
  """Records without targets: no metric (logged), the submission jsonl."""
  pattern = _write_queries(tmp_path, spec.HD)
  config = _config(spec.HD)
  with caplog.at_level(logging.INFO):
    result, ev = _evaluate(tmp_path, spec.HD, pattern, config)
  assert result["metrics"] == {}
  assert UNLABELED_LINE in caplog.text
  assert not ev.last_submission.labeled
  path = result["submission"]
  assert path == str(tmp_path / "w" / "eval" / "submission_3.jsonl")
  _check_submission(path, spec.HD)
  with open(tmp_path / "w" / "eval" / "metrics_3.json") as f:
    info = json.load(f)
  assert info == {"step": 3, "checkpoint": "latest", "unlabeled": True,
                  "predictions": result["predictions"], "submission": path}


def test_labeled_hd_still_computes_metrics(tmp_path, caplog):
  pattern = _write_queries(tmp_path, spec.HD, labeled=True)
  with caplog.at_level(logging.INFO):
    result, ev = _evaluate(tmp_path, spec.HD, pattern, _config(spec.HD))
  assert set(result["metrics"]) >= {"average_mAP", "mAP@0.5"}
  assert UNLABELED_LINE not in caplog.text and ev.last_submission.labeled
  _check_submission(result["submission"], spec.HD)  # also for val
  with open(tmp_path / "w" / "eval" / "metrics_3.json") as f:
    assert "unlabeled" not in json.load(f)


def test_unlabeled_tal_split_skips_metrics(tmp_path, caplog):
  """ActivityNet "testing": TAL records without segments.  Before: a fake
  mAP of 0.0; now no metric and the ActivityNet results file."""
  fixtures.write(tmp_path, "test", [
      fixtures.video_record(f"v{i}", n=15, embeddings_dim=2,
                            with_frames=False) for i in range(3)])
  with caplog.at_level(logging.INFO):
    result, _ = _evaluate(tmp_path, spec.TAL, str(tmp_path / "test-*"),
                          _config(spec.TAL))
  assert result["metrics"] == {}
  assert UNLABELED_LINE in caplog.text
  assert "submission" not in result
  results = formats.read_activitynet_results(result["predictions"])
  assert sorted(results) == ["v0", "v1", "v2"]


def test_unlabeled_records_pass_the_record_checks(tmp_path):
  pattern = _write_queries(tmp_path, spec.HD)
  batches = list(_dataset(pattern, _config(spec.HD)))
  assert sum(int(b["batch_mask"].numpy().sum()) for b in batches) == 3
  for b in batches:
    assert not b[spec.GT_VALID].numpy().any()


def test_unlabeled_mr_writes_the_qvhighlights_submission(tmp_path, caplog):
  """QVHighlights --task=moment_retrieval test records: the captions are
  evaluated (text valid, no ground truth) into a submission without
  saliency; no metric."""
  pattern = _write_queries(tmp_path, spec.MR)
  with caplog.at_level(logging.INFO):
    result, _ = _evaluate(tmp_path, spec.MR, pattern,
                          _config(spec.MR, num_captions_eval=2))
  assert result["metrics"] == {}
  assert UNLABELED_LINE in caplog.text
  _check_submission(result["submission"], spec.MR)
