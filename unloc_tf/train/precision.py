"""Mixed precision: the Keras dtype policy a model is built under, and loss
scaling for float16.

One name chooses both (`PRECISION` in gin/runs/train.gin, bound to
`trainer.train.precision`; the launch layer builds evaluation, export and
prediction models with the same one):

  "float32"         everything float32 (the reference; the default).
  "mixed_bfloat16"  Keras' `mixed_bfloat16` policy: float32 variables,
                    bfloat16 compute.  No loss scaling (bfloat16 has
                    float32's exponent range).
  "mixed_float16"   Keras' `mixed_float16` policy, and the optimizer wrapped
                    in a dynamic `LossScaleOptimizer`: the loss is
                    multiplied by the loss scale before the backward pass
                    and the gradients are divided by it before the wrapped
                    optimizer sees them, so its cross-replica sum, global-norm
                    clipping and update are those of unscaled gradients.

The policy is not set process-wide: `policy_scope` sets Keras' global dtype
policy only while a model is constructed and built (a layer keeps the
policy it was constructed with; sub-layers get their parent's), then puts
the previous one back.  What stays float32 under a mixed policy: the
variables; LayerNorm statistics and the attention softmax (Keras computes
them in float32); the heads' output projections and their per-level
scale / shift and late-fusion cosine, so the logits and displacements of
every task model are float32; and with them the losses, decoding /
Soft-NMS, metrics and the SavedModel signatures (`layers/heads.py`).
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import keras
import tensorflow as tf

FLOAT32 = "float32"
MIXED_BFLOAT16 = "mixed_bfloat16"
MIXED_FLOAT16 = "mixed_float16"
PRECISIONS = (FLOAT32, MIXED_BFLOAT16, MIXED_FLOAT16)


def check_precision(precision: str) -> str:
  """`precision` if it is one of `PRECISIONS`, else a ValueError naming it
  and the allowed names."""
  if precision not in PRECISIONS:
    allowed = ", ".join(repr(p) for p in PRECISIONS)
    raise ValueError(f"unknown precision {precision!r}: expected one of"
                     f" {allowed}")
  return precision


@contextlib.contextmanager
def policy_scope(precision: str = FLOAT32) -> Iterator[None]:
  """Keras' dtype policy set to `precision` for the layers constructed (and
  built) inside; the previous policy is restored on exit.

  Keras' global policy is per thread; a layer keeps the policy it was
  constructed with, so a model built here keeps computing in `precision`
  after the scope ends.
  """
  check_precision(precision)
  previous = keras.config.dtype_policy()
  keras.config.set_dtype_policy(precision)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(previous)


def model_precision(model: keras.Layer) -> str:
  """The precision name of a model's dtype policy ("float32", ...)."""
  return model.dtype_policy.name


@keras.saving.register_keras_serializable(package="unloc_tf")
class LossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
  """`keras.optimizers.LossScaleOptimizer` for the trainer's loop.

  Two differences from Keras':
    * a step whose gradients are not finite (skipped, the scale halved)
      still counts in `iterations`, as in tf.keras 2: the trainer's step,
      the learning-rate schedule, the checkpoint numbers and the data
      position all stay `iterations`;
    * whether the gradients are finite is agreed across replicas (a sum of
      the replicas' counts of non-finite gradients) before any replica
      applies them: the wrapped optimizers here sum the gradients over
      replicas inside `apply` (`optimizers._ReferenceGradientsMixin`), so
      every replica must take the same branch.
  """

  def _stateful_handle_non_finite_grads(self):
    super()._stateful_handle_non_finite_grads()
    self.inner_optimizer.iterations.assign_add(1)

  def check_finite(self, grads):
    bad = [tf.reduce_sum(tf.cast(~tf.math.is_finite(_values(g)), tf.float32))
           for g in grads if g is not None]
    bad = tf.add_n(bad) if bad else tf.constant(0.0)
    ctx = tf.distribute.get_replica_context()
    if ctx is not None and ctx.num_replicas_in_sync > 1:
      bad = ctx.all_reduce(tf.distribute.ReduceOp.SUM, bad)
    return tf.equal(bad, 0.0)


def _values(gradient):
  return gradient.values if isinstance(gradient, tf.IndexedSlices) else (
      gradient)


def wrap_optimizer(optimizer: keras.optimizers.Optimizer, precision: str,
                   initial_scale: float = 2.0**15,
                   dynamic_growth_steps: int = 2000
                   ) -> keras.optimizers.Optimizer:
  """The optimizer to train with at `precision`: a `LossScaleOptimizer`
  around `optimizer` for "mixed_float16", else `optimizer` itself."""
  check_precision(precision)
  if precision != MIXED_FLOAT16 or isinstance(
      optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer
  return LossScaleOptimizer(optimizer, initial_scale=initial_scale,
                            dynamic_growth_steps=dynamic_growth_steps)


def inner_optimizer(optimizer: keras.optimizers.Optimizer
                    ) -> keras.optimizers.Optimizer:
  """The optimizer a `LossScaleOptimizer` wraps (else `optimizer`)."""
  return getattr(optimizer, "inner_optimizer", optimizer)


def loss_scale(optimizer: keras.optimizers.Optimizer
               ) -> Optional[keras.Variable]:
  """The current loss scale of a built `LossScaleOptimizer`, else None."""
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer.dynamic_scale
  return None


def scale_loss(optimizer: keras.optimizers.Optimizer, loss: tf.Tensor
               ) -> tf.Tensor:
  """The loss to differentiate: times the loss scale under loss scaling."""
  if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
    return optimizer.scale_loss(loss)
  return loss
