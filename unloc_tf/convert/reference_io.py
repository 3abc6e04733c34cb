"""Reads and writes reference (Scenic / Flax) UnLoc parameter trees.

`read_reference_tree` takes a flat `.npz` of "/"-joined names, a Flax
msgpack checkpoint (`flax.serialization.to_bytes`, including Scenic /
`flax.training.checkpoints` `checkpoint_<step>` files, decoded by
`convert.msgpack`: neither flax nor the msgpack package is needed), a
directory of such files, or an orbax checkpoint directory (only if
`orbax.checkpoint` is importable).  The parameter tree is found at the top
level or under the usual wrappers `params/`, `optimizer/target/` or
`target/`; optimizer state is never read.  Trees are returned flat:
{"a/b/c": array}.  `write_reference_tree` writes .npz or Flax msgpack.
"""

from __future__ import annotations

import io
import os
import re
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np

from unloc_tf.convert import msgpack

# Top-level names of a reference UnLoc parameter tree (besides `*_head`).
ROOT_NAMES = ("video_encoder", "text_encoder", "video_projection",
              "text_projection", "video_text_fusion")
# Keys under which checkpoints wrap the parameter tree, tried in this order.
WRAPPER_KEYS = ("params", "target", "optimizer")

ORBAX_SNIPPET = """\
  import numpy as np, orbax.checkpoint as ocp
  from flax.traverse_util import flatten_dict
  tree = ocp.PyTreeCheckpointer().restore("/path/to/orbax_checkpoint")
  params = tree.get("params", tree)  # or tree["optimizer"]["target"]
  np.savez("/path/to/unloc_params.npz", **{"/".join(k): np.asarray(v) for k, v in flatten_dict(params).items()})"""


# ---------------------------------------------------------------------------
# Trees: flatten, unflatten, find the parameters inside a checkpoint.
# ---------------------------------------------------------------------------
def flatten_tree(tree: Mapping[str, Any], prefix: str = ""
                 ) -> Dict[str, np.ndarray]:
  """Nested dicts → {"a/b/c": array}; non-numeric leaves are dropped."""
  out: Dict[str, np.ndarray] = {}
  for key, value in tree.items():
    name = f"{prefix}{key}"
    if isinstance(value, Mapping):
      out.update(flatten_tree(value, name + "/"))
    elif isinstance(value, (list, tuple)):
      out.update(flatten_tree({str(i): v for i, v in enumerate(value)},
                              name + "/"))
    elif isinstance(value, (np.ndarray, np.generic, int, float)) and not (
        isinstance(value, bool)):
      out[name] = np.asarray(value)
  return out


def unflatten_tree(flat: Mapping[str, Any]) -> Dict[str, Any]:
  """{"a/b/c": array} → nested dicts."""
  tree: Dict[str, Any] = {}
  for name, value in flat.items():
    node = tree
    parts = name.split("/")
    for part in parts[:-1]:
      child = node.setdefault(part, {})
      if not isinstance(child, dict):
        raise ValueError(f"parameter name {name!r}: {part!r} is both a leaf"
                         " and a subtree")
      node = child
    if parts[-1] in node:
      raise ValueError(f"parameter name {name!r} occurs twice")
    node[parts[-1]] = value
  return tree


def _is_param_tree(node) -> bool:
  return isinstance(node, Mapping) and any(
      isinstance(k, str) and (k in ROOT_NAMES or k.endswith("_head"))
      for k in node)


def extract_params(tree: Mapping[str, Any], source: str = "<tree>"
                   ) -> Tuple[Dict[str, Any], str]:
  """Finds the UnLoc parameter tree inside a checkpoint tree.

  Looks at the top level, then under `params/`, `target/` and
  `optimizer/` (in that order, repeatedly: e.g. `optimizer/target/` of a
  `flax.optim` checkpoint, `params/` of a Scenic or Flax TrainState).
  Optimizer state (`opt_state`, `optimizer/state`) is never entered.

  Returns:
    (parameter tree, wrapper path such as "optimizer/target" or "").

  Raises:
    ValueError: naming `source` and its top-level keys.
  """
  node, path = tree, []
  for _ in range(6):
    if _is_param_tree(node):
      return dict(node), "/".join(path)
    for key in WRAPPER_KEYS:
      if isinstance(node, Mapping) and isinstance(node.get(key), Mapping):
        node = node[key]
        path.append(key)
        break
    else:
      break
  keys = sorted(str(k) for k in tree) if isinstance(tree, Mapping) else []
  raise ValueError(
      f"{source}: no UnLoc parameter tree found (expected top-level names"
      f" among {list(ROOT_NAMES)} or '<task>_head', possibly under"
      f" {'/'.join(WRAPPER_KEYS)} wrappers); its top-level keys are {keys}")


def _flat_params(tree, source: str) -> Dict[str, np.ndarray]:
  params, _ = extract_params(tree, source)
  flat = flatten_tree(params)
  out = {}
  for name, value in flat.items():
    if value.dtype.kind == "V" or value.dtype.name == "bfloat16":
      value = value.astype(np.float32)
    out[name] = np.array(value)  # owns its memory (not a view of the file)
  return out


def _is_orbax_dir(path: str) -> bool:
  markers = ("_METADATA", "_CHECKPOINT_METADATA", "manifest.ocdbt",
             "_sharding", "commit_success.txt", "checkpoint")
  names = set(os.listdir(path))
  return bool(names & set(markers)) or any(
      n.startswith("ocdbt.process") for n in names)


def _latest_flax_checkpoint(path: str) -> Optional[str]:
  best = None
  for name in os.listdir(path):
    m = re.fullmatch(r"checkpoint_(\d+)", name)
    if m and os.path.isfile(os.path.join(path, name)):
      if best is None or int(m.group(1)) > best[0]:
        best = (int(m.group(1)), name)
  return os.path.join(path, best[1]) if best else None


def _import_orbax():
  import orbax.checkpoint as ocp  # noqa: PLC0415

  return ocp


def read_orbax(path: str) -> Dict[str, np.ndarray]:
  """Parameters of an orbax checkpoint directory (needs orbax-checkpoint).

  Raises:
    ImportError: when orbax is not importable, with a snippet that converts
      the checkpoint to .npz where orbax is installed.
  """
  try:
    ocp = _import_orbax()
  except ImportError as e:
    raise ImportError(
        f"{path}: an orbax checkpoint directory, but orbax-checkpoint is not"
        " installed here (unloc_tf does not depend on it).  Convert it to a"
        " flat .npz where orbax and jax are installed, then pass the .npz:\n"
        f"{ORBAX_SNIPPET}") from e
  checkpointer = ocp.PyTreeCheckpointer()
  tree = checkpointer.restore(os.path.abspath(path))
  return _flat_params(_to_numpy(tree), path)


def _to_numpy(tree):
  if isinstance(tree, Mapping):
    return {str(k): _to_numpy(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple)):
    return [_to_numpy(v) for v in tree]
  if hasattr(tree, "__array__") and not isinstance(tree, np.ndarray):
    return np.asarray(tree)
  return tree


def read_msgpack(path: str) -> Dict[str, np.ndarray]:
  """Parameters of a Flax msgpack checkpoint (`to_bytes`, `checkpoint_N`)."""
  with open(path, "rb") as f:
    data = f.read()
  if not data or not (0x80 <= data[0] <= 0x8f or data[0] in (0xde, 0xdf)):
    raise ValueError(
        f"{path}: not a Flax msgpack checkpoint (it must start with a"
        " MessagePack map); pass a .npz of '/'-joined names, a msgpack"
        " checkpoint or an orbax checkpoint directory")
  return _flat_params(msgpack.loads(data, path), path)


def read_npz(path: str) -> Dict[str, np.ndarray]:
  """Parameters of a flat .npz of "/"-joined names (wrappers allowed)."""
  with np.load(path, allow_pickle=False) as data:
    flat = {k: data[k] for k in data.files}
  return _flat_params(unflatten_tree(flat), path)


def read_reference_tree(path: str) -> Dict[str, np.ndarray]:
  """Reads a reference UnLoc parameter tree, flattened with "/".

  Args:
    path: a `.npz` file, a Flax msgpack file, a `flax.training.checkpoints`
      directory (its `checkpoint_<largest step>` file) or an orbax
      checkpoint directory.

  Returns:
    {reference name: array}.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"reference checkpoint {path} does not exist")
  if os.path.isdir(path):
    latest = _latest_flax_checkpoint(path)
    if latest is not None and not _is_orbax_dir(path):
      return read_msgpack(latest)
    return read_orbax(path)
  if path.endswith(".npz"):
    return read_npz(path)
  return read_msgpack(path)


def write_reference_tree(path: str, tree: Mapping[str, np.ndarray],
                         wrapper: Optional[str] = None) -> str:
  """Writes a flat reference tree as .npz (by extension) or Flax msgpack.

  Args:
    path: output file; `.npz` → flat npz of "/"-joined names, anything else
      → `flax.serialization.to_bytes` format of the nested tree.
    tree: {reference name: array}.
    wrapper: optional wrapper key(s), e.g. "params" or "optimizer/target",
      as a checkpoint would hold the tree.

  Returns:
    `path`.
  """
  flat = {k: np.asarray(v) for k, v in tree.items()}
  if wrapper:
    flat = {f"{wrapper.strip('/')}/{k}": v for k, v in flat.items()}
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if path.endswith(".npz"):
    np.savez(path, **flat)
  else:
    with open(path, "wb") as f:
      f.write(msgpack.dumps(unflatten_tree(flat)))
  return path


def describe_tree(tree: Mapping[str, np.ndarray]) -> str:
  """One line per parameter: name and shape (for --list)."""
  buf = io.StringIO()
  for name in sorted(tree):
    buf.write(f"{name} {tuple(np.shape(tree[name]))}"
              f" {np.asarray(tree[name]).dtype}\n")
  return buf.getvalue()


def describe_reference_checkpoint(path: str) -> str:
  """`describe_tree` of the tree `read_reference_tree(path)` reads."""
  return describe_tree(read_reference_tree(path))
