"""unloc_tf/convert/msgpack.py: Flax's MessagePack bytes, both ways."""

import numpy as np
import pytest

from unloc_tf.convert import msgpack

GOLDEN = (b"\x81\xa1x\xc7\x15\x01\x93\x91\x02\xa7float32\xc4\x08"
          + np.array([1.0, 2.0], np.float32).tobytes())


def test_msgpack_matches_flax_bytes():
  """{'x': float32 [1, 2]} as flax.serialization.to_bytes writes it."""
  tree = msgpack.loads(GOLDEN)
  np.testing.assert_array_equal(tree["x"], [1.0, 2.0])
  assert tree["x"].dtype == np.float32
  assert msgpack.dumps({"x": np.array([1.0, 2.0], np.float32)}) == GOLDEN


def test_msgpack_types_round_trip():
  import ml_dtypes

  value = {
      "ints": [0, 127, 128, -1, -32, -33, -200, 70000, -70000, 2**40],
      "floats": [0.5, -1e300], "none": None, "flags": [True, False],
      "text": "é" * 40, "raw": b"\x00\x01" * 200,
      "big_map": {f"k{i}": i for i in range(20)}, "big_list": list(range(20)),
      "scalar": np.int64(7), "bf16": np.arange(6, dtype=ml_dtypes.bfloat16),
      "matrix": np.arange(12, dtype=np.int32).reshape(3, 4),
  }
  back = msgpack.loads(msgpack.dumps(value))
  assert back["ints"] == value["ints"] and back["floats"] == value["floats"]
  assert back["none"] is None and back["flags"] == [True, False]
  assert back["text"] == value["text"] and bytes(back["raw"]) == value["raw"]
  assert back["big_map"] == value["big_map"]
  assert back["big_list"] == value["big_list"]
  assert back["scalar"] == 7 and isinstance(back["scalar"], np.int64)
  np.testing.assert_array_equal(back["matrix"], value["matrix"])
  np.testing.assert_array_equal(back["bf16"].astype(np.float32),
                                np.arange(6, dtype=np.float32))
  # float32 (0xca) and int16 (0xd1), which the encoder never writes.
  assert msgpack.loads(b"\x92\xca\x3f\x80\x00\x00\xd1\xff\x00") == [
      1.0, -256]
  chunked = {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 2},
             "chunks": {"0": np.arange(3.0), "1": np.arange(1.0)}}
  back = msgpack.loads(msgpack.dumps({"w": chunked}))
  np.testing.assert_array_equal(back["w"], [[0, 1], [2, 0]])
  with pytest.raises(msgpack.MsgpackError, match="truncated"):
    msgpack.loads(GOLDEN[:-3])
