r"""OpenAI CLIP's text cleaning, in TF graph ops (no ftfy, no py_function).

OpenAI's `SimpleTokenizer.encode` cleans a text before BPE:

  1. `ftfy.fix_text(text)` with ftfy's defaults (ftfy 6.3 `TextFixerConfig`:
     `unescape_html="auto"`, `fix_encoding`, `fix_c1_controls`,
     `fix_latin_ligatures`, `fix_character_width`, `uncurl_quotes`,
     `fix_line_breaks`, `remove_terminal_escapes`, `remove_control_chars`
     all on, `normalization="NFC"`).  ftfy repeats these fixers, in that
     order, on each line until nothing changes;
  2. `html.unescape` twice;
  3. `strip`, runs of `regex`'s `\s` -> one space, `strip`, `lower()`.

`clean_text` reproduces all of it with TF / TF-Text ops, except ftfy's
`fix_encoding` (mojibake detection, e.g. "doesnÃ¢â‚¬â„¢t" -> "doesn't"):
that is a heuristic over ftfy's own character-frequency tables and is not
reproduced (such text keeps its mojibake characters; see
tests/data/text_cleaning_test.py for the documented cases).  The other
fixers are exact:

  * C1 controls U+0080..U+009F -> their Windows-1252 characters
    ("\x85" -> "…", "\x92" -> "’" -> "'"); bytes Windows-1252 leaves
    undefined stay;
  * the 22 Latin ligatures and digraphs ftfy lists ("ﬁ" -> "fi", "ŉ" ->
    "ʼn" -> "'n", "ﬅ" -> "ſt");
  * full-width / half-width forms U+FF01..U+FFEF -> their NFKC form, and
    U+3000 -> space ("Ｈｅｌｌｏ" -> "Hello"); other NFKC changes ("³", "™")
    are not made, as in ftfy;
  * curly quotes: U+02BC and U+2018..U+201B -> "'", U+201C..U+201F -> '"';
  * line breaks ("\r\n", "\r", U+2028, U+2029) -> "\n";
  * ANSI terminal escapes (ESC "[" digits/";" letter) removed;
  * control characters U+0000..U+0008, U+000B, U+000E..U+001F, U+007F,
    U+206A..U+206F, U+FEFF, U+FFF9..U+FFFC removed (so a NUL no longer cuts
    the text: TF's `lower` stops at a NUL);
  * NFC;
  * ftfy's HTML unescaping (`&name;` from the HTML5 table, some all-caps
    forms like "&EACUTE;", `&#65;` / `&#x41;`), skipped, as in ftfy, on the
    first line containing "<" and on every line after it;
  * Python's `html.unescape` (HTML5 rules: entities without ";" such as
    "&amp" or "&notit;" -> "¬it;", invalid numeric references -> U+FFFD,
    Windows-1252 or nothing), twice.

Other known differences: TF's `lower` (ICU) leaves about 40 letters added in
Unicode 14+ upper-case (e.g. U+2C2F); the input must be UTF-8 (invalid bytes
become U+FFFD; OpenAI's tokenizer takes `str` and never sees them); ftfy's
fixpoint loop is capped at `_MAX_FIX_ROUNDS` rounds (one round per nested
"&amp;" level).

The tables are built from Python's standard library (`html.entities.html5`,
`unicodedata`, the cp1252 codec) at import; they are graph constants (no
lookup-table resources, so a SavedModel needs nothing tracked).
"""

from __future__ import annotations

import html
import html.entities
import unicodedata
from typing import Callable, Dict, Tuple

import tensorflow as tf
import tensorflow_text as tf_text

# ftfy repeats its fixers until the text stops changing; one round per level
# of nested escaping ("&amp;amp;lt;") is needed.  Two more levels are undone
# by the two `html.unescape` passes after it.
_MAX_FIX_ROUNDS = 16

# --- ftfy's per-character fixes ------------------------------------------
# fix_latin_ligatures: ftfy's table (ftfy/chardata.py LIGATURES).
_LIGATURES = {
  "\u0132": "IJ", "\u0133": "ij", "\u0149": "\u02bcn",
  "\u01f1": "DZ", "\u01f2": "Dz", "\u01f3": "dz",
  "\u01c4": "D\u017d", "\u01c5": "D\u017e", "\u01c6": "d\u017e",
  "\u01c7": "LJ", "\u01c8": "Lj", "\u01c9": "lj",
  "\u01ca": "NJ", "\u01cb": "Nj", "\u01cc": "nj",
  "\ufb00": "ff", "\ufb01": "fi", "\ufb02": "fl", "\ufb03": "ffi",
  "\ufb04": "ffl", "\ufb05": "\u017ft", "\ufb06": "st",
}  # fmt: skip

# remove_control_chars (RE2 class).
_CONTROL_CHARS = (
  r"[\x00-\x08\x0b\x0e-\x1f\x7f\x{206a}-\x{206f}\x{feff}\x{fff9}-\x{fffc}]"
)
# remove_terminal_escapes: ftfy's "\033\[((?:\d|;)*)([a-zA-Z])" (Python's
# `\d` is any Unicode decimal digit).
_ANSI_ESCAPE = r"\x1b\[(?:\p{Nd}|;)*[a-zA-Z]"
_LINE_BREAKS = r"\r\n|[\r\x{2028}\x{2029}]"

# --- HTML ------------------------------------------------------------------
# ftfy's `unescape_html` matches; Python's `html.unescape` matches (`_charref`).
_FTFY_ENTITY = r"&#?[0-9A-Za-z]{1,24};"
_HTML_CHARREF = (
  r"&(?:#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)"
)
_NUMERIC_CHARREF = r"&#(?:[0-9]+|[xX][0-9a-fA-F]+);?"

# Text that needs no fixing (ftfy and html.unescape leave it as it is).
_PLAIN_TEXT = r"[\t\n\r\x20-\x25\x27-\x7e]*"

# Whitespace of the `regex` module's `\s` (OpenAI's `whitespace_clean`); it
# excludes U+001C..U+001F, which `str.isspace` includes.
_WHITESPACE_RUN = (
  r"[\t\n\x0b\x0c\r \x{85}\x{a0}\x{1680}\x{2000}-\x{200a}"
  r"\x{2028}\x{2029}\x{202f}\x{205f}\x{3000}]+"
)


def _cp1252(code: int) -> str:
  """ftfy's "sloppy" Windows-1252 decoding of one C1 control."""
  try:
    return bytes([code]).decode("cp1252")
  except UnicodeDecodeError:
    return chr(code)


def _uncurl(text: str) -> str:
  out = []
  for c in text:
    if c == "\u02bc" or "\u2018" <= c <= "\u201b":
      c = "'"
    elif "\u201c" <= c <= "\u201f":
      c = '"'
    out.append(c)
  return "".join(out)


def _build_char_map() -> Dict[str, str]:
  """ftfy's per-character fixers, composed in ftfy's order.

  fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes:
  each maps one character to a string, so their composition is one map.
  """
  width = {"\u3000": " "}
  for code in range(0xFF01, 0xFFF0):
    alternate = unicodedata.normalize("NFKC", chr(code))
    if alternate != chr(code):
      width[chr(code)] = alternate
  steps = (
    {chr(c): _cp1252(c) for c in range(0x80, 0xA0)},
    _LIGATURES,
    width,
    {c: _uncurl(c) for c in "\u02bc\u2018\u2019\u201a\u201b\u201c\u201d"
     "\u201e\u201f"},
  )
  keys = set().union(*steps)
  table = {}
  for key in keys:
    value = key
    for step in steps:
      value = "".join(step.get(c, c) for c in value)
    if value != key:
      table[key] = value
  return table


def _html_tables() -> Tuple[Dict[str, str], Dict[str, str]]:
  """(ftfy's `&name;` table, Python's html5 table keyed without "&")."""
  html5 = dict(html.entities.html5)
  ftfy = {}
  for name, char in html5.items():
    if not name.endswith(";"):
      continue
    ftfy["&" + name] = char
    # ftfy also decodes a lower-case name written all-caps when that is not
    # itself an HTML5 name ("&EACUTE;" -> "É", "&SZLIG;" -> "SS").
    upper = "&" + name.upper()
    if name == name.lower() and html.unescape(upper) == upper:
      ftfy[upper] = char.upper()
  return ftfy, html5


def _invalid_codepoints() -> list[int]:
  """HTML5's invalid numeric references that `html.unescape` drops."""
  codes = [*range(0x1, 0x9), 0xB, *range(0xE, 0x20), *range(0x7F, 0xA0)]
  codes += list(range(0xFDD0, 0xFDF0))
  for plane in range(17):
    codes += [plane * 0x10000 + 0xFFFE, plane * 0x10000 + 0xFFFF]
  return codes


CHAR_MAP = _build_char_map()
FTFY_ENTITIES, HTML5_ENTITIES = _html_tables()
INVALID_CODEPOINTS = tuple(_invalid_codepoints())
# html.unescape's numeric references replaced instead of decoded.
INVALID_CHARREFS = {0x00: "\ufffd", 0x0D: "\r"}
INVALID_CHARREFS.update({c: _cp1252(c) for c in range(0x80, 0xA0)})


# ---------------------------------------------------------------------------
# Graph helpers.  All take / return tf.string [N].
# ---------------------------------------------------------------------------
def _sorted_table(table: Dict[str, str]) -> Tuple[tf.Tensor, tf.Tensor]:
  keys = sorted(table)
  return (
    tf.constant(keys, tf.string),
    tf.constant([table[k] for k in keys], tf.string),
  )


def _lookup(
  queries: tf.Tensor, keys: tf.Tensor, values: tf.Tensor
) -> Tuple[tf.Tensor, tf.Tensor]:
  """Exact-match lookup without a table resource.

  Args:
    queries: tf.string [M].
    keys, values: tf.string [K].

  Returns:
    found: bool [M]; value: tf.string [M] ("" where not found).
  """
  hits = tf.equal(queries[:, None], keys[None, :])  # [M, K]
  found = tf.reduce_any(hits, axis=1)
  value = tf.gather(values, tf.argmax(tf.cast(hits, tf.int32), axis=1))
  return found, tf.where(found, value, "")


def _replace_matches(
  texts: tf.Tensor, pattern: str, fn: Callable[[tf.Tensor], tf.Tensor]
) -> tf.Tensor:
  """Replaces every (leftmost, non-overlapping) match m of pattern by fn(m).

  Args:
    texts: tf.string [N].
    pattern: RE2 pattern (matching no empty string).
    fn: tf.string [M] matches -> tf.string [M] replacements.
  """
  pieces = tf_text.regex_split(texts, pattern, keep_delim_regex_pattern=pattern)
  flat = pieces.flat_values  # [P]: matches and the text between them
  is_match = tf.strings.regex_full_match(flat, pattern)
  where = tf.where(is_match)
  replaced = tf.tensor_scatter_nd_update(
    flat, where, fn(tf.gather_nd(flat, where))
  )
  out = tf.strings.reduce_join(pieces.with_flat_values(replaced), axis=1)
  return tf.ensure_shape(out, texts.shape)


def _translate(texts: tf.Tensor, table: Dict[str, str]) -> tf.Tensor:
  """Per-character replacement (Python's `str.translate`)."""
  keys = sorted(table)
  codes = tf.constant([ord(k) for k in keys], tf.int32)
  values = tf.constant([table[k] for k in keys], tf.string)
  chars = tf.strings.unicode_split(texts, "UTF-8")  # [N, (C)]
  cps = tf.strings.unicode_decode(texts, "UTF-8").flat_values  # [sum C]
  index = tf.minimum(
    tf.searchsorted(codes, cps, side="left"), len(keys) - 1
  )
  hit = tf.equal(tf.gather(codes, index), cps)
  flat = tf.where(hit, tf.gather(values, index), chars.flat_values)
  out = tf.strings.reduce_join(chars.with_flat_values(flat), axis=1)
  return tf.ensure_shape(out, texts.shape)


def _hex_value(digits: tf.Tensor) -> tf.Tensor:
  """[M] strings of 1..6 hex digits -> int32 [M]."""
  padded = tf.strings.substr(tf.strings.join(["000000", digits]), -6, 6)
  cps = tf.strings.unicode_decode(padded, "UTF-8").to_tensor(shape=[None, 6])
  lower = tf.bitwise.bitwise_or(cps, 0x20)
  values = tf.where(cps <= ord("9"), cps - ord("0"), lower - ord("a") + 10)
  return tf.reduce_sum(values * (16 ** tf.range(5, -1, -1)), axis=1)


def _numeric_charref(refs: tf.Tensor) -> tf.Tensor:
  """Python `html.unescape` of numeric references "&#65;", "&#x41" ([M])."""
  is_hex = tf.strings.regex_full_match(refs, "&#[xX].*")
  digits = tf.strings.regex_replace(refs, r"^&#[xX]?0*|;$", "")
  size = tf.strings.length(digits)
  too_big = size > tf.where(is_hex, 6, 7)  # beyond U+10FFFF either way
  safe = tf.where(too_big | (size == 0), "0", digits)
  decimal = tf.strings.to_number(
    tf.where(is_hex, "0", safe), out_type=tf.int32
  )
  num = tf.where(is_hex, _hex_value(tf.where(is_hex, safe, "0")), decimal)
  num = tf.where(too_big, 0x110000, num)

  special = sorted(INVALID_CHARREFS)
  found, special_value = _lookup(
    tf.strings.as_string(num),
    tf.constant([str(c) for c in special]),
    tf.constant([INVALID_CHARREFS[c] for c in special]),
  )
  bad = ((num >= 0xD800) & (num <= 0xDFFF)) | (num > 0x10FFFF)
  dropped = tf.reduce_any(
    tf.equal(num[:, None], tf.constant(INVALID_CODEPOINTS)[None]), axis=1
  )
  safe_num = tf.where(bad, 0xFFFD, num)
  char = tf.strings.unicode_encode(safe_num[:, None], "UTF-8")
  char = tf.where(dropped, "", char)
  return tf.where(found, special_value, char)


def _ftfy_entity(matches: tf.Tensor) -> tf.Tensor:
  """ftfy's `_unescape_fixup` of `&#?[0-9A-Za-z]{1,24};` matches ([M])."""
  keys, values = _sorted_table(FTFY_ENTITIES)
  found, named = _lookup(matches, keys, values)
  numeric = tf.strings.regex_full_match(matches, _NUMERIC_CHARREF)
  decoded = _numeric_charref(tf.where(numeric, matches, "&#0;"))
  # ftfy keeps the reference when html.unescape leaves a ";" ("&#59;").
  numeric = numeric & tf.not_equal(decoded, ";")
  return tf.where(found, named, tf.where(numeric, decoded, matches))


def _html_charref(matches: tf.Tensor) -> tf.Tensor:
  """Python's `html._replace_charref` of `_HTML_CHARREF` matches ([M])."""
  numeric = tf.strings.regex_full_match(matches, _NUMERIC_CHARREF)
  decoded = _numeric_charref(tf.where(numeric, matches, "&#0;"))
  length = tf.strings.length(matches)
  name = tf.strings.substr(matches, tf.ones_like(length), length)  # no "&"
  keys, values = _sorted_table(HTML5_ENTITIES)
  found, named = _lookup(name, keys, values)
  # Otherwise the longest prefix of length >= 2, shorter than the name, that
  # is an entity: only the ";"-less legacy names (2..6 ASCII chars) can be.
  # RE2 alternation is leftmost-first, so longer names are listed first.
  legacy = {k: v for k, v in HTML5_ENTITIES.items() if not k.endswith(";")}
  legacy_keys, legacy_values = _sorted_table(legacy)
  names = "|".join(sorted(legacy, key=lambda k: (-len(k), k)))
  prefix = tf.strings.regex_replace(name, f"^({names})(?s:.+)$|^.*$", r"\1")
  hit, value = _lookup(prefix, legacy_keys, legacy_values)
  rest = tf.strings.substr(name, tf.strings.length(prefix), length)
  out = tf.where(found, named, matches)
  out = tf.where(hit & ~found, tf.strings.join([value, rest]), out)
  return tf.where(numeric, decoded, out)


def _ftfy_round(texts: tf.Tensor, unescape: tf.Tensor) -> tf.Tensor:
  """One round of ftfy's fixers (no mojibake repair), [N] -> [N]."""
  unescaped = _replace_matches(texts, _FTFY_ENTITY, _ftfy_entity)
  texts = tf.where(unescape, unescaped, texts)
  texts = _translate(texts, CHAR_MAP)
  texts = tf.strings.regex_replace(texts, _LINE_BREAKS, "\n")
  texts = tf.strings.regex_replace(texts, _ANSI_ESCAPE, "")
  texts = tf.strings.regex_replace(texts, _CONTROL_CHARS, "")
  return tf_text.normalize_utf8(texts, "NFC")


def fix_text(texts: tf.Tensor) -> tf.Tensor:
  """ftfy's `fix_text` with its defaults, minus mojibake repair.

  Args:
    texts: tf.string [N], UTF-8.

  Returns:
    tf.string [N].
  """
  n = tf.size(texts)
  # ftfy's "auto" HTML unescaping stops at the first line containing "<":
  # `head` is the text before that line, `tail` the rest.
  has_lt = tf.strings.regex_full_match(texts, "(?s).*<.*")
  head = tf.where(
    has_lt,
    tf.strings.regex_replace(
      texts, r"(?s)^((?:[^<\n]*\n)*)[^\n]*<.*$", r"\1"
    ),
    texts,
  )
  tail = tf.strings.substr(
    texts, tf.strings.length(head), tf.strings.length(texts)
  )
  parts = tf.concat([head, tail], 0)  # [2N]
  unescape = tf.concat([tf.ones([n], tf.bool), tf.zeros([n], tf.bool)], 0)

  def body(i, _, cur):
    return i + 1, cur, _ftfy_round(cur, unescape)

  def not_done(i, prev, cur):
    changed = tf.reduce_any(tf.not_equal(prev, cur))
    return (i == 0) | ((i < _MAX_FIX_ROUNDS) & changed)

  _, _, fixed = tf.while_loop(not_done, body, (tf.constant(0), parts, parts))
  return tf.strings.join([fixed[:n], fixed[n:]])


def html_unescape(texts: tf.Tensor, times: int = 1) -> tf.Tensor:
  """Python's `html.unescape`, `times` times in a row, [N] -> [N]."""
  _, texts = tf.while_loop(
    lambda i, _: i < times,
    lambda i, t: (i + 1, _replace_matches(t, _HTML_CHARREF, _html_charref)),
    (tf.constant(0), texts),
  )
  return texts


def _fix_and_unescape(texts: tf.Tensor) -> tf.Tensor:
  """ftfy's `fix_text`, then `html.unescape` twice ([N] -> [N])."""
  texts = tf.strings.unicode_transcode(
    texts, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD
  )
  return html_unescape(fix_text(texts), times=2)


def clean_text(texts: tf.Tensor) -> tf.Tensor:
  """OpenAI CLIP's text cleaning (see the module docstring), with TF ops.

  Args:
    texts: tf.string tensor [N] (any UTF-8).

  Returns:
    tf.string [N]: fixed, unescaped, single-spaced, stripped, lower-cased.
  """
  # NUL first: several TF string ops (`unicode_split`, `lower`) stop at it.
  # ftfy removes it anyway, and its fixpoint loop redoes what it would break.
  texts = tf.strings.regex_replace(texts, r"\x00", "")
  # Printable ASCII without "&" (and ASCII whitespace) is left unchanged by
  # ftfy and html.unescape: skip them when the whole batch is such text.
  plain = tf.reduce_all(tf.strings.regex_full_match(texts, _PLAIN_TEXT))
  texts = tf.cond(
    plain, lambda: tf.identity(texts), lambda: _fix_and_unescape(texts)
  )
  texts = tf.strings.regex_replace(texts, _WHITESPACE_RUN, " ")
  texts = tf.strings.strip(texts)
  return tf.strings.lower(texts, encoding="utf-8")
