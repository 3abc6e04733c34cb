"""Every Python name the README shows resolves from the package level it is
shown at (keras-hub style): the imports of its code blocks, the
`module.name` uses in them, and each `unloc_tf.x.y` named in the text."""

import ast
import importlib
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = open(os.path.join(ROOT, "README.md")).read()
_BLOCKS = re.findall(r"```(?:python)?\n(.*?)```", README, re.S)
_PYTHON = [b for b in _BLOCKS if re.search(r"^from unloc_tf|^import unloc_tf",
                                           b, re.M)]


def _resolve(dotted: str):
  parts = dotted.split(".")
  for i in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module(".".join(parts[:i]))
    except ModuleNotFoundError:
      continue
    for name in parts[i:]:
      obj = getattr(obj, name)
    return obj
  raise ModuleNotFoundError(dotted)


def _names_of_block(block: str):
  """(imported module aliases → module, dotted uses) of a code block."""
  tree = ast.parse(block)
  modules, uses = {}, set()
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module.startswith("unloc_tf"):
      for alias in node.names:
        modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    elif isinstance(node, ast.Import):
      for alias in node.names:
        modules[alias.asname or alias.name] = alias.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in modules):
      uses.add(f"{modules[node.value.id]}.{node.attr}")
  return modules, uses


def test_readme_has_python_examples():
  assert len(_PYTHON) >= 3


@pytest.mark.parametrize("index", range(len(_PYTHON)))
def test_code_block_names_resolve(index):
  modules, uses = _names_of_block(_PYTHON[index])
  for dotted in sorted(set(modules.values()) | uses):
    _resolve(dotted)


def test_names_in_the_text_resolve():
  names = set(re.findall(r"`(unloc_tf(?:\.[A-Za-z_]\w*)+)", README))
  assert "unloc_tf.launch.load_experiment" in names
  for dotted in sorted(names):
    _resolve(dotted)


def test_the_tasks_and_backbone_are_importable_from_their_packages():
  import unloc_tf  # noqa: PLC0415
  from unloc_tf.models import BackboneConfig, build_backbone  # noqa: F401
  from unloc_tf.tasks import (  # noqa: F401
    build_action_localizer,
    build_action_segmenter,
    build_moment_retriever,
    build_video_text_classifier,
  )
  assert unloc_tf.Predictor.from_workdir and unloc_tf.__version__
