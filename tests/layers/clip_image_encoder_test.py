"""Tests of unloc_tf.layers.clip_image_encoder (reference_spec.md §2.2, §7.3).

Tiny tower throughout: 32x32 frames, 8x8 patches (P = 16), width 32,
2 blocks, 2 heads, MLP 64, 4 frames.
"""

from __future__ import annotations

import functools

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras_hub.src.models.clip.clip_layers import CLIPEncoderLayer

from tests import test_case
from unloc_tf.layers import clip_image_encoder as cie
from unloc_tf.layers.clip_image_encoder import CLIPImageEncoder

KW = dict(patch_size=8, hidden_dim=32, num_layers=2, num_heads=2,
          intermediate_dim=64, image_size=32, num_frames=4)
T = 4
S = 32


def _encoder(num_frames_in: int = T, **kw) -> CLIPImageEncoder:
  enc = CLIPImageEncoder(**{**KW, **kw})
  enc.build((None, num_frames_in, S, S, 3))
  return enc


def _frames(batch: int = 2, t: int = T, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (batch, t, S, S, 3)).astype(np.uint8)


def _distinct_class_table(enc: CLIPImageEncoder, seed: int = 1) -> np.ndarray:
  table = np.random.default_rng(seed).normal(
      size=enc.class_embedding.shape).astype(np.float32)
  enc.class_embedding.assign(table)
  return table


def _permute_patches(frames: np.ndarray, perm: np.ndarray) -> np.ndarray:
  """Moves whole 8x8 patches of every frame: patch i goes to slot perm[i]."""
  g = S // 8
  lead = frames.shape[:-3]
  x = frames.reshape(lead + (g, 8, g, 8, 3))
  x = np.moveaxis(x, -4, -3).reshape(lead + (g * g, 8, 8, 3))
  y = np.empty_like(x)
  y[..., perm, :, :, :] = x
  y = np.moveaxis(y.reshape(lead + (g, g, 8, 8, 3)), -3, -4)
  return y.reshape(frames.shape)


@pytest.mark.parametrize("mode,t_in,rows", [("token", 4, 17), ("gap", 3, 16)])
def test_shapes_and_variables(mode, t_in, rows):
  enc = _encoder(num_frames_in=t_in, frame_token=mode)
  out = enc(_frames(t=t_in))
  assert out.shape == (2, t_in, 32)
  assert out.dtype == tf.float32
  assert enc.position_embedding.shape == (rows, 32)
  assert enc.patch_embedding.kernel.shape == (8, 8, 3, 32)
  assert enc.patch_embedding.bias is None
  if mode == "token":
    assert enc.class_embedding.shape == (4, 32)
  else:
    assert enc.class_embedding is None
  assert len(enc.blocks) == 2
  for i, block in enumerate(enc.blocks):
    assert isinstance(block, CLIPEncoderLayer)
    assert not block.use_causal_mask
    assert block.name == f"resblocks_{i}"
  assert enc.ln_pre.epsilon == enc.ln_post.epsilon == 1e-5
  paths = {v.path.split("/", 1)[1] for v in enc.weights}
  assert "resblocks_1/attention/query/kernel" in paths
  assert ("class_embedding" in paths) == (mode == "token")


def test_bad_shapes_raise():
  enc = _encoder()
  with pytest.raises(ValueError, match="num_frames=4"):
    enc(_frames(t=3))
  with pytest.raises(ValueError, match="image_size=32"):
    enc(np.zeros((1, T, 24, 24, 3), np.uint8))
  with pytest.raises(ValueError, match="frame_token"):
    CLIPImageEncoder(frame_token="cls")
  with pytest.raises(ValueError, match="multiple of patch_size"):
    CLIPImageEncoder(image_size=30, patch_size=8)


def test_fresh_class_table_is_one_vector_tiled():
  table = _encoder().class_embedding.numpy()
  np.testing.assert_array_equal(table, np.tile(table[:1], (T, 1)))
  assert table.std() > 0.05  # N(0, 32**-0.5), not zeros.


def test_frame_t_uses_row_t_of_the_class_table():
  """Permuting frames and CLS rows together permutes the outputs exactly."""
  enc = _encoder()
  table = _distinct_class_table(enc)
  frames = _frames()
  out = enc(frames).numpy()
  perm = np.array([2, 0, 3, 1])
  enc.class_embedding.assign(table[perm])
  out_perm = enc(frames[:, perm]).numpy()
  np.testing.assert_allclose(out_perm, out[:, perm], atol=1e-5)
  # Only the CLS row moved (frames unchanged): the outputs change.
  assert np.abs(enc(frames).numpy() - out).max() > 1e-2


def test_frames_are_encoded_independently():
  enc = _encoder()
  _distinct_class_table(enc)
  frames = _frames()
  other = frames.copy()
  other[:, 2] = 255 - other[:, 2]
  diff = np.abs(enc(other).numpy() - enc(frames).numpy()).max(axis=(0, 2))
  assert diff[2] > 1e-2
  np.testing.assert_allclose(np.delete(diff, 2), 0.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["token", "gap"])
def test_identical_frames_differ_only_through_the_cls_table(mode):
  enc = _encoder(frame_token=mode)
  frames = np.repeat(_frames(t=1), T, axis=1)
  if mode == "gap":
    out = enc(frames).numpy()
    np.testing.assert_allclose(out, np.repeat(out[:, :1], T, 1), atol=1e-6)
    return
  out = enc(frames).numpy()  # Fresh (tiled) table: all frames alike.
  np.testing.assert_allclose(out, np.repeat(out[:, :1], T, 1), atol=1e-6)
  _distinct_class_table(enc)
  out = enc(frames).numpy()
  for t in range(1, T):
    assert np.abs(out[:, t] - out[:, 0]).max() > 1e-2


@pytest.mark.parametrize("mode", ["token", "gap"])
def test_positional_embedding_carries_the_patch_layout(mode):
  enc = _encoder(frame_token=mode)
  frames = _frames()
  perm = np.random.default_rng(3).permutation(16)
  moved = _permute_patches(frames, perm)
  assert not np.array_equal(moved, frames)
  # With the learned (random) positions, moving patches changes the tokens.
  assert np.abs(enc(moved).numpy() - enc(frames).numpy()).max() > 1e-2
  # Without them the tower is blind to the layout: the positional embedding
  # is the only spatial information.
  pos = enc.position_embedding.numpy()
  enc.position_embedding.assign(np.zeros_like(pos))
  np.testing.assert_allclose(enc(moved).numpy(), enc(frames).numpy(),
                             atol=1e-5)


def test_uint8_input_equals_hand_normalised_float():
  enc = _encoder()
  raw = _encoder(normalize_input=False)
  raw.set_weights(enc.get_weights())
  frames = _frames()
  mean = np.array([0.48145466, 0.4578275, 0.40821073])
  std = np.array([0.26862954, 0.26130258, 0.27577711])
  by_hand = ((frames / 255.0 - mean) / std).astype(np.float32)
  expected = raw(by_hand).numpy()
  np.testing.assert_allclose(enc(frames).numpy(), expected, atol=1e-5)
  # Float pixels on the 0..255 scale are normalised the same way.
  np.testing.assert_allclose(enc(frames.astype(np.float32)).numpy(), expected,
                             atol=1e-5)
  assert np.abs(raw(frames.astype(np.float32)).numpy() - expected).max() > 1e-2


def test_token_mode_matches_keras_hub_clip_vision_encoder():
  """Same weights and a tiled CLS table: every frame is a CLIP image."""
  kh = keras_hub.models.CLIPVisionEncoder(
      patch_size=8, hidden_dim=32, num_layers=2, num_heads=2,
      intermediate_dim=64, image_shape=(S, S, 3))
  emb = kh.embedding
  emb.position_ids.assign(np.arange(emb.num_positions)[None])
  enc = _encoder(normalize_input=False)
  enc.patch_embedding.kernel.assign(emb.patch_embedding.kernel)
  enc.class_embedding.assign(
      cie.adapt_class_embedding(emb.class_embedding.numpy(), T))
  enc.position_embedding.assign(emb.position_embedding.embeddings)
  enc.ln_pre.set_weights(kh.pre_layer_norm.get_weights())
  for ours, theirs in zip(enc.blocks, kh.encoder_layers):
    ours.set_weights(theirs.get_weights())
  enc.ln_post.set_weights(kh.layer_norm.get_weights())
  x = np.random.default_rng(0).normal(size=(2, T, S, S, 3)).astype(np.float32)
  ref = kh({"images": x.reshape(2 * T, S, S, 3)})[:, 0]
  np.testing.assert_allclose(
      enc(x).numpy(), ref.numpy().reshape(2, T, 32), atol=1e-5)


def test_layer_checks_token_mode(tmp_path):
  """Config, .keras file, XLA and one training step (tests/test_case.py)."""
  test_case.run_layer_test(
      CLIPImageEncoder, dict(KW, name="image_encoder"), _frames(),
      expected_output_shape=(2, T, 32), tmp_path=tmp_path)


def test_layer_checks_gap_mode_float_input_remat(tmp_path):
  frames = np.random.default_rng(0).normal(size=(1, 3, 8, 8, 3))
  test_case.run_layer_test(
      CLIPImageEncoder,
      dict(patch_size=4, hidden_dim=16, num_layers=1, num_heads=4,
           intermediate_dim=24, image_size=8, num_frames=3,
           frame_token="gap", layer_norm_epsilon=1e-6, normalize_input=False,
           remat=True),
      frames.astype(np.float32), expected_output_shape=(1, 3, 16),
      tmp_path=tmp_path)


def test_dynamic_batch_graph():
  """Serving signatures have a dynamic batch; T, H, W stay static."""
  enc = _encoder()
  fn = tf.function(
      enc, input_signature=[tf.TensorSpec([None, T, S, S, 3], tf.uint8)])
  frames = _frames(batch=3)
  np.testing.assert_allclose(fn(frames).numpy(), enc(frames).numpy(),
                             atol=1e-5)
  assert fn(frames[:1]).shape == (1, T, 32)


def _loss_and_grads(enc, frames):
  with tf.GradientTape() as tape:
    out = enc(frames, training=True)
    loss = tf.reduce_sum(out * out)
  return out, tape.gradient(loss, enc.trainable_variables)


def test_gradients_reach_class_table_and_patch_embedding():
  enc = _encoder()
  _, grads = _loss_and_grads(enc, _frames())
  by_path = {v.path.split("/", 1)[1]: g
             for v, g in zip(enc.trainable_variables, grads)}
  assert all(g is not None for g in grads)
  cls = by_path["class_embedding"].numpy()
  assert (np.abs(cls).max(axis=1) > 0).all()  # Every frame's own row.
  assert np.abs(by_path["patch_embedding/kernel"].numpy()).max() > 0
  assert np.abs(by_path["position_embedding"].numpy()).max() > 0


def test_remat_recomputes_blocks_with_the_same_values():
  plain = _encoder()
  remat = _encoder(remat=True)
  remat.set_weights(plain.get_weights())
  calls = []
  original = remat.blocks[0].call

  @functools.wraps(original)
  def counting_call(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)

  remat.blocks[0].call = counting_call
  frames = _frames()
  out_plain, g_plain = _loss_and_grads(plain, frames)
  out_remat, g_remat = _loss_and_grads(remat, frames)
  assert len(calls) == 2  # Forward, then again in the backward pass.
  np.testing.assert_allclose(out_remat.numpy(), out_plain.numpy(), atol=1e-6)
  for a, b in zip(g_remat, g_plain):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5, rtol=1e-5)
  # And it compiles (graph-mode recompute_grad with XLA).
  xla = tf.function(lambda x: _loss_and_grads(remat, x), jit_compile=True)
  out_xla, g_xla = xla(tf.constant(frames))
  np.testing.assert_allclose(out_xla.numpy(), out_plain.numpy(), atol=1e-5)
  for a, b in zip(g_xla, g_plain):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------
# Shape adaptation of pretrained weights.
# ---------------------------------------------------------------------------
def test_adapt_class_embedding_tiles_a_clip_vector():
  vec = np.array([1.0, -2.0, 3.0], np.float32)
  out = cie.adapt_class_embedding(vec, 4)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, np.tile(vec, (4, 1)))


def test_adapt_class_embedding_interpolates_along_time():
  table = np.array([[0.0, 10.0], [4.0, 30.0]], np.float32)
  # 2 -> 3 rows: end rows kept, the middle one halfway.
  np.testing.assert_allclose(
      cie.adapt_class_embedding(table, 3),
      [[0.0, 10.0], [2.0, 20.0], [4.0, 30.0]])
  # 2 -> 4 rows: positions 0, 1/3, 2/3, 1.
  np.testing.assert_allclose(
      cie.adapt_class_embedding(table, 4)[:, 0], [0.0, 4 / 3, 8 / 3, 4.0],
      rtol=1e-6)
  # 3 -> 2 rows: the two end rows.
  three = np.array([[1.0], [5.0], [3.0]], np.float32)
  np.testing.assert_allclose(cie.adapt_class_embedding(three, 2),
                             [[1.0], [3.0]])
  np.testing.assert_array_equal(cie.adapt_class_embedding(three, 3), three)


def test_adapt_class_embedding_matches_scipy_zoom():
  ndimage = pytest.importorskip("scipy.ndimage")
  table = np.random.default_rng(0).normal(size=(5, 3))
  for n in (2, 7, 12):
    np.testing.assert_allclose(
        cie.adapt_class_embedding(table, n),
        ndimage.zoom(table, (n / 5, 1), order=1), atol=1e-12)


def test_adapt_position_embedding_by_hand():
  cls = np.array([[-1.0, -1.0]])
  # 2x2 grid, two channels: value (row, col) = (r, 10 c) in channel 0/1.
  grid = np.array([[0.0, 0.0], [0.0, 10.0], [1.0, 0.0], [1.0, 10.0]])
  pos = np.concatenate([cls, grid]).astype(np.float32)
  out = cie.adapt_position_embedding(pos, 10, has_cls=True)  # 1 + 3x3.
  assert out.shape == (10, 2) and out.dtype == np.float32
  np.testing.assert_array_equal(out[0], cls[0])
  r, c = np.meshgrid([0.0, 0.5, 1.0], [0.0, 5.0, 10.0], indexing="ij")
  np.testing.assert_allclose(out[1:], np.stack([r.ravel(), c.ravel()], 1))
  gap = cie.adapt_position_embedding(pos, 9, has_cls=False)  # CLS dropped.
  np.testing.assert_allclose(gap, out[1:])
  # Same size: CLS kept / dropped, grid untouched.
  np.testing.assert_array_equal(
      cie.adapt_position_embedding(pos, 5, has_cls=True), pos)
  np.testing.assert_array_equal(
      cie.adapt_position_embedding(pos, 4, has_cls=False), pos[1:])
  # A CLS-less source (an UnLoc "gap" checkpoint) is recognised.
  np.testing.assert_allclose(
      cie.adapt_position_embedding(pos[1:], 9, has_cls=False), out[1:])


def test_adapt_position_embedding_errors():
  grid = np.zeros((4, 2), np.float32)
  with pytest.raises(ValueError, match="CLS"):
    cie.adapt_position_embedding(grid, 10, has_cls=True)
  with pytest.raises(ValueError, match="square"):
    cie.adapt_position_embedding(np.zeros((7, 2)), 9, has_cls=False,
                                 source_has_cls=False)
  with pytest.raises(ValueError, match="square"):
    cie.adapt_position_embedding(grid, 8, has_cls=False)


def test_adapt_position_embedding_matches_scipy_zoom():
  ndimage = pytest.importorskip("scipy.ndimage")
  pos = np.random.default_rng(0).normal(size=(1 + 9, 4))
  out = cie.adapt_position_embedding(pos, 1 + 25, has_cls=True)
  ref = ndimage.zoom(pos[1:].reshape(3, 3, 4), (5 / 3, 5 / 3, 1), order=1)
  np.testing.assert_allclose(out[1:], ref.reshape(25, 4), atol=1e-12)


def test_adapted_clip_weights_fit_the_encoder():
  """The adapters produce exactly the shapes the layer's variables have."""
  d = 32
  clip_cls = np.ones((d,), np.float32)
  clip_pos = np.zeros((1 + 49, d), np.float32)  # e.g. a 7x7 grid.
  for mode in ("token", "gap"):
    enc = _encoder(frame_token=mode)
    pos = cie.adapt_position_embedding(
        clip_pos, enc.position_embedding.shape[0], has_cls=mode == "token")
    enc.position_embedding.assign(pos)
    if mode == "token":
      enc.class_embedding.assign(cie.adapt_class_embedding(clip_cls, T))
