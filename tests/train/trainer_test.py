"""The training loop on a tiny TAL model and tiny synthetic records.

The helpers at the top (records, configs, model / data / optimizer
functions) are shared with resume_test.py and multi_worker_test.py, whose
subprocesses import this module.
"""

import glob
import json
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from tests.data import shard_damage
from unloc_tf import spec
from unloc_tf.data import pipeline, records, synthetic
from unloc_tf.tasks import action_localizer
from unloc_tf.train import evaluation, health, optimizers, trainer

N0 = 8
PYR = spec.PyramidSpec(N0, num_levels=2,
                       regression_ranges=((0, 4), (4, np.inf)))
SPT = 0.2  # the synthetic benchmark stores 5 fps
TEXT_DIM = 16


def write_data(root: str) -> str:
  """Tiny TAL records (8 train videos in 2 shards of 4) and cached
  class-name embeddings (no text tower: fast to build and to checkpoint)."""
  if not os.path.exists(os.path.join(root, "classes.txt")):
    cfg = synthetic.SyntheticConfig(frame_size=32, num_train=8, num_val=2,
                                    num_test=2, min_duration=4,
                                    max_duration=8, seed=1)
    synthetic.write_benchmark(root, cfg, tasks=(spec.TAL,), num_shards=2,
                              zero_shot_records=False)
    rng = np.random.default_rng(0)
    np.save(os.path.join(root, "class_names.npy"),
            rng.normal(size=(len(synthetic.ACTIONS), 1, TEXT_DIM)).astype(
                np.float32))
  return root


def input_config(root: str, **overrides) -> pipeline.InputConfig:
  kwargs = dict(task=spec.TAL, num_frames=N0, pyramid=PYR, crop_size=32,
                min_resize=32, num_classes=len(synthetic.ACTIONS),
                text_mode="embeddings",
                class_name_embeddings=os.path.join(root, "class_names.npy"),
                random_flip=False, secs_per_timestep=SPT)
  kwargs.update(overrides)
  return pipeline.InputConfig(**kwargs)


def train_files(root: str) -> str:
  return os.path.join(root, spec.TAL, "train-*")


def make_data_fn(root: str, global_batch_size: int = 4, seed: int = 0,
                 shuffle_buffer: int = 8, transform=None):
  config = input_config(root)

  def data_fn(input_context=None, skip_batches=0):
    ds = pipeline.make_dataset(
        train_files(root), config, is_training=True,
        global_batch_size=global_batch_size, input_context=input_context,
        seed=seed, deterministic=True, shuffle_buffer=shuffle_buffer,
        skip_batches=skip_batches)
    return ds.map(transform) if transform is not None else ds

  return data_fn


def make_eval_data_fn(root: str, global_batch_size: int = 4):
  config = input_config(root)

  def eval_data_fn():
    return pipeline.make_dataset(os.path.join(root, spec.TAL, "val-*"),
                                 config, is_training=False,
                                 global_batch_size=global_batch_size)

  return eval_data_fn


def model_fn():
  return fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", pyramid_spec=PYR,
      num_conv_layers=1, image_size=32,
      text_input="embeddings")


def make_optimizer_fn(total_steps: int, base_learning_rate: float = 0.01):
  def optimizer_fn():
    schedule = optimizers.make_schedule(base_learning_rate,
                                        total_steps=total_steps,
                                        warmup_steps=2)
    return optimizers.make_optimizer(
        learning_rate=schedule,
        lr_multipliers=optimizers.REFERENCE_LR_MULTIPLIERS)

  return optimizer_fn


def event_scalars(directory: str) -> dict:
  """{tag: [(step, value), ...]} of the event files in `directory`."""
  out = {}
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        number = float(tf.make_ndarray(value.tensor))
        out.setdefault(value.tag, []).append((event.step, number))
  return out


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
  return write_data(str(tmp_path_factory.mktemp("tal_records")))


# ---------------------------------------------------------------------------
# Tests.
# ---------------------------------------------------------------------------
def test_train_checkpoints_summaries_eval_and_best(data_root, tmp_path):
  workdir = str(tmp_path / "run")
  calls = []
  scores = {3: 0.9, 6: 0.2}  # the best is NOT the last evaluation

  def evaluator(model, dataset, step):
    batches = list(dataset)
    out = model(trainer._numeric(batches[0]), training=False)
    calls.append((step, len(batches)))
    return {"score": scores[step],
            "mean_logit": float(tf.reduce_mean(out["logits"]))}

  kwargs = dict(workdir=workdir, model_fn=model_fn,
                train_data_fn=make_data_fn(data_root),
                optimizer_fn=make_optimizer_fn(6), total_steps=6,
                eval_data_fn=make_eval_data_fn(data_root),
                evaluator=evaluator, checkpoint_every=3, eval_every=3,
                log_every=2, best_metric="score", progress=False,
                jit_compile=False)  # XLA: resume_test, multi_worker_test
  result = trainer.train(**kwargs)

  assert result["step"] == 6
  assert np.isfinite(result["loss"])
  assert result["metrics"]["score"] == 0.2
  assert [s for s, _ in calls] == [3, 6]
  assert calls[0][1] == 1  # 2 val videos in one padded batch of 4
  ckpts = sorted(os.path.basename(p) for p in glob.glob(
      os.path.join(workdir, "checkpoints", "ckpt-*.index")))
  assert ckpts == ["ckpt-3.index", "ckpt-6.index"]
  best = json.load(open(os.path.join(workdir, "best", "best.json")))
  assert best["step"] == 3 and best["value"] == 0.9
  assert glob.glob(os.path.join(workdir, "best", "ckpt-3.index"))
  train_scalars = event_scalars(os.path.join(workdir, "train"))
  assert [s for s, _ in train_scalars["loss"]] == [2, 4, 6]
  assert {"learning_rate", "classification_loss", "box_loss"} <= set(
      train_scalars)
  lr = dict(train_scalars["learning_rate"])
  assert lr[2] == pytest.approx(0.005)  # step index 1 of a 2-step warm-up
  assert lr[6] == pytest.approx(0.01)
  eval_scalars = event_scalars(os.path.join(workdir, "eval"))
  assert eval_scalars["score"] == [(3, pytest.approx(0.9)),
                                   (6, pytest.approx(0.2))]
  # Started again after the end: nothing to do, the metrics are kept.
  calls.clear()
  again = trainer.train(**kwargs)
  assert again["step"] == 6 and again["loss"] is None
  assert again["metrics"]["score"] == 0.2 and calls == []


def _weights(model):
  return [v.numpy() for v in model.weights]


def test_keep_n_init_checkpoint_and_progress_bar(data_root, tmp_path,
                                                  capfd):
  """keep_checkpoints deletes the oldest; a fresh run with init_checkpoint
  starts from that run's weights (not from its own random init); the
  progress bar counts to total_steps."""
  built = []

  def recording_model_fn():
    built.append(model_fn())
    return built[-1]

  first = str(tmp_path / "first")
  common = dict(model_fn=recording_model_fn, jit_compile=False,
                train_data_fn=make_data_fn(data_root), health_window=0)
  trainer.train(workdir=first, optimizer_fn=make_optimizer_fn(4),
                total_steps=4, checkpoint_every=1, keep_checkpoints=2,
                progress=False, **common)
  ckpts = sorted(os.path.basename(p) for p in glob.glob(
      os.path.join(first, "checkpoints", "ckpt-*.index")))
  assert ckpts == ["ckpt-3.index", "ckpt-4.index"]
  trained = _weights(built[0])

  capfd.readouterr()
  trainer.train(
      workdir=str(tmp_path / "second"), total_steps=1, seed=7,
      optimizer_fn=make_optimizer_fn(1, base_learning_rate=1e-9),
      init_checkpoint=os.path.join(first, "checkpoints", "ckpt-4"),
      progress=True, **common)
  out = capfd.readouterr().out
  assert "1/1" in out, out  # the Keras progress bar reached the end
  # Its running mean is named apart from the log's "step loss".
  assert f"- {trainer.PROGBAR_LOSS}: " in out and "- loss: " not in out, out
  for a, b in zip(_weights(built[1]), trained):
    np.testing.assert_allclose(a, b, atol=1e-6)
  fresh = model_fn()
  fresh(trainer._numeric(next(iter(make_data_fn(data_root)()))))
  assert any(not np.allclose(a, b) for a, b in zip(_weights(fresh),
                                                    trained))


def _checkpoint_keys(path):
  return set(tf.train.load_checkpoint(path).get_variable_to_shape_map())


def test_data_state_reseed_keeps_no_input_state(data_root, tmp_path):
  """data_state='reseed': checkpoints hold no iterator; a resumed run
  rebuilds the pipeline with resume_seed(seed, step).  'iterator'
  checkpoints the iterator."""
  seeds = []
  base_fn = make_data_fn(data_root)

  def data_fn(input_context=None, **kwargs):
    seeds.append(kwargs.get("seed"))
    return base_fn(input_context=input_context)

  common = dict(model_fn=model_fn, train_data_fn=data_fn,
                optimizer_fn=make_optimizer_fn(4), checkpoint_every=2,
                progress=False, jit_compile=False, seed=5)
  workdir = str(tmp_path / "reseed")
  trainer.train(workdir=workdir, total_steps=2, data_state="reseed",
                **common)
  assert seeds == [None]
  ckpt = os.path.join(workdir, "checkpoints", "ckpt-2")
  assert not any("iterator" in k for k in _checkpoint_keys(ckpt))
  result = trainer.train(workdir=workdir, total_steps=4,
                         data_state="reseed", **common)
  assert result["step"] == 4
  assert seeds == [None, None, trainer.resume_seed(5, 2)]
  assert trainer.resume_seed(5, 2) not in (5, trainer.resume_seed(5, 4))

  exact = str(tmp_path / "iterator")
  trainer.train(workdir=exact, total_steps=2, data_state="iterator",
                **common)
  assert any("iterator" in k for k in _checkpoint_keys(
      os.path.join(exact, "checkpoints", "ckpt-2")))
  with pytest.raises(ValueError, match="data_state"):
    trainer.train(workdir=exact, total_steps=2, data_state="none", **common)


def test_data_state_position_resumes_exactly_without_input_state(
    data_root, tmp_path):
  """The default data_state ('position'): checkpoints hold no input state,
  and a run stopped at step 3 and resumed ends like an uninterrupted run
  (same loss at every step, same weights and optimizer state, bit for
  bit), with random crops and a shuffle window on 32-px frame records."""
  data_fn = make_data_fn(data_root, global_batch_size=3, shuffle_buffer=3)
  common = dict(model_fn=model_fn, train_data_fn=data_fn,
                optimizer_fn=make_optimizer_fn(6), checkpoint_every=3,
                log_every=1, progress=False, jit_compile=False, seed=2)
  whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
  trainer.train(workdir=whole, total_steps=6, **common)
  trainer.train(workdir=parts, total_steps=3, **common)
  ckpt = os.path.join(parts, "checkpoints", "ckpt-3")
  assert not any("iterator" in k for k in _checkpoint_keys(ckpt))
  trainer.train(workdir=parts, total_steps=6, **common)

  def losses(workdir):
    return [v for _, v in sorted(event_scalars(
        os.path.join(workdir, "train"))["loss"])]

  # 8 records, batch 3: step 3 resumes inside the second epoch.
  assert len(losses(whole)) == 6
  assert losses(parts) == losses(whole)
  a = tf.train.load_checkpoint(os.path.join(whole, "checkpoints", "ckpt-6"))
  b = tf.train.load_checkpoint(os.path.join(parts, "checkpoints", "ckpt-6"))
  keys = [k for k in a.get_variable_to_shape_map()
          if k.startswith(("variables/", "optimizer/"))]
  assert len(keys) > 50
  for k in keys:
    np.testing.assert_array_equal(a.get_tensor(k), b.get_tensor(k), k)


def test_data_state_position_needs_a_data_fn_that_skips(data_root,
                                                        tmp_path):
  base_fn = make_data_fn(data_root)

  def data_fn(input_context=None):
    return base_fn(input_context=input_context)

  common = dict(model_fn=model_fn, train_data_fn=data_fn,
                optimizer_fn=make_optimizer_fn(4), checkpoint_every=2,
                progress=False, jit_compile=False)
  trainer.train(workdir=str(tmp_path), total_steps=2, **common)
  with pytest.raises(TypeError, match="data_state='position' resumes by"
                     " calling train_data_fn.*skip_batches=N"):
    trainer.train(workdir=str(tmp_path), total_steps=4, **common)


def _damaged_copy(data_root, tmp_path, split, how):
  """A copy of the records with shard 1 of `split` damaged; (its path, the
  first bad record)."""
  root = str(tmp_path / "damaged")
  shutil.copytree(data_root, root)
  path = sorted(glob.glob(os.path.join(root, spec.TAL, f"{split}-*")))[1]
  if how == "truncated":
    return root, path, shard_damage.truncate(path)
  return root, path, shard_damage.corrupt(path, record=0)


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_damaged_training_shard_is_named(data_root, tmp_path, how):
  """TensorFlow's "truncated record at N" / "corrupted record at N" name
  no file; the trainer's error names the shard and the record."""
  root, path, bad = _damaged_copy(data_root, tmp_path, "train", how)
  with pytest.raises(records.DamagedShardError,
                     match=re.escape(f"{path}: record {bad}: damaged"
                                     f" TFRecord shard ({how}")):
    trainer.train(workdir=str(tmp_path / "run"), model_fn=model_fn,
                  train_data_fn=make_data_fn(root),
                  optimizer_fn=make_optimizer_fn(8), total_steps=8,
                  health_window=0, jit_compile=False, progress=False)


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_damaged_evaluation_shard_is_named(data_root, tmp_path, how):
  root, path, bad = _damaged_copy(data_root, tmp_path, "val", how)
  model = model_fn()
  model(trainer._numeric(next(iter(make_eval_data_fn(data_root)()))))
  evaluator = evaluation.Evaluator(spec.TAL,
                                   class_names=synthetic.ACTIONS)
  with pytest.raises(records.DamagedShardError,
                     match=re.escape(f"{path}: record {bad}: damaged")):
    evaluator(model, make_eval_data_fn(root)())


def _zero_labels(batch):
  batch = dict(batch)
  batch[spec.LABELS] = tf.zeros_like(batch[spec.LABELS])
  return batch


def test_all_zero_labels_stop_training(data_root, tmp_path):
  with pytest.raises(health.HealthError, match="no positive label in the"
                     " first 3 training batches"):
    trainer.train(workdir=str(tmp_path), model_fn=model_fn,
                  train_data_fn=make_data_fn(data_root,
                                             transform=_zero_labels),
                  optimizer_fn=make_optimizer_fn(10), total_steps=10,
                  health_window=3, jit_compile=False, progress=False)


def _nan_targets(batch):
  batch = dict(batch)
  batch[spec.DISPLACEMENTS] = batch[spec.DISPLACEMENTS] * np.nan
  return batch


def test_nan_loss_stops_training(data_root, tmp_path):
  with pytest.raises(health.HealthError, match=r"loss is nan at step 0\..*the"
                     r" learning rate \(lower it"):
    trainer.train(workdir=str(tmp_path), model_fn=model_fn,
                  train_data_fn=make_data_fn(data_root,
                                             transform=_nan_targets),
                  optimizer_fn=make_optimizer_fn(10), total_steps=10,
                  jit_compile=False, progress=False)
  # Nothing was saved from a poisoned run.
  assert not glob.glob(str(tmp_path / "checkpoints" / "ckpt-*"))


def test_collective_detection_decides_xla():
  x = tf.TensorSpec([4], tf.float32)

  def all_reduce(v):  # what gather_rows traces to under MWMS
    return tf.raw_ops.CollectiveReduceV2(
        input=v, group_size=2, group_key=1, instance_key=1,
        ordering_token=[], merge_op="Add", final_op="Id")

  nested = tf.function(all_reduce)
  plain = tf.function(lambda v: v * 2.0).get_concrete_function(x)
  direct = tf.function(all_reduce).get_concrete_function(x)
  inner = tf.function(lambda v: nested(v) + 1.0).get_concrete_function(x)
  assert not trainer._has_collectives(plain)
  assert trainer._has_collectives(direct)
  assert trainer._has_collectives(inner)  # inside a nested function


def test_health_monitor_learning_rate_and_window():
  m = health.HealthMonitor(window=2, warmup_steps=3, total_steps=10)
  m.check_step(0, 1.0, num_positive=0, learning_rate=0.0)  # warm-up: fine
  m.check_step(1, 1.0, num_positive=5, learning_rate=0.1)
  m.check_step(2, 1.0, num_positive=0, learning_rate=0.1)  # window passed
  with pytest.raises(health.HealthError, match="learning rate is 0.0 at step"
                     " 3.*schedule is mis-set"):
    m.check_step(3, 1.0, num_positive=0, learning_rate=0.0)
  with pytest.raises(health.HealthError, match="loss is inf"):
    m.check_step(4, float("inf"))


def test_check_records_against_config(data_root):
  files = train_files(data_root)
  health.check_records_against_config(
      files, input_config(data_root, text_mode="tokens",
                          class_names=synthetic.ACTIONS))
  with pytest.raises(ValueError, match="record 0: field clip/secs_per_"
                     "timestep is 0.2 s but config.secs_per_timestep is 0.1"):
    health.check_records_against_config(
        files, input_config(data_root, secs_per_timestep=0.1))
  swapped = list(synthetic.ACTIONS)
  swapped[0], swapped[1] = swapped[1], swapped[0]
  with pytest.raises(ValueError, match="classes.txt: the class list"):
    health.check_records_against_config(
        files, input_config(data_root, text_mode="tokens",
                            class_names=tuple(swapped)))
  with pytest.raises(ValueError, match="segment/label/index has label"):
    health.check_records_against_config(
        files, input_config(data_root, num_classes=2, class_name_embeddings=(
            os.path.join(data_root, "class_names.npy"))))
  with pytest.warns(UserWarning, match="fewer than num_frames/4"):
    health.check_records_against_config(
        files, input_config(data_root, num_frames=512, pyramid=None))
