"""The import direction of the package (README, "Layout"), checked by AST.

tools → launch → train/export → tasks → models → layers → ops/spec;
data → targets → ops/spec; metrics imports nothing from the package and no
TensorFlow.  Only unloc_tf/launch.py may import gin or absl.flags.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "unloc_tf")

_LOW = {"spec", "ops"}
ALLOWED = {
    "spec": set(),
    "config_files": set(),
    "ops": {"spec"},
    "targets": _LOW,
    "data": _LOW | {"targets"},
    "layers": _LOW,
    "losses": _LOW,
    "postprocess": _LOW,
    "models": _LOW | {"layers"},
    "tasks": _LOW | {"layers", "models", "losses", "postprocess"},
    "metrics": set(),
    "export": _LOW | {"layers", "models", "losses", "postprocess", "tasks",
                      "data"},
    "train": _LOW | {"layers", "models", "losses", "postprocess", "tasks",
                     "data", "targets", "metrics", "export"},
    "launch": _LOW | {"layers", "models", "losses", "postprocess", "tasks",
                      "data", "targets", "metrics", "export", "train",
                      "config_files"},
}


def _modules():
  for dirpath, _, files in os.walk(ROOT):
    for f in files:
      if f.endswith(".py"):
        path = os.path.join(dirpath, f)
        rel = os.path.relpath(path, ROOT)
        yield rel, path


def _imports(path):
  tree = ast.parse(open(path).read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for a in node.names:
        yield a.name
    elif isinstance(node, ast.ImportFrom) and node.module:
      if node.module == "unloc_tf":
        for a in node.names:
          yield f"unloc_tf.{a.name}"
      else:
        yield node.module
        for a in node.names:
          yield f"{node.module}.{a.name}"


def _layer(rel):
  head = rel.split(os.sep)[0]
  return head[:-3] if head.endswith(".py") else head


@pytest.mark.parametrize("rel,path", sorted(_modules()))
def test_import_direction(rel, path):
  layer = _layer(rel)
  if layer == "__init__":
    return
  assert layer in ALLOWED, f"{rel}: new top-level module, add it to ALLOWED"
  for name in _imports(path):
    if name.startswith("unloc_tf."):
      target = name.split(".")[1]
      if target == layer:
        continue
      assert target in ALLOWED[layer], (
          f"{rel} imports {name}: {layer} may only import {ALLOWED[layer]}")
    if layer != "launch":
      assert name.split(".")[0] != "gin", f"{rel} imports gin"
      assert name not in ("absl.flags",), f"{rel} imports absl.flags"
    if layer == "metrics":
      assert name.split(".")[0] not in ("tensorflow", "keras"), (
          f"{rel}: metrics are numpy only, got {name}")


def test_the_scan_sees_imports():
  """Guards the test itself: a known import must be found."""
  names = set(_imports(os.path.join(ROOT, "data", "pipeline.py")))
  assert "unloc_tf.targets.localization" in names or (
      "unloc_tf.targets" in names)
  assert "tensorflow" in names
