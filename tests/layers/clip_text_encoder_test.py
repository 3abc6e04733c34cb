"""Tests of unloc_tf.layers.clip_text_encoder (reference_spec.md §2.3, §7.3).

Tiny tower throughout: vocabulary 64 (BOS 62, EOS 63, the largest ids, as in
CLIP), width 32, 2 blocks, 2 heads, MLP 64, max_length 8.
"""

from __future__ import annotations

import keras_hub
import numpy as np
import pytest
import tensorflow as tf
from keras_hub.src.models.clip.clip_layers import CLIPEncoderLayer

from tests import test_case
from unloc_tf.layers import clip_text_encoder as cte
from unloc_tf.layers.clip_text_encoder import CLIPTextEncoder

KW = dict(vocabulary_size=64, hidden_dim=32, num_layers=2, num_heads=2,
          intermediate_dim=64, max_length=8)
BOS, EOS = 62, 63
# Real lengths 5, 3 and 8 (the last one fills the row), right padded with 0.
IDS = np.array([
    [BOS, 5, 17, 9, EOS, 0, 0, 0],
    [BOS, 40, EOS, 0, 0, 0, 0, 0],
    [BOS, 1, 2, 3, 4, 5, 6, EOS],
], np.int32)
LENGTHS = (5, 3, 8)


def _encoder(**kw) -> CLIPTextEncoder:
  enc = CLIPTextEncoder(**{**KW, **kw})
  enc.build((None, KW["max_length"]))
  return enc


def test_shapes_and_variables():
  enc = _encoder()
  assert enc(IDS).shape == (3, 8, 32)
  assert enc(IDS[:, :5]).shape == (3, 5, 32)
  assert enc.token_embedding.embeddings.shape == (64, 32)
  assert enc.position_embedding.shape == (8, 32)
  assert enc.ln_final.epsilon == 1e-5
  for i, block in enumerate(enc.blocks):
    assert isinstance(block, CLIPEncoderLayer)
    assert block.use_causal_mask
    assert block.name == f"resblocks_{i}"
  with pytest.raises(ValueError, match="max_length=8"):
    enc(np.ones((1, 9), np.int32))


def test_real_token_states_do_not_depend_on_padding():
  """Each row padded to L=8 equals the same row run alone, unpadded."""
  enc = _encoder()
  padded = enc(IDS).numpy()
  for row, n in enumerate(LENGTHS):
    alone = enc(IDS[row:row + 1, :n]).numpy()[0]
    np.testing.assert_allclose(padded[row, :n], alone, atol=1e-5)


def test_blocks_are_causal():
  enc = _encoder()
  ids = IDS.copy()
  ids[:, 3] = 33
  a, b = enc(IDS).numpy(), enc(ids).numpy()
  np.testing.assert_allclose(a[:, :3], b[:, :3], atol=1e-6)
  assert (np.abs(a[:, 3:] - b[:, 3:]).max(axis=(1, 2)) > 1e-3).all()


def test_padding_mask_zeroes_padding_states_only():
  enc = _encoder()
  mask = IDS > 0
  plain = enc(IDS).numpy()
  masked = enc(IDS, padding_mask=mask).numpy()
  np.testing.assert_array_equal(masked[mask], plain[mask])
  np.testing.assert_array_equal(masked[~mask], 0.0)
  assert np.abs(plain[~mask]).max() > 0.1


def test_matches_keras_hub_clip_text_encoder():
  """Same weights: same states (keras-hub's final LayerNorm eps is 1e-6)."""
  kh = keras_hub.models.CLIPTextEncoder(
      vocabulary_size=64, embedding_dim=32, hidden_dim=32, num_layers=2,
      num_heads=2, intermediate_dim=64, max_sequence_length=8)
  enc = _encoder(layer_norm_epsilon=1e-6)
  enc.token_embedding.embeddings.assign(
      kh.embedding.token_embedding.embeddings)
  enc.position_embedding.assign(
      kh.embedding.position_embedding.position_embeddings)
  for ours, theirs in zip(enc.blocks, kh.encoder_layers):
    ours.set_weights(theirs.get_weights())
  enc.ln_final.set_weights(kh.layer_norm.get_weights())
  for length in (8, 5):  # Shorter input: the first positions are used.
    ids = IDS[:, :length]
    np.testing.assert_allclose(
        enc(ids).numpy(), kh({"token_ids": ids}).numpy(), atol=1e-5)


def test_layer_checks(tmp_path):
  """Config, .keras file, XLA and one training step (tests/test_case.py)."""
  test_case.run_layer_test(
      CLIPTextEncoder,
      dict(vocabulary_size=64, hidden_dim=16, num_layers=1, num_heads=4,
           intermediate_dim=24, max_length=8, layer_norm_epsilon=1e-6,
           name="text_encoder"),
      IDS, call_kwargs=dict(padding_mask=IDS > 0),
      expected_output_shape=(3, 8, 16), tmp_path=tmp_path)


def test_gradients_reach_used_embeddings_only():
  enc = _encoder()
  ids = IDS[:, :5]
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(enc(ids) ** 2)
  g_tok, g_pos = tape.gradient(
      loss, [enc.token_embedding.embeddings, enc.position_embedding])
  g_tok = tf.convert_to_tensor(g_tok).numpy()
  used = np.zeros(64, bool)
  used[np.unique(ids)] = True
  assert (np.abs(g_tok[used]).max(axis=1) > 0).all()
  np.testing.assert_array_equal(g_tok[~used], 0.0)
  g_pos = g_pos.numpy()
  assert (np.abs(g_pos[:5]).max(axis=1) > 0).all()
  np.testing.assert_array_equal(g_pos[5:], 0.0)  # Positions clipped to L.


def test_adapt_text_position_embedding():
  clip = np.arange(77 * 2, dtype=np.float32).reshape(77, 2)
  current = -np.ones((8, 2), np.float32)
  np.testing.assert_array_equal(
      cte.adapt_text_position_embedding(clip, current), clip[:8])
  short = clip[:3]
  out = cte.adapt_text_position_embedding(short, current)
  np.testing.assert_array_equal(out[:3], short)
  np.testing.assert_array_equal(out[3:], -1.0)  # Fresh rows are kept.
  with pytest.raises(ValueError):
    cte.adapt_text_position_embedding(clip[:, :1], current)
