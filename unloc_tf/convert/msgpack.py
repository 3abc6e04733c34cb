"""Minimal MessagePack codec with Flax's extension types, in pure Python.

Reads and writes what `flax.serialization.to_bytes` / `msgpack_restore` do
(https://github.com/msgpack/msgpack/blob/master/spec.md), so Scenic / Flax
checkpoints need neither flax nor the msgpack package.  Extension types:
1 = ndarray, 2 = complex, 3 = numpy scalar, each a packed
[shape, dtype name, raw bytes] (complex: [real, imag]).
"""

from __future__ import annotations

import struct
from typing import List, Mapping

import numpy as np


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


def loads(data, where: str = "<bytes>"):
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


def dumps(tree) -> bytes:
  """Encodes a tree like `flax.serialization.msgpack_serialize` (arrays as
  extension 1, numpy scalars as extension 3; no chunking, so single arrays
  must stay below 2 GiB)."""
  return _pack_bytes(tree)
