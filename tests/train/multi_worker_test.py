"""Two localhost workers under MultiWorkerMirroredStrategy (TF_CONFIG), and
one process with a 2-replica MirroredStrategy (two logical CPUs), run
`train` on the same global batches as one plain process: same losses and
final weights (1e-5); everyone exits 0; the chief alone writes summaries,
evaluates and keeps best/; every worker keeps its own checkpoints."""

import json
import os
import re
import socket
import subprocess
import sys
import time

import numpy as np
import tensorflow as tf

from tests.train import trainer_test as tt

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
STEPS = 6

SCRIPT = r"""
import sys
sys.path.insert(0, %(root)r)
import tensorflow as tf
from absl import logging
logging.set_verbosity(logging.INFO)
from tests.train import multi_worker_test as mw
from tests.train import trainer_test as tt
from unloc_tf.train import strategy as strategy_lib
from unloc_tf.train import trainer
data_root, workdir, strategy = sys.argv[1:4]
if strategy == "mirrored":  # two replicas in one process: two logical CPUs
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(
      cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
  strategy = strategy_lib.make_strategy("mirrored",
                                        devices=["/cpu:0", "/cpu:1"])
# Every example has the same number of positives, so each replica's
# positive-normalised box loss has the same normaliser as the global batch's
# and the 2-worker gradient equals the 1-process one.
trainer.train(workdir=workdir, strategy=strategy, model_fn=tt.model_fn,
              train_data_fn=tt.make_data_fn(data_root, shuffle_buffer=1,
                                            transform=mw.fixed_labels),
              optimizer_fn=tt.make_optimizer_fn(%(steps)d),
              total_steps=%(steps)d, checkpoint_every=3, log_every=1,
              eval_data_fn=tt.make_eval_data_fn(data_root),
              evaluator=mw.evaluator, eval_every=3, best_metric="score",
              progress=False)
"""

_LINE = re.compile(r"step (\d+): step loss (\S+), lr (\S+)")


def fixed_labels(batch):
  labels = np.zeros(batch[tt.spec.LABELS].shape, np.int32)
  labels[:, 1:4, 0] = 1
  labels[:, 9, 2] = 1
  batch = dict(batch)
  batch[tt.spec.LABELS] = tf.constant(labels)
  return batch


def evaluator(model, dataset, step):
  batch = next(iter(dataset))
  out = model({k: v for k, v in batch.items() if v.dtype != tf.string})
  print(f"EVAL {step} {float(tf.reduce_mean(out['logits'])):.6f}",
        flush=True)
  return {"score": float(step)}


def _free_ports(n):
  socks = [socket.socket() for _ in range(n)]
  for s in socks:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in socks]
  for s in socks:
    s.close()
  return ports


def _start(data_root, workdir, strategy, tf_config=None):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  env.pop("TF_CONFIG", None)
  if tf_config is not None:
    env["TF_CONFIG"] = json.dumps(tf_config)
  return subprocess.Popen(
      [sys.executable, "-c", SCRIPT % {"root": ROOT, "steps": STEPS},
       data_root, workdir, strategy],
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
      env=env)


def _losses(output):
  return {int(m.group(1)): float(m.group(2)) for m in _LINE.finditer(output)}


def _model_weights(prefix):
  reader = tf.train.load_checkpoint(prefix)
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith("variables/")}


def test_two_workers_match_one_process(tmp_path):
  t0 = time.perf_counter()
  data_root = tt.write_data(str(tmp_path / "data"))
  ports = _free_ports(2)
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  dirs = {name: str(tmp_path / name) for name in ("mw", "single",
                                                  "mirrored")}
  workers = [_start(data_root, dirs["mw"], "multi_worker",
                    {"cluster": cluster, "task": {"type": "worker",
                                                  "index": i}})
             for i in range(2)]
  single = _start(data_root, dirs["single"], "default")
  mirrored = _start(data_root, dirs["mirrored"], "mirrored")
  outputs = [p.communicate(timeout=400)[0]
             for p in workers + [single, mirrored]]
  for p, out in zip(workers + [single, mirrored], outputs):
    assert p.returncode == 0, out[-4000:]
  single_output, mirrored_output = outputs[2:]
  outputs = outputs[:2]

  # Each worker logs the global loss; both equal the single process's.
  ref = _losses(single_output)
  assert sorted(ref) == list(range(1, STEPS + 1))
  for out in outputs + [mirrored_output]:
    got = _losses(out)
    assert sorted(got) == sorted(ref)
    np.testing.assert_allclose([got[s] for s in sorted(got)],
                               [ref[s] for s in sorted(ref)], rtol=1e-5)
  for out in outputs:  # one replica per worker, no collective in the model
    assert ("XLA on the per-replica forward/backward (no collective in the"
            " forward pass)") in out
  assert "no XLA (2 replicas in one process)" in mirrored_output

  # Every worker saved its own checkpoints; the weights match.
  def weights(*parts):
    return _model_weights(os.path.join(*parts, f"ckpt-{STEPS}"))

  a = weights(dirs["single"], "checkpoints")
  b = weights(dirs["mw"], "checkpoints")
  c = weights(dirs["mw"], "worker_checkpoints", "worker_1")
  d = weights(dirs["mirrored"], "checkpoints")
  assert a.keys() == b.keys() == c.keys() == d.keys() and len(a) > 50
  for k in a:
    np.testing.assert_array_equal(b[k], c[k], err_msg=k)
    np.testing.assert_allclose(b[k], a[k], atol=1e-5, rtol=0, err_msg=k)
    np.testing.assert_allclose(d[k], a[k], atol=1e-5, rtol=0, err_msg=k)
  # Summaries, evaluation and best/: the chief only.
  assert len(os.listdir(os.path.join(dirs["mw"], "train"))) == 1
  assert re.findall(r"EVAL (\d+)", outputs[0]) == ["3", "6"]
  assert "EVAL" not in outputs[1]
  best = json.load(open(os.path.join(dirs["mw"], "best", "best.json")))
  assert best["step"] == STEPS
  evals = json.load(open(os.path.join(dirs["mw"], "eval_results.json")))
  assert sorted(evals) == ["3", "6"]
  print(f"{time.perf_counter() - t0:.1f} s")
