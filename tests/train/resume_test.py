"""kill -9 during training, start again: the run continues from the last
checkpoint with the same step, learning rate and batches, and ends with the
weights of an uninterrupted run (bit for bit, XLA on)."""

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tests.train import trainer_test as tt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
TOTAL, EVERY = 30, 5

SCRIPT = r"""
import sys
sys.path.insert(0, %(root)r)
from absl import logging
logging.set_verbosity(logging.INFO)
from tests.train import trainer_test as tt
from unloc_tf.train import trainer
data_root, workdir = sys.argv[1:3]
trainer.train(workdir=workdir, model_fn=tt.model_fn,
              train_data_fn=tt.make_data_fn(data_root),
              optimizer_fn=tt.make_optimizer_fn(%(total)d),
              total_steps=%(total)d, checkpoint_every=%(every)d,
              keep_checkpoints=10, log_every=1, progress=False, seed=0)
"""

_LINE = re.compile(r"step (\d+): step loss (\S+), lr (\S+)")


def _start(data_root, workdir):
  return subprocess.Popen(
      [sys.executable, "-c", SCRIPT % {"root": ROOT, "total": TOTAL,
                                       "every": EVERY},
       data_root, workdir],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))


def _steps(output):
  return [(int(m.group(1)), m.group(2), m.group(3))
          for m in _LINE.finditer(output)]


def _final_weights(workdir):
  reader = tf.train.load_checkpoint(os.path.join(workdir, "checkpoints",
                                                 f"ckpt-{TOTAL}"))
  return {k: reader.get_tensor(k)
          for k in reader.get_variable_to_shape_map()
          if k.startswith(("variables/", "optimizer/"))
          and "iterator" not in k}


def test_sigkill_and_restart_matches_uninterrupted_run(tmp_path):
  t0 = time.perf_counter()
  data_root = tt.write_data(str(tmp_path / "data"))
  ref_dir, run_dir = str(tmp_path / "reference"), str(tmp_path / "run")
  reference = _start(data_root, ref_dir)
  victim = _start(data_root, run_dir)
  state = os.path.join(run_dir, "checkpoints", "checkpoint")
  deadline = time.time() + 240
  while time.time() < deadline and victim.poll() is None:
    if os.path.exists(state):  # written after the first checkpoint's data
      break
    time.sleep(0.01)
  victim.send_signal(signal.SIGKILL)
  killed_output, _ = victim.communicate(timeout=60)
  assert victim.returncode == -signal.SIGKILL, killed_output[-3000:]
  last = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
  assert last is not None, killed_output[-3000:]
  resume_from = int(last.rsplit("-", 1)[1])
  assert EVERY <= resume_from < TOTAL

  restarted = _start(data_root, run_dir)
  restarted_output, _ = restarted.communicate(timeout=300)
  reference_output, _ = reference.communicate(timeout=300)
  assert restarted.returncode == 0, restarted_output[-3000:]
  assert reference.returncode == 0, reference_output[-3000:]
  assert f"restored {run_dir}/checkpoints/ckpt-{resume_from}" in (
      restarted_output)

  ref = {s: (loss, lr) for s, loss, lr in _steps(reference_output)}
  assert sorted(ref) == list(range(1, TOTAL + 1))
  after = _steps(restarted_output)
  # The step sequence continues right after the checkpoint, to the end.
  assert [s for s, _, _ in after] == list(range(resume_from + 1, TOTAL + 1))
  # Same losses and learning rates as the uninterrupted run, to the bit.
  for s, loss, lr in after:
    assert (loss, lr) == ref[s], s
  # What the killed run did before the kill matches too.
  before = _steps(killed_output)
  assert before and all((loss, lr) == ref[s] for s, loss, lr in before)
  # No checkpoint lost: every multiple of EVERY is on disk.
  steps = sorted(int(p.split("-")[1].split(".")[0]) for p in os.listdir(
      os.path.join(run_dir, "checkpoints")) if p.endswith(".index"))
  assert steps == list(range(EVERY, TOTAL + 1, EVERY))
  # Final model and optimizer state equal the uninterrupted run's exactly.
  a, b = _final_weights(ref_dir), _final_weights(run_dir)
  assert a.keys() == b.keys() and len(a) > 50
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  print(f"killed after step {max(s for s, _, _ in before)}, resumed from"
        f" {resume_from}; {time.perf_counter() - t0:.1f} s")
