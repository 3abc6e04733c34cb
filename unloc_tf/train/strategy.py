"""tf.distribute strategies by name, and who-is-chief helpers.

Every strategy is driven by the same custom loop (`unloc_tf.train.trainer`):
Keras 3.15's `fit` breaks under MultiWorkerMirroredStrategy
(keras_tf_pitfalls.md §1), a custom loop with `strategy.run` does not.

  * "default": no distribution (the default strategy, one replica).
  * "mirrored": `MirroredStrategy` over the local devices (every GPU, or the
    CPU), or over `devices` when given (e.g. logical CPUs in tests).
  * "multi_worker": `MultiWorkerMirroredStrategy`; the cluster comes from the
    `TF_CONFIG` environment variable, which every process must set, e.g.
    `{"cluster": {"worker": ["host0:2222", "host1:2222"]},
      "task": {"type": "worker", "index": 0}}`.  Worker 0 (or the task of
    type "chief") is the chief.  Creating the strategy blocks until every
    worker has started.
  * "tpu": `TPUStrategy` on `TPUClusterResolver(tpu)` (`tpu` = the TPU name
    or grpc address; None or "local" on a TPU VM).  Note that the newest
    `tensorflow-tpu` wheel is 2.20, so the package stays TF 2.20-compatible.
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


def _tf_config() -> dict:
  raw = os.environ.get("TF_CONFIG")
  if not raw:
    raise ValueError(
        "strategy 'multi_worker' needs the TF_CONFIG environment variable in"
        " every process, e.g. TF_CONFIG='{\"cluster\": {\"worker\":"
        " [\"host0:2222\", \"host1:2222\"]}, \"task\": {\"type\": \"worker\","
        " \"index\": 0}}' (index = this process's position in the list)")
  try:
    config = json.loads(raw)
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON ({e}): {raw!r}") from e
  cluster = config.get("cluster") or {}
  task = config.get("task") or {}
  if not (cluster.get("worker") or cluster.get("chief")):
    raise ValueError(f"TF_CONFIG has no cluster.worker list: {raw!r}")
  if "type" not in task or "index" not in task:
    raise ValueError(f"TF_CONFIG needs task.type and task.index: {raw!r}")
  members = cluster.get(task["type"]) or []
  if not 0 <= int(task["index"]) < len(members):
    raise ValueError(
        f"TF_CONFIG task {task['type']}:{task['index']} is not in the"
        f" cluster {cluster}")
  return config


def make_strategy(name: str = "default", tpu: Optional[str] = None,
                  devices: Optional[Sequence[str]] = None
                  ) -> tf.distribute.Strategy:
  """A `tf.distribute.Strategy` by name.

  Args:
    name: "default", "mirrored", "multi_worker" or "tpu" (module docstring).
    tpu: TPU name or address for "tpu" (None: a TPU VM's local TPU).
    devices: for "mirrored", the devices to mirror over (default: all local
      GPUs, else the CPU).

  Returns:
    The strategy.  Create it once, at program start, before any other
    TensorFlow op runs (multi-worker and TPU strategies configure the
    runtime).

  Raises:
    ValueError: unknown name, missing or malformed TF_CONFIG, or no TPU.
  """
  if name == "default":
    return tf.distribute.get_strategy()
  if name == "mirrored":
    return tf.distribute.MirroredStrategy(
        devices=list(devices) if devices else None)
  if name == "multi_worker":
    _tf_config()
    return tf.distribute.MultiWorkerMirroredStrategy()
  if name == "tpu":
    try:
      resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
      tf.config.experimental_connect_to_cluster(resolver)
      tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError, RuntimeError) as e:
      raise ValueError(
          f"strategy 'tpu': could not connect to the TPU {tpu!r} ({e}). On a"
          " TPU VM leave tpu unset (or 'local'); otherwise pass the TPU name"
          " or grpc://address.") from e
    return tf.distribute.TPUStrategy(resolver)
  raise ValueError(f"unknown strategy {name!r}; expected one of"
                   f" {STRATEGIES}")


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
  """True for a MultiWorkerMirroredStrategy with more than one worker."""
  return (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
          and strategy.extended._in_multi_worker_mode())  # pylint: disable=protected-access


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
  """True for a TPUStrategy (XLA-compiles `strategy.run` by itself)."""
  return "TPUStrategy" in type(strategy).__name__


def task_info(strategy: tf.distribute.Strategy) -> tuple[str, int]:
  """(task type, task index) of this process; ("worker", 0) if single."""
  if not is_multi_worker(strategy):
    return "worker", 0
  resolver = strategy.cluster_resolver
  return str(resolver.task_type), int(resolver.task_id)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """The process that writes summaries, the best checkpoint and reports.

  The task of type "chief", or worker 0 when the cluster has no chief.
  """
  if not is_multi_worker(strategy):
    return True
  task_type, task_id = task_info(strategy)
  if task_type == "chief":
    return True
  cluster = strategy.cluster_resolver.cluster_spec().as_dict()
  return task_type == "worker" and task_id == 0 and "chief" not in cluster


def local_replicas(strategy: tf.distribute.Strategy) -> int:
  """Replicas (devices) driven by this process."""
  try:
    return len(strategy.extended.worker_devices)
  except RuntimeError:  # the default strategy
    return 1


def input_context(strategy: tf.distribute.Strategy
                  ) -> tf.distribute.InputContext:
  """The `InputContext` of this process: one input pipeline per worker.

  Workers are numbered chief first, then the workers in TF_CONFIG order.
  Each pipeline yields per-replica batches (global batch / replicas in
  sync) for the replicas of its worker.  A TPUStrategy is driven by one
  Python client, so it has one pipeline on the client's host (fine for a
  single-host TPU VM; a multi-host pod would funnel all input through it).
  """
  num_pipelines, pipeline_id = 1, 0
  if is_multi_worker(strategy):
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    chiefs = len(cluster.get("chief", []))
    num_pipelines = chiefs + len(cluster.get("worker", []))
    task_type, task_id = task_info(strategy)
    pipeline_id = task_id if task_type == "chief" else chiefs + task_id
  return tf.distribute.InputContext(
      num_input_pipelines=num_pipelines, input_pipeline_id=pipeline_id,
      num_replicas_in_sync=strategy.num_replicas_in_sync)
