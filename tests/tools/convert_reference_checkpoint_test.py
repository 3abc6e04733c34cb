"""tools/convert_reference_checkpoint.py end to end on the smoke experiment:
reference tree -> workdir checkpoint (read back by the trainer's init path,
evaluation and load_weights_npz) -> reference tree.  The library is tested
in tests/convert/reference_test.py.
"""

import json
import os
import subprocess
import sys

import numpy as np

import gin
from unloc_tf import launch, spec
from unloc_tf.convert import reference, reference_io
from unloc_tf.train import checkpoints, evaluation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
SMOKE = ["experiments/smoke"]
SMOKE_BINDINGS = ["DATA_DIR = '/unused'"]


def _smoke_model():
  """The smoke experiment's model (trainer.train.model_fn), built."""
  gin.clear_config()
  launch.parse_gin(SMOKE, SMOKE_BINDINGS)
  try:
    model_fn = gin.query_parameter("trainer.train.model_fn")
    return reference.build_task_model(model_fn.scoped_configurable_fn())
  finally:
    gin.clear_config()


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "tools/convert_reference_checkpoint.py",
       *[f"--gin_file={g}" for g in SMOKE],
       *[f"--gin_bindings={b}" for b in SMOKE_BINDINGS], *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_cli_end_to_end(tmp_path):
  model = _smoke_model()
  rng = np.random.default_rng(0)
  for v in model.variables:
    v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))
  tree = reference.export_reference_tree(model)
  ref = reference_io.write_reference_tree(str(tmp_path / "checkpoint_7"),
                                         tree, wrapper="params")
  work = tmp_path / "work"
  out = _cli(f"--reference_checkpoint={ref}", f"--workdir={work}",
             f"--output_npz={tmp_path / 'w.weights.npz'}")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  summary = json.loads((work / "conversion.json").read_text())
  assert summary["task"] == spec.TAL and summary["synthesized"] == []
  assert len(summary["loaded"]) == len(tree)
  assert (work / "checkpoints" / "ckpt-0.index").exists()
  assert (work / "operative_config.gin").exists()
  # What the trainer's init path (restore_partial), the export / evaluate
  # tools (restore_model of the workdir's latest) and load_weights_npz read.
  for load in (
      lambda: checkpoints.restore_partial(model, str(work / "checkpoints")),
      lambda: {"step": evaluation.restore_model(model, str(work), "latest")},
      lambda: checkpoints.load_weights_npz(model,
                                           str(tmp_path / "w.weights.npz"))):
    for v in model.variables:
      v.assign(np.zeros(v.shape, np.float32))
    report = load()
    assert report.get("missing", []) == [] and report.get("unused", []) == []
    assert report.get("step", 0) == 0
    back = reference.export_reference_tree(model)
    for name, value in tree.items():
      np.testing.assert_array_equal(back[name], value, err_msg=name)
  # The inverse (--to_reference): the workdir's model as a reference tree.
  out = _cli(f"--workdir={work}", f"--to_reference={tmp_path / 'back.npz'}")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  result = json.loads(out.stdout)
  assert result["num_names"] == len(tree)
  back = reference_io.read_reference_tree(str(tmp_path / "back.npz"))
  assert sorted(back) == sorted(tree)
  for name, value in tree.items():
    np.testing.assert_array_equal(back[name], value, err_msg=name)
