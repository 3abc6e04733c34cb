"""Runs one pytest file under `bazel test` (the py_test main).

Under Bazel the package must come from the test's runfiles (the sources of
the libraries it depends on), not from an installed copy, or a missing
dependency in BUILD would go unnoticed: an editable install's import hook
is removed before anything is imported, and a module loaded from outside
the runfiles fails the test.
"""

import os
import sys

import pytest

_OURS = ("unloc_tf", "tests")


def _outside_runfiles(root: str) -> list:
  return sorted(
      name for name, module in list(sys.modules.items())
      if name.split(".")[0] in _OURS and getattr(module, "__file__", None)
      and not os.path.abspath(module.__file__).startswith(root))


if __name__ == "__main__":
  runfiles = os.environ.get("TEST_SRCDIR")
  if runfiles:
    def _editable(finder) -> bool:
      names = (type(finder).__name__, getattr(finder, "__name__", ""))
      return any("editable" in n.lower() for n in names)

    sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
  code = pytest.main(["-q", "-p", "no:cacheprovider", *sys.argv[1:]])
  if runfiles:
    stray = _outside_runfiles(os.path.abspath(runfiles))
    if stray:
      print(f"imported from outside the runfiles (a dependency missing in"
            f" BUILD?): {stray}")
      code = code or 1
  sys.exit(code)
