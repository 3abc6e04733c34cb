"""The tiny CLIP fixture (tests/testdata/clip_tiny/) and a safetensors writer.

The fixture (made once by its make_fixture.py with torch + transformers,
which the tests never import) is a tiny random Hugging Face CLIPModel, the
same weights as OpenAI-named .pt files (torch zip float16, legacy bfloat16,
TorchScript float16), a malicious .pt and the transformers outputs for fixed
inputs (reference.npz).
"""

from __future__ import annotations

import json
import os

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
FIXTURE = os.path.join(ROOT, "tests", "testdata", "clip_tiny")
HF = os.path.join(FIXTURE, "hf")
PT_HEADS = dict(vision_heads=4, text_heads=3)  # not recorded in a .pt
TOL = 1e-5
MARKER = "unloc_pickle_pwned"  # the file the malicious payloads would write


def transformers_outputs():
  """{name: array} of reference.npz (inputs and transformers' outputs)."""
  with np.load(os.path.join(FIXTURE, "reference.npz")) as f:
    return dict(f)


def write_safetensors(path, tensors, dtype="F32"):
  """A minimal safetensors writer (F32, F16 or BF16)."""
  header, chunks, offset = {}, [], 0
  for name, array in tensors.items():
    array = np.asarray(array, np.float32)
    if dtype == "BF16":
      raw = (array.view(np.uint32) >> 16).astype("<u2").tobytes()
    else:
      raw = array.astype({"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
    header[name] = {"dtype": dtype, "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(raw)]}
    chunks.append(raw)
    offset += len(raw)
  head = json.dumps(header).encode()
  head += b" " * (-len(head) % 8)
  with open(path, "wb") as f:
    f.write(len(head).to_bytes(8, "little") + head + b"".join(chunks))
