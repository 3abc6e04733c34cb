"""Forward and train-step speed of the UnLoc-B fusion + pyramid + heads.

The reference's ActivityNet-Captions base setting on cached frame
embeddings: N0 = 128 frames (768-d ViT-B/16 features), batch 2, one caption
per video (all-pairs loss), CLIP-B text tower trainable with 32 text
tokens, fusion 512 wide / 8 heads / MLP 2048 / 6 layers, 4-level simple
pyramid, per-level heads with 3 conv layers.  Two configurations, each with
and without XLA (`jit_compile=True`):

  * "own_captions": the forward pass of evaluation (each video fused with
    its own captions: B*K sequences) and a train step with Keras SGD and
    no gradient clipping (the numbers this benchmark has always reported);
  * "reference": like for like with the reference's train step — the
    forward pass fuses every video with every caption of the batch
    (B*B*K sequences, `training=True`), and the step is the trainer's:
    `strategy.run` of forward + backward (XLA on that part only, as
    `unloc_tf.train.trainer`), then the experiment's optimiser
    (`optimizers.make_optimizer`: optax-style SGD momentum 0.9, warm-up
    schedule, fusion + heads at 10x, replica sum then global-norm clipping
    to 1.0), as gin/experiments/activitynet_captions_base_16.gin binds it.

Also the FLOPs of one train step and of each forward (TF's graph
profiler), the achieved GFLOP/s, and a large float32 matmul's GFLOP/s
measured in the same run (and one in the compute dtype under a mixed
precision).  Peak RSS at the end.

`--precision` (unloc_tf.train.precision): "float32" (default),
"mixed_bfloat16" or "mixed_float16": the model is built under that Keras
dtype policy, as the trainer builds it (float32 variables and logits); with
"mixed_float16" both steps scale the loss and wrap their optimiser in the
`LossScaleOptimizer`, as the trainer does.

Run: python bench/model_step.py [--steps 8] [--precision mixed_bfloat16]
     [--configs reference]
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
from unloc_tf.train import optimizers, precision  # noqa: E402

N0, BATCH, LT = 128, 2, 32
# gin/experiments/activitynet_captions_base_16.gin + gin/runs/train.gin.
TRAIN_STEPS, WARMUP_STEPS, BASE_LR = 3100, 387, 0.01


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


def matmul_gflops(n=2048, steps=10, dtype=tf.float32):
  a = tf.cast(tf.random.normal((n, n)), dtype)
  b = tf.cast(tf.random.normal((n, n)), dtype)
  f = tf.function(lambda: tf.matmul(a, b))
  sec = time_fn(f, steps)
  return 2 * n**3 / sec / 1e9


def reference_optimizer():
  """The ANetCap-B experiment's optimiser (gin/runs/train.gin)."""
  schedule = optimizers.make_schedule(base_learning_rate=BASE_LR,
                                      total_steps=TRAIN_STEPS,
                                      warmup_steps=WARMUP_STEPS)
  return optimizers.make_optimizer(
      "sgd", schedule, momentum=0.9, global_clipnorm=1.0,
      lr_multipliers=optimizers.REFERENCE_LR_MULTIPLIERS)


def own_captions_fns(model, batch, precision_name="float32"):
  """(forward, train step builder): evaluation forward, Keras SGD, no
  clipping."""
  opt = precision.wrap_optimizer(keras.optimizers.SGD(0.01, momentum=0.9),
                                 precision_name)
  opt.build(model.trainable_variables)

  def forward():
    return model(batch, training=False)["logits"]

  def train_step():
    with tf.GradientTape() as tape:
      loss = model.compute_loss(x=batch, y_pred=model(batch, training=True))
      scaled = precision.scale_loss(opt, loss)
    grads = tape.gradient(scaled, model.trainable_variables)
    opt.apply(grads, model.trainable_variables)
    return loss

  def make_step(xla):
    return tf.function(train_step, jit_compile=xla)

  return forward, train_step, make_step


def reference_fns(model, batch, precision_name="float32"):
  """(forward, train step builder) like the reference's train step: all
  pairs, trainer step structure, the experiment's optimiser."""
  strategy = tf.distribute.get_strategy()
  opt = precision.wrap_optimizer(reference_optimizer(), precision_name)
  opt.build(model.trainable_variables)

  def forward():
    return model(batch, training=True)["pair_logits"]

  def forward_backward(b):
    with tf.GradientTape() as tape:
      loss = model.compute_loss(x=b, y_pred=model(b, training=True))
      scaled = precision.scale_loss(opt, loss)
    return loss, tape.gradient(scaled, model.trainable_variables)

  def make_step(xla):
    fb = tf.function(forward_backward, jit_compile=xla)

    def replica_step(b):
      loss, grads = fb(b)
      opt.apply(grads, model.trainable_variables)
      return loss

    @tf.function
    def step():
      loss = strategy.run(replica_step, args=(batch,))
      return strategy.reduce(tf.distribute.ReduceOp.SUM, loss, None)

    return step

  def train_step():  # for the FLOP count (one replica)
    loss, grads = forward_backward(batch)
    opt.apply(grads, model.trainable_variables)
    return loss

  return forward, train_step, make_step


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--steps", type=int, default=8)
  parser.add_argument("--precision", default=precision.FLOAT32,
                      choices=precision.PRECISIONS)
  parser.add_argument("--configs", default="own_captions,reference",
                      help="comma-separated: own_captions, reference")
  args = parser.parse_args()
  pyr = spec.PyramidSpec(N0)
  with precision.policy_scope(args.precision):
    model = moment_retriever.build_moment_retriever(
        unloc_backbone.BackboneConfig(
            "base_16", input_mode="embeddings", text_input="tokens",
            text_max_length=LT),
        pyramid_spec=pyr, num_conv_layers=3, weight_sharing=False)
    batch = make_batch(pyr)
    model(batch, training=True)

  rows = []
  extra = {"precision": args.precision}
  mm = matmul_gflops()
  compute = tf.as_dtype(model.compute_dtype)
  if compute != tf.float32:
    extra[f"matmul_{compute.name}_gflops_per_s"] = matmul_gflops(
        dtype=compute)
  configs = {"own_captions": own_captions_fns, "reference": reference_fns}
  for config in args.configs.split(","):
    forward, train_step, make_step = configs[config](model, batch,
                                                     args.precision)
    step_flops = flops_of(tf.function(train_step).get_concrete_function())
    fwd_flops = flops_of(tf.function(forward).get_concrete_function())
    extra[f"{config}_train_step_gflop"] = step_flops / 1e9
    extra[f"{config}_forward_gflop"] = fwd_flops / 1e9
    for xla in (False, True):
      fwd = time_fn(tf.function(forward, jit_compile=xla), args.steps)
      step = time_fn(make_step(xla), args.steps)
      rows.append({"config": config, "precision": args.precision,
                   "xla": xla, "forward_ms": fwd * 1e3,
                   "train_step_ms": step * 1e3,
                   "train_gflops_per_s": step_flops / step / 1e9,
                   "fraction_of_matmul": step_flops / step / 1e9 / mm})
  params = sum(int(np.prod(v.shape)) for v in model.trainable_variables)
  common.report("model_step", rows, {
      "matmul_gflops_per_s": mm, **extra, "trainable_params": params,
      "setting": "ANetCap-B on cached embeddings: N0=128, B=2, K=1, Lt=32;"
                 " own_captions = eval forward + Keras SGD without"
                 " clipping; reference = all-pairs forward + trainer step"
                 " with the experiment's optimiser (clip 1.0, 10x fusion"
                 " and heads)"})
  gflop = extra.get("reference_train_step_gflop",
                    extra.get("own_captions_train_step_gflop", 0.0))
  print(f"float32 matmul 2048^3: {mm:.1f} GFLOP/s; train step"
        f" {gflop:.1f} GFLOP, {params / 1e6:.1f} M params,"
        f" {args.precision}")


if __name__ == "__main__":
  main()
