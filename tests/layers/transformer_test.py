"""Tests of the fusion transformer block, its position embedding and masks.

reference_spec.md §2.6: pre-LN, LayerNorm eps 1e-6, tanh-approximate GELU,
attention with biases and key masks, stochastic depth per example.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import test_case
from unloc_tf.layers import transformer
from unloc_tf.ops import masks, position

D, H, MLP = 8, 2, 16


def _block(**kw):
  kw = dict(dict(hidden_dim=D, num_heads=H, mlp_dim=MLP), **kw)
  block = transformer.TransformerBlock(**kw)
  block.build((None, None, D))
  return block


def _randomize(layer, seed=0, scale=0.5):
  """Random non-trivial weights (LN scales/biases and biases too)."""
  rng = np.random.default_rng(seed)
  layer.set_weights([
      (1.0 if w.path.endswith("gamma") else 0.0)
      + scale * rng.normal(size=w.shape).astype(np.float32)
      for w in layer.weights])


# ---------------------------------------------------------------------------
# Position embedding.
# ---------------------------------------------------------------------------
def test_sinusoid_values_by_hand():
  pe = position.sinusoid_position_embedding(5, 4).numpy()
  assert pe.shape == (5, 4) and pe.dtype == np.float32
  # Row 0: sin(0)=0 on even channels, cos(0)=1 on odd channels.
  np.testing.assert_allclose(pe[0], [0, 1, 0, 1], atol=0)
  # dim 4: w_0 = 1, w_1 = 1e4 ** (-2/4) = 1/100; interleaved sin/cos.
  np.testing.assert_allclose(
      pe[1], [math.sin(1), math.cos(1), math.sin(0.01), math.cos(0.01)],
      rtol=1e-6)
  np.testing.assert_allclose(
      pe[3], [math.sin(3), math.cos(3), math.sin(0.03), math.cos(0.03)],
      rtol=1e-6)
  pe6 = position.sinusoid_position_embedding(8, 6).numpy()
  w = [1e4 ** (-2 * i / 6) for i in range(3)]
  expected = [f(7 * wi) for wi in w for f in (math.sin, math.cos)]
  np.testing.assert_allclose(pe6[7], expected, rtol=1e-6)


def test_sinusoid_odd_dim_and_timescale():
  pe = position.sinusoid_position_embedding(3, 3, max_timescale=100.0).numpy()
  w1 = 100.0 ** (-2 / 3)
  np.testing.assert_allclose(
      pe[2], [math.sin(2), math.cos(2), math.sin(2 * w1)], rtol=1e-6)


def test_attention_mask_from_key_mask():
  km = tf.constant([[1, 1, 0], [0, 1, 1]])
  am = masks.attention_mask_from_key_mask(km).numpy()
  assert am.dtype == bool and am.shape == (2, 3, 3)
  for q in range(3):
    np.testing.assert_array_equal(am[0, q], [True, True, False])
    np.testing.assert_array_equal(am[1, q], [False, True, True])


# ---------------------------------------------------------------------------
# The block against numpy.
# ---------------------------------------------------------------------------
def _ln(x, g, b, eps):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * g + b


def _gelu(x, approximate=True):
  if approximate:
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
  erf = np.vectorize(math.erf)
  return 0.5 * x * (1 + erf(x / np.sqrt(2)))


def _np_block(block, x, key_mask, eps=1e-6, approximate=True):
  w = {v.path.split("/", 1)[1]: v.numpy().astype(np.float64)
       for v in block.weights}
  x = x.astype(np.float64)
  y = _ln(x, w["LayerNorm_0/gamma"], w["LayerNorm_0/beta"], eps)
  att = "MultiHeadAttention_0/"
  q = np.einsum("bsd,dhk->bshk", y, w[att + "query/kernel"]) + w[
      att + "query/bias"]
  k = np.einsum("bsd,dhk->bshk", y, w[att + "key/kernel"]) + w[
      att + "key/bias"]
  v = np.einsum("bsd,dhk->bshk", y, w[att + "value/kernel"]) + w[
      att + "value/bias"]
  logits = np.einsum("bqhk,bshk->bhqs", q, k) / np.sqrt(D // H)
  logits = np.where(key_mask[:, None, None, :] > 0, logits, -1e30)
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  o = np.einsum("bhqs,bshk->bqhk", p, v)
  o = np.einsum("bqhk,hkd->bqd", o, w[att + "attention_output/kernel"]) + w[
      att + "attention_output/bias"]
  x = x + o
  z = _ln(x, w["LayerNorm_1/gamma"], w["LayerNorm_1/beta"], eps)
  z = z @ w["MlpBlock_0/Dense_0/kernel"] + w["MlpBlock_0/Dense_0/bias"]
  z = _gelu(z, approximate)
  z = z @ w["MlpBlock_0/Dense_1/kernel"] + w["MlpBlock_0/Dense_1/bias"]
  return x + z


@pytest.mark.parametrize("scale", [1.0, 1e-3])
def test_block_matches_numpy_forward(scale):
  """scale 1e-3 makes the token variance ~1e-6, so LN eps 1e-6 matters."""
  block = _block()
  _randomize(block, seed=1, scale=0.7)
  rng = np.random.default_rng(2)
  x = (scale * rng.normal(size=(2, 5, D))).astype(np.float32)
  km = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], np.int32)
  got = block(x, key_mask=km).numpy()
  want = _np_block(block, x, km)
  np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
  # The comparison is sensitive to the details it claims to check.
  if scale == 1.0:
    exact = _np_block(block, x, km, approximate=False)
    assert np.abs(exact - want).max() > 1e-4  # tanh GELU != exact GELU
    unmasked = _np_block(block, x, np.ones_like(km))
    assert np.abs(unmasked - want)[0].max() > 1e-3
  else:
    assert np.abs(_np_block(block, x, km, eps=1e-3) - want).max() > 1e-2


def test_block_without_mask_equals_all_ones_mask():
  block = _block()
  x = np.random.default_rng(0).normal(size=(2, 4, D)).astype(np.float32)
  np.testing.assert_allclose(block(x).numpy(),
                             block(x, key_mask=np.ones((2, 4))).numpy(),
                             atol=1e-6)


def test_padded_keys_do_not_change_real_tokens():
  block = _block()
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1, 6, D)).astype(np.float32)
  km = np.array([[1, 1, 1, 1, 0, 0]])
  y1 = block(x, key_mask=km).numpy()
  x2 = x.copy()
  x2[:, 4:] = 100 * rng.normal(size=(1, 2, D))
  y2 = block(x2, key_mask=km).numpy()
  np.testing.assert_allclose(y1[:, :4], y2[:, :4], atol=1e-5)
  y3 = block(x[:, :4], key_mask=km[:, :4]).numpy()
  np.testing.assert_allclose(y1[:, :4], y3, atol=1e-5)
  assert np.abs(y1[:, 4:] - y2[:, 4:]).max() > 1e-2  # padded queries move


def test_initialisers_follow_flax():
  block = transformer.TransformerBlock(hidden_dim=64, num_heads=4,
                                       mlp_dim=128)
  block.build((None, None, 64))
  w = {v.path.split("/", 1)[1]: v.numpy() for v in block.weights}
  att = "MultiHeadAttention_0/"
  limit = math.sqrt(6 / (64 + 64))  # xavier_uniform on the flat (D, D)
  for name in ("query", "key", "value", "attention_output"):
    k = w[att + name + "/kernel"]
    assert np.abs(k).max() <= limit
    assert np.abs(k).max() > 0.9 * limit
    assert abs(k.std() - limit / math.sqrt(3)) < 0.1 * limit
  assert not np.allclose(w[att + "query/kernel"], w[att + "key/kernel"])
  for name in ("Dense_0", "Dense_1"):  # biases N(0, 1e-6)
    bias = w[f"MlpBlock_0/{name}/bias"]
    assert 0 < np.abs(bias).max() < 1e-5
  for name in ("query", "key", "value", "attention_output"):
    assert np.all(w[att + name + "/bias"] == 0)
  k0 = w["MlpBlock_0/Dense_0/kernel"]
  assert np.abs(k0).max() <= math.sqrt(6 / (64 + 128))


# ---------------------------------------------------------------------------
# Dropout and stochastic depth.
# ---------------------------------------------------------------------------
def test_stochastic_depth_drops_whole_examples():
  rate = 0.5
  block = _block(stochastic_depth_rate=rate)
  _randomize(block, seed=4, scale=0.3)
  keras.utils.set_random_seed(0)
  x = np.random.default_rng(5).normal(size=(64, 3, D)).astype(np.float32)
  out = block(x, training=True).numpy()

  def attn(v):
    y = block.layer_norm_0(v)
    return block.attention(y, y).numpy()

  def mlp(v):
    return block.mlp(block.layer_norm_1(v)).numpy()

  s = 1.0 / (1.0 - rate)
  x_a = x + s * attn(x)
  candidates = [x, x_a, x + s * mlp(x), x_a + s * mlp(x_a)]
  seen = set()
  for b in range(64):
    errs = [np.abs(out[b] - c[b]).max() for c in candidates]
    best = int(np.argmin(errs))
    assert errs[best] < 1e-5, errs  # one of the 4 whole-branch patterns
    seen.add(best)
  assert seen == {0, 1, 2, 3}  # 0.25 ** 64 chance of failing per pattern
  # Inference: identical to a rate-0 block with the same weights.
  plain = _block()
  plain.set_weights(block.get_weights())
  np.testing.assert_allclose(block(x, training=False).numpy(),
                             plain(x).numpy(), atol=0)


def test_stochastic_depth_layer_scaling():
  layer = transformer.StochasticDepth(0.25, seed=1)
  x = np.ones((4000, 2, 3), np.float32)
  y = layer(x, training=True).numpy()
  per_example = y[:, 0, 0]
  assert set(np.unique(per_example)) == {0.0, np.float32(1 / 0.75)}
  assert np.all(y == per_example[:, None, None])
  assert abs((per_example == 0).mean() - 0.25) < 0.03
  np.testing.assert_array_equal(layer(x, training=False).numpy(), x)
  with pytest.raises(ValueError):
    transformer.StochasticDepth(1.0)


def test_dropout_only_in_training():
  block = _block(dropout_rate=0.3, attention_dropout_rate=0.3)
  plain = _block()
  plain.set_weights(block.get_weights())
  x = np.random.default_rng(6).normal(size=(2, 4, D)).astype(np.float32)
  np.testing.assert_allclose(block(x).numpy(), plain(x).numpy(), atol=1e-6)
  assert np.abs(block(x, training=True).numpy() - plain(x).numpy()).max() > 1e-3


# ---------------------------------------------------------------------------
# The shared layer checks (config, .keras file, XLA, one training step).
# ---------------------------------------------------------------------------
def test_transformer_block_layer_checks(tmp_path):
  x = np.random.default_rng(9).normal(size=(3, 5, D)).astype(np.float32)
  km = np.array([[1, 1, 1, 0, 0], [1] * 5, [1, 0, 1, 0, 1]], np.int32)
  test_case.run_layer_test(
      transformer.TransformerBlock,
      dict(hidden_dim=D, num_heads=H, mlp_dim=MLP, dropout_rate=0.1,
           attention_dropout_rate=0.2, stochastic_depth_rate=0.3,
           layer_norm_epsilon=1e-5, name="encoderblock_3"),
      x, call_kwargs=dict(key_mask=km), expected_output_shape=(3, 5, D),
      tmp_path=tmp_path)


def test_mlp_block_layer_checks(tmp_path):
  x = np.random.default_rng(10).normal(size=(2, 3, D)).astype(np.float32)
  test_case.run_layer_test(
      transformer.MlpBlock, dict(mlp_dim=MLP, out_dim=6, dropout_rate=0.1),
      x, expected_output_shape=(2, 3, 6), tmp_path=tmp_path)


def test_stochastic_depth_layer_checks(tmp_path):
  x = np.random.default_rng(11).normal(size=(4, 3, D)).astype(np.float32)
  test_case.run_layer_test(
      transformer.StochasticDepth, dict(rate=0.25, seed=3), x,
      expected_output_shape=(4, 3, D), tmp_path=tmp_path,
      run_training=False)  # No weights to train.
