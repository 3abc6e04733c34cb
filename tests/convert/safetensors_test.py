"""unloc_tf/convert/safetensors.py: the numpy safetensors reader."""

from __future__ import annotations

import numpy as np
import pytest

from tests.convert.clip_helpers import write_safetensors
from unloc_tf.convert import safetensors


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_read_safetensors_dtypes(tmp_path, dtype):
  # Values exactly representable in every dtype.
  x = np.array([[0.5, -2.0, 1.5], [0.0, 3.25, -0.125]], np.float32)
  write_safetensors(tmp_path / "t.safetensors", {"a": x, "b": x[0]}, dtype)
  out = safetensors.read_safetensors(str(tmp_path / "t.safetensors"))
  assert out["a"].dtype == np.float32
  np.testing.assert_array_equal(out["a"], x)
  np.testing.assert_array_equal(out["b"], x[0])


def test_read_safetensors_rejects_bad_offsets(tmp_path):
  path = tmp_path / "t.safetensors"
  write_safetensors(path, {"a": np.ones(4)})
  data = bytearray(path.read_bytes())
  path.write_bytes(bytes(data).replace(b"[0, 16]", b"[0, 64]"))
  with pytest.raises(ValueError, match=r"t.safetensors: tensor 'a'"):
    safetensors.read_safetensors(str(path))
