"""The evaluator: a perfect model (its outputs are the targets) scores 1.0
on every official metric, and a real tiny model runs end to end."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import pipeline, records
from unloc_tf.metrics import formats
from unloc_tf.tasks import action_localizer, action_segmenter, moment_retriever
from unloc_tf.train import evaluation

Seg = records.Segment
N0 = 8
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 3),
                                                            (3, np.inf)))


def _perfect(task):
  """A real task model whose dense outputs are the batch's targets, so its
  decoded detections are the ground truth."""
  builder = {spec.TAL: action_localizer.build_action_localizer,
             spec.MR: moment_retriever.build_moment_retriever,
             spec.AS: action_segmenter.build_action_segmenter}[task]
  size = dict(num_frames=N0) if task == spec.AS else dict(pyramid_spec=PYR)
  model = fixtures.build_task(builder, input_mode="embeddings",
                              text_max_length=6, **size)

  def forward(b, num_prompts=1):
    del num_prompts
    lab = tf.cast(b[spec.LABELS], tf.float32)
    if task == spec.AS:
      return {"logits": lab * 20.0 - 10.0, "token_mask": b[spec.FRAME_MASK]}
    return {"logits": lab * 20.0 - 10.0,
            "displacements": b[spec.DISPLACEMENTS],
            "token_mask": tf.ones_like(lab[..., 0] if task != spec.MR
                                       else lab[:, 0], tf.int32)}

  model.forward = forward
  return model


def _write(tmp_path, task):
  if task == spec.MR:
    recs = [fixtures.video_record(
        f"m{i}", n=16, embeddings_dim=2,
        segments=[Seg(2, 9, label_string="a cat"),
                  Seg(0, 15, label_string="a dog")]) for i in range(3)]
  else:
    recs = [fixtures.video_record(
        f"v{i}", n=15, embeddings_dim=2,
        segments=[Seg(1, 6, 0), Seg(8, 14, 1)]) for i in range(3)]
  fixtures.write(tmp_path, "d", recs)


@pytest.mark.parametrize("task", [spec.TAL, spec.MR, spec.AS])
def test_perfect_predictions_score_one(tmp_path, task):
  _write(tmp_path, task)
  kw = dict(task=task, num_frames=N0, pyramid=PYR, input_mode="embeddings",
            embedding_dim=2, max_text_length=6, num_captions_eval=2,
            secs_per_timestep=0.5)
  if task != spec.MR:
    kw.update(num_classes=2, class_names=("jump", "run"))
  cfg = pipeline.InputConfig(**kw)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=False,
                             global_batch_size=2)
  ev = evaluation.Evaluator(task, class_names=cfg.class_names)
  m = ev(_perfect(task), ds)
  if task == spec.TAL:
    assert m["average_mAP"] == pytest.approx(1.0)
    assert m["mAP@0.5"] == pytest.approx(1.0)
  elif task == spec.MR:
    for k in ("R@1,IoU=0.5", "R@1,IoU=0.7", "R@5,IoU=0.7"):
      assert m[k] == pytest.approx(1.0), m
    # The predictions name their query and write in the candidates format.
    assert sorted({r["query"] for r in ev.last_predictions}) == [
        "a cat", "a dog"]
    path = str(tmp_path / "pred.jsonl")
    formats.write_retrieval_candidates(path, ev.last_predictions)
    assert len(formats.read_retrieval_candidates(path)) == 6
  else:
    assert m["accuracy"] == pytest.approx(1.0)
    assert m["edit"] == pytest.approx(100.0)


def test_real_tiny_model_runs(tmp_path):
  _write(tmp_path, spec.TAL)
  cfg = pipeline.InputConfig(task=spec.TAL, num_frames=N0, pyramid=PYR,
                             input_mode="embeddings", embedding_dim=2,
                             num_classes=2, class_names=("jump", "run"),
                             max_text_length=6)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), cfg, is_training=False,
                             global_batch_size=2)
  model = fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", pyramid_spec=PYR,
      input_mode="embeddings", text_max_length=6,
      num_conv_layers=1)
  ev = evaluation.Evaluator(spec.TAL, class_names=cfg.class_names)
  m = ev(model, ds)
  assert 0.0 <= m["average_mAP"] <= 1.0
  assert set(ev.last_predictions["results"]) == {"v0", "v1", "v2"}
