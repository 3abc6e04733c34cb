"""Tests of unloc_tf.ops.pooling (reference_spec.md §2.5). Values by hand."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.ops import pooling

# states[n, l] = [100 n + l, -(100 n + l)]: every position is recognisable.
N, L = 5, 5
_V = 100.0 * np.arange(N)[:, None] + np.arange(L)[None]
STATES = np.stack([_V, -_V], axis=-1).astype(np.float32)  # [5, 5, 2]
IDS = np.array([
    [49406, 320, 1125, 49407, 0],        # EOS at 3.
    [49406, 2368, 49407, 0, 0],          # EOS at 2.
    [49406, 500, 9000, 700, 300],        # Truncated, no EOS: BOS wins, 0.
    [49406, 49407, 49407, 0, 0],         # Tie: first occurrence, 1.
    [5, 9000, 700, 0, 0],                # Plain argmax: 1.
], np.int32)
EOS_POS = [3, 2, 0, 1, 1]


def test_eos_picks_the_argmax_position_of_each_row():
  out = pooling.pool_text(STATES, IDS, None, mode="eos").numpy()
  np.testing.assert_array_equal(out, STATES[np.arange(N), EOS_POS])


def test_token_picks_position_zero():
  out = pooling.pool_text(STATES, IDS, None, mode="token").numpy()
  np.testing.assert_array_equal(out, STATES[:, 0])


def test_gap_is_the_mean_over_the_mask():
  mask = np.array([[1, 1, 0, 0, 0],
                   [1, 0, 1, 0, 1],
                   [0, 0, 0, 0, 1],
                   [1, 1, 1, 1, 1],
                   [0, 1, 0, 0, 0]], np.int32)
  out = pooling.pool_text(STATES, IDS, mask, mode="gap").numpy()
  # Row n: mean of 100 n + l over the kept l.
  means = np.array([0.5, 102.0, 204.0, 302.0, 401.0])
  np.testing.assert_allclose(out, np.stack([means, -means], -1), rtol=1e-6)


def test_gap_without_mask_uses_nonzero_ids():
  out = pooling.pool_text(STATES, IDS, None, mode="gap").numpy()
  means = np.array([1.5, 101.0, 202.0, 301.0, 401.0])  # Lengths 4 3 5 3 3.
  np.testing.assert_allclose(out, np.stack([means, -means], -1), rtol=1e-6)


def test_empty_mask_gives_zeros_not_nan():
  mask = np.zeros((N, L), bool)
  out = pooling.pool_text(STATES, IDS, mask, mode="gap").numpy()
  np.testing.assert_array_equal(out, 0.0)


def test_masked_mean_axes_broadcast_and_weights():
  x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
  mask = np.array([[1, 0, 1], [0, 0, 1]], np.float32)
  np.testing.assert_allclose(
      pooling.masked_mean(x, mask, axis=1).numpy(),
      [(x[0, 0] + x[0, 2]) / 2, x[1, 2]])
  np.testing.assert_allclose(
      pooling.masked_mean(x, mask, axis=(0, 1)).numpy(),
      (x[0, 0] + x[0, 2] + x[1, 2]) / 3)
  weights = np.array([[3, 1, 0], [1, 1, 0]], np.float32)
  np.testing.assert_allclose(
      pooling.masked_mean(x, weights, axis=1).numpy(),
      [(3 * x[0, 0] + x[0, 1]) / 4, (x[1, 0] + x[1, 1]) / 2])
  with pytest.raises(ValueError, match="rank"):
    pooling.masked_mean(x[0], mask[None], axis=0)


def test_bad_arguments_raise():
  with pytest.raises(ValueError, match="mode"):
    pooling.pool_text(STATES, IDS, None, mode="max")
  with pytest.raises(ValueError, match="token_ids"):
    pooling.pool_text(STATES, None, None, mode="eos")


def test_xla_and_symbolic():
  xla = tf.function(
      lambda s, i: [pooling.pool_text(s, i, None, mode=m)
                    for m in pooling.TEXT_POOLING_MODES],
      jit_compile=True)
  for mode, got in zip(pooling.TEXT_POOLING_MODES, xla(STATES, IDS)):
    np.testing.assert_array_equal(
        got.numpy(), pooling.pool_text(STATES, IDS, None, mode=mode).numpy())
  # Usable on Keras symbolic tensors (functional models).
  s = keras.Input((L, 2))
  i = keras.Input((L,), dtype="int32")
  model = keras.Model([s, i], pooling.pool_text(s, i, None, mode="eos"))
  np.testing.assert_array_equal(model([STATES, IDS]).numpy(),
                                STATES[np.arange(N), EOS_POS])
