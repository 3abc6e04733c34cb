"""The import direction of the package (README, "Layout"), checked by AST.

  tools → predict → launch → train / export → tasks → models → layers →
  ops / spec;  features, convert → train;  data → targets → ops / spec;
  datasets → data, metrics;  visualize → datasets, metrics;  metrics
  imports nothing from the package and no TensorFlow.

Only the launch layer (`unloc_tf/launch/`) may import gin or absl.flags.
"""

import ast
import os

import pytest

ROOT = os.path.join(os.path.dirname(os.path.dirname(__file__)), "unloc_tf")

_LOW = {"spec", "ops"}
_MODEL = _LOW | {"layers", "models", "losses", "postprocess", "tasks",
                 "metrics"}
ALLOWED = {
    "spec": set(),
    "version": set(),
    "ops": {"spec"},
    "targets": _LOW,
    "data": _LOW | {"targets"},
    "layers": _LOW,
    "losses": _LOW,
    "postprocess": _LOW,
    "models": _LOW | {"layers"},
    "metrics": set(),
    "tasks": _LOW | {"layers", "models", "losses", "postprocess", "metrics"},
    "export": _MODEL | {"data", "version"},
    "train": _MODEL | {"data", "targets", "export"},
    "datasets": {"spec", "data", "metrics"},
    "visualize": {"datasets", "metrics"},
    "convert": _MODEL | {"data", "train"},
    "features": _MODEL | {"data", "train"},
    "launch": _MODEL | {"data", "targets", "export", "train"},
    "predict": _MODEL | {"data", "export", "train", "launch", "visualize"},
    "__init__": {"predict", "version"},  # unloc_tf.Predictor, __version__
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
  names = set(_imports(os.path.join(ROOT, "data", "examples.py")))
  assert "unloc_tf.targets.localization" in names or (
      "unloc_tf.targets" in names)
  assert "tensorflow" in names


TOOLS = os.path.join(os.path.dirname(ROOT), "tools")


@pytest.mark.parametrize("name", sorted(
    f for f in os.listdir(TOOLS) if f.endswith(".py")))
def test_tools_are_thin(name):
  """A tool parses flags and calls the library: no gin, no other tool."""
  for imported in _imports(os.path.join(TOOLS, name)):
    assert imported.split(".")[0] not in ("gin", "tools"), (
        f"tools/{name} imports {imported}: read experiments through"
        " unloc_tf.launch, and move shared code into the package")
