r"""The main job on the built-in synthetic benchmark.

Today (foundation): generates the benchmark, runs the evaluation input
pipeline of every task over the test split and prints what a model would be
trained on (records, batch shapes, positives per pyramid level).  Training,
evaluation with the official metrics, export and a served request join this
job as the model, evaluation and serving layers land.

Usage (the README's first command):
  python tools/main_job.py --workdir=/tmp/unloc_main
"""

from __future__ import annotations

import json
import os
import sys
import time

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

import numpy as np  # noqa: E402

from unloc_tf import spec  # noqa: E402
from unloc_tf.data import (
  pipeline,  # noqa: E402
  synthetic,  # noqa: E402
)

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/unloc_main",
                               "Where data and results go.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", 240, "Train videos.")
_NUM_VAL = flags.DEFINE_integer("num_val", 40, "Validation videos.")
_NUM_TEST = flags.DEFINE_integer("num_test", 40, "Test videos.")
_NUM_FRAMES = flags.DEFINE_integer("num_frames", 64, "N0 tokens per video.")
_REUSE_DATA = flags.DEFINE_bool(
    "reuse_data", False, "Reuse <workdir>/data if it was made before.")


def _input_config(task: str, data_dir: str) -> pipeline.InputConfig:
  with open(os.path.join(data_dir, "classes.txt")) as f:
    classes = tuple(line.strip() for line in f if line.strip())
  common = dict(task=task, num_frames=_NUM_FRAMES.value, crop_size=64,
                min_resize=64, secs_per_timestep=0.2, max_text_length=16)
  if task in (spec.TAL, spec.AS, spec.CLS):
    common.update(num_classes=len(classes), class_names=classes)
  if task == spec.MR:
    common.update(num_captions_eval=5)
  if task == spec.HD:
    common.update(max_saliency_clips=30)
  return pipeline.InputConfig(**common)


def _summarise_task(task: str, data_dir: str) -> dict:
  config = _input_config(task, data_dir)
  ds = pipeline.make_dataset(os.path.join(data_dir, task, "test-*"), config,
                             is_training=False, global_batch_size=8)
  pyr = config.pyramid_spec
  bounds = np.cumsum((0,) + pyr.level_lengths)
  positives = np.zeros(pyr.num_levels, np.int64)
  examples, shapes = 0, {}
  for batch in ds:
    mask = batch[pipeline.BATCH_MASK].numpy().astype(bool)
    examples += int(mask.sum())
    labels = batch[spec.LABELS].numpy()[mask]
    if task in (spec.TAL, spec.HD):
      for lvl in range(pyr.num_levels):
        positives[lvl] += labels[:, bounds[lvl]:bounds[lvl + 1]].sum()
    elif task == spec.MR:
      for lvl in range(pyr.num_levels):
        positives[lvl] += labels[:, :, bounds[lvl]:bounds[lvl + 1]].sum()
    shapes = {k: tuple(v.shape) for k, v in batch.items()}
  out = {"task": task, "examples": examples,
         "frames": str(shapes.get(spec.FRAMES)),
         "text": str(shapes.get(spec.TEXT_IDS)),
         "labels": str(shapes.get(spec.LABELS))}
  if task in (spec.TAL, spec.HD, spec.MR):
    out["positives_per_level"] = positives.tolist()
  return out


def main(argv):
  del argv
  start = time.perf_counter()
  data_dir = os.path.join(_WORKDIR.value, "data")
  if _REUSE_DATA.value and os.path.exists(os.path.join(data_dir,
                                                       "summary.json")):
    with open(os.path.join(data_dir, "summary.json")) as f:
      summary = json.load(f)
    print(f"reusing the synthetic benchmark in {data_dir}")
  else:
    config = synthetic.SyntheticConfig(
        num_train=_NUM_TRAIN.value, num_val=_NUM_VAL.value,
        num_test=_NUM_TEST.value)
    print(f"[1/2] generating the synthetic benchmark in {data_dir} ...")
    summary = synthetic.write_benchmark(data_dir, config)
  print(synthetic.format_summary(summary))
  print("\n[2/2] evaluation input pipelines over the test split:")
  rows = [_summarise_task(task, data_dir) for task in spec.TASKS]
  keys = ["task", "examples", "frames", "text", "labels",
          "positives_per_level"]
  print("  ".join(f"{k:<26}" if k == "task" else k for k in keys))
  for r in rows:
    print("  ".join(f"{str(r.get(k, '-')):<26}" if k == "task"
                    else str(r.get(k, "-")) for k in keys))
  with open(os.path.join(_WORKDIR.value, "main_job.json"), "w") as f:
    json.dump({"benchmark": summary["overall"], "pipelines": rows}, f,
              indent=2)
  print(f"\ndone in {time.perf_counter() - start:.0f} s; results in"
        f" {os.path.join(_WORKDIR.value, 'main_job.json')}")


def run():
  app.run(main)


if __name__ == "__main__":
  run()
