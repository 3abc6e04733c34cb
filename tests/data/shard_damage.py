"""Damaged TFRecord shards for tests: cut short, or one byte flipped."""

from __future__ import annotations

import os
import struct
from typing import List, Tuple


def record_spans(path: str) -> List[Tuple[int, int]]:
  """(offset of the header, data length) of every record of a shard."""
  spans = []
  with open(path, "rb") as f:
    data = f.read()
  offset = 0
  while offset < len(data):
    (length,) = struct.unpack("<Q", data[offset:offset + 8])
    spans.append((offset, length))
    offset += 12 + length + 4
  return spans


def truncate(path: str, cut: int = 100) -> int:
  """Cuts `cut` bytes off the end (an interrupted copy); returns the index
  of the record that is now incomplete."""
  spans = record_spans(path)
  offset, length = spans[-1]
  if cut >= 12 + length + 4:
    raise ValueError(f"cut {cut} would remove the whole last record")
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.truncate(size - cut)
  return len(spans) - 1


def corrupt(path: str, record: int) -> int:
  """Flips one byte in the middle of record `record`'s data (its CRC no
  longer matches); returns `record`."""
  offset, length = record_spans(path)[record]
  where = offset + 12 + length // 2
  with open(path, "r+b") as f:
    f.seek(where)
    byte = f.read(1)
    f.seek(where)
    f.write(bytes([byte[0] ^ 0xFF]))
  return record
