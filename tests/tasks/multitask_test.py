"""Co-training TAL, MR and AS on one backbone (`unloc_tf.tasks.multitask`,
`unloc_tf.data.multitask`, the trainer's `task_schedule`): one set of
backbone variables, the seeded schedule, the errors for configs that cannot
share a backbone, a resumed run's input, and a trainer run on the synthetic benchmark's
cached embeddings that evaluates every task."""

import dataclasses
import os

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import multitask as data_mt
from unloc_tf.data import pipeline, synthetic
from unloc_tf.data.synthetic import scene
from unloc_tf.tasks import (
  action_localizer,
  action_segmenter,
  moment_retriever,
  multitask,
)
from unloc_tf.train import evaluation, optimizers, trainer

N0, L = 16, 8
PYR = spec.PyramidSpec(N0, num_levels=2,
                       regression_ranges=((0, 4), (4, float("inf"))))
TASKS = (spec.TAL, spec.MR, spec.AS)
COMMON = dict(input_mode="embeddings", text_max_length=L)


def task_models(text_max_length=L):
  common = dict(COMMON, text_max_length=text_max_length)
  return {
      spec.TAL: fixtures.build_task(action_localizer.build_action_localizer,
                                    "tiny", pyramid_spec=PYR,
                                    num_conv_layers=1, **common),
      spec.MR: fixtures.build_task(moment_retriever.build_moment_retriever,
                                   "tiny", pyramid_spec=PYR,
                                   num_conv_layers=1, **common),
      spec.AS: fixtures.build_task(action_segmenter.build_action_segmenter,
                                   "tiny", num_frames=N0, **common),
  }


def configs():
  common = dict(num_frames=N0, input_mode="embeddings",
                embedding_dim=synthetic.SCENE_EMBEDDING_DIM,
                max_text_length=L)
  names = tuple(scene.ACTIONS)
  return {
      spec.TAL: pipeline.InputConfig(task=spec.TAL, pyramid=PYR,
                                     num_classes=len(names),
                                     class_names=names, **common),
      spec.MR: pipeline.InputConfig(task=spec.MR, pyramid=PYR,
                                    num_captions_eval=3, **common),
      spec.AS: pipeline.InputConfig(task=spec.AS, num_classes=len(names),
                                    class_names=names, **common),
  }


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("syn"))
  synthetic.write_benchmark(
      root, synthetic.SyntheticConfig(num_train=6, num_val=1, num_test=1,
                                      min_duration=6, max_duration=10,
                                      seed=2),
      tasks=TASKS, num_shards=1, zero_shot_records=False,
      state_embeddings=True, render=False)
  return root


def _data_fns(root, split, is_training):
  cfgs = configs()

  def fn(task):
    def make(input_context=None, skip_batches=0, seed=0):
      return pipeline.make_dataset(
          os.path.join(root, task, f"{split}-*"), cfgs[task],
          is_training=is_training, global_batch_size=4, seed=seed,
          input_context=input_context, shuffle_buffer=8, deterministic=True,
          skip_batches=skip_batches)
    return make

  return {t: fn(t) for t in TASKS}


def test_one_backbone_and_a_head_per_task(data):
  models = multitask.share_backbone(task_models())
  model = multitask.MultiTaskModel(models, loss_weights={spec.AS: 0.5})
  schedule = data_mt.TaskSchedule({t: 1.0 for t in TASKS})
  datasets = data_mt.make_datasets(_data_fns(data, "train", True), schedule)
  batches = {t: next(iter(ds)) for t, ds in datasets.items()}
  for t, b in batches.items():
    out = model({k: v for k, v in b.items() if v.dtype != tf.string})
    assert set(out) >= {"logits"}
  bb = model.backbone
  assert all(m.backbone is bb for m in models.values())
  own = {id(v) for v in bb.trainable_variables}
  heads = {t: [v for v in m.trainable_variables if id(v) not in own]
           for t, m in models.items()}
  assert all(heads.values())
  assert len(model.trainable_variables) == len(own) + sum(
      len(h) for h in heads.values())
  # The AS head reads the level-0 tokens of the shared pyramid.
  as_batch = {k: v for k, v in batches[spec.AS].items()
              if v.dtype != tf.string}
  assert model(as_batch)["logits"].shape[1] == N0
  # The loss is the task's, times its weight; the parts carry the task.
  y = model(as_batch, training=True)
  loss = float(model.compute_loss(x=as_batch, y_pred=y))
  plain = float(models[spec.AS].compute_loss(
      x=multitask.without_marker(as_batch), y_pred=y))
  np.testing.assert_allclose(loss, 0.5 * plain, rtol=1e-6)
  assert f"{spec.AS}/loss" in model.last_losses
  with pytest.raises(ValueError, match="exactly one task marker"):
    model(multitask.without_marker(as_batch))


def test_backbones_that_differ_are_refused():
  models = task_models()
  models[spec.MR] = task_models(text_max_length=2 * L)[spec.MR]
  with pytest.raises(ValueError, match=r"tasks 'temporal_localization' and"
                     r" 'moment_retrieval' need different backbones \(field"
                     r" 'config.text_encoder.config.max_length'\)"):
    multitask.share_backbone(models)


def test_schedule_is_seeded_and_follows_the_weights():
  s = data_mt.TaskSchedule({"a": 3.0, "b": 1.0}, seed=7)
  tasks = [s.task_at(i) for i in range(4000)]
  assert tasks == [data_mt.TaskSchedule({"a": 3.0, "b": 1.0},
                                        seed=7).task_at(i)
                   for i in range(4000)]
  assert tasks != [data_mt.TaskSchedule({"a": 3.0, "b": 1.0},
                                        seed=8).task_at(i)
                   for i in range(4000)]
  assert abs(tasks.count("a") / 4000 - 0.75) < 0.03
  assert s.counts_before(1234) == {"a": tasks[:1234].count("a"),
                                   "b": tasks[:1234].count("b")}
  for bad in (0, -1.0, float("nan"), None):
    with pytest.raises(ValueError, match="task 'b' has sampling weight"):
      data_mt.TaskSchedule({"a": 1.0, "b": bad})


def test_configs_that_cannot_share_a_backbone_are_refused(data):
  cfgs = configs()
  cfgs[spec.MR] = dataclasses.replace(cfgs[spec.MR], num_frames=32)
  with pytest.raises(ValueError, match=r"disagree on num_frames:"
                     r" temporal_localization \(/d/tal-\*\) has 16,"
                     r" moment_retrieval \(/d/mr-\*\) has 32"):
    data_mt.check_compatible(cfgs, {spec.TAL: "/d/tal-*",
                                    spec.MR: "/d/mr-*"})
  fns = _data_fns(data, "train", True)
  mr_config = dataclasses.replace(configs()[spec.MR], num_frames=32,
                                  pyramid=spec.PyramidSpec(
                                      32, num_levels=2,
                                      regression_ranges=PYR.regression_ranges))
  fns[spec.MR] = lambda input_context=None, **kw: pipeline.make_dataset(
      os.path.join(data, spec.MR, "train-*"), mr_config, is_training=True,
      global_batch_size=4)
  with pytest.raises(ValueError, match=r"disagree on frame_mask:"
                     r" temporal_localization \(.*train-00000-of-00001"
                     r".tfrecord\) gives \(16,\), moment_retrieval \(.*\)"
                     r" gives \(32,\)"):
    data_mt.make_datasets(fns, data_mt.TaskSchedule(
        {t: 1.0 for t in TASKS}))
  schedule = data_mt.TaskSchedule({"a": 1.0, "b": 1.0})
  with pytest.raises(ValueError, match=r"tasks \['b'\] have a sampling"
                     " weight but no dataset"):
    data_mt.make_datasets({"a": None}, schedule)
  with pytest.raises(ValueError, match=r"tasks \['c'\] have a dataset but"
                     " no sampling weight"):
    data_mt.make_datasets({"a": None, "b": None, "c": None}, schedule)


def _train(root, workdir, total_steps, schedule):
  fns = _data_fns(root, "train", True)
  eval_fns = _data_fns(root, "val", False)
  cfgs = configs()
  return trainer.train(
      workdir=workdir,
      model_fn=lambda: multitask.MultiTaskModel(
          multitask.share_backbone(task_models())),
      train_data_fn=lambda **kw: data_mt.make_datasets(fns, schedule, **kw),
      optimizer_fn=lambda: optimizers.make_optimizer(
          learning_rate=optimizers.make_schedule(
              1e-3, total_steps=total_steps, warmup_steps=1)),
      total_steps=total_steps, checkpoint_every=2, log_every=1,
      eval_data_fn=lambda: {t: f() for t, f in eval_fns.items()},
      evaluator=evaluation.MultiTaskEvaluator({
          t: evaluation.Evaluator(t, class_names=cfgs[t].class_names)
          for t in TASKS}),
      best_metric=evaluation.MULTITASK_MEAN, jit_compile=False,
      progress=False, task_schedule=schedule)


def test_a_resumed_run_reads_the_batches_an_uninterrupted_one_reads(data):
  """Restarted at step 3, every task's pipeline skips the batches of its
  own steps before 3 (`counts_before`), so steps 3.. get the batches of an
  uninterrupted run."""
  schedule = data_mt.TaskSchedule({spec.TAL: 1.0, spec.MR: 1.0,
                                   spec.AS: 2.0}, seed=0)
  fns = _data_fns(data, "train", True)

  def ids(batch):
    return [bytes(v) for v in batch[spec.VIDEO_ID].numpy()] + [
        batch[spec.FRAME_INDICES].numpy().tobytes()]

  def run(start, stop, skip=None):
    its = {t: iter(ds) for t, ds in data_mt.make_datasets(
        fns, schedule, skip_batches=skip).items()}
    return [(schedule.task_at(s), ids(next(its[schedule.task_at(s)])))
            for s in range(start, stop)]

  straight = run(0, 8)
  assert {t for t, _ in straight[:4]} == set(TASKS)
  assert run(4, 8, schedule.counts_before(4)) == straight[4:]
  assert run(4, 8) != straight[4:]  # without the skip: other batches


def test_trainer_co_trains_and_evaluates_each_task(data, tmp_path):
  schedule = data_mt.TaskSchedule({spec.TAL: 1.0, spec.MR: 1.0,
                                   spec.AS: 2.0}, seed=0)
  assert {schedule.task_at(s) for s in range(3)} == set(TASKS)
  result = _train(data, str(tmp_path / "work"), 3, schedule)
  assert result["step"] == 3 and np.isfinite(result["loss"])
  metrics = result["metrics"]
  for key in (f"{spec.TAL}/mAP@0.5", f"{spec.MR}/R@1,IoU=0.5",
              f"{spec.AS}/accuracy", evaluation.MULTITASK_MEAN):
    assert key in metrics, sorted(metrics)
  np.testing.assert_allclose(
      metrics[evaluation.MULTITASK_MEAN],
      np.mean([metrics[f"{spec.TAL}/mAP@0.5"],
               metrics[f"{spec.MR}/R@1,IoU=0.5"],
               metrics[f"{spec.AS}/accuracy"]]), rtol=1e-6)
  # One set of backbone variables in the checkpoint, a head per task.
  reader = tf.train.load_checkpoint(os.path.join(tmp_path, "work",
                                                 "checkpoints", "ckpt-3"))
  names = [k for k in reader.get_variable_to_shape_map()
           if k.startswith("variables/") and "OPTIMIZER" not in k]
  for t in TASKS:
    assert any(k.startswith(f"variables/{t}.S{t}_head") for k in names), t
  fusion = [k for k in names if "video_text_fusion" in k]
  assert fusion and len(fusion) == len(set(fusion))
  assert os.path.exists(os.path.join(tmp_path, "work", "best"))
