"""Tests of unloc_tf.data.text (CLIP BPE tokenisation)."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.data import text

BOS, EOS = text.BOS_ID, text.EOS_ID

# Word pieces from OpenAI's SimpleTokenizer (open-clip-torch 3.3.0
# `open_clip/tokenizer.py`, the OpenAI code, with this vocabulary; ftfy
# replaced by NFC), computed once offline.
# fmt: off
OPENAI_PIECES = {
  "a photo of a cat": [320, 1125, 539, 320, 2368],
  "The Person's dog RUNS, quickly!": [
    518, 2533, 568, 1929, 5586, 267, 7787, 256
  ],
  # Digits one by one, collapsed whitespace, "won't" -> "won", "'t".
  "In 2023, she won't   eat 42 apples...": [
    530, 273, 271, 273, 274, 267, 1043, 1749, 713, 3384, 275, 273, 14032, 678
  ],
  "Café naïve São Paulo": [15304, 1097, 35689, 563, 45911, 21628],
  # Contractions after a space: "'ll" and "'" + "cause".
  "I 'll go, 'cause it's 5 o'clock": [
    328, 1342, 861, 267, 262, 1394, 585, 568, 276, 334, 262, 6716
  ],
}
# fmt: on
LONG_CAPTION = "a man is throwing a frisbee on the beach while his dog watches"
LONG_PIECES = [
  320, 786, 533, 9734, 320, 45768, 525, 518, 2117, 1519, 787, 1929, 9521
]  # fmt: skip
L = 16


@pytest.fixture(scope="module")
def tokenizer():
  return text.TextTokenizer(max_length=L)


def _expected(pieces, length):
  ids = ([BOS] + pieces + [EOS])[:length]
  return np.array(ids + [0] * (length - len(ids)), np.int32)


def test_vocabulary_asset_is_the_openai_file():
  path = text.vocabulary_path()
  with open(path, "rb") as f:
    digest = hashlib.sha256(f.read()).hexdigest()
  assert digest == text.VOCABULARY_SHA256
  assert digest == (
    "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
  )
  licence = os.path.join(os.path.dirname(path), "LICENSE_clip_vocabulary.txt")
  with open(licence, encoding="utf-8") as f:
    notice = f.read()
  assert "Copyright (c) 2021 OpenAI" in notice
  assert "Permission is hereby granted, free of charge" in notice


def test_clip_tokenizer_vocabulary_and_cache():
  tok = text.clip_tokenizer()
  assert tok.vocabulary_size() == 49408
  assert tok.token_to_id("<|startoftext|>") == BOS
  assert tok.token_to_id("<|endoftext|>") == EOS
  assert tok.token_to_id("cat</w>") == 2368
  assert text.clip_tokenizer(text.vocabulary_path()) is tok


@pytest.mark.parametrize("sentence", sorted(OPENAI_PIECES))
def test_known_ids_eager(tokenizer, sentence):
  pieces = OPENAI_PIECES[sentence]
  ids, mask = tokenizer(tf.constant(sentence))
  assert ids.dtype == tf.int32 and mask.dtype == tf.int32
  assert ids.shape == (L,) and mask.shape == (L,)
  np.testing.assert_array_equal(ids.numpy(), _expected(pieces, L))
  np.testing.assert_array_equal(
    mask.numpy(), (np.arange(L) < len(pieces) + 2).astype(np.int32)
  )
  # keras-hub's eager path (the Rust `tokenizers` library) agrees.
  rust = text.clip_tokenizer().tokenize(sentence)
  assert [int(i) for i in rust] == pieces


def test_nfc_and_unicode_whitespace(tokenizer):
  decomposed = "Cafe\u0301\u00a0SÃO\u3000paulo\t\n"
  ids, _ = tokenizer(decomposed)
  want, _ = tokenizer("café são paulo")
  np.testing.assert_array_equal(ids.numpy(), want.numpy())
  np.testing.assert_array_equal(
    ids.numpy()[:2], [BOS, OPENAI_PIECES["Café naïve São Paulo"][0]]
  )


def test_tf_data_map_matches_eager_with_static_shapes(tokenizer):
  captions = sorted(OPENAI_PIECES) + [LONG_CAPTION, ""]  # K = 7 per video
  eager_ids, eager_mask = tokenizer(tf.constant(captions))
  assert eager_ids.shape == (len(captions), L)

  # Element i: the [K] captions of a video (rotated by i) and one query.
  videos = [captions[i:] + captions[:i] for i in range(3)]
  ds = tf.data.Dataset.from_tensor_slices((videos, captions[:3]))
  ds = ds.map(
    lambda caps, query: (tokenizer(caps), tokenizer(query)),
    num_parallel_calls=2,
  )
  (caps_ids, caps_mask), (query_ids, query_mask) = ds.element_spec
  for spec, shape in [
    (caps_ids, [len(captions), L]),
    (caps_mask, [len(captions), L]),
    (query_ids, [L]),
    (query_mask, [L]),
  ]:
    assert spec.shape.as_list() == shape and spec.dtype == tf.int32
  for i, ((ids, mask), (q_ids, q_mask)) in enumerate(ds):
    np.testing.assert_array_equal(ids.numpy(), np.roll(eager_ids, -i, axis=0))
    np.testing.assert_array_equal(mask.numpy(), np.roll(eager_mask, -i, 0))
    np.testing.assert_array_equal(q_ids.numpy(), eager_ids.numpy()[i])
    np.testing.assert_array_equal(q_mask.numpy(), eager_mask.numpy()[i])
  for k, caption in enumerate(captions[:5]):
    np.testing.assert_array_equal(
      eager_ids.numpy()[k], _expected(OPENAI_PIECES[caption], L)
    )
  np.testing.assert_array_equal(eager_ids.numpy()[5], _expected(LONG_PIECES, L))
  np.testing.assert_array_equal(eager_ids.numpy()[6], _expected([], L))


def test_higher_rank_and_static_shape_in_tf_function(tokenizer):
  # Tracing only (running a new graph costs ~1 s of function instantiation).
  concrete = tf.function(tokenizer).get_concrete_function(
    tf.TensorSpec([None, 2], tf.string)
  )
  for out in concrete.structured_outputs:
    assert out.shape.as_list() == [None, 2, L] and out.dtype == tf.int32
  texts = tf.constant([["a photo of a cat", ""], ["", "a photo of a cat"]])
  ids, mask = tokenizer(texts)
  cat = _expected(OPENAI_PIECES["a photo of a cat"], L)
  empty = _expected([], L)
  np.testing.assert_array_equal(ids.numpy(), [[cat, empty], [empty, cat]])
  np.testing.assert_array_equal(mask.numpy().sum(-1), [[7, 2], [2, 7]])


def test_empty_and_blank_strings(tokenizer):
  ids, mask = tokenizer(tf.constant(["", "   \t\n "]))
  for row in ids.numpy():
    np.testing.assert_array_equal(row[:3], [BOS, EOS, 0])
    assert not row[2:].any()
  np.testing.assert_array_equal(mask.numpy().sum(-1), [2, 2])
  zero_ids, _ = tokenizer(tf.constant([], tf.string))
  assert zero_ids.shape == (0, L)


def test_truncation_reference_drops_eos():
  tok = text.TextTokenizer(max_length=8)
  ids, mask = tok(LONG_CAPTION)
  np.testing.assert_array_equal(ids.numpy(), [BOS] + LONG_PIECES[:7])
  assert EOS not in ids.numpy()
  assert mask.numpy().sum() == 8
  # Boundary: 5 pieces fit in L = 7 with EOS, lose EOS at L = 6.
  cat = OPENAI_PIECES["a photo of a cat"]
  ids7, _ = text.TextTokenizer(7)("a photo of a cat")
  np.testing.assert_array_equal(ids7.numpy(), [BOS] + cat + [EOS])
  ids6, _ = text.TextTokenizer(6)("a photo of a cat")
  np.testing.assert_array_equal(ids6.numpy(), [BOS] + cat)


def test_truncation_keep_eos():
  tok = text.TextTokenizer(max_length=8, keep_eos=True)
  ids, mask = tok(tf.constant([LONG_CAPTION, "a photo of a cat"]))
  np.testing.assert_array_equal(
    ids.numpy(),
    [
      [BOS] + LONG_PIECES[:6] + [EOS],
      _expected(OPENAI_PIECES["a photo of a cat"], 8),
    ],
  )
  np.testing.assert_array_equal(mask.numpy().sum(-1), [8, 7])
  ids6, _ = text.TextTokenizer(6, keep_eos=True)("a photo of a cat")
  np.testing.assert_array_equal(ids6.numpy(), [BOS, 320, 1125, 539, 320, EOS])


def test_max_length_must_fit_bos_and_eos():
  with pytest.raises(ValueError, match="max_length"):
    text.TextTokenizer(max_length=1)


def test_kinetics_prompts():
  prompts = text.KINETICS_PROMPTS
  assert len(prompts) == 28 and len(set(prompts)) == 28
  assert prompts[0] == "a photo of {}."
  assert prompts[1] == "a photo of a person {}."
  assert prompts[6] == "a photo of a person practicing {}."
  assert prompts[7] == "a video of {}."
  assert prompts[14] == "a example of {}."
  assert prompts[23] == "a demonstration of a person using {}."
  assert prompts[27] == "a demonstration of a person practicing {}."
  assert all(p.count("{}") == 1 for p in prompts)


def test_apply_prompts_class_major():
  got = text.apply_prompts(["run", "jump"], ["a {}.", "b {}!", "c {}"])
  assert got == ["a run.", "b run!", "c run", "a jump.", "b jump!", "c jump"]
  assert text.apply_prompts(["run", "jump"], None) == ["run", "jump"]
  prompted = text.apply_prompts(["x"], text.KINETICS_PROMPTS)
  assert prompted[:2] == ["a photo of x.", "a photo of a person x."]
  with pytest.raises(ValueError, match="placeholder"):
    text.apply_prompts(["x"], ["no placeholder"])
  with pytest.raises(TypeError):
    text.apply_prompts("run", None)


def test_tokenize_class_names_shapes_and_order():
  names = ["cat", "dog", "playing guitar"]
  prompts = ["a photo of {}.", "a video of {}."]
  ids, mask = text.tokenize_class_names(names, 12, prompts=prompts)
  assert ids.shape == (3, 2, 12) and mask.shape == (3, 2, 12)
  assert ids.dtype == np.int32 and mask.dtype == np.int32
  # Row [c, p] is prompt p filled with class c.
  np.testing.assert_array_equal(
    ids[0, 0],
    _expected(OPENAI_PIECES["a photo of a cat"][:3] + [2368, 269], 12),
  )
  row, _ = text.TextTokenizer(12)("a video of playing guitar.")
  np.testing.assert_array_equal(ids[2, 1], row.numpy())
  np.testing.assert_array_equal(mask, (ids != 0).astype(np.int32))

  plain, _ = text.tokenize_class_names(names, 12)
  assert plain.shape == (3, 1, 12)
  np.testing.assert_array_equal(plain[0, 0, :3], [BOS, 2368, EOS])
  kinetics, _ = text.tokenize_class_names(["x"], 16, text.KINETICS_PROMPTS)
  assert kinetics.shape == (1, 28, 16)


def test_mask_rule_length_keeps_the_bang_piece():
  # 'thanks!".' -> OpenAI pieces [1085, 0, 2811]: id 0 is the piece "!".
  ids, mask = text.TextTokenizer(8)('thanks!".')
  np.testing.assert_array_equal(ids.numpy(), [BOS, 1085, 0, 2811, EOS, 0, 0, 0])
  np.testing.assert_array_equal(mask.numpy(), [1, 1, 1, 1, 1, 0, 0, 0])
  # Truncated: every position is a real id.
  _, full = text.TextTokenizer(3)('thanks!".')
  np.testing.assert_array_equal(full.numpy(), [1, 1, 1])


def test_mask_rule_nonzero_is_the_reference_rule():
  tok = text.TextTokenizer(8, mask_rule="nonzero")
  ids, mask = tok(tf.constant(['thanks!".', "a photo of a cat"]))
  np.testing.assert_array_equal(mask.numpy(), (ids.numpy() != 0).astype(int))
  np.testing.assert_array_equal(mask.numpy()[0], [1, 1, 0, 1, 1, 0, 0, 0])
  ids_c, mask_c = text.tokenize_class_names(
    ['go!".'], 8, mask_rule="nonzero"
  )
  assert ids_c[0, 0, 2] == 0 and mask_c[0, 0, 2] == 0
  _, mask_l = text.tokenize_class_names(['go!".'], 8)
  assert mask_l[0, 0, 2] == 1


def test_mask_rule_is_checked():
  with pytest.raises(ValueError, match=r"mask_rule='ids>0'.*'length'"):
    text.TextTokenizer(8, mask_rule="ids>0")
