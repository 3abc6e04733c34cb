"""A task model's loss and gradients on one device vs a 2-replica
MirroredStrategy (two logical CPUs, in a subprocess: the logical devices
must be set before TensorFlow initialises)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

_SCRIPT = r"""
import sys
sys.path.insert(0, %(root)r)
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(
    cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

%(setup)s

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

loss, grads = run(dist)
extra = []
%(after)s
print("LOSS", float(single_loss), float(loss), *extra)
diff = max(float(tf.reduce_max(tf.abs(tf.convert_to_tensor(a)
                                      - tf.convert_to_tensor(b))))
           for a, b in zip(single_grads, grads))
print("GRAD", diff)
"""


def compare(setup: str, after: str = "") -> tuple[list[str], float]:
  """Runs `setup` (defines a built `model` and a global batch `x`), then the
  single-device and 2-replica loss and gradients; `after` may append floats
  to `extra`.  Returns (["single", "replicated", *extra] as strings, the
  largest gradient difference)."""
  out = subprocess.run(
      [sys.executable, "-c", _SCRIPT % {"root": ROOT, "setup": setup,
                                        "after": after}],
      capture_output=True, text=True, timeout=600, cwd=ROOT,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  lines = [line for line in out.stdout.splitlines()
           if line.startswith(("LOSS", "GRAD"))]
  assert len(lines) == 2, out.stdout[-2000:] + out.stderr[-3000:]
  return lines[0].split()[1:], float(lines[1].split()[1])
