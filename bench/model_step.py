"""Forward and train-step speed of the UnLoc-B fusion + pyramid + heads.

The reference's ActivityNet-Captions base setting on cached frame
embeddings: N0 = 128 frames (768-d ViT-B/16 features), batch 2, one caption
per video (all-pairs loss), CLIP-B text tower trainable with 32 text
tokens, fusion 512 wide / 8 heads / MLP 2048 / 6 layers, 4-level simple
pyramid, per-level heads with 3 conv layers.  Measures forward and train
step times with and without XLA (`jit_compile=True`), the FLOPs of one
train step (TF's graph profiler), the achieved GFLOP/s, and a large float32
matmul's GFLOP/s measured in the same run.  Peak RSS at the end.

Run: python bench/model_step.py [--steps 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402

from bench import common  # noqa: E402
from unloc_tf import spec  # noqa: E402
from unloc_tf.models import unloc_backbone  # noqa: E402
from unloc_tf.tasks import moment_retriever  # noqa: E402

N0, BATCH, LT = 128, 2, 32


def make_batch(pyr):
  rng = np.random.default_rng(0)
  t_tot = pyr.total_tokens
  ids = np.zeros((BATCH, 1, LT), np.int32)
  ids[:, 0, :12] = rng.integers(1, 49000, (BATCH, 12))
  ids[:, 0, 0], ids[:, 0, 12] = 49406, 49407
  labels = np.zeros((BATCH, 1, t_tot), np.int32)
  labels[:, :, 10:30] = 1
  return {
      spec.FRAME_EMBEDDINGS: tf.constant(
          rng.normal(size=(BATCH, N0, 768)), tf.float32),
      spec.FRAME_MASK: tf.ones((BATCH, N0), tf.int32),
      spec.TEXT_IDS: tf.constant(ids),
      spec.TEXT_MASK: tf.constant((ids > 0).astype(np.int32)),
      spec.TEXT_VALID: tf.ones((BATCH, 1), tf.int32),
      spec.LABELS: tf.constant(labels),
      spec.DISPLACEMENTS: tf.constant(
          rng.uniform(0, 8, (BATCH, 1, t_tot, 2)), tf.float32),
  }


def flops_of(concrete) -> float:
  from tensorflow.python.profiler import (
    model_analyzer,  # noqa: PLC0415
    option_builder,  # noqa: PLC0415
  )
  opts = (option_builder.ProfileOptionBuilder(
      option_builder.ProfileOptionBuilder.float_operation())
          .with_empty_output().build())
  prof = model_analyzer.profile(concrete.graph, options=opts)
  return float(prof.total_float_ops)


def time_fn(fn, steps):
  fn()  # compile / trace
  fn()
  times = []
  for _ in range(steps):
    t = time.perf_counter()
    out = fn()
    tf.nest.map_structure(lambda v: v.numpy() if hasattr(v, "numpy") else v,
                          out)
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def matmul_gflops(n=2048, steps=10):
  a = tf.random.normal((n, n))
  b = tf.random.normal((n, n))
  f = tf.function(lambda: tf.matmul(a, b))
  sec = time_fn(f, steps)
  return 2 * n**3 / sec / 1e9


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=8)
  args = parser.parse_args()
  pyr = spec.PyramidSpec(N0)
  model = moment_retriever.build_moment_retriever(
      unloc_backbone.BackboneConfig(
          "base_16", input_mode="embeddings", text_input="tokens",
          text_max_length=LT),
      pyramid_spec=pyr, num_conv_layers=3, weight_sharing=False)
  batch = make_batch(pyr)
  model(batch, training=True)
  opt = keras.optimizers.SGD(0.01, momentum=0.9)
  opt.build(model.trainable_variables)

  def forward():
    return model(batch, training=False)["logits"]

  def train_step():
    with tf.GradientTape() as tape:
      loss = model.compute_loss(x=batch, y_pred=model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  rows = []
  step_flops = flops_of(tf.function(train_step).get_concrete_function())
  fwd_flops = flops_of(tf.function(forward).get_concrete_function())
  mm = matmul_gflops()
  for xla in (False, True):
    f = tf.function(forward, jit_compile=xla)
    s = tf.function(train_step, jit_compile=xla)
    fwd = time_fn(f, args.steps)
    step = time_fn(s, args.steps)
    rows.append({"xla": xla, "forward_ms": fwd * 1e3,
                 "train_step_ms": step * 1e3,
                 "train_gflops_per_s": step_flops / step / 1e9,
                 "fraction_of_matmul": step_flops / step / 1e9 / mm})
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  common.report("model_step", rows, {
      "matmul_gflops_per_s": mm, "train_step_gflop": step_flops / 1e9,
      "forward_gflop": fwd_flops / 1e9, "trainable_params": params,
      "setting": "ANetCap-B on cached embeddings: N0=128, B=2, K=1, Lt=32"})
  print(f"float32 matmul 2048^3: {mm:.1f} GFLOP/s; train step"
        f" {step_flops / 1e9:.1f} GFLOP; {params / 1e6:.1f} M params")


if __name__ == "__main__":
  main()
