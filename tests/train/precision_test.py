"""Mixed precision (unloc_tf/train/precision.py): the policy scope, loss
scaling around the project's optimizer, the training loop under
mixed_float16, the health check of the loss scale, and the PRECISION
binding of the experiment loader.  Per-task parity with float32 and the
export: tests/tasks/mixed_precision_test.py."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from tests import fixtures
from tests.train import trainer_test
from unloc_tf import launch, spec
from unloc_tf.data import pipeline, synthetic
from unloc_tf.launch import cli
from unloc_tf.tasks import action_localizer
from unloc_tf.train import health, optimizers, precision, trainer

ALLOWED = "'float32', 'mixed_bfloat16', 'mixed_float16'"


_keeps_dtype_policy = pytest.fixture(autouse=True)(fixtures.keeps_dtype_policy)


def test_policy_scope_sets_the_policy_only_inside():
  with precision.policy_scope("mixed_bfloat16"):
    assert keras.config.dtype_policy().name == "mixed_bfloat16"
    dense = keras.layers.Dense(2)
  assert keras.config.dtype_policy().name == "float32"
  assert dense.dtype_policy.name == "mixed_bfloat16"  # kept after the scope
  with pytest.raises(RuntimeError, match="inside"):
    with precision.policy_scope("mixed_float16"):
      raise RuntimeError("inside")
  assert keras.config.dtype_policy().name == "float32"


def test_an_unknown_precision_names_the_value_and_the_allowed_ones():
  message = f"unknown precision 'fp16': expected one of {ALLOWED}"
  with pytest.raises(ValueError, match=message):
    precision.check_precision("fp16")
  with pytest.raises(ValueError, match=message):
    with precision.policy_scope("fp16"):
      pass
  gin.clear_config()
  try:
    with pytest.raises(ValueError) as error:
      launch.load_experiment(["experiments/smoke"],
                             ["DATA_DIR = '/no/such/dir'",
                              "PRECISION = 'bf16'"])
  finally:
    gin.clear_config()
  line = cli.one_line(error.value)
  assert line == (f"unknown precision 'bf16': expected one of {ALLOWED}"
                  " (the gin macro PRECISION, bound to"
                  " trainer.train.precision)"), line


def test_the_experiment_builds_its_models_in_its_precision():
  """Evaluation, export and prediction models (`build_model`) get the
  PRECISION of the experiment, and the global policy is left alone."""
  gin.clear_config()
  try:
    exp = launch.load_experiment(
        ["experiments/smoke"], ["DATA_DIR = '/no/such/dir'",
                                "PRECISION = 'mixed_bfloat16'"],
        class_names=("a", "b"))
    assert exp.precision == "mixed_bfloat16"
    model = exp.build_model()
  finally:
    gin.clear_config()
  assert model.dtype_policy.name == "mixed_bfloat16"
  assert model.backbone.fusion.dtype_policy.name == "mixed_bfloat16"
  assert {str(v.dtype) for v in model.weights} == {"float32"}
  assert keras.config.dtype_policy().name == "float32"


def _one_variable_step(grad_scale, clipnorm=1.0):
  """One LossScaleOptimizer step of w (4 values, 0) on a loss whose
  gradient is `g = [3, 4, 0, 0] * grad_scale` (norm 5 * grad_scale), with
  the project's SGD (lr 1, no momentum, clipping at `clipnorm`)."""
  w = keras.Variable(np.zeros(4, np.float32))
  inner = optimizers.make_optimizer(learning_rate=1.0, momentum=0.0,
                                    global_clipnorm=clipnorm)
  opt = precision.wrap_optimizer(inner, "mixed_float16", initial_scale=1024)
  opt.build([w])
  g = tf.constant([3.0, 4.0, 0.0, 0.0]) * grad_scale
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(g * w)
    scaled = precision.scale_loss(opt, loss)
  grads = tape.gradient(scaled, [w])
  np.testing.assert_allclose(grads[0].numpy(), 1024 * g.numpy())
  opt.apply(grads, [w])
  return w.numpy(), opt


def test_loss_scaling_unscales_before_clipping():
  """The wrapped optimizer clips and applies the UNSCALED gradient: a
  scaled one (x1024) would be clipped to norm 1 and give w = -[.6, .8]
  whatever the true gradient."""
  w, opt = _one_variable_step(0.1)  # norm 0.5 < 1: not clipped
  np.testing.assert_allclose(w, [-0.3, -0.4, 0, 0], rtol=1e-6)
  assert int(opt.iterations.numpy()) == 1
  assert float(precision.loss_scale(opt).numpy()) == 1024
  w, _ = _one_variable_step(1.0)  # norm 5: clipped to 1
  np.testing.assert_allclose(w, [-0.6, -0.8, 0, 0], rtol=1e-6)
  w, _ = _one_variable_step(1.0, clipnorm=None)
  np.testing.assert_allclose(w, [-3.0, -4.0, 0, 0], rtol=1e-6)


def test_a_non_finite_step_is_skipped_but_counted():
  w, opt = _one_variable_step(np.inf)
  np.testing.assert_array_equal(w, np.zeros(4))
  assert float(precision.loss_scale(opt).numpy()) == 512  # halved
  # Counted, so the trainer's step, the schedule and the data position
  # stay optimizer.iterations.
  assert int(opt.iterations.numpy()) == 1
  assert precision.inner_optimizer(opt) is opt.inner_optimizer
  assert precision.wrap_optimizer(opt, "mixed_float16") is opt
  plain = optimizers.make_optimizer()
  assert precision.wrap_optimizer(plain, "mixed_bfloat16") is plain
  assert precision.loss_scale(plain) is None


def test_health_check_of_a_collapsed_loss_scale():
  monitor = health.HealthMonitor(window=0)
  monitor.check_step(0, 1.0, learning_rate=0.1, loss_scale=2.0**15)
  with pytest.raises(health.HealthError,
                     match="mixed_float16 loss scale fell to 0.5 at step 3"):
    monitor.check_step(3, 1.0, learning_rate=0.1, loss_scale=0.5)


def _embedding_records(root):
  """Tiny TAL records with the benchmark's scene embeddings (no frames to
  decode, no image tower: the cheapest run of the real loop)."""
  config = synthetic.SyntheticConfig(num_train=8, num_val=2, num_test=2,
                                     min_duration=4, max_duration=8, seed=1)
  synthetic.write_benchmark(root, config, tasks=(spec.TAL,), num_shards=1,
                            zero_shot_records=False, state_embeddings=True,
                            render=False)
  np.save(os.path.join(root, "class_names.npy"),
          np.random.default_rng(0).normal(size=(
              len(synthetic.ACTIONS), 1, trainer_test.TEXT_DIM)).astype(
                  np.float32))
  input_config = trainer_test.input_config(
      root, input_mode="embeddings",
      embedding_dim=synthetic.SCENE_EMBEDDING_DIM)

  def data_fn(input_context=None, skip_batches=0):
    return pipeline.make_dataset(
        trainer_test.train_files(root), input_config, is_training=True,
        global_batch_size=4, input_context=input_context, seed=0,
        deterministic=True, shuffle_buffer=8, skip_batches=skip_batches)

  return data_fn


def _embedding_model():
  return fixtures.build_task(
      action_localizer.build_action_localizer, "tiny",
      pyramid_spec=trainer_test.PYR, num_conv_layers=1,
      input_mode="embeddings", text_input="embeddings")


def test_trainer_under_mixed_float16(tmp_path):
  """A step of the training loop under mixed_float16: the model computes
  in float16 with float32 variables, the loss is finite and unscaled, the
  loss scale is logged, and the update equals float32's (the same step run
  eagerly in float32 from the same initial weights): a loss the loop forgot
  to scale, or gradients it did not unscale, would change the update
  ~30000x or get it clipped."""
  data_fn = _embedding_records(str(tmp_path / "records"))

  def optimizer_fn():  # no warm-up: the first step has a learning rate
    return optimizers.make_optimizer(
        learning_rate=0.01,
        lr_multipliers=optimizers.REFERENCE_LR_MULTIPLIERS)

  built = []

  def model_fn():
    built.append(_embedding_model())
    return built[-1]

  result = trainer.train(
      workdir=str(tmp_path / "run"), model_fn=model_fn,
      train_data_fn=data_fn, optimizer_fn=optimizer_fn, total_steps=1,
      log_every=1, progress=False, jit_compile=False,
      precision="mixed_float16")
  model = built[0]
  assert model.dtype_policy.name == "mixed_float16"
  assert {str(v.dtype) for v in model.weights} == {"float32"}
  scalars = trainer_test.event_scalars(str(tmp_path / "run" / "train"))
  assert scalars[trainer.LOSS_SCALE] == [(1, 2.0**15)]

  # The same step in float32, eagerly (trainer.train's seed and batch).
  keras.utils.set_random_seed(0)
  reference = _embedding_model()
  batch = trainer._numeric(next(iter(data_fn())))
  reference(batch)
  start = [v.numpy() for v in reference.weights]
  optimizer = optimizer_fn()
  optimizer.build(reference.trainable_variables)
  with tf.GradientTape() as tape:
    loss = reference.compute_loss(x=batch, y_pred=reference(batch,
                                                            training=True))
  optimizer.apply(tape.gradient(loss, reference.trainable_variables),
                  reference.trainable_variables)
  assert np.isfinite(result["loss"])
  assert result["loss"] == pytest.approx(float(loss), rel=0.01)
  norm = lambda xs: float(np.sqrt(sum(np.sum(np.square(x)) for x in xs)))
  update = norm([v.numpy() - s for v, s in zip(reference.weights, start)])
  err = norm([a.numpy() - b.numpy()
              for a, b in zip(model.weights, reference.weights)])
  print(f"update norm {update:.4g}; float16 - float32 weights {err:.4g}")
  assert update > 0 and err < 0.05 * update
