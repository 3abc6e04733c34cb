"""The tools end to end on a tiny synthetic benchmark: make_synthetic →
train (gin experiment 'smoke'), killed with -9 and run again → evaluate →
export_saved_model (one chain: each tool run costs a TensorFlow start)."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _run(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  return out.stdout


def test_train_killed_resumed_evaluate_export(tmp_path):
  """make_synthetic → tools/train.py killed (-9) after its first checkpoint
  → the same command again resumes from that checkpoint and finishes with
  every step done once after it and the newest checkpoints on disk →
  evaluate (from the workdir's operative config) → export."""
  data, work, serve = (str(tmp_path / d) for d in ("data", "work", "serve"))
  _run("tools/make_synthetic.py", f"--output_dir={data}", "--num_train=6",
       "--num_val=2", "--num_test=2", "--tasks=temporal_localization")
  gin_args = ["--gin_file=experiments/smoke",
              f"--gin_bindings=DATA_DIR='{data}'", f"--workdir={work}"]
  command = [sys.executable, "tools/train.py", *gin_args,
             "--gin_bindings=TRAIN_STEPS=8",
             "--gin_bindings=trainer.train.log_every=1",
             # XLA through the tools is tools/main_job_test.py's (its
             # experiments compile the train step); without it each of the
             # two runs starts ~40 s sooner.
             "--gin_bindings=trainer.train.jit_compile=False"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  victim = subprocess.Popen(command, cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  state = os.path.join(work, "checkpoints", "checkpoint")
  deadline = time.time() + 600
  while time.time() < deadline and victim.poll() is None:
    if os.path.exists(state):
      break
    time.sleep(0.01)
  victim.send_signal(signal.SIGKILL)
  killed_output, _ = victim.communicate(timeout=60)
  assert victim.returncode == -signal.SIGKILL, killed_output[-3000:]
  last = tf.train.latest_checkpoint(os.path.join(work, "checkpoints"))
  assert last is not None, killed_output[-3000:]
  resume_from = int(last.rsplit("-", 1)[1])

  again = subprocess.run(command, cwd=ROOT, env=env, text=True,
                         capture_output=True, timeout=900)
  assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-5000:]
  log = again.stdout + again.stderr
  assert f"restored {work}/checkpoints/ckpt-{resume_from}" in log
  steps = [int(s) for s in re.findall(r"step (\d+): step loss", log)]
  assert steps == list(range(resume_from + 1, 9)), steps
  kept = sorted(int(p.split("-")[1].split(".")[0]) for p in os.listdir(
      os.path.join(work, "checkpoints")) if p.endswith(".index"))
  assert kept[-1] == 8 and resume_from <= 8
  assert os.path.exists(os.path.join(work, "operative_config.gin"))

  # Without --gin_file: the workdir's operative config.
  out = _run("tools/evaluate.py", f"--workdir={work}", "--checkpoint=latest")
  result = json.loads(out[out.index("{"):])
  assert result["step"] == 8
  assert 0.0 <= result["metrics"]["mAP@0.5"] <= 1.0
  assert os.path.exists(os.path.join(work, "eval", "predictions_8.json"))
  _run("tools/export_saved_model.py", *gin_args, f"--export_dir={serve}",
       "--text_signature=false")
  assert os.path.exists(os.path.join(serve, "1", "saved_model.pb"))
  assert os.path.exists(os.path.join(serve, "1", "assets.extra",
                                     "operative_config.gin"))
