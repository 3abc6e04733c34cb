"""Checks of the `--gin_bindings` a user gives, with messages that quote them.

Gin accepts a binding of a macro that no config reads (`TRAIN_STEP=10`, a
typo of TRAIN_STEPS, would be silently ignored) and reports a binding it
cannot parse as `SyntaxError: Unable to parse value.` at a line of a string
the user never wrote.  `macros_set` parses each binding on its own and names
the one that fails; `check_macros_used` runs after the whole config is
parsed and names a macro nobody reads, with the closest known names.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Iterable, List, Sequence, Set

import gin
from gin import config_parser

_MACRO = "gin.macro"
_REQUIRED = re.compile(
    r"^(?P<name>[\w.]+)/macro\.value set to `%gin\.REQUIRED`")


class _SyntaxOnly(config_parser.ParserDelegate):
  """Parses references and macros without resolving them."""

  def configurable_reference(self, scoped_name, evaluate):
    return ("@", scoped_name, evaluate)

  def macro(self, macro_name):
    return ("%", macro_name)


def macros_set(gin_bindings: Sequence[str]) -> List[str]:
  """The macros the bindings set (`NAME = value`), in order; raises
  ValueError quoting a binding gin cannot parse."""
  names = []
  for binding in gin_bindings:
    try:
      statements = list(config_parser.ConfigParser(binding, _SyntaxOnly()))
    except SyntaxError as e:
      raise ValueError(f"--gin_bindings={binding!r} does not parse:"
                       f" {e.msg} (write NAME = value, e.g."
                       " \"TRAIN_STEPS = 100\" or \"DATA_DIR = '/data'\")"
                       ) from None
    for statement in statements:
      if (isinstance(statement, config_parser.BindingStatement)
          and not statement.arg_name and "." not in statement.selector):
        names.append(statement.selector)
  return names


def _macro_references(value: Any, found: Set[str]) -> None:
  if isinstance(value, gin.config.ConfigurableReference):
    if value.selector == _MACRO:
      found.add(value.scoped_selector.rsplit("/", 1)[0])
  elif isinstance(value, dict):
    for v in value.values():
      _macro_references(v, found)
  elif isinstance(value, (list, tuple, set, frozenset)):
    for v in value:
      _macro_references(v, found)


def _parsed_config():
  return gin.config._CONFIG  # noqa: SLF001  (gin has no public iterator)


def macros_referenced() -> Set[str]:
  """Every macro the parsed config reads (`%NAME` anywhere)."""
  found: Set[str] = set()
  for values in _parsed_config().values():
    for value in values.values():
      _macro_references(value, found)
  return found


def macros_defined() -> Set[str]:
  return {scope for scope, selector in _parsed_config()
          if selector == _MACRO}


def check_macros_used(names: Iterable[str]) -> None:
  """Raises ValueError naming the first macro in `names` that the parsed
  config never reads, with the closest names it does read."""
  used = macros_referenced()
  for name in names:
    if name in used:
      continue
    known = sorted((used | macros_defined()) - {name})
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = (f" (did you mean {close[0]}?)" if close else
            " (the experiment's macros are listed in its gin files'"
            " headers)")
    raise ValueError(f"unknown macro {name}{hint}: no config reads"
                     f" --gin_bindings {name}")


def required_macro(error: Exception) -> str | None:
  """The macro a gin "set to %gin.REQUIRED but not overridden" error is
  about, else None."""
  match = _REQUIRED.match(str(error))
  return match.group("name") if match else None
