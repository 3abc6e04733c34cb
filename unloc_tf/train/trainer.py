"""The training loop: one custom loop for every tf.distribute strategy.

    the worker's tf.data pipeline and iterator
    with strategy.scope(): model (built), optimizer (built)
    restore the latest checkpoint (model, optimizer slots and step; the
      data restarts at that step) or, on a fresh start, `init_checkpoint`
      (restore_partial)
    loop until optimizer.iterations == total_steps:
      strategy.run(replica step) on the next global batch
      health checks, Progbar, TensorBoard scalars
      evaluation every eval_every steps (+ best checkpoint)
      checkpoint every checkpoint_every steps
    at the end: evaluation and a checkpoint

Why a custom loop and not `model.fit`: `fit` fails under
MultiWorkerMirroredStrategy in Keras 3.15, and `BackupAndRestore` restarts
the interrupted epoch; `CheckpointManager` plus a data position resumes
exactly (keras_tf_pitfalls.md §1, §3).

The replica step: the forward pass and `model.compute_loss` (the task models
return the per-replica loss already divided by `num_replicas_in_sync`) and
the backward pass, then `optimizer.apply`, which sums the gradients over
replicas, clips and updates (`unloc_tf.train.optimizers`).  The step counter
is `optimizer.iterations`, so the schedule, checkpoints and logs agree.

Precision (`precision`, `unloc_tf.train.precision`): the model is built
under that Keras dtype policy (float32 variables, bfloat16 / float16
compute, float32 logits and losses).  With "mixed_float16" the optimizer is
wrapped in a dynamic `LossScaleOptimizer`: the replica step differentiates
the loss times the loss scale, and `apply` divides the gradients by it
before the wrapped optimizer sums, clips and applies them; a step with
non-finite gradients is skipped (the scale halves) but still counts as a
step.  The logged loss, the health checks and the clipping see unscaled
values; the loss scale is logged as `loss_scale`.

XLA (`jit_compile=True`) compiles only the per-replica forward + backward,
never `strategy.run` with its collectives, and only when:
  * the process drives one replica (the default strategy, MWMS with one
    device per worker): XLA cannot use variables mirrored on several local
    devices (keras_tf_pitfalls.md §4), and
  * the forward pass has no cross-replica collective (the MR in-batch
    negatives' `gather_rows` under more than one replica): XLA on CPU has
    no collectives (§1c).  The trainer traces the forward pass once and
    looks for collective ops.
On TPU `strategy.run` is compiled by TPUStrategy itself; `jit_compile` is
ignored.  The chosen mode is logged.

Input: one plain tf.data pipeline per worker (`train_data_fn` with the
worker's `InputContext`), whose batches `strategy.run` hands to the worker's
replicas.  What the checkpoints keep of the input (`data_state`):
  * "position" (default): nothing but the step.  The training order of
    `pipeline.make_dataset` and its augmentation are pure functions of
    (seed, element index), so a resumed run rebuilds the pipeline with
    `skip_batches = step * batches per step` and reads exactly the batches
    an uninterrupted run reads next (order "epochs" jumps over whole
    epochs; order "buffer" re-reads the records consumed before);
    checkpoints stay the size of the model and optimizer.
  * "iterator": the tf.data iterator (exact for any dataset; the iterators
    of `strategy.distribute_datasets_from_function` are not trackable in TF
    2.21, a plain one is).  Its state holds the pipeline's buffers -- the
    shuffle buffer of serialized records and the prefetched batches --
    which for frame records makes every checkpoint hundreds of MB (tiny
    64-px synthetic records) to gigabytes (real videos).
  * "reseed": nothing; a resumed run rebuilds the pipeline with a seed
    derived from the step (for data functions that cannot skip: small,
    not exact).
A `DataLossError` while reading (a truncated or corrupted shard) is
re-raised naming the shard and the record (`pipeline.naming_damaged_shards`).

Multi-worker: every worker runs the same loop, saves checkpoints (with
data_state="iterator" the iterator's state is per worker, since workers
read different shards) to its
own directory -- the chief to <workdir>/checkpoints, worker i to
<workdir>/worker_checkpoints/worker_<i> -- and on restart every worker
restores the newest step that all workers have (a kill can land between
two workers' saves).  Only the chief writes summaries, evaluates, and keeps
best/.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tensorflow.core.framework import summary_pb2

from unloc_tf import spec
from unloc_tf.data import pipeline
from unloc_tf.train import checkpoints as ckpt_lib
from unloc_tf.train import health as health_lib
from unloc_tf.train import precision as precision_lib
from unloc_tf.train import strategy as strategy_lib

_COLLECTIVE_OPS = ("Collective", "NcclAllReduce", "AllReduce", "AllGather")
# The progress bar's running mean of the loss (since the run or its resume
# started), named apart from the log's per-step "step loss".
PROGBAR_LOSS = "mean loss"
# The float16 loss scale in the logs (mixed_float16 only).
LOSS_SCALE = "loss_scale"


def _numeric(batch: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """The batch without string features (ids, file names): XLA and the
  device step take numbers only."""
  return {k: v for k, v in batch.items() if v.dtype != tf.string}


def _graph_ops(concrete) -> set:
  graph_def = concrete.graph.as_graph_def()
  ops = {n.op for n in graph_def.node}
  for f in graph_def.library.function:
    ops.update(n.op for n in f.node_def)
  return ops


def _has_collectives(concrete) -> bool:
  """Whether a traced function (or a function it calls) has collectives."""
  return any(op.startswith(_COLLECTIVE_OPS) or "Collective" in op
             for op in _graph_ops(concrete))


def _zeros_like_spec(element_spec) -> Dict[str, tf.Tensor]:
  """A batch of one example of zeros (builds the model's variables)."""
  out = {}
  for key, s in element_spec.items():
    shape = [1] + [d if d is not None else 1 for d in s.shape[1:]]
    out[key] = tf.zeros(shape, s.dtype)
  return out


def _worker_checkpoint_dir(workdir: str, strategy) -> str:
  if strategy_lib.is_chief(strategy):
    return os.path.join(workdir, "checkpoints")
  task_type, task_id = strategy_lib.task_info(strategy)
  return os.path.join(workdir, "worker_checkpoints", f"{task_type}_{task_id}")


def _common_restore_step(strategy, checkpointer) -> int:
  """The newest checkpoint step that every worker has (0 if none)."""
  steps = checkpointer.steps()
  latest = steps[-1] if steps else 0
  if not strategy_lib.is_multi_worker(strategy):
    return latest
  n = strategy.num_replicas_in_sync

  @tf.function
  def gather(value):
    def fn():
      ctx = tf.distribute.get_replica_context()
      one_hot = tf.one_hot(ctx.replica_id_in_sync_group, n, dtype=tf.int64)
      return ctx.all_reduce(tf.distribute.ReduceOp.SUM, one_hot * value)
    return strategy.experimental_local_results(strategy.run(fn))[0]

  latest_all = gather(tf.constant(latest, tf.int64)).numpy()
  common = int(latest_all.min())
  if common and common not in steps:
    raise ValueError(
        f"the workers' latest checkpoints are at steps {latest_all.tolist()}"
        f" but {checkpointer.directory} has no step {common} (it has"
        f" {steps}); keep_checkpoints >= 2 keeps one step in common")
  return common


def _scalar_metadata():
  # What tensorboard.summary.v2.scalar writes (plugin "scalars", empty
  # content), without depending on the tensorboard package.
  metadata = summary_pb2.SummaryMetadata()
  metadata.plugin_data.plugin_name = "scalars"
  metadata.plugin_data.content = b""
  return metadata


def write_scalar(name: str, value: float, step: int) -> None:
  """A TensorBoard scalar in the default summary writer."""
  tf.summary.write(tag=name, tensor=tf.constant(float(value), tf.float32),
                   step=step, metadata=_scalar_metadata())


class _Writers:
  """TensorBoard writers of the chief (no-ops elsewhere)."""

  def __init__(self, workdir: str, enabled: bool):
    self.enabled = enabled
    if enabled:
      self.train = tf.summary.create_file_writer(
          os.path.join(workdir, "train"))
      self.eval = tf.summary.create_file_writer(os.path.join(workdir, "eval"))

  def scalars(self, which: str, step: int, values: Dict[str, float]) -> None:
    if not self.enabled:
      return
    writer = self.train if which == "train" else self.eval
    with writer.as_default(step=step):
      for name, value in values.items():
        if isinstance(value, (int, float, np.floating, np.integer)):
          write_scalar(name, value, step)

  def flush(self) -> None:
    if self.enabled:
      self.train.flush()
      self.eval.flush()


DATA_STATES = ("position", "iterator", "reseed")


_DATA_STATE_INFO = {
    "position": "no input state (exact resume from the step)",
    "iterator": "the input iterator with its buffers (exact resume)",
    "reseed": "no input state (resume reseeds the input, not exact)",
}


def _train_dataset(train_data_fn, context, **kwargs):
  """(the training dataset without string features, its shards or None);
  co-training: ({task: dataset}, every task's shards)."""
  raw = train_data_fn(input_context=context, **kwargs)
  if isinstance(raw, dict):
    files = [f for ds in raw.values() for f in pipeline.source_files(ds) or ()]
    return ({name: ds.map(_numeric) for name, ds in raw.items()},
            tuple(files) or None)
  return raw.map(_numeric), pipeline.source_files(raw)


def resume_seed(seed: int, step: int) -> int:
  """The input-pipeline seed of a run resumed at `step` (data_state=reseed),
  distinct for every step of a run, in [0, 2**31 - 1)."""
  return int((seed * 1_000_003 + step) % (2**31 - 1))


def train(
    *,
    workdir: str,
    strategy: Optional[tf.distribute.Strategy | str] = None,
    model_fn: Callable[[], keras.Model],
    train_data_fn: Callable[..., tf.data.Dataset],
    optimizer_fn: Callable[[], keras.optimizers.Optimizer],
    total_steps: int,
    eval_data_fn: Optional[Callable[[], tf.data.Dataset]] = None,
    evaluator: Optional[Callable[[keras.Model, tf.data.Dataset, int],
                                 Optional[Dict[str, float]]]] = None,
    checkpoint_every: int = 500,
    keep_checkpoints: int = 3,
    eval_every: int = 0,
    log_every: int = 50,
    best_metric: Optional[str] = None,
    best_mode: str = "max",
    jit_compile: bool = True,
    init_checkpoint: Optional[str] = None,
    init_skip_regex: Optional[str] = None,
    seed: int = 0,
    progress: bool = True,
    health_window: int = 20,
    data_state: str = "position",
    precision: str = "float32",
    task_schedule: Optional[Any] = None,
) -> Dict[str, Any]:
  """Trains (or resumes training) a task model until `total_steps`.

  Args:
    workdir: output directory: checkpoints/, best/, train/ and eval/
      (TensorBoard), eval_results.json.  Restarting with the same workdir
      and arguments resumes from the latest checkpoint with the same step,
      learning rate and next batch.
    strategy: a `tf.distribute.Strategy`, a name for `make_strategy`, or
      None (the current strategy).
    model_fn: builds the Keras task model; called inside
      `strategy.scope()`.  An unbuilt model is built there on a zeros batch
      of the dataset's element spec.
    train_data_fn: `train_data_fn(input_context=...)` -> a repeated
      tf.data.Dataset of per-replica batches, e.g. `pipeline.make_dataset(
      ..., is_training=True, input_context=input_context)`.  Called once per
      process with that worker's context (`strategy.input_context`: one
      input pipeline per worker, per-replica batch = global batch /
      replicas); each step, each of the worker's replicas takes the next
      batch.  String features are dropped.
    optimizer_fn: builds the optimizer (inside the scope), e.g.
      `make_optimizer(learning_rate=make_schedule(...))`.
    total_steps: optimizer steps of the whole run.
    eval_data_fn: `eval_data_fn()` -> the evaluation dataset (host side).
    evaluator: `evaluator(model, dataset, step)` -> {metric: float} or None.
    checkpoint_every: steps between checkpoints (and one at the end).
    keep_checkpoints: checkpoints kept (>= 2 for multi-worker restarts).
    eval_every: steps between evaluations (0: only at the end).
    log_every: steps between TensorBoard scalars and log lines.
    best_metric: metric of the evaluator that selects best/ (None: no
      best checkpoint).
    best_mode: "max" or "min".
    jit_compile: XLA for the per-replica forward/backward where possible
      (module docstring).
    init_checkpoint: on a fresh start (no checkpoint in the workdir),
      initialise from this unloc_tf checkpoint with `restore_partial`
      (ignored when resuming).
    init_skip_regex: paths not to take from init_checkpoint.
    seed: `keras.utils.set_random_seed` before the model is built.
    progress: show a Keras Progbar (chief only).
    health_window: batches that must contain a positive label (0: off).
    data_state: what checkpoints keep of the input pipeline (module
      docstring): "position" (nothing: a resumed run calls
      `train_data_fn(input_context=..., skip_batches=step * local
      replicas)`, which must start at that batch; exact with
      `pipeline.make_dataset`), "iterator" (the iterator with its buffers:
      exact for any dataset, large) or "reseed" (nothing: a resumed run
      calls `train_data_fn(input_context=..., seed=resume_seed(seed,
      step))`; not exact).  The mode of a run must not change between
      restarts.
    precision: "float32", "mixed_bfloat16" or "mixed_float16" (module
      docstring): the Keras dtype policy `model_fn` is built under, and
      loss scaling for float16.  Checkpoints hold float32 variables whatever
      the precision; a "mixed_float16" run's optimizer state also holds the
      loss scale, so it resumes only as "mixed_float16".
    task_schedule: co-training (`unloc_tf.tasks.multitask`): a
      `data.multitask.TaskSchedule`; `train_data_fn` then returns {task:
      dataset} (`data.multitask.make_datasets`; with data_state "position"
      it gets `skip_batches={task: batches}`), step s trains
      `task_schedule.task_at(s)` on that task's next batch, `model_fn`
      builds a `MultiTaskModel` and the evaluator gets {task: eval
      dataset}.  Each task's step is its own traced (XLA) program.

  Returns:
    {"step": the final step, "loss": the last step's loss (None if no step
     ran in this call), "metrics": the last evaluation's metrics}.

  Raises:
    health.HealthError: NaN/Inf loss, no positive labels, LR 0 after
      warm-up.
  """
  if isinstance(strategy, str):
    strategy = strategy_lib.make_strategy(strategy)
  strategy = strategy or tf.distribute.get_strategy()
  if best_mode not in ("max", "min"):
    raise ValueError(f"best_mode must be 'max' or 'min', got {best_mode!r}")
  if best_metric and evaluator is None:
    raise ValueError("best_metric needs an evaluator")
  if data_state not in DATA_STATES:
    raise ValueError(f"data_state must be one of {DATA_STATES}, got"
                     f" {data_state!r}")
  precision_lib.check_precision(precision)
  if task_schedule is not None and data_state == "iterator":
    raise ValueError("co-training (task_schedule) resumes with"
                     " data_state='position' or 'reseed', not 'iterator'")
  chief = strategy_lib.is_chief(strategy)
  t_start = time.perf_counter()
  tf.io.gfile.makedirs(workdir)
  keras.utils.set_random_seed(seed)

  # One plain tf.data pipeline per worker, fed to its replicas by
  # `strategy.run`: it restarts at any batch (data_state="position") and,
  # unlike the iterators of `distribute_datasets_from_function` (not
  # trackable in TF 2.21), its iterator can go into the checkpoint.
  context = strategy_lib.input_context(strategy)
  local_replicas = strategy_lib.local_replicas(strategy)
  dataset, train_files = _train_dataset(train_data_fn, context)
  if isinstance(dataset, dict) != (task_schedule is not None):
    raise ValueError(
        "co-training needs both a task_schedule and a train_data_fn that"
        " returns {task: dataset}" if task_schedule is not None else
        "train_data_fn returned {task: dataset}: pass task_schedule"
        " (data.multitask.TaskSchedule) to co-train")
  with strategy.scope():
    with precision_lib.policy_scope(precision):
      model = model_fn()
      if not model.built:
        for ds in (dataset.values() if isinstance(dataset, dict)
                   else [dataset]):
          model(_zeros_like_spec(ds.element_spec), training=False)
        model.built = True
    optimizer = precision_lib.wrap_optimizer(optimizer_fn(), precision)
    optimizer.build(model.trainable_variables)
  # Otherwise the iterator starts (and fills its buffers) only once the
  # restored step, hence its position or seed, is known.
  iterator = iter(dataset) if data_state == "iterator" else None

  logging.info("model and optimizer built (%.1f s, %s)",
               time.perf_counter() - t_start, precision)
  checkpointer = ckpt_lib.Checkpointer(
      _worker_checkpoint_dir(workdir, strategy), model, optimizer, iterator,
      max_to_keep=keep_checkpoints,
      best_directory=os.path.join(workdir, "best"))
  restore_step = _common_restore_step(strategy, checkpointer)
  if restore_step:
    checkpointer.restore(restore_step)
    logging.info("restored %s/ckpt-%d", checkpointer.directory, restore_step)
    if data_state == "reseed":
      data_seed = resume_seed(seed, restore_step)
      dataset, train_files = _train_dataset(train_data_fn, context,
                                            seed=data_seed)
      logging.info("input pipeline rebuilt with seed %d (data_state=reseed)",
                   data_seed)
    elif data_state == "position":
      skip = restore_step * local_replicas
      if task_schedule is not None:  # each task's batches before the step
        skip = {name: n * local_replicas for name, n in
                task_schedule.counts_before(restore_step).items()}
      t0 = time.perf_counter()
      try:
        dataset, train_files = _train_dataset(train_data_fn, context,
                                              skip_batches=skip)
      except TypeError as e:
        if "skip_batches" not in str(e):
          raise
        raise TypeError(
            "data_state='position' resumes by calling train_data_fn(...,"
            " skip_batches=N), which this train_data_fn does not accept"
            f" ({e}); use pipeline.make_dataset, or data_state='iterator'"
            " (exact, large checkpoints) or 'reseed'") from e
      logging.info("input pipeline restarted at its batch %s"
                   " (data_state=position, %.1f s)", skip,
                   time.perf_counter() - t0)
  elif init_checkpoint:
    report = ckpt_lib.restore_partial(model, init_checkpoint,
                                      skip_regex=init_skip_regex)
    logging.info("initialised from %s: %d loaded, %d adapted, %d missing,"
                 " %d unused", init_checkpoint, len(report["loaded"]),
                 len(report["adapted"]), len(report["missing"]),
                 len(report["unused"]))
  if iterator is None:
    iterator = ({name: iter(ds) for name, ds in dataset.items()}
                if isinstance(dataset, dict) else iter(dataset))
  step = int(optimizer.iterations.numpy())
  if step != restore_step:
    raise RuntimeError(f"optimizer.iterations is {step} after restoring step"
                       f" {restore_step}")

  # --- the step function -------------------------------------------------
  def forward_backward(batch):
    with tf.GradientTape() as tape:
      outputs = model(batch, training=True)
      loss = model.compute_loss(x=batch, y_pred=outputs)
      # Times the loss scale under mixed_float16 (`optimizer.apply` divides
      # the gradients by it again); the loss returned stays unscaled.
      scaled_loss = precision_lib.scale_loss(optimizer, loss)
    grads = tape.gradient(scaled_loss, model.trainable_variables)
    logs = {k: tf.cast(v, tf.float32)
            for k, v in dict(getattr(model, "last_losses", {}) or {}).items()
            if k != "loss" and tf.convert_to_tensor(v).shape.rank == 0}
    return loss, grads, logs

  use_jit = bool(jit_compile)
  reason = "jit_compile=False"
  if strategy_lib.is_tpu(strategy):
    use_jit, reason = False, "TPUStrategy compiles strategy.run itself"
  elif use_jit and local_replicas > 1:
    use_jit, reason = False, f"{local_replicas} replicas in one process"
  plain_fn = tf.function(forward_backward)
  jit_fn = tf.function(forward_backward, jit_compile=True)
  mode = {}

  def replica_step(batch):
    fn = plain_fn
    if use_jit:
      # Decided per batch structure (co-training: per task).
      decided = mode.setdefault(tuple(sorted(batch)), {})
      if "jit" not in decided and strategy.num_replicas_in_sync == 1:
        decided.update(jit=True, reason="one replica")
      if "jit" not in decided:
        concrete = plain_fn.get_concrete_function(batch)
        decided["jit"] = not _has_collectives(concrete)
        decided["reason"] = (
            "no collective in the forward pass" if decided["jit"] else
            "the forward pass has cross-replica collectives, which XLA on"
            " CPU cannot compile")
      mode.update(decided)
      if decided["jit"]:
        fn = jit_fn
    loss, grads, logs = fn(batch)
    variables = model.trainable_variables
    if task_schedule is not None:
      # Co-training: the heads of the other tasks get no gradient this
      # step; they are left untouched (no momentum, no weight decay).
      pairs = [(g, v) for g, v in zip(grads, variables) if g is not None]
      grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    optimizer.apply(grads, variables)
    labels = batch.get(spec.LABELS)
    positives = (tf.reduce_sum(tf.cast(labels > 0, tf.float32))
                 if labels is not None else tf.constant(-1.0))
    return loss, logs, positives

  scale_variable = precision_lib.loss_scale(optimizer)

  @tf.function
  def train_step(it):
    learning_rate = tf.cast(optimizer.learning_rate, tf.float32)
    if local_replicas == 1:
      batch = next(it)
    else:
      batches = [next(it) for _ in range(local_replicas)]
      batch = strategy.experimental_distribute_values_from_function(
          lambda ctx: batches[ctx.replica_id_in_sync_group % local_replicas])
    loss, logs, positives = strategy.run(replica_step, args=(batch,))
    sum_ = lambda v: strategy.reduce(tf.distribute.ReduceOp.SUM, v, None)
    mean = lambda v: strategy.reduce(tf.distribute.ReduceOp.MEAN, v, None)
    logs = {k: mean(v) for k, v in logs.items()}
    if scale_variable is not None:  # after this step's update of the scale
      logs[LOSS_SCALE] = tf.identity(scale_variable.value)
    return sum_(loss), logs, sum_(positives), learning_rate

  # --- the loop ----------------------------------------------------------
  writers = _Writers(workdir, chief)
  schedule = getattr(precision_lib.inner_optimizer(optimizer),
                     "_learning_rate", None)
  monitor = health_lib.HealthMonitor(
      window=health_window, warmup_steps=getattr(schedule, "warmup_steps", 0),
      total_steps=total_steps)
  eval_ds = eval_data_fn() if eval_data_fn is not None else None
  results_path = os.path.join(workdir, "eval_results.json")
  metrics: Dict[str, float] = {}
  if tf.io.gfile.exists(results_path):
    with tf.io.gfile.GFile(results_path) as f:
      history = json.load(f)
    if history:
      metrics = history[max(history, key=int)]
  progbar = None
  if progress and chief and step < total_steps:
    progbar = keras.utils.Progbar(total_steps,
                                  stateful_metrics=["lr", LOSS_SCALE])
    progbar.update(step)
  last_saved = restore_step
  last_eval = None
  loss_value = None

  def evaluate(at_step):
    nonlocal metrics
    if evaluator is None or not chief:
      return
    t0 = time.perf_counter()
    out = evaluator(model, eval_ds, at_step)
    if out is None:
      return
    metrics = {}
    for k, v in out.items():
      if np.ndim(v) == 0 and np.issubdtype(np.asarray(v).dtype, np.number):
        metrics[k] = float(v)  # scalars are logged and returned

    writers.scalars("eval", at_step, metrics)
    writers.flush()
    history = {}
    if tf.io.gfile.exists(results_path):
      with tf.io.gfile.GFile(results_path) as f:
        history = json.load(f)
    history[str(at_step)] = metrics
    with tf.io.gfile.GFile(results_path + ".tmp", "w") as f:
      json.dump(history, f, indent=1)
    tf.io.gfile.rename(results_path + ".tmp", results_path, overwrite=True)
    logging.info("eval step %d (%.1f s): %s", at_step,
                 time.perf_counter() - t0, metrics)
    if best_metric:
      if best_metric not in metrics:
        raise KeyError(f"best_metric {best_metric!r} is not among the"
                       f" evaluator's metrics {sorted(metrics)}")
      if checkpointer.save_best(at_step, best_metric, metrics[best_metric],
                                best_mode):
        logging.info("new best %s = %g at step %d", best_metric,
                     metrics[best_metric], at_step)

  logged_mode = False
  logging.info("data_state=%s: checkpoints hold %s", data_state,
               _DATA_STATE_INFO[data_state])
  try:
    while step < total_steps:
      it = (iterator[task_schedule.task_at(step)]
            if task_schedule is not None else iterator)
      with pipeline.naming_damaged_shards(train_files):
        loss_t, logs_t, positives_t, lr_t = train_step(it)
      if not logged_mode:
        logging.info("first train step done (%.1f s since start): %s (%s)",
                     time.perf_counter() - t_start,
                     "XLA on the per-replica forward/backward"
                     if mode.get("jit") else "no XLA",
                     mode.get("reason", reason))
        logged_mode = True
      loss_value = float(loss_t)
      lr = float(lr_t)
      logs = {k: float(v) for k, v in logs_t.items()}
      positives = float(positives_t)
      monitor.check_step(step, loss_value,
                         positives if positives >= 0 else None, lr,
                         loss_scale=logs.get(LOSS_SCALE))
      step += 1
      if progbar is not None:
        # Progbar averages what it is given since the run (or resume)
        # started; the log and TensorBoard get each step's own loss.
        progbar.update(step, [(PROGBAR_LOSS, loss_value), ("lr", lr)]
                       + sorted(logs.items()), finalize=False)
      if step % log_every == 0 or step == total_steps:
        writers.scalars("train", step, {"loss": loss_value,
                                        "learning_rate": lr, **logs})
        logging.info("step %d: step loss %r, lr %r", step, loss_value,
                     lr)
      if eval_every and step % eval_every == 0 and step < total_steps:
        evaluate(step)
        last_eval = step
      if step % checkpoint_every == 0 and step < total_steps:
        checkpointer.save(step)
        last_saved = step
        logging.info("saved checkpoint step %d", step)
    if step == total_steps and last_eval != step and loss_value is not None:
      evaluate(step)
    if last_saved != step:
      checkpointer.save(step)
      logging.info("saved checkpoint step %d", step)
  finally:
    writers.flush()
  if progbar is not None:
    progbar.update(step, finalize=True)
  return {"step": step, "loss": loss_value, "metrics": metrics}

