"""Tests of the feature pyramids (reference_spec.md §2.7, §3.1) and masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tests import test_case
from unloc_tf.layers import feature_pyramid as fp
from unloc_tf.ops import masks

D = 4


def _pyramid(mode, num_levels=3, **kw):
  layer = fp.FeaturePyramid(mode=mode, num_levels=num_levels, hidden_dim=D,
                            **kw)
  layer.build((None, None, D))
  return layer


def _weights(layer):
  return {v.path.split("/", 1)[1]: v.numpy().astype(np.float64)
          for v in layer.weights}


def _randomize(layer, seed=0):
  rng = np.random.default_rng(seed)
  layer.set_weights([
      (1.0 if w.path.endswith("gamma") else 0.0)
      + 0.5 * rng.normal(size=w.shape).astype(np.float32)
      for w in layer.weights])


def _ln(x, g, b, eps=1e-6):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + eps) * g + b


def _np_depthwise(x, kernel, bias, stride):
  """k=3 SAME: stride 1 pads (1, 1); stride 2 (even n) pads (0, 1) (§2.10)."""
  n = x.shape[1]
  if stride == 1:
    pad = (1, 1)
  else:
    assert n % 2 == 0
    pad = (0, 1)
  xp = np.pad(x, ((0, 0), pad, (0, 0)))
  out = []
  for j in range(0, n, stride):
    out.append(np.einsum("bkc,kc->bc", xp[:, j:j + 3], kernel[:, :, 0]))
  return np.stack(out, axis=1) + bias


# ---------------------------------------------------------------------------
# Masks.
# ---------------------------------------------------------------------------
def test_downsample_and_pyramid_masks():
  m = tf.constant([[1, 1, 1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(masks.downsample_mask(m, 2).numpy(),
                                [[1, 1, 1, 0], [1, 0, 0, 0]])
  np.testing.assert_array_equal(masks.downsample_mask(m, 4).numpy(),
                                [[1, 1], [1, 0]])
  pm = masks.pyramid_masks(m, 3)
  assert pm.dtype == tf.int32 and pm.shape == (2, 14)
  np.testing.assert_array_equal(
      pm.numpy()[0], [1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 1])
  # Leading dims, float/bool input and a trailing remainder (floor).
  m3 = tf.constant([[[0.0, 0.0, 1.0, 0.0, 1.0]]])
  np.testing.assert_array_equal(masks.downsample_mask(m3, 2).numpy(),
                                [[[0, 1]]])
  np.testing.assert_array_equal(
      masks.downsample_mask(tf.constant([True, False, False]), 1).numpy(),
      [1, 0, 0])


# ---------------------------------------------------------------------------
# simple (ViTDet).
# ---------------------------------------------------------------------------
def test_simple_lengths_and_numpy_forward():
  layer = _pyramid("simple", num_levels=4)
  _randomize(layer, seed=1)
  x = np.random.default_rng(2).normal(size=(2, 16, D)).astype(np.float32)
  out = layer(x)
  assert [o.shape for o in out] == [(2, 16, D), (2, 8, D), (2, 4, D),
                                    (2, 2, D)]
  w = _weights(layer)
  y = x.astype(np.float64)
  for l in range(4):
    y = _np_depthwise(y, w[f"output_conv_{l}/kernel"],
                      w[f"output_conv_{l}/bias"], 1 if l == 0 else 2)
    y = _ln(y, w[f"output_ln_{l}/gamma"], w[f"output_ln_{l}/beta"])
    np.testing.assert_allclose(out[l].numpy(), y, atol=1e-5)


def _time_support(layer, x, level, j):
  """Input time steps with a non-zero gradient for output (level, j)."""
  x = tf.constant(x)
  with tf.GradientTape() as tape:
    tape.watch(x)
    y = layer(x)[level][:, j]
    # A random projection so LN does not cancel the gradient.
    loss = tf.reduce_sum(y * tf.constant(np.linspace(0.3, 1.7, D), tf.float32))
  g = tape.gradient(loss, x).numpy()
  return set(np.nonzero(np.abs(g).sum(axis=(0, 2)) > 0)[0].tolist())


def test_simple_receptive_field_is_shifted_right():
  """Level l output j sees level-0 inputs [2^l j - 1, 2^l j + 2^(l+1) - 1]."""
  n0 = 32
  layer = _pyramid("simple", num_levels=4)
  _randomize(layer, seed=3)
  x = np.random.default_rng(4).normal(size=(1, n0, D)).astype(np.float32)
  for level in range(4):
    for j in (0, 1, n0 // 2**level - 1):
      lo = 2**level * j - 1
      hi = 2**level * j + 2 ** (level + 1) - 1
      expected = {t for t in range(lo, hi + 1) if 0 <= t < n0}
      assert _time_support(layer, x, level, j) == expected, (level, j)


def test_simple_rejects_indivisible_length():
  layer = _pyramid("simple", num_levels=3)
  with pytest.raises(ValueError, match="divisible"):
    layer(np.zeros((1, 6, D), np.float32))


def test_depthwise_initialiser_is_flax_lecun_normal():
  layer = fp.FeaturePyramid(mode="simple", num_levels=2, hidden_dim=512)
  layer.build((None, None, 512))
  w = _weights(layer)
  k = w["output_conv_0/kernel"]
  assert k.shape == (3, 512, 1)
  # lecun_normal with fan_in = kernel_size = 3 (not 3 * D).
  assert abs(k.std() - math.sqrt(1 / 3)) < 0.05
  assert np.abs(k).max() <= 2 * math.sqrt(1 / 3) / 0.87962566103423978 + 1e-6
  assert np.all(w["output_conv_0/bias"] == 0)
  assert np.all(w["output_ln_0/gamma"] == 1)


# ---------------------------------------------------------------------------
# fpn.
# ---------------------------------------------------------------------------
def _identity_convs(layer):
  values = []
  for w in layer.weights:
    if w.path.endswith("kernel"):
      k = np.zeros(w.shape, np.float32)
      k[1] = 1.0  # centre tap: identity depthwise conv
      values.append(k)
    elif w.path.endswith("gamma"):
      values.append(np.ones(w.shape, np.float32))
    else:
      values.append(np.zeros(w.shape, np.float32))
  layer.set_weights(values)


def test_fpn_top_down_sum_by_hand():
  layer = _pyramid("fpn", num_levels=3)
  _identity_convs(layer)
  rng = np.random.default_rng(5)
  l0 = rng.normal(size=(1, 8, D)).astype(np.float32)
  l1 = rng.normal(size=(1, 4, D)).astype(np.float32)
  l2 = rng.normal(size=(1, 2, D)).astype(np.float32)
  out = [o.numpy() for o in layer([l0, l1, l2])]
  # Cumulative top-down: s2 = l2, s1 = l1 + up(s2), s0 = l0 + up(s1).
  s2 = l2.astype(np.float64)
  s1 = l1 + np.repeat(s2, 2, axis=1)
  s0 = l0 + np.repeat(s1, 2, axis=1)
  # By hand for one entry: s0[t=5] = l0[5] + l1[2] + l2[1].
  np.testing.assert_allclose(s0[0, 5], l0[0, 5] + l1[0, 2] + l2[0, 1],
                             rtol=1e-6)
  ones, zeros = np.ones(D), np.zeros(D)
  for got, want in zip(out, (s0, s1, s2)):
    np.testing.assert_allclose(got, _ln(want, ones, zeros), atol=1e-5)


def test_fpn_random_weights_numpy_forward():
  layer = _pyramid("fpn", num_levels=2)
  _randomize(layer, seed=6)
  rng = np.random.default_rng(7)
  l0 = rng.normal(size=(2, 6, D)).astype(np.float32)
  l1 = rng.normal(size=(2, 3, D)).astype(np.float32)
  out = layer([l0, l1])
  w = _weights(layer)
  s0 = l0 + np.repeat(l1, 2, axis=1)
  for l, s in enumerate((s0, l1)):
    want = _ln(_np_depthwise(s.astype(np.float64), w[f"output_conv_{l}/kernel"],
                             w[f"output_conv_{l}/bias"], 1),
               w[f"output_ln_{l}/gamma"], w[f"output_ln_{l}/beta"])
    np.testing.assert_allclose(out[l].numpy(), want, atol=1e-5)


def test_nearest_upsample_matches_jax_rule():
  x = tf.constant(np.arange(3, dtype=np.float32).reshape(1, 3, 1))
  # floor((i + 0.5) * 3 / 7) for i = 0..6.
  np.testing.assert_array_equal(
      fp.nearest_upsample(x, 7).numpy()[0, :, 0], [0, 0, 1, 1, 1, 2, 2])
  np.testing.assert_array_equal(
      fp.nearest_upsample(x, 6).numpy()[0, :, 0], [0, 0, 1, 1, 2, 2])


# ---------------------------------------------------------------------------
# none.
# ---------------------------------------------------------------------------
def test_none_is_one_layer_norm_with_eps_1e6():
  layer = _pyramid("none")
  _randomize(layer, seed=8)
  x = (1e-3 * np.random.default_rng(9).normal(size=(2, 5, D))).astype(
      np.float32)
  out = layer(x)
  assert len(out) == 1 and layer.output_levels == 1
  w = _weights(layer)
  want = _ln(x.astype(np.float64), w["encoder_norm/gamma"],
             w["encoder_norm/beta"])
  np.testing.assert_allclose(out[0].numpy(), want, atol=1e-5)
  wrong_eps = _ln(x.astype(np.float64), w["encoder_norm/gamma"],
                  w["encoder_norm/beta"], eps=1e-3)
  assert np.abs(wrong_eps - want).max() > 1e-2


# ---------------------------------------------------------------------------
# The shared layer checks (config, .keras file, XLA, one training step).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["simple", "fpn", "none"])
def test_layer_checks(mode, tmp_path):
  rng = np.random.default_rng(11)
  if mode == "fpn":
    inputs = [rng.normal(size=(2, 8 // 2**l, D)).astype(np.float32)
              for l in range(3)]
  else:
    inputs = rng.normal(size=(2, 8, D)).astype(np.float32)
  shapes = [(2, 8, D)] if mode == "none" else [(2, 8 // 2**l, D)
                                               for l in range(3)]
  test_case.run_layer_test(
      fp.FeaturePyramid,
      dict(mode=mode, num_levels=3, hidden_dim=D, layer_norm_epsilon=1e-5),
      inputs, expected_output_shape=shapes, tmp_path=tmp_path)


def test_bad_arguments():
  with pytest.raises(ValueError):
    fp.FeaturePyramid(mode="pyramid")
  layer = _pyramid("fpn", num_levels=3)
  with pytest.raises(ValueError, match="levels"):
    layer([np.zeros((1, 8, D), np.float32)])
