"""Op audit of a SavedModel: the op types a plain TensorFlow binary lacks.

A model server loads every function of a SavedModel, so one op type that its
binary does not register makes the whole model unloadable ("Op type not
registered ..."), whichever signature a client calls.  Stock TF Serving is
plain TensorFlow plus TF-Text's op library (dependencies.md §C), hence the
audit: parse `saved_model.pb` (every meta graph: its graph and its function
library), collect the op types, and check each against the op registry of a
process that imported nothing but `tensorflow`.

Only this module's own imports matter for that check: a process that has
imported `tensorflow_text` (keras-hub imports it) has TF-Text's ops in its
registry too, so the check then runs in a fresh `python` subprocess.

`audit_ops` also reports the ops of each signature alone (what a request to
that signature executes: the closure of its outputs in the graph and the
functions they call), so a numeric `serving_default` can be shown to need
core ops only while a `tf.string` signature in the same SavedModel needs
TF-Text's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Dict, Iterable, List, Optional, Sequence, Set

DEFAULT_ALLOWED_NON_CORE = ("RegexSplitWithOffsets",)

# Top-level packages whose import registers op types beyond core TensorFlow.
_OP_LIBRARY_PACKAGES = frozenset({
    "tensorflow_text", "tensorflow_io", "tensorflow_addons",
    "tensorflow_decision_forests", "tensorflow_recommenders_addons",
    "tensorflow_probability_ops", "sentencepiece_ops",
})

_REGISTRY_SCRIPT = """
import json, sys
from tensorflow.python.framework import op_def_registry
ops = json.loads(sys.stdin.read())
print(json.dumps([op for op in ops if op_def_registry.get(op) is None]))
"""


def read_saved_model(saved_model_dir: str):
  """Parses `<saved_model_dir>/saved_model.pb` into a `SavedModel` proto."""
  from tensorflow.core.protobuf import saved_model_pb2

  path = os.path.join(saved_model_dir, "saved_model.pb")
  if not os.path.exists(path):
    raise FileNotFoundError(f"no saved_model.pb in {saved_model_dir!r}")
  proto = saved_model_pb2.SavedModel()
  with open(path, "rb") as f:
    proto.ParseFromString(f.read())
  return proto


def _attr_functions(node) -> Iterable[str]:
  """Names of the library functions a NodeDef refers to through its attrs."""
  for value in node.attr.values():
    if value.HasField("func") and value.func.name:
      yield value.func.name
    if value.HasField("list"):
      for fn in value.list.func:
        yield fn.name


def _function_closure(roots: Iterable[str], library: Dict[str, object],
                      ops: Set[str]) -> None:
  """Adds the op types of `roots` and every function they call to `ops`."""
  stack, seen = list(roots), set()
  while stack:
    name = stack.pop()
    if name in seen or name not in library:
      continue
    seen.add(name)
    for node in library[name].node_def:
      if node.op in library:
        stack.append(node.op)
      else:
        ops.add(node.op)
      stack.extend(_attr_functions(node))


def _graph_ops(graph_def, library, output_nodes: Optional[Sequence[str]]):
  """Op types of a GraphDef (all nodes, or the closure of `output_nodes`)."""
  nodes = {n.name: n for n in graph_def.node}
  if output_nodes is None:
    selected = list(nodes.values())
  else:
    selected, stack, seen = [], list(output_nodes), set()
    while stack:
      name = stack.pop().lstrip("^").split(":")[0]
      if name in seen or name not in nodes:
        continue
      seen.add(name)
      selected.append(nodes[name])
      stack.extend(nodes[name].input)
  ops: Set[str] = set()
  calls = []
  for node in selected:
    if node.op in library:
      calls.append(node.op)
    else:
      ops.add(node.op)
    calls.extend(_attr_functions(node))
  _function_closure(calls, library, ops)
  return ops


def op_types(saved_model_dir: str, signature: Optional[str] = None
             ) -> List[str]:
  """Sorted op types of a SavedModel.

  Args:
    saved_model_dir: a SavedModel directory (holding `saved_model.pb`).
    signature: None = every node of every meta graph and every library
      function (what loading needs); a signature name = only the ops that
      computing that signature's outputs runs.

  Returns:
    Sorted op type names (function calls are followed, not listed).
  """
  proto = read_saved_model(saved_model_dir)
  ops: Set[str] = set()
  found = False
  for meta_graph in proto.meta_graphs:
    library = {f.signature.name: f for f in meta_graph.graph_def.library.function}
    if signature is None:
      ops |= _graph_ops(meta_graph.graph_def, library, None)
      _function_closure(library, library, ops)
      continue
    if signature not in meta_graph.signature_def:
      continue
    found = True
    outputs = [t.name for t in meta_graph.signature_def[signature].outputs.values()]
    ops |= _graph_ops(meta_graph.graph_def, library, outputs)
  if signature is not None and not found:
    raise KeyError(f"{saved_model_dir!r} has no signature {signature!r}")
  return sorted(ops)


def signature_names(saved_model_dir: str) -> List[str]:
  """Sorted signature names over all meta graphs."""
  proto = read_saved_model(saved_model_dir)
  return sorted({s for mg in proto.meta_graphs for s in mg.signature_def})


def _registry_is_plain() -> bool:
  return not any(name.split(".")[0] in _OP_LIBRARY_PACKAGES
                 for name in list(sys.modules))


def unregistered_ops(ops: Sequence[str], in_process: Optional[bool] = None
                     ) -> List[str]:
  """The op types in `ops` that plain TensorFlow does not register.

  Args:
    ops: op type names.
    in_process: True = check this process's registry; False = a fresh
      `python` subprocess that imports only tensorflow; None = in process
      unless a package that registers extra ops (e.g. tensorflow_text) has
      been imported here.

  Returns:
    Sorted names.
  """
  ops = sorted(set(ops))
  if in_process is None:
    in_process = _registry_is_plain()
  if in_process:
    from tensorflow.python.framework import op_def_registry

    return [op for op in ops if op_def_registry.get(op) is None]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", _REGISTRY_SCRIPT],
                        input=json.dumps(ops), capture_output=True, text=True,
                        env=env, check=False)
  lines = proc.stdout.strip().splitlines()
  if proc.returncode or not lines:
    raise RuntimeError("the op registry check in a fresh process failed:\n"
                       + proc.stderr[-2000:])
  return sorted(json.loads(lines[-1]))


def audit_ops(saved_model_dir: str,
              allowed_non_core: Sequence[str] = DEFAULT_ALLOWED_NON_CORE,
              *, in_process: Optional[bool] = None) -> dict:
  """Checks that a plain TensorFlow binary (+ allowed ops) can load a model.

  Args:
    saved_model_dir: the SavedModel directory (`<base>/<version>/`).
    allowed_non_core: op types outside core TF that the target server links
      (stock TF Serving: TF-Text's op library).
    in_process: see `unregistered_ops`.

  Returns:
    {"ops": sorted op types of the whole SavedModel,
     "non_core": the sorted ones that plain TF does not register,
     "signatures": {name: {"ops": [...], "non_core": [...]}} for each
       signature alone}.

  Raises:
    ValueError: listing the non-core op types not in `allowed_non_core`.
  """
  ops = op_types(saved_model_dir)
  non_core = unregistered_ops(ops, in_process=in_process)
  per_signature = {}
  for name in signature_names(saved_model_dir):
    sig_ops = op_types(saved_model_dir, name)
    per_signature[name] = {
        "ops": sig_ops,
        "non_core": [op for op in non_core if op in set(sig_ops)],
    }
  disallowed = [op for op in non_core if op not in set(allowed_non_core)]
  if disallowed:
    users = {op: [s for s, v in per_signature.items() if op in v["non_core"]]
             for op in disallowed}
    raise ValueError(
        f"{saved_model_dir}: op types not registered in plain TensorFlow and"
        f" not allowed ({list(allowed_non_core)}): {disallowed}"
        f" (used by signatures: {users}); a model server without them cannot"
        " load this SavedModel at all")
  return {"ops": ops, "non_core": non_core, "signatures": per_signature}


def main(argv: Sequence[str]) -> int:
  """`python op_audit.py DIR [ALLOWED_OP ...]`: prints the audit as JSON."""
  if not argv:
    print("usage: op_audit.py SAVED_MODEL_DIR [ALLOWED_NON_CORE_OP ...]",
          file=sys.stderr)
    return 2
  allowed = tuple(argv[1:]) or DEFAULT_ALLOWED_NON_CORE
  try:
    result = audit_ops(argv[0], allowed)
  except ValueError as e:
    print(str(e), file=sys.stderr)
    return 1
  print(json.dumps(result, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
