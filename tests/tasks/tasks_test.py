"""Task models on tiny configs: shapes per task and mode, losses, freezing,
XLA, and .keras save/load."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.tasks import (
  action_localizer,
  action_segmenter,
  moment_retriever,
  video_text_classifier,
)

N0, B, L, C, K = 8, 2, 6, 3, 2
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 2),
                                                            (2, np.inf)))
T_TOT = PYR.total_tokens
SMALL = dict(image_size=32, text_max_length=L)


def _ids(n):
  rng = np.random.default_rng(n)
  ids = np.zeros((n, L), np.int32)
  for i in range(n):
    m = 2 + i % (L - 2)
    ids[i, 1:m] = rng.integers(1, 400, m - 1)
    ids[i, 0], ids[i, m] = 49406, 49407
  return ids


def batch(task, mode="frames", text="tokens", num_text=C):
  rng = np.random.default_rng(0)
  x = {spec.FRAME_MASK: np.ones((B, N0), np.int32)}
  if mode == "frames":
    x[spec.FRAMES] = rng.integers(0, 255, (B, N0, 32, 32, 3)).astype(np.uint8)
  else:
    x[spec.FRAME_EMBEDDINGS] = rng.normal(size=(B, N0, 12)).astype(np.float32)
  if text == "tokens":
    ids = np.stack([_ids(num_text)] * B)
    if task in (spec.MR, spec.HD):
      ids = _ids(B * num_text).reshape(B, num_text, L)
    x[spec.TEXT_IDS] = ids
    x[spec.TEXT_MASK] = (ids > 0).astype(np.int32)
  elif text == "embeddings":
    x[spec.TEXT_EMBEDDINGS] = rng.normal(size=(B, num_text, 10)).astype(
        np.float32)
  x[spec.TEXT_VALID] = np.ones((B, num_text), np.int32)
  if task in (spec.TAL, spec.HD):
    c = num_text if task == spec.TAL else 1
    lab = np.zeros((B, T_TOT, c), np.int32)
    lab[:, 2:5, 0] = 1
    x[spec.LABELS] = lab
    x[spec.DISPLACEMENTS] = rng.uniform(0, 3, (B, T_TOT, c, 2)).astype(
        np.float32)
  elif task == spec.MR:
    lab = np.zeros((B, num_text, T_TOT), np.int32)
    lab[:, :, 1:4] = 1
    x[spec.LABELS] = lab
    x[spec.DISPLACEMENTS] = rng.uniform(0, 3, (B, num_text, T_TOT, 2)).astype(
        np.float32)
  elif task == spec.AS:
    lab = np.zeros((B, N0, num_text), np.int32)
    lab[:, :3, 1] = 1
    x[spec.LABELS] = lab
  else:
    lab = np.zeros((B, num_text), np.int32)
    lab[:, 0] = 1
    x[spec.LABELS] = lab
  return {k: tf.constant(v) for k, v in x.items()}


def _tal(**kw):
  args = dict(pyramid_spec=PYR, num_conv_layers=2, **SMALL)
  args.update(kw)
  return fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", **args)


@pytest.mark.parametrize("mode", ["frames", "embeddings"])
@pytest.mark.parametrize("text", ["tokens", "embeddings"])
def test_tal_shapes_and_loss(mode, text):
  model = _tal(input_mode=mode, text_input=text)
  x = batch(spec.TAL, mode, text)
  out = model(x)
  assert out["logits"].shape == (B, T_TOT, C)
  assert out["displacements"].shape == (B, T_TOT, C, 2)
  assert out["token_mask"].shape == (B, T_TOT)
  loss = model.compute_loss(x=x, y_pred=out)
  assert np.isfinite(loss.numpy()) and loss.numpy() > 0


@pytest.mark.parametrize("fusion", ["late", "video_only"])
def test_tal_paper_variants(fusion):
  model = _tal(input_mode="embeddings", fusion=fusion, num_classes=C)
  x = batch(spec.TAL, "embeddings")
  if fusion == "video_only":
    x = {k: v for k, v in x.items() if not k.startswith("text")}
  out = model(x)
  assert out["logits"].shape == (B, T_TOT, C)
  assert out["displacements"].shape == (B, T_TOT, C, 2)
  assert np.isfinite(model.compute_loss(x=x, y_pred=out).numpy())


def test_tal_all_text_tokens_and_fpn():
  model = _tal(input_mode="embeddings", text_mode="all_tokens",
               pyramid="fpn", fpn_layer_indices=(0, 1))
  x = batch(spec.TAL, "embeddings")
  assert model(x)["logits"].shape == (B, T_TOT, C)


def test_zero_shot_any_class_list():
  model = _tal(input_mode="embeddings")
  for c in (1, 5):
    x = batch(spec.TAL, "embeddings", num_text=c)
    assert model(x)["logits"].shape == (B, T_TOT, c)


def test_hd_pairs_video_with_its_query():
  model = _tal(task=spec.HD, input_mode="embeddings")
  x = batch(spec.HD, "embeddings", num_text=1)
  out = model(x)
  assert out["logits"].shape == (B, T_TOT, 1)
  # Video 0's output does not depend on video 1's query.
  ids = x[spec.TEXT_IDS].numpy().copy()
  ids[1, 0, 1] = 77
  x2 = dict(x, **{spec.TEXT_IDS: tf.constant(ids)})
  out2 = model(x2)
  np.testing.assert_allclose(out["logits"][0], out2["logits"][0], atol=1e-5)
  assert not np.allclose(out["logits"][1], out2["logits"][1])


@pytest.mark.parametrize("all_pairs", [True, False])
def test_mr_shapes_and_loss(all_pairs):
  model = fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=PYR,
      input_mode="embeddings", all_pairs=all_pairs,
      num_conv_layers=2, **SMALL)
  x = batch(spec.MR, "embeddings", num_text=K)
  out = model(x, training=True)
  assert out["logits"].shape == (B, K, T_TOT)
  assert out["displacements"].shape == (B, K, T_TOT, 2)
  if all_pairs:
    assert out["pair_logits"].shape == (B, B, K, T_TOT)
    # The diagonal of the pair logits is each video's own captions.
    np.testing.assert_allclose(
        tf.stack([out["pair_logits"][i, i] for i in range(B)]),
        out["logits"], atol=1e-6)
  ev = model(x, training=False)
  np.testing.assert_allclose(ev["logits"], out["logits"], atol=1e-4)
  assert np.isfinite(model.compute_loss(x=x, y_pred=out).numpy())


def test_as_and_classification_shapes():
  seg = fixtures.build_task(
      action_segmenter.build_action_segmenter, "tiny", num_frames=N0,
      input_mode="embeddings", **SMALL)
  x = batch(spec.AS, "embeddings")
  out = seg(x)
  assert out["logits"].shape == (B, N0, C)
  assert np.isfinite(seg.compute_loss(x=x, y_pred=out).numpy())
  cls = fixtures.build_task(
      video_text_classifier.build_video_text_classifier, "tiny", num_frames=N0,
      input_mode="embeddings", **SMALL)
  x = batch(spec.CLS, "embeddings")
  out = cls(x)
  assert out["logits"].shape == (B, C)
  assert np.isfinite(cls.compute_loss(x=x, y_pred=out).numpy())


def test_padded_frames_do_not_change_real_outputs():
  """AS window: frames beyond the video are masked out of the fusion."""
  seg = fixtures.build_task(
      action_segmenter.build_action_segmenter, "tiny", num_frames=N0,
      input_mode="embeddings", **SMALL)
  x = batch(spec.AS, "embeddings")
  mask = np.ones((B, N0), np.int32)
  mask[:, 5:] = 0
  x = dict(x, **{spec.FRAME_MASK: tf.constant(mask)})
  emb = x[spec.FRAME_EMBEDDINGS].numpy().copy()
  out1 = seg(x)["logits"].numpy()
  emb[:, 5:] = 123.0
  out2 = seg(dict(x, **{spec.FRAME_EMBEDDINGS: tf.constant(emb)}))[
      "logits"].numpy()
  np.testing.assert_allclose(out1[:, :5], out2[:, :5], atol=1e-5)


def test_freezing_stops_tower_gradients_but_trains_projection():
  model = _tal(freeze_image_encoder=True, freeze_text_encoder=True)
  x = batch(spec.TAL)
  model(x)
  opt = keras.optimizers.SGD(0.1)
  before = {v.path: v.numpy().copy() for v in model.trainable_variables}
  with tf.GradientTape() as tape:
    loss = model.compute_loss(x=x, y_pred=model(x, training=True))
  grads = tape.gradient(loss, model.trainable_variables)
  opt.apply_gradients(zip(grads, model.trainable_variables))
  changed = {v.path for v in model.trainable_variables
             if not np.array_equal(before[v.path], v.numpy())}
  tower = [p for p in before if "image_encoder" in p or "text_encoder" in p]
  assert tower and not changed & set(tower)
  assert any("video_projection" in p for p in changed)
  assert any("text_projection" in p for p in changed)


def test_xla_matches_eager():
  model = _tal()
  x = batch(spec.TAL)
  eager = model(x)["logits"].numpy()
  xla = tf.function(lambda b: model(b)["logits"], jit_compile=True)(x)
  np.testing.assert_allclose(eager, xla.numpy(), atol=1e-4)

  @tf.function(jit_compile=True)
  def step(b):
    with tf.GradientTape() as tape:
      loss = model.compute_loss(x=b, y_pred=model(b, training=True))
    return loss, tape.gradient(loss, model.trainable_variables)

  loss, grads = step(x)
  assert np.isfinite(loss.numpy())
  assert all(g is not None for g in grads)


@pytest.mark.parametrize("which", ["tal", "mr"])
def test_keras_save_load_round_trip(tmp_path, which):
  if which == "tal":
    model = _tal(input_mode="embeddings")
    x = batch(spec.TAL, "embeddings")
  else:
    model = fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=PYR,
      input_mode="embeddings", num_conv_layers=2,
        **SMALL)
    x = batch(spec.MR, "embeddings", num_text=K)
  out = model(x)["logits"].numpy()
  path = str(tmp_path / "m.keras")
  model.save(path)
  loaded = keras.saving.load_model(path)
  np.testing.assert_allclose(loaded(x)["logits"].numpy(), out, atol=1e-6)
  # Tuples come back as lists; compare the JSON form.
  assert json.dumps(loaded.get_config(), sort_keys=True) == json.dumps(
      model.get_config(), sort_keys=True)
