"""Optimisers and schedules against hand-computed values (optax semantics)."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.train import optimizers


class _Tiny(keras.Model):
  """Three layers named like the UnLoc parts the multipliers address."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.fusion = keras.layers.Dense(2, name="video_text_fusion")
    self.tower = keras.layers.Dense(2, name="image_encoder")
    self.head = keras.layers.Dense(1, name="temporal_localization_head")

  def call(self, x):
    return self.head(self.fusion(x) + self.tower(x))


def _tiny():
  model = _Tiny(name="tiny")
  model(np.zeros((1, 3), np.float32))
  return model


def _by_name(model):
  return {optimizers.relative_path(v.path): v for v in model.variables}


# ---------------------------------------------------------------------------
# Schedules.
# ---------------------------------------------------------------------------
def _lr(schedule, step):
  return float(schedule(tf.constant(step, tf.int64)))


def test_warmup_starts_at_zero_and_reaches_base():
  s = optimizers.make_schedule(0.01, total_steps=100, warmup_steps=4)
  assert [_lr(s, i) for i in range(6)] == pytest.approx(
      [0.0, 0.0025, 0.005, 0.0075, 0.01, 0.01])


def test_piecewise_factors_are_absolute_and_strictly_after_event():
  s = optimizers.make_schedule(1.0, decay="piecewise", decay_events=(10, 20),
                               decay_factors=(0.1, 0.01))
  assert _lr(s, 10) == 1.0  # step > event, not >=
  assert _lr(s, 11) == pytest.approx(0.1)
  assert _lr(s, 20) == pytest.approx(0.1)
  assert _lr(s, 21) == pytest.approx(0.01)  # absolute, not 0.1 * 0.01


def test_cosine_after_warmup():
  s = optimizers.make_schedule(0.02, total_steps=110, warmup_steps=10,
                               decay="cosine")
  assert _lr(s, 10) == pytest.approx(0.02)
  assert _lr(s, 60) == pytest.approx(0.01)  # midpoint of 100 decay steps
  assert _lr(s, 35) == pytest.approx(0.02 * 0.5 * (1 + math.cos(math.pi / 4)))
  assert _lr(s, 110) == pytest.approx(0.0, abs=1e-9)
  assert _lr(s, 500) == pytest.approx(0.0, abs=1e-9)  # no restart
  e = optimizers.make_schedule(1.0, total_steps=10, decay="cosine",
                               end_factor=0.2)
  assert _lr(e, 5) == pytest.approx(0.2 + 0.8 * 0.5)


def test_exponential_staircase_and_smooth():
  s = optimizers.make_schedule(0.01, decay="exponential", decay_rate=0.1,
                               decay_steps=6600)
  assert _lr(s, 6599) == pytest.approx(0.01)
  assert _lr(s, 6600) == pytest.approx(0.001)
  assert _lr(s, 13300) == pytest.approx(0.0001)
  smooth = optimizers.make_schedule(1.0, decay="exponential", decay_rate=0.1,
                                    decay_steps=10, staircase=False)
  assert _lr(smooth, 5) == pytest.approx(0.1**0.5)


def test_schedule_serialises():
  s = optimizers.make_schedule(0.01, total_steps=50, warmup_steps=5,
                               decay="piecewise", decay_events=(30,),
                               decay_factors=(0.1,))
  config = keras.saving.serialize_keras_object(s)
  back = keras.saving.deserialize_keras_object(config)
  assert isinstance(back, optimizers.UnlocSchedule)
  assert back.get_config() == s.get_config()
  for step in (0, 3, 10, 31):
    assert _lr(back, step) == _lr(s, step)
  opt = optimizers.make_optimizer(learning_rate=s,
                                  lr_multipliers={"*_head": 10.0})
  opt2 = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
  assert isinstance(opt2, optimizers.OptaxSGD)
  assert opt2.lr_multipliers == {"*_head": 10.0}
  assert opt2.global_clipnorm == 1.0


def test_schedule_argument_errors():
  with pytest.raises(ValueError, match="one factor per event"):
    optimizers.make_schedule(decay="piecewise", decay_events=(1, 2),
                             decay_factors=(0.1,))
  with pytest.raises(ValueError, match="decay must be"):
    optimizers.make_schedule(decay="linear")
  with pytest.raises(ValueError, match="total_steps"):
    optimizers.make_schedule(total_steps=5, warmup_steps=5, decay="cosine")


# ---------------------------------------------------------------------------
# OptaxSGD.
# ---------------------------------------------------------------------------
def _run(opt, grads_per_step, w0):
  w = keras.Variable(np.array(w0, np.float32), name="w")
  out = []
  for g in grads_per_step:
    opt.apply([tf.constant(g, tf.float32)], [w])
    out.append(w.numpy().copy())
  return out


def test_optax_sgd_momentum_trace_with_changing_lr():
  grads = [[1.0, -2.0], [0.5, 0.5], [-1.0, 3.0]]
  lrs = [0.0, 0.05, 0.1]  # warm-up 2: the first update has LR 0
  schedule = optimizers.make_schedule(0.1, warmup_steps=2)
  opt = optimizers.OptaxSGD(learning_rate=schedule, momentum=0.9)
  got = _run(opt, grads, [1.0, 1.0])
  # optax.sgd: m <- g + 0.9 m ; w <- w - lr_t m.
  w, m, want = np.ones(2), np.zeros(2), []
  for g, lr in zip(grads, lrs):
    m = np.asarray(g) + 0.9 * m
    w = w - lr * m
    want.append(w.copy())
  np.testing.assert_allclose(got, want, rtol=1e-6)
  # Keras SGD folds each LR into its velocity: a different trajectory.
  keras_sgd = keras.optimizers.SGD(learning_rate=schedule, momentum=0.9)
  other = _run(keras_sgd, grads, [1.0, 1.0])
  assert np.abs(np.asarray(other[-1]) - want[-1]).max() > 1e-3
  assert int(opt.iterations.numpy()) == 3
  assert optimizers.current_learning_rate(opt) == pytest.approx(0.1)


def test_optax_sgd_nesterov_and_plain():
  grads = [[1.0], [2.0]]
  got = _run(optimizers.OptaxSGD(0.1, momentum=0.9, nesterov=True), grads,
             [0.0])
  m1 = 1.0
  w1 = -0.1 * (1.0 + 0.9 * m1)
  m2 = 2.0 + 0.9 * m1
  w2 = w1 - 0.1 * (2.0 + 0.9 * m2)
  np.testing.assert_allclose(np.ravel(got), [w1, w2], rtol=1e-6)
  plain = _run(optimizers.OptaxSGD(0.1, momentum=0.0), grads, [0.0])
  np.testing.assert_allclose(np.ravel(plain), [-0.1, -0.3], rtol=1e-6)


def test_sparse_gradients_match_dense():
  table = np.arange(12, dtype=np.float32).reshape(4, 3)
  dense_g = np.zeros_like(table)
  dense_g[[1, 3]] = [[1, 2, 3], [4, 5, 6]]
  sparse = tf.IndexedSlices(tf.constant(dense_g[[1, 3]]),
                            tf.constant([1, 3]), tf.constant([4, 3]))
  results = []
  for g in (tf.constant(dense_g), sparse):
    v = keras.Variable(table.copy(), name="emb")
    opt = optimizers.make_optimizer(learning_rate=0.1, global_clipnorm=5.0)
    opt.apply([g], [v])
    opt.apply([g], [v])
    results.append(v.numpy())
  np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
  assert not np.allclose(results[0], table)


def test_global_norm_clipping_by_hand():
  a = keras.Variable(np.zeros(2, np.float32), name="a")
  b = keras.Variable(np.zeros(1, np.float32), name="b")
  opt = optimizers.make_optimizer(learning_rate=1.0, momentum=0.0,
                                  global_clipnorm=1.0)
  opt.apply([tf.constant([3.0, 4.0]), tf.constant([12.0])], [a, b])
  # Global norm 13 -> every gradient scaled by 1/13.
  np.testing.assert_allclose(a.numpy(), [-3 / 13, -4 / 13], rtol=1e-6)
  np.testing.assert_allclose(b.numpy(), [-12 / 13], rtol=1e-6)
  opt.apply([tf.constant([0.3, 0.4]), tf.constant([0.0])], [a, b])
  # Norm 0.5 < 1: untouched.
  np.testing.assert_allclose(a.numpy(), [-3 / 13 - 0.3, -4 / 13 - 0.4],
                             rtol=1e-6)


# ---------------------------------------------------------------------------
# Per-prefix learning rates.
# ---------------------------------------------------------------------------
def test_multiplier_moves_fusion_ten_times_the_tower():
  model = _tiny()
  before = {k: v.numpy().copy() for k, v in _by_name(model).items()}
  opt = optimizers.make_optimizer(
      learning_rate=0.01, global_clipnorm=None,
      lr_multipliers=optimizers.REFERENCE_LR_MULTIPLIERS)
  grads = [tf.ones_like(v) for v in model.trainable_variables]
  opt.apply(grads, model.trainable_variables)
  opt.apply(grads, model.trainable_variables)  # momentum trace too
  moved = {k: np.abs(v.numpy() - before[k]).max()
           for k, v in _by_name(model).items()}
  # float32 weights of magnitude ~1: differences are exact to ~1e-7.
  assert moved["image_encoder/kernel"] == pytest.approx(0.01 * 2.9, rel=1e-4)
  assert moved["video_text_fusion/kernel"] == pytest.approx(
      10 * moved["image_encoder/kernel"], rel=1e-4)
  assert moved["temporal_localization_head/bias"] == pytest.approx(
      10 * moved["image_encoder/bias"], rel=1e-4)


def test_multiplier_with_adamw_and_weight_decay():
  model = _tiny()
  opt = optimizers.make_optimizer("adamw", learning_rate=0.01,
                                  weight_decay=0.5,
                                  lr_multipliers={"video_text_fusion": 10.0})
  fusion = _by_name(model)["video_text_fusion/kernel"]
  tower = _by_name(model)["image_encoder/kernel"]
  fusion.assign(np.ones((3, 2), np.float32))
  tower.assign(np.ones((3, 2), np.float32))
  grads = [tf.zeros_like(v) for v in model.trainable_variables]
  opt.apply(grads, model.trainable_variables)
  # Zero gradient: only the decoupled decay w * wd * lr * factor acts.
  np.testing.assert_allclose(tower.numpy(), 1 - 0.5 * 0.01, rtol=1e-6)
  np.testing.assert_allclose(fusion.numpy(), 1 - 0.5 * 0.1, rtol=1e-6)


def test_lr_factor_matching_rules():
  m = {"video_text_fusion": 10.0, "*_head": 5.0,
       "video_text_fusion/feature_pyramid": 2.0}
  f = optimizers.lr_factor
  assert f("model/video_text_fusion/encoderblock_0/x/kernel", m) == 10.0
  assert f("model_1/video_text_fusion/feature_pyramid/conv/kernel", m) == 2.0
  assert f("model/moment_retrieval_head/conv0/kernel", m) == 5.0
  assert f("model/video_text_fusion_extra/kernel", m) == 1.0  # components
  assert f("model/image_encoder/ln_pre/gamma", m) == 1.0


def test_unmatched_prefix_is_an_error():
  model = _tiny()
  opt = optimizers.make_optimizer(lr_multipliers={"fusion": 10.0})
  with pytest.raises(ValueError, match="match no trainable variable"):
    opt.build(model.trainable_variables)
