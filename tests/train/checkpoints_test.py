"""Checkpointer round trips, best checkpoint, and init from other checkpoints
with the §7.3 shape adaptations."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.layers import clip_image_encoder
from unloc_tf.tasks import action_localizer, moment_retriever
from unloc_tf.train import checkpoints, optimizers

L = 6


def _pyr(n0):
  return spec.PyramidSpec(n0, num_levels=2,
                          regression_ranges=((0, 4), (4, np.inf)))


def _batch(n0, image_size, num_text=3, task=spec.TAL, text_len=L):
  rng = np.random.default_rng(n0)
  t_tot = _pyr(n0).total_tokens
  ids = np.zeros((2, num_text, text_len), np.int32)
  ids[..., 0], ids[..., 1], ids[..., 2] = 49406, 320, 49407
  x = {spec.FRAMES: rng.integers(0, 255, (2, n0, image_size, image_size, 3),
                                 dtype=np.uint8),
       spec.FRAME_MASK: np.ones((2, n0), np.int32),
       spec.TEXT_IDS: ids, spec.TEXT_MASK: (ids > 0).astype(np.int32),
       spec.TEXT_VALID: np.ones((2, num_text), np.int32)}
  if task == spec.TAL:
    x[spec.LABELS] = np.zeros((2, t_tot, num_text), np.int32)
    x[spec.LABELS][:, 1:3, 0] = 1
    x[spec.DISPLACEMENTS] = np.ones((2, t_tot, num_text, 2), np.float32)
  else:
    x[spec.LABELS] = np.zeros((2, num_text, t_tot), np.int32)
    x[spec.LABELS][:, :, 1:3] = 1
    x[spec.DISPLACEMENTS] = np.ones((2, num_text, t_tot, 2), np.float32)
  return {k: tf.constant(v) for k, v in x.items()}


def _tal(n0=8, image_size=32, text_len=L, **kwargs):
  model = fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", pyramid_spec=_pyr(n0),
      num_conv_layers=1,
      image_size=image_size, text_max_length=text_len, **kwargs)
  model(_batch(n0, image_size, text_len=text_len))
  return model


def _small_tal():
  """No towers (cached frame and class-name embeddings): quick to train."""
  model = fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", pyramid_spec=_pyr(8),
      num_conv_layers=1,
      input_mode="embeddings", text_input="embeddings")
  model(_small_batch())
  return model


def _small_batch():
  x = dict(_batch(8, 32))
  rng = np.random.default_rng(1)
  for k in (spec.FRAMES, spec.TEXT_IDS, spec.TEXT_MASK):
    del x[k]
  x[spec.FRAME_EMBEDDINGS] = tf.constant(rng.normal(size=(2, 8, 12)),
                                         tf.float32)
  x[spec.TEXT_EMBEDDINGS] = tf.constant(rng.normal(size=(2, 3, 10)),
                                        tf.float32)
  return x


def _values(model):
  return {k: keras.ops.convert_to_numpy(v).copy()
          for k, v in checkpoints.variables_by_path(model).items()}


def test_round_trip_model_optimizer_and_iterator(tmp_path):
  tf.keras.utils.set_random_seed(0)
  model = _small_tal()
  opt = optimizers.make_optimizer(learning_rate=optimizers.make_schedule(
      0.01, warmup_steps=2))
  data = tf.data.Dataset.range(1000).shuffle(50, seed=3).map(
      lambda i: tf.cast(i, tf.float32) * 0.001).batch(4).prefetch(2)
  it = iter(data)
  x = _small_batch()

  def step():
    offset = next(it)
    with tf.GradientTape() as tape:
      batch = dict(x, displacements=x[spec.DISPLACEMENTS] + offset[0])
      loss = model.compute_loss(x=batch, y_pred=model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply(grads, model.trainable_variables)

  step()
  step()
  ck = checkpoints.Checkpointer(str(tmp_path / "checkpoints"), model, opt, it)
  assert ck.restore_latest() == 0  # nothing yet
  path = ck.save(2)
  assert os.path.basename(path) == "ckpt-2"
  weights, slots = _values(model), [v.numpy().copy() for v in opt.variables]
  next_batch = next(it).numpy()
  step()  # moves weights, slots, the step and the iterator on
  assert int(opt.iterations.numpy()) == 3

  # A new process: fresh model, optimizer and iterator.
  tf.keras.utils.set_random_seed(1)
  model2 = _small_tal()
  opt2 = optimizers.make_optimizer(learning_rate=optimizers.make_schedule(
      0.01, warmup_steps=2))
  opt2.build(model2.trainable_variables)
  it2 = iter(data)
  ck2 = checkpoints.Checkpointer(str(tmp_path / "checkpoints"), model2, opt2,
                                 it2)
  assert ck2.restore_latest() == 2
  assert int(opt2.iterations.numpy()) == 2
  got = _values(model2)
  for k, v in weights.items():
    np.testing.assert_array_equal(got[k], v, err_msg=k)
  assert any(np.abs(s).sum() > 0 for s in slots[2:])  # momentum is set
  for a, b in zip(slots, [v.numpy() for v in opt2.variables]):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(next(it2).numpy(), next_batch)
  assert optimizers.current_learning_rate(opt2) == pytest.approx(0.01)


def test_restore_partial_adapts_and_keeps_missing(tmp_path):
  tf.keras.utils.set_random_seed(0)
  src = _tal(n0=8, image_size=32, text_len=6)
  checkpoints.Checkpointer(str(tmp_path / "src"), src).save(7)
  # Other N0 (16), image size (64: 4x4 patches), text length (4), task head.
  dst = fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=_pyr(16),
      num_conv_layers=1, image_size=64,
      text_max_length=4)
  dst(_batch(16, 64, num_text=1, task=spec.MR, text_len=4))
  before = _values(dst)
  report = checkpoints.restore_partial(dst, str(tmp_path / "src"))
  s, d = _values(src), _values(dst)

  assert sorted(report["adapted"]) == [
      "image_encoder/class_embedding", "image_encoder/position_embedding",
      "text_encoder/position_embedding"]
  cls_src = s["image_encoder/class_embedding"]
  cls_dst = d["image_encoder/class_embedding"]
  assert cls_dst.shape == (16, 64)
  positions = np.arange(16) * 7 / 15
  for col in (0, 17, 63):
    np.testing.assert_allclose(
        cls_dst[:, col], np.interp(positions, np.arange(8), cls_src[:, col]),
        rtol=1e-5, atol=1e-7)
  pos_dst = d["image_encoder/position_embedding"]
  np.testing.assert_array_equal(
      pos_dst, clip_image_encoder.adapt_position_embedding(
          s["image_encoder/position_embedding"], 17, has_cls=True))
  np.testing.assert_array_equal(pos_dst[0],
                                s["image_encoder/position_embedding"][0])
  np.testing.assert_array_equal(d["text_encoder/position_embedding"],
                                s["text_encoder/position_embedding"][:4])
  for k in ("video_text_fusion/encoderblock_1/MlpBlock_0/Dense_0/kernel",
            "text_encoder/token_embedding/embeddings",
            "video_projection/kernel"):
    assert k in report["loaded"]
    np.testing.assert_array_equal(d[k], s[k])
  head = [k for k in d if k.startswith("moment_retrieval_head/")]
  assert head and sorted(report["missing"]) == sorted(head)
  for k in head:  # a new head keeps its initial values
    np.testing.assert_array_equal(d[k], before[k])
  assert report["unused"] and all(
      k.startswith("temporal_localization_head/") for k in report["unused"])

  # Text positions extended: the extra rows keep their own values.
  longer = _tal(n0=8, image_size=32, text_len=9)
  init = _values(longer)["text_encoder/position_embedding"]
  checkpoints.restore_partial(longer, str(tmp_path / "src"),
                              skip_regex="^video_text_fusion/")
  pos = _values(longer)["text_encoder/position_embedding"]
  np.testing.assert_array_equal(pos[:6],
                                s["text_encoder/position_embedding"])
  np.testing.assert_array_equal(pos[6:], init[6:])


def test_restore_partial_shape_mismatch_lists_variables(tmp_path):
  tf.keras.utils.set_random_seed(0)
  src = _tal()
  checkpoints.Checkpointer(str(tmp_path / "src"), src).save(1)
  wider = _tal(fusion_overrides={"mlp_dim": 96})
  before = _values(wider)
  with pytest.raises(ValueError) as e:
    checkpoints.restore_partial(wider, str(tmp_path / "src"))
  msg = str(e.value)
  assert "shape mismatch" in msg and "6 variable(s)" in msg  # Dense_0 kernel+bias, Dense_1 kernel, x2
  assert ("video_text_fusion/encoderblock_0/MlpBlock_0/Dense_0/kernel:"
          " " + str(tmp_path / "src" / "ckpt-1") + " has shape (64, 128),"
          " the model (64, 96)") in msg
  for k, v in _values(wider).items():  # nothing assigned
    np.testing.assert_array_equal(v, before[k])
  # Adaptations off: the CLS table of another length is an error too.
  other = _tal(n0=16)
  with pytest.raises(ValueError, match="image_encoder/class_embedding"):
    checkpoints.restore_partial(other, str(tmp_path / "src"),
                                adapt_shapes=False)


def test_load_weights_npz(tmp_path):
  tf.keras.utils.set_random_seed(0)
  src = _tal()
  path = str(tmp_path / "w.npz")
  checkpoints.save_weights_npz(src, path)
  dst = _tal(n0=16)
  report = checkpoints.load_weights_npz(dst, path)
  assert report["adapted"] == ["image_encoder/class_embedding"]
  assert not report["missing"] and not report["unused"]
  s, d = _values(src), _values(dst)
  np.testing.assert_array_equal(d["video_projection/kernel"],
                                s["video_projection/kernel"])
  # A flattened (p*p*3, D) patch kernel (the reference's Dense) reshapes.
  with np.load(path) as f:
    arrays = dict(f)
  key = [k for k in arrays if k.endswith("patch_embedding/kernel")][0]
  arrays[key] = arrays[key].reshape(-1, 64)
  bad = [k for k in arrays if k.endswith("ln_post/gamma")][0]
  arrays[bad] = np.ones(65, np.float32)
  np.savez(path, **arrays)
  with pytest.raises(ValueError, match=r"ln_post/gamma: .* has shape \(65,\)"):
    checkpoints.load_weights_npz(dst, path)
  del arrays[bad]
  np.savez(path, **arrays)
  report = checkpoints.load_weights_npz(dst, path)
  assert "image_encoder/patch_embedding/kernel" in report["adapted"]
  np.testing.assert_array_equal(
      _values(dst)["image_encoder/patch_embedding/kernel"],
      s["image_encoder/patch_embedding/kernel"])


def test_save_best_keeps_one_checkpoint(tmp_path):
  tf.keras.utils.set_random_seed(0)
  model = _tal()
  ck = checkpoints.Checkpointer(str(tmp_path / "checkpoints"), model)
  assert ck.save_best(1, "r1", 0.5)
  kernel = model.trainable_variables[0]
  kernel.assign(kernel + 1.0)
  assert not ck.save_best(2, "r1", 0.4)
  assert ck.save_best(3, "r1", 0.7)
  assert not ck.save_best(4, "r1", float("nan"))
  best_dir = tmp_path / "best"
  info = json.load(open(best_dir / "best.json"))
  assert info == {"step": 3, "metric": "r1", "value": 0.7, "mode": "max",
                  "checkpoint": "ckpt-3"}
  assert sorted(os.listdir(best_dir)) == [
      "best.json", "ckpt-3.data-00000-of-00001", "ckpt-3.index"]
  other = _tal()
  checkpoints.restore_partial(other, str(best_dir))
  np.testing.assert_array_equal(other.trainable_variables[0].numpy(),
                                kernel.numpy())
  with pytest.raises(ValueError, match="tracks 'r1'"):
    ck.save_best(5, "loss", 0.1, mode="min")
