"""Cross-replica helpers that work under every tf.distribute strategy.

`gather_rows` is an all-gather built from scatter + all-reduce: static
shapes, no device strings (so it works in MirroredStrategy, multi-worker and
TPU replica contexts, and in the default strategy as a no-op), and it is
differentiable (the gradient of a SUM all-reduce is an all-reduce).
See keras_tf_pitfalls.md §4.
"""

from __future__ import annotations

import tensorflow as tf


def num_replicas() -> int | tf.Tensor:
  """Replicas in sync in the current replica context (1 outside any)."""
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else ctx.num_replicas_in_sync


def gather_rows(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """[b, ...] per replica → ([b * R, ...] on every replica, row offset).

  Args:
    x: the per-replica rows (every replica must have the same b).

  Returns:
    (gathered, offset): the rows of all replicas in replica order, and the
    index of this replica's first row in `gathered` (int32 scalar).
  """
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return x, tf.constant(0, tf.int32)
  if x.dtype in (tf.bfloat16, tf.float16):
    # Collectives need not support half types (mixed precision); the sum
    # has one non-zero term per element, so the round trip is exact.
    gathered, start = gather_rows(tf.cast(x, tf.float32))
    return tf.cast(gathered, x.dtype), start
  n = ctx.num_replicas_in_sync
  b = tf.shape(x)[0]
  start = tf.cast(ctx.replica_id_in_sync_group, tf.int32) * b
  rows = tf.expand_dims(tf.range(b) + start, 1)
  full = tf.scatter_nd(rows, x, tf.concat([[b * n], tf.shape(x)[1:]], 0))
  gathered = ctx.all_reduce(tf.distribute.ReduceOp.SUM, full)
  static = x.shape.as_list()
  if static[0] is not None:
    gathered = tf.ensure_shape(gathered, [static[0] * n] + static[1:])
  return gathered, start
