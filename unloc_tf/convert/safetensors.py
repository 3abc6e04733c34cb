"""Reads `.safetensors` files with numpy (the safetensors package is not
needed).

Format: 8-byte little-endian header length N, N bytes of JSON
{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"},
then the raw little-endian buffer (offsets relative to its start).
"""

from __future__ import annotations

import json
import math
import os
from typing import Dict

import numpy as np

_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": "bfloat16", "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
  """{name: array} of a .safetensors file; floats become float32.

  F32/F16/BF16/F64 become float32 (bfloat16 exactly); integer and bool
  tensors keep their dtype.

  Raises:
    ValueError: naming the file (and tensor) on a malformed header, an
      unsupported dtype or offsets outside the buffer.
  """
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise ValueError(f"{path}: too short for a safetensors file")
    n = int.from_bytes(head, "little")
    if n > size - 8 or n > 100 * 2**20:
      raise ValueError(
          f"{path}: header length {n} does not fit the file ({size} bytes):"
          " not a safetensors file")
    try:
      header = json.loads(f.read(n))
    except ValueError as e:
      raise ValueError(f"{path}: safetensors header is not JSON ({e})") from e
  if not isinstance(header, dict):
    raise ValueError(f"{path}: safetensors header is not a JSON object")
  if size > 8 + n:
    buffer = np.memmap(path, np.uint8, "r", offset=8 + n)
  else:
    buffer = np.zeros(0, np.uint8)
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype = _DTYPES[info["dtype"]]
      shape = tuple(int(s) for s in info["shape"])
      begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(
          f"{path}: tensor {name!r}: bad or unsupported header entry {info!r}"
          f" (dtypes: {sorted(_DTYPES)})") from e
    itemsize = 2 if isinstance(dtype, str) else dtype.itemsize
    if not 0 <= begin <= end <= buffer.size or (
        end - begin != math.prod(shape) * itemsize):
      raise ValueError(
          f"{path}: tensor {name!r} ({info['dtype']} {list(shape)}): data "
          f"offsets [{begin}, {end}] do not fit its size or the "
          f"{buffer.size}-byte buffer")
    raw = np.asarray(buffer[begin:end])
    if isinstance(dtype, str):  # bfloat16 = the high half of a float32.
      array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    else:
      array = raw.view(dtype)
    array = array.reshape(shape)
    if array.dtype.kind == "f":
      array = array.astype(np.float32)
    out[name] = np.array(array)
  return out
