"""Scenic UnLoc parameter trees ⇄ unloc_tf task models (reference_spec §2.11).

The reference (google-research/scenic `projects/unloc`, Flax) stores its
parameters as a nested tree.  Flattened with "/" its names are, for the
model parts every task has:

  video_encoder/conv1/kernel                      (p*p*3, Dv)
  video_encoder/class_embedding                   (N0, Dv)   'token' only
  video_encoder/VisionTransformer/positional_embedding   (1+P or P, Dv)
  video_encoder/VisionTransformer/{ln_pre,ln_post}/{scale,bias}
  video_encoder/VisionTransformer/transformer/resblocks.{i}/
      {ln_1,ln_2}/{scale,bias}, attn/{query,key,value,out}/{kernel,bias},
      mlp/{c_fc,c_proj}/{kernel,bias}
  video_projection/kernel                         (Dv, D)
  text_encoder/token_embedding/embedding          (V, Dt)
  text_encoder/positional_embedding               (Lt, Dt)
  text_encoder/transformer/resblocks.{i}/...      (as the image tower)
  text_encoder/ln_final/{scale,bias}
  text_projection/kernel                          (Dt or De, D)
  video_text_fusion/video_text_encoder/
      encoderblock_{i}/{LayerNorm_0,LayerNorm_1}/{scale,bias},
      encoderblock_{i}/MultiHeadAttention_0/{query,key,value,out}/{kernel,bias},
      encoderblock_{i}/MlpBlock_0/{Dense_0,Dense_1}/{kernel,bias},
      output_conv_{l}/{kernel (3, 1, D), bias}, output_ln_{l}/{scale,bias}
        (simple_pyramid, fpn), encoder_norm/{scale,bias} (transformer),
      posembed_input/pos_embedding (1, L, D) ('learned' position embedding)

and per task head (`{task}_head`, task = temporal_localization,
highlight_detection, moment_retrieval, action_segmentation):

  {task}_head/{ClassificationHead,RegressionHead}[_{l}]/
      ln{i}/{scale,bias}, conv{i}/{kernel (k, D, D),bias},
      output_projection/{kernel,bias}
  {task}_head/scale_{l}, {task}_head/shift_{l}      (1,)  shared heads only
  action_segmentation_head/output_projection/{kernel,bias}

Layouts.  Flax Dense kernels are [in, out] like Keras'; the attention
DenseGeneral kernels (D, heads, D/heads) and (heads, D/heads, D) are the
Keras `MultiHeadAttention` EinsumDense layouts (Keras calls `out`
`attention_output`); Conv1D kernels are (k, in, out) in both.  Three
parameters change layout:
  * `conv1/kernel` (p*p*3, Dv), a Dense on patches flattened in (row, col,
    channel) order ⇄ the Conv2D kernel (p, p, 3, Dv): a plain reshape;
  * depthwise `output_conv_{l}/kernel` (3, 1, D) (Flax Conv with
    feature_group_count=D: (k, in/groups, out)) ⇄ Keras DepthwiseConv1D
    (3, D, 1): a transpose of the last two axes;
  * `posembed_input/pos_embedding` (1, L, D) ⇄ (L, D).
LayerNorm `scale`/`bias` are Keras `gamma`/`beta`; `embedding` is Keras'
`embeddings`.

Names for model parts the reference does not have (unloc_tf extensions;
they follow the same convention): late fusion `{task}_head/logit_scale`
and `{task}_head/logit_bias` (1,); the classification task's matching
head `classification_head/output_projection/{kernel,bias}`.  The
video-only head keeps the reference names with C (or 2C) outputs.

Reading.  `read_reference_tree` takes a flat `.npz` of "/"-joined names, a
Flax msgpack checkpoint (`flax.serialization.to_bytes`, including Scenic /
`flax.training.checkpoints` `checkpoint_<step>` files, decoded here in pure
Python: the `msgpack` package is not needed) or an orbax checkpoint
directory (only if `orbax.checkpoint` is importable).  The parameter tree
is found at the top level or under the usual wrappers `params/`,
`optimizer/target/` or `target/`; optimizer state is never read.

Converting.  `import_reference_tree` assigns a tree to a built model and
refuses (`ReferenceTreeMismatch`, nothing assigned) unless every reference
name maps onto a model variable and every model variable gets a value of
the right shape.  `export_reference_tree` is the inverse.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
import struct
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
import numpy as np

from unloc_tf import spec
from unloc_tf.tasks import (
  action_localizer,
  action_segmenter,
  moment_retriever,
  video_text_classifier,
)

# Top-level names of a reference UnLoc parameter tree (besides `*_head`).
ROOT_NAMES = ("video_encoder", "text_encoder", "video_projection",
              "text_projection", "video_text_fusion")
# Keys under which checkpoints wrap the parameter tree, tried in this order.
WRAPPER_KEYS = ("params", "target", "optimizer")
FUSION_PREFIX = "video_text_fusion/video_text_encoder"

ORBAX_SNIPPET = """\
  import numpy as np, orbax.checkpoint as ocp
  from flax.traverse_util import flatten_dict
  tree = ocp.PyTreeCheckpointer().restore("/path/to/orbax_checkpoint")
  params = tree.get("params", tree)  # or tree["optimizer"]["target"]
  np.savez("/path/to/unloc_params.npz", **{"/".join(k): np.asarray(v) for k, v in flatten_dict(params).items()})"""


class ReferenceTreeMismatch(ValueError):
  """A reference tree that does not map completely onto a model.

  Attributes:
    unmatched: reference names with no model variable, with their shapes.
    missing: (reference name, model variable path, model shape) of model
      variables the tree has no value for.
    shape_mismatches: (reference name, reference shape, expected reference
      shape, model variable path, model shape).
  """

  def __init__(self, message: str, unmatched=(), missing=(),
               shape_mismatches=()):
    super().__init__(message)
    self.unmatched = list(unmatched)
    self.missing = list(missing)
    self.shape_mismatches = list(shape_mismatches)


# ---------------------------------------------------------------------------
# Minimal MessagePack (https://github.com/msgpack/msgpack/blob/master/spec.md)
# with Flax's extension types: 1 = ndarray, 2 = complex, 3 = numpy scalar.
# ---------------------------------------------------------------------------
class MsgpackError(ValueError):
  """Malformed or unsupported MessagePack data."""


_EXT_NDARRAY, _EXT_COMPLEX, _EXT_NPSCALAR = 1, 2, 3
_FIXED = {  # first byte -> (struct format, size) of fixed-size scalars
    0xca: (">f", 4), 0xcb: (">d", 8),
    0xcc: (">B", 1), 0xcd: (">H", 2), 0xce: (">I", 4), 0xcf: (">Q", 8),
    0xd0: (">b", 1), 0xd1: (">h", 2), 0xd2: (">i", 4), 0xd3: (">q", 8),
}


def _dtype_from_name(name) -> np.dtype:
  name = bytes(name).decode() if not isinstance(name, str) else name
  if name == "bfloat16":
    import ml_dtypes  # noqa: PLC0415  (shipped with TensorFlow)

    return np.dtype(ml_dtypes.bfloat16)
  return np.dtype(name)


class _Decoder:
  """Decodes one MessagePack object from a buffer (zero-copy for bins)."""

  def __init__(self, buffer, where: str):
    self.buf = memoryview(buffer).cast("B")
    self.pos = 0
    self.where = where

  def _take(self, n: int) -> memoryview:
    start, end = self.pos, self.pos + n
    if end > len(self.buf):
      raise MsgpackError(f"{self.where}: truncated MessagePack data (needs"
                         f" {n} bytes at offset {start}, has"
                         f" {len(self.buf) - start})")
    self.pos = end
    return self.buf[start:end]

  def _unpack(self, fmt: str, size: int):
    return struct.unpack(fmt, self._take(size))[0]

  def decode(self):
    b = self._take(1)[0]
    if b <= 0x7f:
      return b
    if b >= 0xe0:
      return b - 0x100
    if 0x80 <= b <= 0x8f:
      return self._map(b & 0x0f)
    if 0x90 <= b <= 0x9f:
      return self._array(b & 0x0f)
    if 0xa0 <= b <= 0xbf:
      return self._str(b & 0x1f)
    if b == 0xc0:
      return None
    if b == 0xc2:
      return False
    if b == 0xc3:
      return True
    if b in _FIXED:
      return self._unpack(*_FIXED[b])
    if b in (0xc4, 0xc5, 0xc6):  # bin 8/16/32
      n = self._unpack(*((">B", 1), (">H", 2), (">I", 4))[b - 0xc4])
      return self._take(n)
    if b in (0xd9, 0xda, 0xdb):  # str 8/16/32
      return self._str(self._unpack(*((">B", 1), (">H", 2),
                                       (">I", 4))[b - 0xd9]))
    if b in (0xdc, 0xdd):
      return self._array(self._unpack(*((">H", 2), (">I", 4))[b - 0xdc]))
    if b in (0xde, 0xdf):
      return self._map(self._unpack(*((">H", 2), (">I", 4))[b - 0xde]))
    if 0xd4 <= b <= 0xd8:  # fixext 1/2/4/8/16
      code = self._unpack(">b", 1)
      return self._ext(code, self._take(1 << (b - 0xd4)))
    if b in (0xc7, 0xc8, 0xc9):  # ext 8/16/32
      n = self._unpack(*((">B", 1), (">H", 2), (">I", 4))[b - 0xc7])
      code = self._unpack(">b", 1)
      return self._ext(code, self._take(n))
    raise MsgpackError(f"{self.where}: invalid MessagePack type byte"
                       f" 0x{b:02x} at offset {self.pos - 1}")

  def _str(self, n: int) -> str:
    return str(self._take(n), "utf-8")

  def _array(self, n: int) -> list:
    return [self.decode() for _ in range(n)]

  def _map(self, n: int) -> dict:
    out = {}
    for _ in range(n):
      key = self.decode()
      if isinstance(key, memoryview):
        key = bytes(key)
      out[key] = self.decode()
    return out

  def _ext(self, code: int, data: memoryview):
    if code in (_EXT_NDARRAY, _EXT_NPSCALAR):
      shape, dtype_name, raw = _Decoder(data, self.where).decode()
      dtype = _dtype_from_name(dtype_name)
      arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
      return arr if code == _EXT_NDARRAY else arr[()]
    if code == _EXT_COMPLEX:
      real, imag = _Decoder(data, self.where).decode()
      return complex(real, imag)
    raise MsgpackError(f"{self.where}: unsupported MessagePack extension"
                       f" type {code} (Flax uses 1, 2 and 3)")


def _unchunk(tree):
  """Reassembles Flax's chunked giant arrays (`__msgpack_chunked_array__`)."""
  if isinstance(tree, dict):
    if "__msgpack_chunked_array__" in tree:
      shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
      chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
      return np.concatenate([np.ravel(c) for c in chunks]).reshape(shape)
    return {k: _unchunk(v) for k, v in tree.items()}
  return tree


def msgpack_loads(data, where: str = "<bytes>"):
  """Decodes Flax msgpack bytes (`flax.serialization.msgpack_restore`).

  Arrays are read-only views of `data` (no copy).

  Args:
    data: bytes-like MessagePack data.
    where: name of the source, for error messages.

  Returns:
    The decoded tree: dicts, lists, scalars, strings and numpy arrays.

  Raises:
    MsgpackError: malformed data, or bytes after the first object.
  """
  dec = _Decoder(data, where)
  tree = dec.decode()
  if dec.pos != len(dec.buf):
    raise MsgpackError(f"{where}: {len(dec.buf) - dec.pos} trailing bytes"
                       " after the MessagePack object")
  return _unchunk(tree)


def _pack_uint(prefixes, n: int, out: List[bytes]) -> None:
  """Writes a length/size header: prefixes = (8-bit, 16-bit, 32-bit)."""
  for prefix, fmt, limit in zip(prefixes, (">B", ">H", ">I"),
                                (0xff, 0xffff, 0xffffffff)):
    if prefix is not None and n <= limit:
      out.append(bytes([prefix]) + struct.pack(fmt, n))
      return
  raise MsgpackError(f"object too large for MessagePack ({n})")


def _pack(obj, out: List[bytes]) -> None:
  if obj is None:
    out.append(b"\xc0")
  elif isinstance(obj, (bool, np.bool_)):
    out.append(b"\xc3" if obj else b"\xc2")
  elif isinstance(obj, np.ndarray):
    arr = np.ascontiguousarray(obj)
    _pack_ext(_EXT_NDARRAY, _pack_bytes(
        [list(arr.shape), arr.dtype.name, arr.tobytes()]), out)
  elif isinstance(obj, np.generic):
    arr = np.asarray(obj)
    _pack_ext(_EXT_NPSCALAR, _pack_bytes([[], arr.dtype.name,
                                          arr.tobytes()]), out)
  elif isinstance(obj, int):
    if 0 <= obj <= 0x7f:
      out.append(bytes([obj]))
    elif -32 <= obj < 0:
      out.append(struct.pack(">b", obj))
    elif obj >= 0:
      out.append(b"\xcf" + struct.pack(">Q", obj))
    else:
      out.append(b"\xd3" + struct.pack(">q", obj))
  elif isinstance(obj, float):
    out.append(b"\xcb" + struct.pack(">d", obj))
  elif isinstance(obj, str):
    raw = obj.encode("utf-8")
    if len(raw) <= 31:
      out.append(bytes([0xa0 | len(raw)]))
    else:
      _pack_uint((0xd9, 0xda, 0xdb), len(raw), out)
    out.append(raw)
  elif isinstance(obj, (bytes, bytearray, memoryview)):
    raw = bytes(obj)
    _pack_uint((0xc4, 0xc5, 0xc6), len(raw), out)
    out.append(raw)
  elif isinstance(obj, Mapping):
    n = len(obj)
    if n <= 15:
      out.append(bytes([0x80 | n]))
    else:
      _pack_uint((None, 0xde, 0xdf), n, out)
    for k, v in obj.items():
      _pack(k, out)
      _pack(v, out)
  elif isinstance(obj, (list, tuple)):
    n = len(obj)
    if n <= 15:
      out.append(bytes([0x90 | n]))
    else:
      _pack_uint((None, 0xdc, 0xdd), n, out)
    for v in obj:
      _pack(v, out)
  else:
    raise MsgpackError(f"cannot encode {type(obj).__name__} as MessagePack")


def _pack_bytes(obj) -> bytes:
  out: List[bytes] = []
  _pack(obj, out)
  return b"".join(out)


def _pack_ext(code: int, data: bytes, out: List[bytes]) -> None:
  fixed = {1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8}
  if len(data) in fixed:
    out.append(bytes([fixed[len(data)], code]))
  else:
    _pack_uint((0xc7, 0xc8, 0xc9), len(data), out)
    out.append(bytes([code]))
  out.append(data)


def msgpack_dumps(tree) -> bytes:
  """Encodes a tree like `flax.serialization.msgpack_serialize` (arrays as
  extension 1, numpy scalars as extension 3; no chunking, so single arrays
  must stay below 2 GiB)."""
  return _pack_bytes(tree)


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
  return _flat_params(msgpack_loads(data, path), path)


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
      f.write(msgpack_dumps(unflatten_tree(flat)))
  return path


# ---------------------------------------------------------------------------
# The mapping: reference name ⇄ model variable (+ layout change).
# ---------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ParamSpec:
  """One reference parameter and the model variable that holds it.

  Attributes:
    name: reference name ("/"-joined).
    variable: the Keras variable.
    layout: "same", "patch_kernel" ((p*p*3, D) ⇄ (p, p, 3, D)),
      "depthwise_kernel" ((3, 1, D) ⇄ (3, D, 1)) or "posembed" ((1, L, D) ⇄
      (L, D)).
  """

  name: str
  variable: Any
  layout: str = "same"

  @property
  def model_shape(self) -> Tuple[int, ...]:
    return tuple(int(d) for d in self.variable.shape)

  @property
  def reference_shape(self) -> Tuple[int, ...]:
    s = self.model_shape
    if self.layout == "patch_kernel":
      return (s[0] * s[1] * s[2], s[3])
    if self.layout == "depthwise_kernel":
      return (s[0], s[2], s[1])
    if self.layout == "posembed":
      return (1,) + s
    return s

  def to_reference(self, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if self.layout == "depthwise_kernel":
      return np.transpose(value, (0, 2, 1))
    return value.reshape(self.reference_shape)

  def to_model(self, value: np.ndarray) -> np.ndarray:
    value = np.asarray(value)
    if self.layout == "depthwise_kernel":
      return np.transpose(value, (0, 2, 1))
    return value.reshape(self.model_shape)


def task_of(model) -> str:
  """The task of a task model (`spec.TAL`, `spec.HD`, `spec.MR`, ...)."""
  if isinstance(model, action_localizer.ActionLocalizer):
    return model.task
  if isinstance(model, moment_retriever.MomentRetriever):
    return spec.MR
  if isinstance(model, action_segmenter.ActionSegmenter):
    return spec.AS
  if isinstance(model, video_text_classifier.VideoTextClassifier):
    return spec.CLS
  raise TypeError(f"not an unloc_tf task model: {type(model).__name__}")


class _Collector:
  def __init__(self):
    self.specs: List[ParamSpec] = []

  def add(self, name: str, variable, layout: str = "same") -> None:
    if variable is not None:
      self.specs.append(ParamSpec(name, variable, layout))

  def layer_norm(self, name: str, layer) -> None:
    if layer is not None and layer.built:
      self.add(f"{name}/scale", layer.gamma)
      self.add(f"{name}/bias", layer.beta)

  def dense(self, name: str, layer) -> None:
    """Dense / Conv1D / EinsumDense: kernel and (optional) bias."""
    if layer is None or not layer.built:
      return
    self.add(f"{name}/kernel", layer.kernel)
    self.add(f"{name}/bias", getattr(layer, "bias", None))

  def attention(self, name: str, mha, out_name: str = "out") -> None:
    self.dense(f"{name}/query", mha.query_dense)
    self.dense(f"{name}/key", mha.key_dense)
    self.dense(f"{name}/value", mha.value_dense)
    self.dense(f"{name}/{out_name}", mha.output_dense)

  def clip_blocks(self, prefix: str, blocks) -> None:
    for i, block in enumerate(blocks):
      p = f"{prefix}/resblocks.{i}"
      self.layer_norm(f"{p}/ln_1", block.layer_norm_1)
      self.attention(f"{p}/attn", block.attention)
      self.layer_norm(f"{p}/ln_2", block.layer_norm_2)
      self.dense(f"{p}/mlp/c_fc", block.dense_1)
      self.dense(f"{p}/mlp/c_proj", block.dense_2)

  def conv_block(self, prefix: str, block) -> None:
    for i, (ln, conv) in enumerate(zip(block.layer_norms, block.convs)):
      self.layer_norm(f"{prefix}/ln{i}", ln)
      self.dense(f"{prefix}/conv{i}", conv)
    self.dense(f"{prefix}/output_projection", block.output_projection)


def _backbone_specs(c: _Collector, bb) -> None:
  image = bb.image_encoder
  if image is not None and image.built:
    c.add("video_encoder/conv1/kernel", image.patch_embedding.kernel,
          "patch_kernel")
    c.add("video_encoder/class_embedding", image.class_embedding)
    vit = "video_encoder/VisionTransformer"
    c.add(f"{vit}/positional_embedding", image.position_embedding)
    c.layer_norm(f"{vit}/ln_pre", image.ln_pre)
    c.clip_blocks(f"{vit}/transformer", image.blocks)
    c.layer_norm(f"{vit}/ln_post", image.ln_post)
  c.dense("video_projection", bb.video_projection)
  text = bb.text_encoder
  if text is not None and text.built:
    c.add("text_encoder/token_embedding/embedding",
          text.token_embedding.embeddings)
    c.add("text_encoder/positional_embedding", text.position_embedding)
    c.clip_blocks("text_encoder/transformer", text.blocks)
    c.layer_norm("text_encoder/ln_final", text.ln_final)
  c.dense("text_projection", bb.text_projection)
  fusion = bb.fusion
  c.add(f"{FUSION_PREFIX}/posembed_input/pos_embedding", fusion.pos_embedding,
        "posembed")
  for i, block in enumerate(fusion.blocks):
    p = f"{FUSION_PREFIX}/encoderblock_{i}"
    c.layer_norm(f"{p}/LayerNorm_0", block.layer_norm_0)
    c.attention(f"{p}/MultiHeadAttention_0", block.attention)
    c.layer_norm(f"{p}/LayerNorm_1", block.layer_norm_1)
    c.dense(f"{p}/MlpBlock_0/Dense_0", block.mlp.dense_0)
    c.dense(f"{p}/MlpBlock_0/Dense_1", block.mlp.dense_1)
  pyramid = fusion.feature_pyramid
  for l, (conv, ln) in enumerate(zip(pyramid.output_convs,
                                     pyramid.output_lns)):
    if conv.built:
      c.add(f"{FUSION_PREFIX}/output_conv_{l}/kernel", conv.kernel,
            "depthwise_kernel")
      c.add(f"{FUSION_PREFIX}/output_conv_{l}/bias", conv.bias)
    c.layer_norm(f"{FUSION_PREFIX}/output_ln_{l}", ln)
  c.layer_norm(f"{FUSION_PREFIX}/encoder_norm", pyramid.encoder_norm)


def _head_specs(c: _Collector, model, head_name: str) -> None:
  if isinstance(model, video_text_classifier.VideoTextClassifier):
    c.dense(f"{head_name}/output_projection", model.classifier)
    return
  head = model.head
  if isinstance(model, action_segmenter.ActionSegmenter):
    c.dense(f"{head_name}/output_projection", head.output_projection)
    return
  shared = head.weight_sharing
  for l, block in enumerate(head.classification_heads):
    c.conv_block(f"{head_name}/ClassificationHead"
                 + ("" if shared else f"_{l}"), block)
  for l, block in enumerate(head.regression_heads):
    c.conv_block(f"{head_name}/RegressionHead" + ("" if shared else f"_{l}"),
                 block)
  for l, (scale, shift) in enumerate(zip(head.scales, head.shifts)):
    c.add(f"{head_name}/scale_{l}", scale)
    c.add(f"{head_name}/shift_{l}", shift)
  c.add(f"{head_name}/logit_scale", head.logit_scale)
  c.add(f"{head_name}/logit_bias", head.logit_bias)


def _is_rng_state(variable) -> bool:
  return "seed_generator" in variable.path


def reference_param_specs(model, head_name: Optional[str] = None
                          ) -> List[ParamSpec]:
  """The reference name and layout of every parameter of a built model.

  Args:
    model: a built unloc_tf task model (called once on a batch).
    head_name: reference name of the head subtree (default `{task}_head`).

  Returns:
    One `ParamSpec` per model variable (dropout / stochastic-depth RNG
    states excepted), in model order.

  Raises:
    ValueError: the model is unbuilt, or has variables this mapping does
      not know (listed).
  """
  if not model.variables:
    raise ValueError(f"model {model.name!r} has no variables yet: call it on"
                     " a batch first (see build_task_model)")
  head_name = head_name or f"{task_of(model)}_head"
  c = _Collector()
  _backbone_specs(c, model.backbone)
  _head_specs(c, model, head_name)
  names = [s.name for s in c.specs]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ValueError(f"reference names used twice: {dupes}")
  covered = {id(s.variable) for s in c.specs}
  unknown = [v.path for v in model.variables
             if id(v) not in covered and not _is_rng_state(v)]
  if unknown:
    raise ValueError(
        f"model {model.name!r} has {len(unknown)} variable(s) with no"
        " reference name (a layer tools/reference_params.py does not map):\n  "
        + "\n  ".join(unknown))
  return c.specs


def export_reference_tree(model, head_name: Optional[str] = None
                          ) -> Dict[str, np.ndarray]:
  """A built model's weights as a flat reference-named tree.

  Args:
    model: a built unloc_tf task model.
    head_name: reference name of the head subtree (default `{task}_head`).

  Returns:
    {reference name: array in the reference layout} (see the module
    docstring), e.g. for `write_reference_tree` or Flax
    `unflatten_dict(..., sep="/")`.
  """
  return {s.name: s.to_reference(keras.ops.convert_to_numpy(s.variable))
          for s in reference_param_specs(model, head_name)}


def _normalize_names(tree: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
  """Accepts `resblocks_{i}` (CLIP's use_underscore_module_name) too."""
  out = {}
  for name, value in tree.items():
    fixed = re.sub(r"(^|/)resblocks_(\d+)(?=/)", r"\1resblocks.\2", name)
    if fixed != name and fixed in tree:
      fixed = name  # Both spellings present: keep both, refuse later.
    out[fixed] = value
  return out


def import_reference_tree(model, tree: Mapping[str, np.ndarray], *,
                          head_name: Optional[str] = None,
                          ignore_regex: Optional[str] = None,
                          source: str = "the reference tree") -> dict:
  """Assigns a reference-named flat tree to a built model, all or nothing.

  Every reference name must map onto a model variable and every model
  variable must get a value of the expected shape; otherwise nothing is
  assigned and `ReferenceTreeMismatch` lists every unmatched reference name,
  every missing model variable and every shape mismatch (with both shapes).

  One exact equivalence is filled in: reference configs with precomputed
  text embeddings (`pass_through_encoder`, TAL-L, COIN-L) have no
  `text_projection`, whereas the unloc_tf model always projects; when the
  model has no text tower, the tree has no `text_projection/kernel` and the
  projection is square (De == D), it is set to the identity (reported in
  "synthesized").

  Args:
    model: a built unloc_tf task model.
    tree: {reference name: array}, e.g. from `read_reference_tree`.
    head_name: reference name of the head subtree (default `{task}_head`);
      e.g. "temporal_localization_head" to put a TAL head into an HD model.
    ignore_regex: reference names matching it (`re.search`) are dropped
      before matching (e.g. other tasks' heads of a multi-head tree).
    source: the tree's origin (file name) for messages.

  Returns:
    {"loaded": reference names assigned, "ignored": names dropped by
     ignore_regex, "synthesized": names filled in (see above)}.

  Raises:
    ReferenceTreeMismatch: the tree does not map completely.
  """
  specs = reference_param_specs(model, head_name)
  tree = _normalize_names(tree)
  ignore = re.compile(ignore_regex) if ignore_regex else None
  ignored = sorted(n for n in tree if ignore is not None and ignore.search(n))
  tree = {n: v for n, v in tree.items() if n not in set(ignored)}
  by_name = {s.name: s for s in specs}
  synthesized = {}
  proj = by_name.get("text_projection/kernel")
  if (proj is not None and "text_projection/kernel" not in tree
      and model.backbone.text_encoder is None
      and proj.model_shape[0] == proj.model_shape[1]):
    synthesized["text_projection/kernel"] = np.eye(proj.model_shape[0],
                                                   dtype=np.float32)
  values = dict(tree, **synthesized)

  unmatched = [(n, tuple(np.shape(v))) for n, v in sorted(tree.items())
               if n not in by_name]
  missing = [(s.name, s.variable.path, s.model_shape) for s in specs
             if s.name not in values]
  mismatched = []
  for s in specs:
    if s.name in values:
      shape = tuple(np.shape(values[s.name]))
      if shape != s.reference_shape:
        mismatched.append((s.name, shape, s.reference_shape, s.variable.path,
                           s.model_shape))
  if unmatched or missing or mismatched:
    lines = [f"{source} does not map completely onto model {model.name!r}"
             f" (task {task_of(model)}); nothing was assigned."]
    if unmatched:
      lines.append(f"{len(unmatched)} reference name(s) with no model"
                   " variable:")
      lines += [f"  {n}  shape {s}" for n, s in unmatched]
    if missing:
      lines.append(f"{len(missing)} model variable(s) missing from"
                   f" {source}:")
      lines += [f"  {n}  (model variable {p}, shape {s})"
                for n, p, s in missing]
    if mismatched:
      lines.append(f"{len(mismatched)} shape mismatch(es):")
      lines += [f"  {n}: {source} has shape {r}, the model needs {e}"
                f" (model variable {p}, shape {m})"
                for n, r, e, p, m in mismatched]
    raise ReferenceTreeMismatch("\n".join(lines), unmatched, missing,
                                mismatched)
  for s in specs:
    value = s.to_model(values[s.name])
    s.variable.assign(value.astype(keras.backend.standardize_dtype(
        s.variable.dtype)))
  return {"loaded": sorted(n for n in by_name if n not in synthesized),
          "ignored": ignored, "synthesized": sorted(synthesized)}


# ---------------------------------------------------------------------------
# Building a model without data.
# ---------------------------------------------------------------------------
def example_inputs(model, reference_shapes: Optional[Mapping[str, Sequence[
    int]]] = None, batch_size: int = 1, num_texts: int = 2
                   ) -> Dict[str, np.ndarray]:
  """A zero batch with the shapes a task model needs to build its weights.

  Cached-embedding widths are not part of the model config; they come from
  `reference_shapes` (`video_projection/kernel` for frame embeddings,
  `text_projection/kernel` for text embeddings) or default to D.

  Args:
    model: an unbuilt (or built) unloc_tf task model.
    reference_shapes: {reference name: shape} of the tree to convert.
    batch_size: B.
    num_texts: class names (TAL/AS/CLS) or captions (MR) per batch.

  Returns:
    {feature key: array}.
  """
  shapes = dict(reference_shapes or {})
  bb = model.backbone
  task = task_of(model)
  head = getattr(model, "head", None)
  image = bb.image_encoder
  if image is not None:
    n0 = image.num_frames
  elif hasattr(head, "level_lengths"):
    n0 = head.level_lengths[0]
  else:
    n0 = 8
  b = batch_size
  x: Dict[str, np.ndarray] = {spec.FRAME_MASK: np.ones((b, n0), np.int32)}
  if image is not None:
    s = image.image_size
    x[spec.FRAMES] = np.zeros((b, n0, s, s, 3), np.uint8)
  else:
    dv = shapes.get("video_projection/kernel", (bb.embed_dim,))[0]
    x[spec.FRAME_EMBEDDINGS] = np.zeros((b, n0, dv), np.float32)
  nt = {spec.HD: 1, spec.MR: 1}.get(task, num_texts)
  video_only = head is not None and getattr(head, "num_outputs", 1) > 1
  if bb.text_encoder is not None:
    length = bb.text_encoder.max_length
    ids = np.zeros((b, nt, length), np.int32)
    ids[..., 0], ids[..., 1] = 49406, 49407
    x[spec.TEXT_IDS] = ids
    x[spec.TEXT_MASK] = (ids > 0).astype(np.int32)
  elif not video_only:
    de = shapes.get("text_projection/kernel", (bb.embed_dim,))[0]
    x[spec.TEXT_EMBEDDINGS] = np.zeros((b, nt, de), np.float32)
  x[spec.TEXT_VALID] = np.ones((b, nt), np.int32)
  return x


def build_task_model(model, reference_shapes=None):
  """Creates a task model's weights by calling it once on `example_inputs`.

  Returns:
    `model`.
  """
  inputs = example_inputs(model, reference_shapes)
  model({k: keras.ops.convert_to_tensor(v) for k, v in inputs.items()},
        training=False)
  return model


def describe_tree(tree: Mapping[str, np.ndarray]) -> str:
  """One line per parameter: name and shape (for --list)."""
  buf = io.StringIO()
  for name in sorted(tree):
    buf.write(f"{name} {tuple(np.shape(tree[name]))}"
              f" {np.asarray(tree[name]).dtype}\n")
  return buf.getvalue()
