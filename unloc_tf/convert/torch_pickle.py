"""Reads PyTorch `.pt` / `.bin` weight files without torch, refusing code.

Unpickling runs whatever callables a pickle names (`os.system`, `eval`,
...), so `load` uses a `pickle.Unpickler` whose `find_class` resolves only
what a tensor file needs, each to an inert local stand-in: torch's
`_rebuild_tensor[_v2]` / `_rebuild_parameter[_with_state]` /
`_rebuild_from_type_v2`, the typed storages (`torch.FloatStorage`, ...: dtype
markers, never called), `torch.Tensor` / `Parameter` (markers),
`collections.OrderedDict`, and in TorchScript archives only the `__torch__.*`
module classes (inert attribute records, their code is never read) and the
`torch.jit._pickle` identity helpers.  Any other global raises
`UnsafePickleError` naming it before anything is called.  Storages are
bounds-checked numpy arrays; bfloat16 is widened to float32 exactly.

Formats: torch.save zip (`<archive>/data.pkl` + `<archive>/data/*`),
TorchScript archives (OpenAI's released CLIP `.pt` files; the module tree is
flattened to a state dict) and the legacy format (torch < 1.6).

Example:
  tensors = torch_pickle.load_state_dict("ViT-B-16.pt")  # {name: ndarray}
"""

from __future__ import annotations

import collections
import io
import math
import pickle
import struct
import zipfile
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype ("bfloat16" is widened to float32).
STORAGE_DTYPES = {
    "FloatStorage": np.dtype(np.float32),
    "HalfStorage": np.dtype(np.float16),
    "BFloat16Storage": "bfloat16",
    "DoubleStorage": np.dtype(np.float64),
    "LongStorage": np.dtype(np.int64),
    "IntStorage": np.dtype(np.int32),
    "ShortStorage": np.dtype(np.int16),
    "CharStorage": np.dtype(np.int8),
    "ByteStorage": np.dtype(np.uint8),
    "BoolStorage": np.dtype(np.bool_),
}


class UnsafePickleError(pickle.UnpicklingError):
  """The pickle names a global outside the allow-list (or misuses one).

  Attributes:
    global_name: "module.name" of the refused global ("" if not a global).
  """

  def __init__(self, message: str, global_name: str = ""):
    super().__init__(message)
    self.global_name = global_name


class TorchFileError(ValueError):
  """A file that is not a readable torch tensor file."""


# ---------------------------------------------------------------------------
# Inert stand-ins for the allowed globals.
# ---------------------------------------------------------------------------
class _Marker:
  """A torch class named by the pickle; a value, never callable."""

  def __init__(self, name: str, dtype=None):
    self.name = name
    self.dtype = dtype

  def __call__(self, *args, **kwargs):
    raise UnsafePickleError(
        f"the pickle calls {self.name}, which is only allowed as a type "
        "marker", self.name)

  def __repr__(self):
    return f"<{self.name}>"


class _Storage:
  """A flat typed storage: its bytes are read lazily by `data()`."""

  def __init__(self, storage_type: _Marker, numel: int,
               read: Callable[[], bytes], where: str):
    if not isinstance(storage_type, _Marker) or storage_type.dtype is None:
      raise UnsafePickleError(
          f"{where}: storage type {storage_type!r} is not a torch storage "
          "class")
    self.type = storage_type
    self.numel = int(numel)
    self._read = read
    self._array: Optional[np.ndarray] = None
    self.where = where

  @property
  def itemsize(self) -> int:
    dtype = self.type.dtype
    return 2 if isinstance(dtype, str) else dtype.itemsize

  def data(self) -> np.ndarray:
    """The storage as a 1-D array (float32 for bfloat16)."""
    if self._array is None:
      raw = self._read()
      need = self.numel * self.itemsize
      if len(raw) < need:
        raise TorchFileError(
            f"{self.where}: storage of {self.numel} x {self.type.name} needs"
            f" {need} bytes, the file has {len(raw)}")
      raw = raw[:need]
      if isinstance(self.type.dtype, str):  # bfloat16: high half of f32.
        bits = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        self._array = bits.view(np.float32)
      else:
        self._array = np.frombuffer(raw, self.type.dtype.newbyteorder("<"))
    return self._array


class _View:
  """A legacy-format view into a root storage (offset, size in elements)."""

  def __init__(self, root: _Storage, offset: int, numel: int):
    self.root, self.offset, self.numel = root, int(offset), int(numel)
    self.where = root.where

  def data(self) -> np.ndarray:
    return self.root.data()[self.offset:self.offset + self.numel]


class TensorRef:
  """A tensor whose storage may not be read yet (legacy files put the data
  after the pickle); `array()` materialises it."""

  def __init__(self, storage, offset: int, size, stride):
    if not isinstance(storage, (_Storage, _View)):
      raise UnsafePickleError(
          f"a tensor is rebuilt from {type(storage).__name__}, not from a "
          "storage")
    self.storage = storage
    self.offset = int(offset)
    self.size = tuple(int(s) for s in size)
    self.stride = tuple(int(s) for s in stride)
    if len(self.size) != len(self.stride) or min(
        self.size + self.stride + (self.offset,), default=0) < 0:
      raise TorchFileError(
          f"{storage.where}: bad tensor geometry size={self.size} "
          f"stride={self.stride} offset={self.offset}")

  def array(self) -> np.ndarray:
    flat = self.storage.data()
    count = math.prod(self.size)
    if count == 0:
      return np.zeros(self.size, flat.dtype)
    last = self.offset + sum((n - 1) * s
                             for n, s in zip(self.size, self.stride))
    if last >= flat.size:
      raise TorchFileError(
          f"{self.storage.where}: tensor of size {self.size}, stride "
          f"{self.stride}, offset {self.offset} reads past its storage of "
          f"{flat.size} elements")
    if count > 1024 * max(flat.size, 1):
      raise TorchFileError(
          f"{self.storage.where}: tensor of size {self.size} expands a "
          f"storage of {flat.size} elements more than 1024 times")
    item = flat.itemsize
    out = np.lib.stride_tricks.as_strided(
        flat[self.offset:], shape=self.size,
        strides=tuple(s * item for s in self.stride), writeable=False)
    return np.array(out)


class ScriptObject:
  """An inert record of a TorchScript module/object: the attributes the
  pickle sets (BUILD) are kept in `state`; no code runs."""

  torch_class = "__torch__"

  def __setstate__(self, state):
    self.state = state

  def __repr__(self):
    return f"<{self.torch_class}>"


def _rebuild_tensor_v2(storage, storage_offset, size, stride,
                       requires_grad=False, backward_hooks=None,
                       metadata=None):
  del requires_grad, backward_hooks, metadata
  return TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
  return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  if not isinstance(data, TensorRef):
    raise UnsafePickleError("_rebuild_parameter of a non-tensor")
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks,
                                  state):
  del state
  return _rebuild_parameter(data, requires_grad, backward_hooks)


_TENSOR_TYPES = ("torch._tensor.Tensor", "torch.Tensor",
                 "torch.nn.parameter.Parameter")


def _rebuild_from_type_v2(func, new_type, args, state):
  del state
  if func not in (_rebuild_tensor_v2, _rebuild_tensor, _rebuild_parameter):
    raise UnsafePickleError(
        f"_rebuild_from_type_v2 with {func!r}, not a tensor rebuild")
  if not (isinstance(new_type, _Marker) and new_type.name in _TENSOR_TYPES):
    raise UnsafePickleError(
        f"_rebuild_from_type_v2 to type {new_type!r}: only plain tensors "
        "and parameters are read")
  return func(*args)


def _identity(obj, *unused):
  return obj


_ALLOWED: Dict[Tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"):
        _rebuild_parameter_with_state,
    ("torch._utils", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("collections", "OrderedDict"): collections.OrderedDict,
}
for _name, _dtype in STORAGE_DTYPES.items():
  _ALLOWED[("torch", _name)] = _Marker(f"torch.{_name}", _dtype)
for _full in _TENSOR_TYPES:
  _module, _, _name = _full.rpartition(".")
  _ALLOWED[(_module, _name)] = _Marker(_full)
_SCRIPT_HELPERS = {
    ("torch.jit._pickle", name): _identity
    for name in ("restore_type_tag", "build_intlist", "build_tensorlist",
                 "build_doublelist", "build_boollist")
}


class RestrictedUnpickler(pickle.Unpickler):
  """`pickle.Unpickler` that resolves only the allow-listed globals.

  Args:
    file: binary file object positioned at the pickle.
    persistent_load: `fn(pid) -> storage` for the file format.
    where: file name for messages.
    script_objects: also allow TorchScript's `__torch__.*` classes (as
      inert `ScriptObject`s) and `torch.jit._pickle` helpers.
  """

  def __init__(self, file, persistent_load: Callable[[Any], Any],
               where: str, script_objects: bool = False):
    super().__init__(file)
    self._persistent = persistent_load
    self._where = where
    self._script_objects = script_objects
    self._script_classes: Dict[str, type] = {}

  def find_class(self, module: str, name: str):
    key = (module, name)
    if key in _ALLOWED:
      return _ALLOWED[key]
    if self._script_objects:
      if key in _SCRIPT_HELPERS:
        return _SCRIPT_HELPERS[key]
      if module == "__torch__" or module.startswith("__torch__."):
        full = f"{module}.{name}"
        if full not in self._script_classes:
          self._script_classes[full] = type(
              "ScriptObject", (ScriptObject,), {"torch_class": full})
        return self._script_classes[full]
    hint = ""
    if self._script_objects:
      hint = ("; if this TorchScript file is genuine, save its state_dict() "
              "with torch.save, or use the Hugging Face format "
              "(model.safetensors + config.json)")
    raise UnsafePickleError(
        f"{self._where}: refusing to unpickle global '{module}.{name}': only "
        "torch tensor/storage rebuild functions and collections.OrderedDict"
        " are allowed (the file may be malicious, or not a weights file)"
        + hint, f"{module}.{name}")

  def persistent_load(self, pid):
    return self._persistent(pid)


def _storage_pid(pid, where: str):
  if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
    raise UnsafePickleError(f"{where}: unsupported persistent id {pid!r}")
  return pid


# ---------------------------------------------------------------------------
# File formats.
# ---------------------------------------------------------------------------
def _load_zip(path: str, zf: zipfile.ZipFile):
  names = zf.namelist()
  pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
  if len(pkls) != 1:
    if any(n.endswith("data.pkl") for n in names):
      raise TorchFileError(
          f"{path}: unrecognised torch zip layout (data.pkl entries "
          f"{[n for n in names if n.endswith('data.pkl')]}); convert the "
          "checkpoint to a Hugging Face directory (model.safetensors + "
          "config.json) or a torch.save state dict")
    raise TorchFileError(f"{path}: a zip file without <archive>/data.pkl: "
                         "not a torch checkpoint")
  prefix = pkls[0][:-len("data.pkl")]
  script = any(n.startswith(prefix + "code/") for n in names) or (
      prefix + "constants.pkl" in names)
  byteorder = "little"
  if prefix + "byteorder" in names:
    byteorder = zf.read(prefix + "byteorder").decode().strip()
  if byteorder != "little":
    raise TorchFileError(f"{path}: byteorder {byteorder!r} is not supported")
  storages: Dict[str, _Storage] = {}

  def persistent_load(pid):
    _, storage_type, key, _, numel = _storage_pid(pid, path)[:5]
    key = str(key)
    if key not in storages:
      entry = f"{prefix}data/{key}"
      if entry not in names:
        raise TorchFileError(f"{path}: missing storage entry {entry}")
      storages[key] = _Storage(storage_type, numel,
                               lambda e=entry: zf.read(e), f"{path}:{entry}")
    return storages[key]

  with zf.open(pkls[0]) as f:
    obj = RestrictedUnpickler(io.BufferedReader(f), persistent_load, path,
                              script_objects=script).load()
  return obj, script


def _load_legacy(path: str, f):
  def no_persistent(pid):
    raise UnsafePickleError(f"{path}: unexpected persistent id {pid!r}")

  def plain_load():
    return RestrictedUnpickler(f, no_persistent, path).load()

  try:
    magic = plain_load()
  except UnsafePickleError:
    raise
  except Exception as e:  # noqa: BLE001 - any parse error: not torch.
    raise TorchFileError(
        f"{path}: neither a torch zip archive nor a legacy torch file "
        f"({type(e).__name__}: {e})") from e
  if magic != LEGACY_MAGIC:
    raise TorchFileError(
        f"{path}: not a torch checkpoint (a pickle without torch's legacy "
        "magic number)")
  protocol = plain_load()
  if protocol != _LEGACY_PROTOCOL:
    raise TorchFileError(
        f"{path}: legacy torch protocol {protocol!r} is not supported")
  sys_info = plain_load()
  if isinstance(sys_info, dict) and not sys_info.get("little_endian", True):
    raise TorchFileError(f"{path}: big-endian legacy files are not supported")
  roots: Dict[str, _Storage] = {}
  buffers: Dict[str, bytes] = {}

  def persistent_load(pid):
    pid = _storage_pid(pid, path)
    if len(pid) != 6:
      raise UnsafePickleError(f"{path}: unsupported persistent id {pid!r}")
    _, storage_type, key, _, numel, view = pid
    key = str(key)
    if key not in roots:
      roots[key] = _Storage(storage_type, numel,
                            lambda k=key: buffers[k], f"{path}:storage {key}")
    if view is not None:
      view_key, offset, view_size = view
      del view_key
      return _View(roots[key], offset, view_size)
    return roots[key]

  obj = RestrictedUnpickler(f, persistent_load, path).load()
  keys = plain_load()
  if not isinstance(keys, list):
    raise TorchFileError(f"{path}: legacy storage key list is a "
                         f"{type(keys).__name__}")
  for key in keys:
    key = str(key)
    if key not in roots:
      raise TorchFileError(f"{path}: storage {key} is not used by the pickle")
    header = f.read(8)
    if len(header) != 8:
      raise TorchFileError(f"{path}: truncated storage {key}")
    (numel,) = struct.unpack("<q", header)
    nbytes = numel * roots[key].itemsize
    buffers[key] = f.read(nbytes)
    if len(buffers[key]) != nbytes:
      raise TorchFileError(f"{path}: truncated storage {key}")
  return obj


def _materialize(obj):
  """Replaces TensorRefs by arrays in nested dicts/lists/tuples/objects."""
  if isinstance(obj, TensorRef):
    return obj.array()
  if isinstance(obj, collections.OrderedDict):
    return collections.OrderedDict(
        (k, _materialize(v)) for k, v in obj.items())
  if isinstance(obj, dict):
    return {k: _materialize(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialize(v) for v in obj)
  if isinstance(obj, ScriptObject) and hasattr(obj, "state"):
    obj.state = _materialize(obj.state)
  return obj


def load(path: str) -> Any:
  """Unpickles a torch file with the restricted unpickler.

  Args:
    path: a torch.save zip, a TorchScript archive or a legacy torch file.

  Returns:
    The pickled object, tensors as numpy arrays (bfloat16 -> float32);
    TorchScript modules as `ScriptObject`s (see `flatten_script_module`).

  Raises:
    UnsafePickleError: a global outside the allow-list (named in the
      message and in `.global_name`); nothing it names is called.
    TorchFileError: not a torch file, or a corrupt one.
  """
  if zipfile.is_zipfile(path):
    with zipfile.ZipFile(path) as zf:
      obj, _ = _load_zip(path, zf)
      return _materialize(obj)
  with open(path, "rb") as f:
    return _materialize(_load_legacy(path, f))


def flatten_script_module(obj, prefix: str = "") -> Dict[str, np.ndarray]:
  """{dotted name: array} of the tensor attributes of a TorchScript module
  tree (the names `module.state_dict()` would give, plus tensor buffers
  and attributes such as OpenAI's `attn_mask`)."""
  out: Dict[str, np.ndarray] = {}
  state = getattr(obj, "state", None)
  if not isinstance(state, dict):
    return out
  for name, value in state.items():
    if not isinstance(name, str):
      continue
    if isinstance(value, np.ndarray):
      out[prefix + name] = value
    elif isinstance(value, ScriptObject):
      out.update(flatten_script_module(value, f"{prefix}{name}."))
  return out


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
  """The {name: array} state dict in a torch file.

  Accepts a state dict, a checkpoint dict holding one under "state_dict"
  (or "model"/"module"), or a TorchScript module (flattened); a
  DataParallel "module." prefix is dropped.

  Raises:
    UnsafePickleError, TorchFileError: as `load`; TorchFileError also when
      no state dict is found.
  """
  obj = load(path)
  if isinstance(obj, ScriptObject):
    tensors = flatten_script_module(obj)
    if not tensors:
      raise TorchFileError(
          f"{path}: a TorchScript archive whose module tree holds no "
          "tensors; convert the model to a Hugging Face directory "
          "(model.safetensors + config.json) or a torch.save state dict")
    return tensors
  if isinstance(obj, dict):
    for key in ("state_dict", "model", "module"):
      if isinstance(obj.get(key), dict):
        obj = obj[key]
        break
    tensors = {k: v for k, v in obj.items()
               if isinstance(k, str) and isinstance(v, np.ndarray)}
    if tensors:
      if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
      return tensors
  raise TorchFileError(
      f"{path}: holds a {type(obj).__name__} with no tensors, not a state "
      "dict")
