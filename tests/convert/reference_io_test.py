"""unloc_tf/convert/reference_io.py: finding the parameters in checkpoint
files and directories."""

import numpy as np
import pytest

from unloc_tf.convert import msgpack, reference_io


def test_checkpoint_wrappers_and_directories(tmp_path):
  params = {"video_projection": {"kernel": np.ones((3, 2), np.float32)},
            "temporal_localization_head": {"scale_0": np.ones(1, np.float32)}}
  zeros = {"video_projection": {"kernel": np.zeros((3, 2), np.float32)}}
  flax_optim = {"optimizer": {"target": params, "state": {
      "step": np.int64(3), "param_states": zeros}}}
  train_state = {"global_step": np.int64(5), "opt_state": {"0": zeros},
                 "params": params, "rng": np.arange(2, dtype=np.uint32),
                 "metadata": {"name": "unloc", "note": None}}
  ckpt_dir = tmp_path / "ckpts"
  ckpt_dir.mkdir()
  for step, tree in ((2, flax_optim), (10, train_state)):
    (ckpt_dir / f"checkpoint_{step}").write_bytes(msgpack.dumps(tree))
  for path in (ckpt_dir / "checkpoint_2", ckpt_dir):
    flat = reference_io.read_reference_tree(str(path))
    assert sorted(flat) == ["temporal_localization_head/scale_0",
                            "video_projection/kernel"]
    np.testing.assert_array_equal(flat["video_projection/kernel"], 1.0)
  bad = tmp_path / "bad.msgpack"
  bad.write_bytes(msgpack.dumps({"opt_state": zeros}))
  with pytest.raises(ValueError, match="bad.msgpack.*opt_state"):
    reference_io.read_reference_tree(str(bad))


def test_orbax_directory_without_orbax_explains_how_to_convert(tmp_path):
  try:
    import orbax.checkpoint  # noqa: F401
    pytest.skip("orbax-checkpoint is installed")
  except ImportError:
    pass
  (tmp_path / "_CHECKPOINT_METADATA").write_text("{}")
  with pytest.raises(ImportError) as err:
    reference_io.read_reference_tree(str(tmp_path))
  msg = str(err.value)
  assert str(tmp_path) in msg and "orbax" in msg and "np.savez" in msg
