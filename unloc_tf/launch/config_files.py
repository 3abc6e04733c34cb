"""Finds the bundled gin files by name (in a checkout or after pip install).

`find("datasets/synthetic.gin")`, `find("datasets/synthetic")` and an
absolute or relative path that exists all work.  The search order is: the
path as given, the `gin/` folder of a source checkout, then the copy that
`pip install` puts in `unloc_tf/gin_configs/`.
"""

from __future__ import annotations

import difflib
import os
from typing import List

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def search_paths() -> List[str]:
  """Folders that hold the bundled gin files, most specific first."""
  paths = []
  checkout = os.path.join(os.path.dirname(_PACKAGE), "gin")
  if os.path.isdir(checkout):
    paths.append(checkout)
  installed = os.path.join(_PACKAGE, "gin_configs")
  if os.path.isdir(installed):
    paths.append(installed)
  return paths


def find(name: str) -> str:
  """Resolves a gin file name to a path.

  Raises:
    FileNotFoundError: listing where it looked.
  """
  candidates = [name] if name.endswith(".gin") else [name, name + ".gin"]
  for cand in candidates:
    if os.path.isfile(cand):
      return os.path.abspath(cand)
  for root in search_paths():
    for cand in candidates:
      path = os.path.join(root, cand)
      if os.path.isfile(path):
        return path
  stem = name[:-len(".gin")] if name.endswith(".gin") else name
  close = difflib.get_close_matches(
      stem, [n[:-len(".gin")] for n in list_configs()], n=3, cutoff=0.6)
  hint = (f"; did you mean {' or '.join(close)}?" if close else
          "; bundled configs: experiments/<name>, e.g."
          " experiments/synthetic_tal")
  raise FileNotFoundError(
      f"gin file {name!r} not found as a path nor under"
      f" {', '.join(search_paths())}{hint}")


def list_configs(subdir: str = "") -> List[str]:
  """Names (relative to the gin folder) of every bundled gin file."""
  names = set()
  for root in search_paths():
    base = os.path.join(root, subdir)
    for dirpath, _, files in os.walk(base):
      for f in files:
        if f.endswith(".gin"):
          names.add(os.path.relpath(os.path.join(dirpath, f), root))
  return sorted(names)
