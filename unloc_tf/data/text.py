r"""CLIP BPE tokenisation of captions, queries and class names.

Reference: reference_spec.md §1.4.  The reference tokenises with DMVR's
`ClipTokenizer` (OpenAI CLIP's `SimpleTokenizer`): ids are
`[BOS] + word pieces + [EOS]`, right-truncated to `max_length` *after* BOS/EOS
are added (so a text with more than `max_length - 2` word pieces loses its
EOS), padded with 0; the mask is `ids != 0` (here `mask_rule="nonzero"`).

The word pieces come from keras-hub's `CLIPTokenizer`, built offline from the
real OpenAI CLIP vocabulary shipped in `assets/` (see dependencies.md §A).
keras-hub runs two different implementations:

  * eagerly, the Rust `tokenizers` library, which lower-cases, collapses
    whitespace and splits digits one by one like OpenAI;
  * in a `tf.function` / `tf.data` graph, TF and TF-Text ops
    (`RegexSplitWithOffsets`), which do *none* of that text cleaning and use
    GPT-2's pre-split pattern (digit runs stay together, so "2023" would give
    other pieces than OpenAI's "2", "0", "2", "3").

`TextTokenizer` therefore always runs the TF-op path (eager calls go through a
`tf.function`) and does OpenAI's steps itself with TF ops: clean the text like
OpenAI (ftfy's `fix_text`, `html.unescape` twice, `regex` whitespace collapsed
to one space, stripped, lower-cased; `text_cleaning` says what exactly is
reproduced), pre-split it with OpenAI's own pattern
(`'s|'t|'re|'ve|'m|'ll|'d` case-insensitive, `\p{L}+|\p{N}|[^\s\p{L}\p{N}]+`,
run by RE2 in `tensorflow_text.regex_split`), then hand each pre-split word to
keras-hub's graph BPE on its own.  Feeding whole sentences to keras-hub's
graph path instead would differ from OpenAI on digit runs ("2023") and on
contractions after a space (" 'd"), besides the missing cleaning.  With this,
the ids equal OpenAI's `SimpleTokenizer` on every sentence, query and class
name of the real annotation files (checked in tests/data/text_test.py and
text_cleaning_test.py).  Not reproduced: ftfy's mojibake repair, TF's
lower-casing of letters added in Unicode 14+, the contraction "'\u017f"
(long s; keras-hub's GPT-2 split cuts that word again), and the Devanagari
digit six "\u096c", which keras-hub uses as an internal marker and drops.
Special-token strings in the text ("<|endoftext|>") map to their ids, as in
OpenAI's tokenizer.

The padding mask is derived from the sequence length by default (id 0 is
also the real word piece "!"); the reference's `ids != 0` is
`mask_rule="nonzero"`.

No `py_function`: everything runs in the tf.data graph.  keras-hub's BPE cache
is a `MutableHashTable` that grows with every new word (bounded by the corpus
vocabulary in practice).
"""

from __future__ import annotations

import functools
import gzip
import os
from typing import Optional, Sequence, Tuple

import keras_hub
import numpy as np
import tensorflow as tf
import tensorflow_text as tf_text

from unloc_tf.data import text_cleaning

BOS_ID = 49406  # <|startoftext|>
EOS_ID = 49407  # <|endoftext|>
PAD_ID = 0
# TextTokenizer's padding-mask rules: "length" (default) and "nonzero" (the
# reference's `ids != 0`).
MASK_RULES = ("length", "nonzero")

VOCABULARY_FILENAME = "bpe_simple_vocab_16e6.txt.gz"
VOCABULARY_SHA256 = (
  "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
)
# OpenAI's SimpleTokenizer reads merges[1 : 49152 - 256 - 2 + 1]: line 0 is a
# version header, and 256 byte tokens + 256 "</w>" tokens + 48894 merges + 2
# special tokens make the 49408-token vocabulary.
_NUM_MERGES = 49152 - 256 - 2

# CLIP's 28 Kinetics-700 context prompts, in CLIP's order (OpenAI CLIP,
# data/prompts.md, "Kinetics700"; MIT licence, Copyright (c) 2021 OpenAI).
KINETICS_PROMPTS: Tuple[str, ...] = tuple(
  f"{prefix} {middle}{{}}."
  for prefix in (
    "a photo of",
    "a video of",
    "a example of",
    "a demonstration of",
  )
  for middle in (
    "",
    "a person ",
    "a person using ",
    "a person doing ",
    "a person during ",
    "a person performing ",
    "a person practicing ",
  )
)

# OpenAI SimpleTokenizer's pre-split pattern (clip/simple_tokenizer.py), in
# RE2 syntax.  It runs on cleaned (lower-case, single-spaced) text.  OpenAI
# compiles it with IGNORECASE; after lower-casing that still matters for
# "'\u017f" (long s, which case-folds to "s").
_CLIP_SPLIT = (
  r"(?i:<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d)"
  r"|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"
)

def vocabulary_path() -> str:
  """Returns the path of the shipped OpenAI CLIP BPE vocabulary (.txt.gz)."""
  return os.path.join(os.path.dirname(__file__), "assets", VOCABULARY_FILENAME)


def _byte_characters() -> list[str]:
  """OpenAI's `bytes_to_unicode()` values: one printable char per byte."""
  printable = [
    *range(ord("!"), ord("~") + 1),
    *range(ord("\u00a1"), ord("\u00ac") + 1),
    *range(ord("\u00ae"), ord("\u00ff") + 1),
  ]
  # The other 68 bytes map to chr(256), chr(257), ... in byte order.
  others = [256 + n for n in range(256 - len(printable))]
  return [chr(c) for c in printable + others]


def _read_vocabulary(path: str) -> Tuple[dict, list]:
  """Builds the CLIP token->id dict and the merge list from the .txt.gz."""
  with gzip.open(path, "rb") as f:
    lines = f.read().decode("utf-8").split("\n")
  merges = lines[1 : _NUM_MERGES + 1]
  byte_chars = _byte_characters()
  tokens = list(byte_chars)
  tokens += [t + "</w>" for t in byte_chars]
  tokens += ["".join(m.split()) for m in merges]
  tokens += ["<|startoftext|>", "<|endoftext|>"]
  return {t: i for i, t in enumerate(tokens)}, merges


@functools.lru_cache(maxsize=None)
def _cached_tokenizer(path: str) -> keras_hub.models.CLIPTokenizer:
  vocabulary, merges = _read_vocabulary(path)
  # Lookup tables must not belong to whichever graph happens to call first.
  with tf.init_scope():
    tokenizer = keras_hub.models.CLIPTokenizer(
      vocabulary=vocabulary, merges=merges
    )
  if (
    tokenizer.start_token_id != BOS_ID
    or tokenizer.end_token_id != EOS_ID
    or tokenizer.vocabulary_size() != EOS_ID + 1
  ):
    raise ValueError(f"{path} is not the CLIP 49408-token BPE vocabulary.")
  return tokenizer


def clip_tokenizer(
  path: Optional[str] = None,
) -> keras_hub.models.CLIPTokenizer:
  """Returns keras-hub's `CLIPTokenizer` built offline from a CLIP .txt.gz.

  One instance per (absolute) path is cached and shared.  The tokenizer has
  no `sequence_length` and does not add BOS/EOS; its `pad_token_id` is 0.
  Called eagerly it runs the Rust `tokenizers` library (OpenAI-style text
  cleaning); inside a graph it runs TF ops without text cleaning, so use
  `TextTokenizer` for ids that match OpenAI everywhere.

  Args:
    path: the `bpe_simple_vocab_16e6.txt.gz` file; None = the shipped one.
  """
  return _cached_tokenizer(os.path.abspath(path or vocabulary_path()))


def clean_text(texts: tf.Tensor) -> tf.Tensor:
  """Cleans text like OpenAI's SimpleTokenizer, with TF ops.

  ftfy's `fix_text` (all but its mojibake repair), `html.unescape` twice,
  whitespace runs collapsed to one space, stripped, lower-cased; see
  `text_cleaning` for what exactly is reproduced.

  Args:
    texts: tf.string [N].

  Returns:
    tf.string [N].
  """
  return text_cleaning.clean_text(texts)


def split_words(texts: tf.Tensor) -> tf.RaggedTensor:
  """Splits cleaned texts into OpenAI CLIP's pre-BPE words.

  Args:
    texts: tf.string [N], output of `clean_text`.

  Returns:
    tf.string RaggedTensor [N, (words)]; spaces are dropped.
  """
  return tf_text.regex_split(texts, _CLIP_SPLIT + "| ", _CLIP_SPLIT)


@functools.lru_cache(maxsize=None)
def _word_pieces_fn(path: str) -> tf.types.experimental.PolymorphicFunction:
  """One `tf.function` per vocabulary: [N] tf.string -> ragged word pieces.

  Shared by every `TextTokenizer` so keras-hub's BPE graph (a while loop of
  nested functions, ~1.5 s to trace) is traced once per process; eager calls,
  `tf.function`s and `tf.data` maps all reuse the one concrete function.
  Inside it keras-hub's tokenizer takes its TF-op path.
  """
  tokenizer = _cached_tokenizer(path)

  @tf.function(
    input_signature=[tf.TensorSpec([None], tf.string)], autograph=False
  )
  def word_pieces(texts: tf.Tensor) -> tf.RaggedTensor:
    words = split_words(clean_text(texts))  # [N, (W)] tf.string
    # keras-hub BPE on each word alone: [sum W, (pieces)] int32.
    pieces = tokenizer.tokenize(words.flat_values)
    pieces = tf.RaggedTensor.from_row_splits(
      pieces, tf.cast(words.row_splits, pieces.row_splits.dtype)
    ).merge_dims(1, 2)  # [N, (pieces)]
    return tf.cast(pieces, tf.int32)

  return word_pieces


class TextTokenizer:
  """CLIP BPE tokenisation usable eagerly, in tf.function and in tf.data.map.

  ids = `[BOS] + word pieces + [EOS]`, padded with `PAD_ID` (0) to
  `max_length`.  Truncation:
    * `keep_eos=False` (the reference, DMVR's ClipTokenizer): add BOS/EOS
      first, then cut to `max_length`; a text with more than `max_length - 2`
      pieces loses its EOS.
    * `keep_eos=True`: cut the pieces to `max_length - 2` first, so EOS is
      always present (the same ids as OpenAI's
      `clip.tokenize(..., truncate=True)`).
  An empty string gives `[BOS, EOS, 0, ...]`.

  Mask (`mask_rule`):
    * "length" (default): 1 on the first `min(max_length, pieces + 2)`
      positions, i.e. on every id the text produced.  Id 0 is also the BPE
      piece "!" (e.g. in `"!` or `?!"`), so it cannot mark padding.
    * "nonzero" (the reference, DMVR's `input_mask = ids != 0`): 0 on every
      id 0, which masks a real "!" piece as padding.

  Example:
    >>> tok = TextTokenizer(max_length=8)
    >>> ids, mask = tok(tf.constant("a photo of a cat"))
    >>> ids.numpy()
    array([49406,   320,  1125,   539,   320,  2368, 49407,     0], ...)
  """

  def __init__(
    self,
    max_length: int,
    keep_eos: bool = False,
    vocabulary: Optional[str] = None,
    mask_rule: str = "length",
  ):
    """Builds the tokenizer.

    Args:
      max_length: L, the number of ids per text (>= 2).
      keep_eos: see the class docstring.
      vocabulary: a CLIP `bpe_simple_vocab_16e6.txt.gz`; None = shipped one.
      mask_rule: "length" or "nonzero" (reference); see the class docstring.
    """
    if int(max_length) < 2:
      raise ValueError(f"max_length must be >= 2, got {max_length}.")
    if mask_rule not in MASK_RULES:
      raise ValueError(
        f"TextTokenizer mask_rule={mask_rule!r}: use one of {MASK_RULES}."
      )
    self.mask_rule = mask_rule
    self.max_length = int(max_length)
    self.keep_eos = bool(keep_eos)
    self.vocabulary = vocabulary or vocabulary_path()
    self._word_pieces = _word_pieces_fn(os.path.abspath(self.vocabulary))

  def _assemble(self, pieces: tf.RaggedTensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Ragged [N, (pieces)] int32 -> ids, mask, both [N, L] int32."""
    if self.keep_eos:
      pieces = pieces[:, : self.max_length - 2]
    n = pieces.nrows()
    ends = [
      tf.RaggedTensor.from_tensor(
        tf.fill(tf.stack([n, 1]), tf.constant(i, tf.int32)),
        row_splits_dtype=pieces.row_splits.dtype,
      )
      for i in (BOS_ID, EOS_ID)
    ]
    ids = tf.concat([ends[0], pieces, ends[1]], axis=1)
    dense = ids.to_tensor(default_value=PAD_ID, shape=[None, self.max_length])
    if self.mask_rule == "nonzero":
      mask = tf.not_equal(dense, PAD_ID)
    else:
      mask = tf.sequence_mask(ids.row_lengths(), self.max_length)
    return dense, tf.cast(mask, tf.int32)

  def __call__(self, texts) -> Tuple[tf.Tensor, tf.Tensor]:
    """Tokenises texts.

    Args:
      texts: tf.string tensor (or str / nested lists of str) of any shape
        [...], e.g. a scalar query or [K] captions.

    Returns:
      ids: int32 [..., max_length].
      mask: int32 [..., max_length], 1 on real ids (see `mask_rule`).
    """
    texts = tf.convert_to_tensor(texts, tf.string)
    ids, mask = self._assemble(self._word_pieces(tf.reshape(texts, [-1])))
    out_shape = texts.shape.concatenate([self.max_length])
    shape = tf.concat([tf.shape(texts), [self.max_length]], 0)
    ids = tf.ensure_shape(tf.reshape(ids, shape), out_shape)
    mask = tf.ensure_shape(tf.reshape(mask, shape), out_shape)
    return ids, mask


def apply_prompts(
  class_names: Sequence[str], prompts: Optional[Sequence[str]]
) -> list[str]:
  """Fills prompt templates with class names, class-major.

  Args:
    class_names: C names.
    prompts: P Python format templates with a `{}` placeholder (e.g.
      `KINETICS_PROMPTS`), or None.

  Returns:
    `[p.format(name) for name in class_names for p in prompts]` (C * P
    texts), or the class names unchanged when `prompts` is None.
  """
  if isinstance(class_names, str):
    raise TypeError("class_names must be a sequence of str, not a str.")
  if prompts is None:
    return list(class_names)
  if isinstance(prompts, str):
    raise TypeError("prompts must be a sequence of str, not a str.")
  if not prompts:
    raise ValueError("prompts is empty; pass None for no prompts.")
  for p in prompts:
    if p.format("\x00") == p:
      raise ValueError(f"prompt {p!r} has no '{{}}' placeholder.")
  return [p.format(name) for name in class_names for p in prompts]


def tokenize_class_names(
  class_names: Sequence[str],
  max_length: int,
  prompts: Optional[Sequence[str]] = None,
  keep_eos: bool = False,
  vocabulary: Optional[str] = None,
  mask_rule: str = "length",
) -> Tuple[np.ndarray, np.ndarray]:
  """Tokenises (prompted) class names once, on the host.

  Args:
    class_names: C names.
    max_length: L.
    prompts: P templates (see `apply_prompts`) or None (P = 1).
    keep_eos: see `TextTokenizer`.
    vocabulary: CLIP .txt.gz; None = the shipped one.
    mask_rule: see `TextTokenizer`.

  Returns:
    ids: int32 np.ndarray [C, P, L]; row [c, p] is prompt p filled with
      class c.
    mask: int32 np.ndarray [C, P, L].
  """
  texts = apply_prompts(class_names, prompts)
  num_prompts = 1 if prompts is None else len(prompts)
  tokenizer = TextTokenizer(
    max_length, keep_eos=keep_eos, vocabulary=vocabulary, mask_rule=mask_rule
  )
  ids, mask = tokenizer(tf.constant(texts, tf.string, shape=[len(texts)]))
  shape = (len(class_names), num_prompts, int(max_length))
  return (
    ids.numpy().reshape(shape).astype(np.int32),
    mask.numpy().reshape(shape).astype(np.int32),
  )


def kinetics_prompts() -> Tuple[str, ...]:
  """CLIP's 28 Kinetics prompt templates (for gin: `@text.kinetics_prompts()`)."""
  return KINETICS_PROMPTS
