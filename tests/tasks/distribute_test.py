"""MR in-batch negatives across replicas: a 2-replica MirroredStrategy run
(two logical CPUs, in a subprocess) gives the single-device loss and
gradients on the same global batch."""

import os
import subprocess
import sys

import pytest

from tests.tasks import tasks_test  # noqa: F401 (the subprocess imports it)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

SCRIPT = r"""
import sys
sys.path.insert(0, %(root)r)
import numpy as np
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tests.tasks import tasks_test as t
from tests import fixtures
from unloc_tf import spec
from unloc_tf.tasks import moment_retriever

x = t.batch(spec.MR, "embeddings", num_text=t.K)
tf.keras.utils.set_random_seed(1)
model = fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=t.PYR,
      input_mode="embeddings", num_conv_layers=2,
    **t.SMALL)
model(x, training=True)

def loss_and_grads(b):
  with tf.GradientTape() as tape:
    loss = model.compute_loss(x=b, y_pred=model(b, training=True))
  return loss, tape.gradient(loss, model.trainable_variables)

single_loss, single_grads = loss_and_grads(x)
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
ds = tf.data.Dataset.from_tensors(x).unbatch().batch(2)
dist = next(iter(strategy.experimental_distribute_dataset(ds)))

@tf.function
def run(b):
  loss, grads = strategy.run(loss_and_grads, args=(b,))
  red = lambda v: strategy.reduce("SUM", v, axis=None)
  return red(loss), [red(g) for g in grads]

with strategy.scope():
  pass
loss, grads = run(dist)
print("LOSS", float(single_loss), float(loss))
diff = max(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(a) - tf.convert_to_tensor(b))))
           for a, b in zip(single_grads, grads))
print("GRAD", diff)
"""


def test_two_replica_mr_loss_matches_single_device():
  out = subprocess.run(
      [sys.executable, "-c", SCRIPT % {"root": ROOT}], capture_output=True,
      text=True, timeout=600, cwd=ROOT,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  lines = [l for l in out.stdout.splitlines() if l.startswith(("LOSS",
                                                               "GRAD"))]
  assert len(lines) == 2, out.stdout[-2000:] + out.stderr[-3000:]
  _, single, replicated = lines[0].split()
  assert float(single) == pytest.approx(float(replicated), rel=1e-5)
  assert float(lines[1].split()[1]) < 1e-4
