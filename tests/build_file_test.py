"""BUILD says what the code does: every library's deps are exactly the
packages its modules import, every test depends on what it imports, and
every test file and tool has its target."""

import ast
import glob
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _glob(patterns, exclude=()):
  del exclude
  out = []
  for pattern in patterns:
    out += glob.glob(os.path.join(ROOT, pattern), recursive=True)
  return sorted(os.path.relpath(p, ROOT) for p in out if os.path.isfile(p))


def _rules():
  """The BUILD file evaluated with recording stand-ins for the rules (and
  the macros it loads from .bzl files)."""
  rules = {}

  def rule(kind):
    def record(name, **kwargs):
      rules[name] = dict(kwargs, kind=kind)
    return record

  kinds = ("py_library", "py_binary", "py_test", "filegroup")
  native = type("native", (), {k: staticmethod(rule(k)) for k in kinds})
  env = {"glob": _glob, "package": lambda **kw: None,
         "exports_files": lambda files: None}
  env.update({k: rule(k) for k in kinds})

  def load(label, *names):
    bzl = {"native": native}
    with open(os.path.join(ROOT, label.replace("//:", ""))) as f:
      exec(compile(f.read(), label, "exec"), bzl)  # noqa: S102 (our file)
    env.update({n: bzl[n] for n in names})

  env["load"] = load
  with open(os.path.join(ROOT, "BUILD")) as f:
    exec(compile(f.read(), "BUILD", "exec"), env)  # noqa: S102 (our file)
  return rules


RULES = _rules()


def _imports(path):
  with open(os.path.join(ROOT, path)) as f:
    tree = ast.parse(f.read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{a.name}" for a in node.names)


def _packages(paths):
  """Top-level unloc_tf packages (BUILD library names) that `paths` import."""
  out = set()
  for path in paths:
    for name in _imports(path):
      parts = name.split(".")
      if parts[0] == "unloc_tf" and len(parts) > 1 and parts[1] in RULES:
        out.add(parts[1])
  return out


def _deps(rule):
  return {d.lstrip(":") for d in rule.get("deps", [])}


LIBRARIES = sorted(n for n, r in RULES.items() if r["kind"] == "py_library")


@pytest.mark.parametrize("name", LIBRARIES)
def test_library_deps_are_its_imports(name):
  rule = RULES[name]
  imported = _packages(rule["srcs"]) - {name}
  assert _deps(rule) == imported, (
      f"BUILD :{name} deps {sorted(_deps(rule))}, but its modules import"
      f" {sorted(imported)}")


def test_every_module_is_in_one_library():
  owned = [s for n in LIBRARIES for s in RULES[n]["srcs"]
           if s.startswith("unloc_tf/")]
  modules = _glob(["unloc_tf/**/*.py"])
  assert sorted(owned) == modules


def _closure(names):
  seen, todo = set(), list(names)
  while todo:
    name = todo.pop()
    if name not in seen:
      seen.add(name)
      todo += list(_deps(RULES[name]))
  return seen


@pytest.mark.parametrize("path", _glob(["tests/**/*_test.py"]))
def test_every_test_has_a_target_with_its_deps(path):
  name = path[len("tests/"):-len(".py")].replace("/", "_")
  assert name in RULES and RULES[name]["kind"] == "py_test", (
      f"{path} has no py_test :{name} in BUILD")
  rule = RULES[name]
  assert path in rule["srcs"]
  reach = _closure(_deps(rule))
  helpers = [s for s in rule["srcs"] if s.startswith("tests/")]
  missing = _packages(helpers) - reach
  assert not missing, f":{name} imports {sorted(missing)} without deps"


BINARIES = {r["srcs"][0]: n for n, r in RULES.items()
            if r["kind"] == "py_binary"}


@pytest.mark.parametrize("path", _glob(["tools/*.py"]))
def test_every_tool_has_a_binary_named_as_its_console_script(path):
  module = os.path.basename(path)[:-3]
  if module == "__init__":
    return
  name = BINARIES[path]
  with open(os.path.join(ROOT, "setup.py")) as f:
    assert f'"{name}=unloc_tf_tools.{module}:run"' in f.read()
  assert _packages([path]) <= _closure(_deps(RULES[name]))
