"""Tests of the video-text fusion transformer (reference_spec.md §2.5-§2.7)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from tests import test_case
from unloc_tf.layers import fusion as fusion_lib
from unloc_tf.ops import masks, position

B, N0, D, NT, LT = 2, 8, 8, 3, 4
LEVELS = 3
T_TOT = 8 + 4 + 2


def _fusion(**kw):
  args = dict(hidden_dim=D, num_layers=3, num_heads=2, mlp_dim=16,
              num_levels=LEVELS, fpn_layer_indices=(0, 1, 2))
  args.update(kw)
  if args.get("pyramid") == "none":
    args["num_levels"] = 1
  return fusion_lib.VideoTextFusion(**args)


def _inputs(text_mode, pairing, seed=0, n0=N0):
  rng = np.random.default_rng(seed)
  video = rng.normal(size=(B, n0, D)).astype(np.float32)
  vmask = np.ones((B, n0), np.int32)
  nt = NT if pairing == "all" else B
  text, tmask = None, None
  if text_mode == "pooled":
    text = rng.normal(size=(nt, D)).astype(np.float32)
  elif text_mode == "all_tokens":
    text = rng.normal(size=(nt, LT, D)).astype(np.float32)
    tmask = np.ones((nt, LT), np.int32)
    tmask[0, 2:] = 0
    tmask[-1, 3:] = 0
  return video, vmask, text, tmask


def _randomize(layer, seed=0):
  rng = np.random.default_rng(seed)
  layer.set_weights([
      (1.0 if w.path.endswith("gamma") else 0.0)
      + 0.3 * rng.normal(size=w.shape).astype(np.float32)
      for w in layer.weights])


# ---------------------------------------------------------------------------
# Shapes, masks, outputs of every mode.
# ---------------------------------------------------------------------------
COMBOS = [(t, p, y) for t, p, y in itertools.product(
    ("pooled", "all_tokens", "none"), ("all", "paired"),
    ("simple", "fpn", "none")) if not (t == "none" and p == "paired")]


@pytest.mark.parametrize("text_mode,pairing,pyramid", COMBOS)
def test_output_shapes(text_mode, pairing, pyramid):
  f = _fusion(text_mode=text_mode, pyramid=pyramid)
  video, vmask, text, tmask = _inputs(text_mode, pairing)
  vmask[1, 5:] = 0
  out = f(video, vmask, text=text, text_mask=tmask, pairing=pairing)
  nt = NT if (pairing == "all" and text_mode != "none") else 1
  t_tot = N0 if pyramid == "none" else T_TOT
  assert out["tokens"].shape == (B, nt, t_tot, D)
  assert out["mask"].shape == (B, nt, t_tot)
  assert out["mask"].dtype == tf.int32
  assert out["text"].shape == (B, nt, D)
  assert f.total_tokens(N0) == t_tot
  want_mask = masks.pyramid_masks(vmask, 1 if pyramid == "none" else LEVELS)
  for j in range(nt):
    np.testing.assert_array_equal(out["mask"][:, j].numpy(), want_mask)
  if pyramid != "none":
    np.testing.assert_array_equal(
        out["mask"][1, 0].numpy(), [1] * 5 + [0] * 3 + [1] * 3 + [0] + [1, 1])
  assert np.all(np.isfinite(out["tokens"].numpy()))
  if text_mode == "none":
    assert np.all(out["text"].numpy() == 0)
  else:
    assert np.abs(out["text"].numpy()).max() > 0


# ---------------------------------------------------------------------------
# Vectorised = the reference's per-text loop.
# ---------------------------------------------------------------------------
def _reference_one(f, video, vmask, tok, tmask):
  """One reference encoder run: video [b, N0, D] with tokens [b, Lt', D]."""
  n0 = video.shape[1]
  levels = f.output_levels
  x = tf.concat([video, tok], axis=1)
  x = x + position.sinusoid_position_embedding(x.shape[1], D)[None]
  # The reference splits a [b, T_tot] input mask per level and appends the
  # text mask to each level's mask.
  full = masks.pyramid_masks(vmask, levels)
  sizes = [n0 // 2**l for l in range(levels)]
  level_masks = [tf.concat([m, tmask], axis=1)
                 for m in tf.split(full, sizes, axis=1)]
  num_text = tok.shape[1]
  if f.pyramid == "fpn":
    xs, level = [], 0
    for i, block in enumerate(f.blocks):
      x = block(x, key_mask=level_masks[level])
      if i in f.fpn_layer_indices:
        xs.append(x[:, :-num_text])
        level += 1
        if i < f.num_layers - 1:
          pooled = tf.nn.max_pool1d(x[:, :-num_text], 2, 2, "VALID")
          x = tf.concat([pooled, x[:, -num_text:]], axis=1)
    video_levels = f.feature_pyramid(xs)
  else:
    for block in f.blocks:
      x = block(x, key_mask=level_masks[0])
    if f.pyramid == "none":
      x = f.feature_pyramid.encoder_norm(x)
      video_levels = [x[:, :n0]]
    else:
      video_levels = f.feature_pyramid(x[:, :n0])
  text_states = x[:, -num_text:]
  w = tf.cast(tmask, tf.float32)[..., None]
  text_emb = tf.reduce_sum(text_states * w, 1) / tf.reduce_sum(w, 1)
  return tf.concat(video_levels, axis=1).numpy(), text_emb.numpy()


def _reference_loop(f, video, vmask, text, tmask, pairing):
  pooled = f.text_mode == "pooled"
  if pairing == "paired":
    toks, texts = [], []
    for b in range(video.shape[0]):
      tok = text[b][None, None] if pooled else text[b][None]
      tm = np.ones((1, 1), np.int32) if pooled else tmask[b][None]
      t, e = _reference_one(f, video[b:b + 1], vmask[b:b + 1], tok, tm)
      toks.append(t)
      texts.append(e)
    return np.stack(toks, 0)[:, 0][:, None], np.stack(texts, 0)
  toks, texts = [], []
  for j in range(text.shape[0]):  # one run per text item, as jax.vmap
    tok = np.tile(text[j][None, None] if pooled else text[j][None],
                  [B, 1, 1])
    tm = np.ones((B, 1), np.int32) if pooled else np.tile(tmask[j][None],
                                                          [B, 1])
    t, e = _reference_one(f, video, vmask, tok, tm)
    toks.append(t)
    texts.append(e)
  return np.stack(toks, 1), np.stack(texts, 1)


@pytest.mark.parametrize("text_mode,pairing,pyramid", [
    ("pooled", "all", "simple"),
    ("all_tokens", "all", "fpn"),
    ("pooled", "all", "none"),
    ("all_tokens", "paired", "simple"),
    ("pooled", "paired", "fpn"),
])
def test_vectorised_equals_per_text_loop(text_mode, pairing, pyramid):
  f = _fusion(text_mode=text_mode, pyramid=pyramid)
  video, vmask, text, tmask = _inputs(text_mode, pairing, seed=1)
  vmask[0, 6:] = 0
  f(video, vmask, text=text, text_mask=tmask, pairing=pairing)
  _randomize(f, seed=2)
  out = f(video, vmask, text=text, text_mask=tmask, pairing=pairing)
  want_tokens, want_text = _reference_loop(f, video, vmask, text, tmask,
                                           pairing)
  np.testing.assert_allclose(out["tokens"].numpy(), want_tokens, atol=1e-5)
  np.testing.assert_allclose(out["text"].numpy(), want_text, atol=1e-5)
  if pairing == "all":  # Different text items give different tokens.
    assert np.abs(want_tokens[:, 0] - want_tokens[:, 1]).max() > 1e-3


# ---------------------------------------------------------------------------
# Padding does not leak into real tokens.
# ---------------------------------------------------------------------------
def test_padded_frames_video_only_sinusoid():
  f = _fusion(text_mode="none", pyramid="none")
  video, _, _, _ = _inputs("none", "all", seed=3)
  vmask = np.ones((B, N0), np.int32)
  vmask[:, 5:] = 0
  video[:, 5:] = 50.0  # garbage in the padded frames
  f(video, vmask)  # build
  _randomize(f, seed=4)
  padded = f(video, vmask)["tokens"].numpy()
  short = f(video[:, :5], vmask[:, :5])["tokens"].numpy()
  np.testing.assert_allclose(padded[:, :, :5], short, atol=1e-5)


def test_padded_frames_with_text_token():
  """The text token sits at position N0, so compare without posemb."""
  f = _fusion(text_mode="pooled", pyramid="none", position_embedding="none")
  video, _, text, _ = _inputs("pooled", "all", seed=5)
  vmask = np.ones((B, N0), np.int32)
  vmask[:, 5:] = 0
  video[:, 5:] = -30.0
  f(video, vmask, text=text)
  _randomize(f, seed=6)
  padded = f(video, vmask, text=text)
  short = f(video[:, :5], vmask[:, :5], text=text)
  np.testing.assert_allclose(padded["tokens"].numpy()[:, :, :5],
                             short["tokens"].numpy(), atol=1e-5)
  np.testing.assert_allclose(padded["text"].numpy(), short["text"].numpy(),
                             atol=1e-5)


def test_padded_text_tokens():
  f = _fusion(text_mode="all_tokens", pyramid="simple")
  video, vmask, text, tmask = _inputs("all_tokens", "all", seed=7)
  tmask[:, 3:] = 0  # every item: >= 1 trailing pad (item 0 has 2)
  text[tmask == 0] = 25.0  # garbage in the padded text tokens
  f(video, vmask, text=text, text_mask=tmask)
  _randomize(f, seed=8)
  padded = f(video, vmask, text=text, text_mask=tmask)
  short = f(video, vmask, text=text[:, :3], text_mask=tmask[:, :3])
  for key in ("tokens", "text"):
    np.testing.assert_allclose(padded[key].numpy(), short[key].numpy(),
                               atol=1e-5)


def test_padded_frames_through_simple_pyramid():
  """Same length, different garbage: level-0 tokens whose k=3 window is all
  real are unchanged; the last real one sees a padded neighbour (the
  reference does not mask the pyramid convolutions)."""
  f = _fusion(text_mode="pooled", pyramid="simple")
  video, _, text, _ = _inputs("pooled", "all", seed=9)
  vmask = np.ones((B, N0), np.int32)
  vmask[:, 5:] = 0
  f(video, vmask, text=text)
  _randomize(f, seed=10)
  a = f(video, vmask, text=text)
  video2 = video.copy()
  video2[:, 5:] = 40.0
  b = f(video2, vmask, text=text)
  np.testing.assert_allclose(a["tokens"].numpy()[:, :, :4],
                             b["tokens"].numpy()[:, :, :4], atol=1e-5)
  np.testing.assert_allclose(a["text"].numpy(), b["text"].numpy(), atol=1e-5)
  assert np.abs(a["tokens"].numpy()[:, :, 4]
                - b["tokens"].numpy()[:, :, 4]).max() > 1e-4


# ---------------------------------------------------------------------------
# Position embedding.
# ---------------------------------------------------------------------------
def test_sinusoid_added_once_over_video_and_text():
  sin = _fusion(text_mode="pooled", pyramid="simple")
  plain = _fusion(text_mode="pooled", pyramid="simple",
                  position_embedding="none")
  video, vmask, text, _ = _inputs("pooled", "all", seed=11)
  sin(video, vmask, text=text)
  plain(video, vmask, text=text)
  _randomize(sin, seed=12)
  plain.set_weights(sin.get_weights())
  pe = position.sinusoid_position_embedding(N0 + 1, D).numpy()
  a = sin(video, vmask, text=text)
  b = plain(video + pe[None, :N0], vmask, text=text + pe[N0][None])
  for key in a:
    np.testing.assert_allclose(a[key].numpy(), b[key].numpy(), atol=1e-5)


def test_learned_position_embedding():
  f = _fusion(text_mode="pooled", pyramid="simple",
              position_embedding="learned", max_length=12)
  plain = _fusion(text_mode="pooled", pyramid="simple",
                  position_embedding="none")
  video, vmask, text, _ = _inputs("pooled", "all", seed=13)
  f(video, vmask, text=text)
  plain(video, vmask, text=text)
  table = f.pos_embedding.numpy()
  assert table.shape == (12, D)
  assert 0.01 < table.std() < 0.04  # N(0, 0.02)
  f.pos_embedding.assign(np.zeros((12, D), np.float32))
  plain.set_weights([w for w in f.get_weights() if w.shape != (12, D)])
  a = f(video, vmask, text=text)
  b = plain(video, vmask, text=text)
  np.testing.assert_allclose(a["tokens"].numpy(), b["tokens"].numpy(),
                             atol=1e-6)
  with pytest.raises(ValueError, match="max_length"):
    _fusion(position_embedding="learned")
  short = _fusion(text_mode="pooled", pyramid="simple",
                  position_embedding="learned", max_length=5)
  with pytest.raises(ValueError, match="max_length"):
    short(video, vmask, text=text)


# ---------------------------------------------------------------------------
# fpn specifics, stochastic depth, dropout.
# ---------------------------------------------------------------------------
def test_fpn_level_lengths_and_downsampling_modes():
  outs = {}
  for mode in ("max_pool", "avg_pool", "subsample"):
    f = _fusion(text_mode="pooled", pyramid="fpn", fpn_downsample=mode)
    video, vmask, text, _ = _inputs("pooled", "all", seed=14)
    f(video, vmask, text=text)
    _randomize(f, seed=15)
    outs[mode] = f(video, vmask, text=text)["tokens"].numpy()
    assert outs[mode].shape == (B, NT, T_TOT, D)
  # The coarsest level is only reached through the downsampling mode.
  assert np.abs(outs["max_pool"][..., 12:, :]
                - outs["avg_pool"][..., 12:, :]).max() > 1e-3
  assert np.abs(outs["max_pool"][..., 12:, :]
                - outs["subsample"][..., 12:, :]).max() > 1e-3
  with pytest.raises(ValueError, match="fpn"):
    _fusion(pyramid="fpn", fpn_layer_indices=(0, 1))  # 2 indices, 3 levels
  with pytest.raises(ValueError, match="fpn"):
    _fusion(pyramid="fpn", fpn_layer_indices=(0, 1, 1))
  with pytest.raises(ValueError, match="fpn"):
    _fusion(pyramid="fpn", num_layers=4, fpn_layer_indices=(0, 1, 2))


def test_fpn_downsample_helper():
  x = tf.constant(np.arange(12, dtype=np.float32).reshape(1, 6, 2))
  np.testing.assert_array_equal(
      fusion_lib._downsample_tokens(x, "max_pool").numpy()[0],
      [[2, 3], [6, 7], [10, 11]])
  np.testing.assert_array_equal(
      fusion_lib._downsample_tokens(x, "avg_pool").numpy()[0],
      [[1, 2], [5, 6], [9, 10]])
  np.testing.assert_array_equal(
      fusion_lib._downsample_tokens(x, "subsample").numpy()[0],
      [[0, 1], [4, 5], [8, 9]])


def test_stochastic_depth_schedule_and_inference():
  f = _fusion(num_layers=3, stochastic_depth_rate=0.4, text_mode="pooled",
              pyramid="simple")
  assert [b.stochastic_depth_rate for b in f.blocks] == pytest.approx(
      [0.0, 0.2, 0.4])
  plain = _fusion(text_mode="pooled", pyramid="simple")
  video, vmask, text, _ = _inputs("pooled", "all", seed=16)
  f(video, vmask, text=text)
  plain(video, vmask, text=text)
  plain.set_weights(f.get_weights())
  a = f(video, vmask, text=text, training=False)
  b = plain(video, vmask, text=text)
  np.testing.assert_allclose(a["tokens"].numpy(), b["tokens"].numpy(),
                             atol=0)
  t = f(video, vmask, text=text, training=True)
  assert np.abs(t["tokens"].numpy() - b["tokens"].numpy()).max() > 1e-4


def test_bad_inputs():
  f = _fusion(text_mode="pooled", pyramid="simple")
  video, vmask, text, _ = _inputs("pooled", "all")
  with pytest.raises(ValueError, match="pairing"):
    f(video, vmask, text=text, pairing="some")
  with pytest.raises(ValueError, match="needs text"):
    f(video, vmask)
  with pytest.raises(ValueError, match="paired"):
    f(video, vmask, text=text, pairing="paired")  # 3 texts for 2 videos
  with pytest.raises(ValueError):
    _fusion(text_mode="tokens")
  g = _fusion(text_mode="none", pyramid="simple")
  with pytest.raises(ValueError, match="no text"):
    g(video, vmask, text=text)


# ---------------------------------------------------------------------------
# The shared layer checks (config, .keras file, XLA, one training step).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("text_mode,pairing,pyramid,extra", [
    ("pooled", "all", "simple", {}),
    ("all_tokens", "paired", "fpn",
     dict(dropout_rate=0.1, attention_dropout_rate=0.05,
          stochastic_depth_rate=0.2, fpn_downsample="avg_pool",
          position_embedding="learned", max_length=16,
          layer_norm_epsilon=1e-5, name="video_text_fusion")),
    ("none", "all", "none", {}),
])
def test_layer_checks(text_mode, pairing, pyramid, extra, tmp_path):
  kwargs = dict(hidden_dim=D, num_layers=3, num_heads=2, mlp_dim=16,
                num_levels=1 if pyramid == "none" else LEVELS,
                fpn_layer_indices=(0, 1, 2), text_mode=text_mode,
                pyramid=pyramid, **extra)
  video, vmask, text, tmask = _inputs(text_mode, pairing, seed=18)
  vmask[1, 6:] = 0
  call_kwargs = dict(pairing=pairing)
  if text is not None:
    call_kwargs["text"] = text
  if tmask is not None:
    call_kwargs["text_mask"] = tmask
  nt = NT if (pairing == "all" and text_mode != "none") else 1
  t_tot = N0 if pyramid == "none" else T_TOT
  layer, _ = test_case.run_layer_test(
      fusion_lib.VideoTextFusion, kwargs, (video, vmask),
      call_kwargs=call_kwargs,
      expected_output_shape={"tokens": (B, nt, t_tot, D),
                             "mask": (B, nt, t_tot), "text": (B, nt, D)},
      tmp_path=tmp_path,
      # One .keras round trip is enough: the modes share their sub-layers.
      run_saving=pyramid == "fpn")
  # Weight paths follow the reference parameter tree (§2.11).
  paths = [w.path for w in layer.weights]
  assert f"{layer.name}/encoderblock_2/MultiHeadAttention_0/query/kernel" in (
      paths)
  if pyramid != "none":
    assert f"{layer.name}/feature_pyramid/output_conv_1/kernel" in paths
