"""Tests of unloc_tf.data.text_cleaning (OpenAI CLIP's text cleaning in TF).

Expected ids and cleaned strings were computed once offline with OpenAI's
algorithm (clip/simple_tokenizer.py: ftfy 6.3.1 `fix_text`, `html.unescape`
twice, `regex` whitespace clean, lower; BPE on the shipped vocabulary), not
with the code under test.
"""

from __future__ import annotations

import html
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.data import text, text_cleaning

BOS, EOS = text.BOS_ID, text.EOS_ID
DATA = os.environ.get("UNLOC_SHARED_DATA", "/work/shared/data")
ANET_CAPTIONS = os.path.join(DATA, "activitynet_captions")

# fmt: off
OPENAI_PIECES = {
  # ActivityNet Captions (train/val) sentences with curly quotes.
  "  The dog then jumps in the man\u2019s arms at the man\u2019s command as "
  "the scene fades out.": [
    518, 1929, 1594, 18911, 530, 518, 786, 568, 5706, 536, 518, 786, 568,
    11350, 601, 518, 3562, 40441, 620, 269],
  "  A group of women in \u201cFAB 50\u201d neon green t-shirts is shown at "
  "an outdoor event with tents at night.": [
    320, 1771, 539, 1507, 530, 257, 5492, 276, 271, 257, 13919, 1901, 339,
    268, 5803, 533, 8506, 536, 550, 6368, 1655, 593, 30730, 536, 930, 269],
  # HTML entities (ftfy's and html.unescape's), numeric references.
  "m&amp;ms &lt;3 caf&eacute; &#8217;s": [332, 261, 988, 283, 274, 15304, 568],
  "P&EACUTE;REZ &notit; &amp": [43167, 15192, 126, 361, 585, 282, 261],
  # ftfy's HTML unescaping stops at the first line with "<"; html.unescape
  # still runs on every line.
  "&lt;b&gt;\n<i>&amp;": [283, 321, 285, 283, 328, 29, 261],
  # Ligatures, "\u0149" -> "'n", full width.
  "\ufb01ne \u0149 \uff28\uff45\uff4c\uff4c\uff4f": [3797, 262, 333, 3306],
  # Terminal escapes and a NUL (removed, the rest is kept).
  "\x1b[31mred\x1b[0m a\x00b c": [736, 3937, 322],
  # C1 controls as Windows-1252: "\x85" -> "…", "\x92" -> "'".
  "x\x85y \x92s": [343, 959, 344, 568],
  # Upper-case contractions.
  "IT'S A DOG'S": [585, 568, 320, 1929, 568],
  # Id 0 is the word piece "!".
  'thanks!".': [1085, 0, 2811],
}
# OpenAI's cleaned text (before BPE).
OPENAI_CLEAN = {
  "The man\u2019s \u2018dog\u2019 \u201csaid\u201d \u201ahi\u201b": (
    "the man's 'dog' \"said\" 'hi'"),
  "&amp;amp;amp;lt;": "<",
  "&notit; &amp x &ampx &#65 &#x41; &#59; &#0; &#128; &#xD800; &#99999999999;":
    "\u00acit; & x &x a a ; \ufffd \u20ac \ufffd \ufffd",
  "P&EACUTE;REZ &SZLIG; &GTRDOT;": "p\u00e9rez ss >rdot;",
  "<b>&amp;</b>\n&amp;": "<b>&</b> &",
  "&amp;\n<x>&amp;amp;\n&amp;": "& <x>& &",
  "a\r\nb\u2028c\u3000d\u00a0e": "a b c d e",
  # U+2066 is kept (ftfy removes U+206A..U+206F only).
  "\ufeffbom\u2066x &#x1c;a&#28;": "bom\u2066x a",
  "&nbsp;x&NewLine;y": "x y",
  "Ｈｅｌｌｏ ｶﾞ": "hello \u30ac",
  "caf\u0065\u0301": "caf\u00e9",
}
# fmt: on

# Documented differences from OpenAI's tokenizer: (input, our cleaned text,
# OpenAI's cleaned text).
KNOWN_CLEAN_DIFFERENCES = [
  # ftfy's mojibake repair (fix_encoding) is not reproduced.
  ("doesn\u00c3\u00a2\u00e2\u201a\u00ac\u00e2\u201e\u00a2t",
   "doesn\u00e3\u00a2\u00e2'\u00ac\u00e2\"\u00a2t", "doesn't"),
  ("\u00c3\u00a9t\u00c3\u00a9", "\u00e3\u00a9t\u00e3\u00a9", "\u00e9t\u00e9"),
  # TF's lower-casing predates Unicode 14 letters.
  ("\u2c2f", "\u2c2f", "\u2c5f"),
]


@pytest.fixture(scope="module")
def tokenizer():
  return text.TextTokenizer(max_length=40)


def _clean(strings):
  return [s.decode("utf-8") for s in text.clean_text(tf.constant(strings)).numpy()]


def _expected(pieces, length):
  ids = ([BOS] + pieces + [EOS])[:length]
  return np.array(ids + [0] * (length - len(ids)), np.int32)


def test_known_openai_ids(tokenizer):
  sentences = sorted(OPENAI_PIECES)
  ids, mask = tokenizer(tf.constant(sentences))
  for row, row_mask, sentence in zip(ids.numpy(), mask.numpy(), sentences):
    pieces = OPENAI_PIECES[sentence]
    np.testing.assert_array_equal(row, _expected(pieces, 40), err_msg=sentence)
    np.testing.assert_array_equal(
      row_mask, (np.arange(40) < len(pieces) + 2).astype(np.int32)
    )


def test_known_openai_cleaning():
  inputs = sorted(OPENAI_CLEAN)
  assert _clean(inputs) == [OPENAI_CLEAN[s] for s in inputs]


def test_documented_differences():
  got = _clean([raw for raw, _, _ in KNOWN_CLEAN_DIFFERENCES])
  for (raw, ours, openai), cleaned in zip(KNOWN_CLEAN_DIFFERENCES, got):
    assert cleaned == ours, raw
    assert cleaned != openai


def test_long_s_contraction_is_a_known_difference(tokenizer):
  # OpenAI's IGNORECASE pattern keeps "'\u017f" as one word (pieces
  # [6, 129, 379]); keras-hub's per-word GPT-2 split cuts it again.
  words = text.split_words(text.clean_text(tf.constant(["it'S '\u017f"])))
  assert [w.decode() for w in words.to_list()[0]] == ["it", "'s", "'\u017f"]
  ids, _ = tokenizer("'\u017f")
  assert ids.numpy()[1:4].tolist() != [6, 129, 379]


def test_tables_follow_the_standard_library():
  assert text_cleaning.INVALID_CODEPOINTS == tuple(
    sorted(html._invalid_codepoints)
  )
  assert text_cleaning.INVALID_CHARREFS == html._invalid_charrefs
  assert text_cleaning.CHAR_MAP["\u2019"] == "'"
  assert text_cleaning.CHAR_MAP["\x92"] == "'"  # C1 -> U+2019 -> "'"
  assert text_cleaning.CHAR_MAP["\u0149"] == "'n"
  assert text_cleaning.CHAR_MAP["\uff21"] == "A"
  assert "\u00b3" not in text_cleaning.CHAR_MAP  # no general NFKC


def test_ascii_text_is_unchanged_apart_from_case_and_spaces():
  raw = ["  A man   is THROWING a frisbee!\t ", 'say "redo!", now']
  assert _clean(raw) == ["a man is throwing a frisbee!", 'say "redo!", now']


def test_cleaning_in_tf_data_with_static_shape():
  ds = tf.data.Dataset.from_tensor_slices(
    [["the man\u2019s dog", "a"], ["x &amp; y", "b"]]
  ).map(text.clean_text)
  assert ds.element_spec.shape.as_list() == [2]
  assert [[s.decode() for s in x.numpy()] for x in ds] == [
    ["the man's dog", "a"],
    ["x & y", "b"],
  ]


@pytest.mark.skipif(
  not os.path.isdir(ANET_CAPTIONS), reason="needs /work/shared/data"
)
def test_every_curly_quote_caption_of_activitynet_captions(tokenizer):
  sentences = set()
  for name in ("train.json", "val_1.json", "val_2.json"):
    with open(os.path.join(ANET_CAPTIONS, name), encoding="utf-8") as f:
      for video in json.load(f).values():
        sentences.update(
          s for s in video["sentences"] if any(q in s for q in "\u2018\u2019\u201c\u201d")
        )
  assert len(sentences) == 10
  sentences = sorted(sentences)
  ids, _ = tokenizer(tf.constant(sentences))
  # OpenAI's ids equal those of the sentence with straight quotes.
  straight = [
    s.translate({0x2018: "'", 0x2019: "'", 0x201C: '"', 0x201D: '"'})
    for s in sentences
  ]
  want, _ = tokenizer(tf.constant(straight))
  np.testing.assert_array_equal(ids.numpy(), want.numpy())
  assert 568 in ids.numpy()  # "'s"
  for sentence in sentences:
    if sentence in OPENAI_PIECES:
      row = ids.numpy()[sentences.index(sentence)]
      np.testing.assert_array_equal(
        row, _expected(OPENAI_PIECES[sentence], 40)
      )
