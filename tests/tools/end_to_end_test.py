"""The tools end to end on a tiny synthetic benchmark: make_synthetic →
train (gin experiment 'smoke') → evaluate → export_saved_model."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  return out.stdout


def test_train_evaluate_export(tmp_path):
  data, work, serve = (str(tmp_path / d) for d in ("data", "work", "serve"))
  _run("tools/make_synthetic.py", f"--output_dir={data}", "--num_train=6",
       "--num_val=2", "--num_test=2", "--tasks=temporal_localization")
  gin_args = ["--gin_file=experiments/smoke",
              f"--gin_bindings=DATA_DIR='{data}'", f"--workdir={work}"]
  _run("tools/train.py", *gin_args)
  assert os.path.exists(os.path.join(work, "operative_config.gin"))
  assert os.path.exists(os.path.join(work, "checkpoints", "ckpt-4.index"))
  out = _run("tools/evaluate.py", *gin_args, "--checkpoint=latest")
  result = json.loads(out[out.index("{"):])
  assert result["step"] == 4
  assert 0.0 <= result["metrics"]["mAP@0.5"] <= 1.0
  assert os.path.exists(os.path.join(work, "eval", "predictions_4.json"))
  _run("tools/export_saved_model.py", *gin_args, f"--export_dir={serve}",
       "--text_signature=false")
  assert os.path.exists(os.path.join(serve, "1", "saved_model.pb"))
  assert os.path.exists(os.path.join(serve, "1", "assets.extra",
                                     "operative_config.gin"))
