r"""The main job on the built-in synthetic benchmark (the README's first command).

  1. generates the benchmark (TFRecord shards, `unloc_tf.data.synthetic`);
  2. trains a tiny UnLoc per task — temporal action localization, moment
     retrieval, action segmentation — with the real training tool
     (`tools/train.py`, gin experiments `synthetic_{tal,mr,as}_embeddings`,
     or `synthetic_{tal,mr,as}` from pixels), each run ending with an
     evaluation on the test split by the official metrics (`--parallel`
     runs at a time, one CPU thread each when more than one);
  3. exports the moment-retrieval model as a SavedModel (`tools/
     export_saved_model.py`, both signatures);
  4. answers one request through the exported model (`serving_text`: one
     test video and its captions as strings, as a TF Serving client sends
     them) and compares the top segment with the ground truth;
  5. prints a results table (also `<workdir>/main_job.json`).

`--input_mode=embeddings` (default) trains through the cached-embedding
path on the benchmark's scene embeddings (`synthetic.scene_embeddings`:
object states and their motion, the stand-in for the cached features of a
frozen pretrained encoder; the benchmark is then generated without pixels,
4,000 train videos in seconds) with the tiny text tower;
`--input_mode=frames` trains from pixels through the tiny image tower
(240 rendered train videos; far from the quality targets, see README).

Usage:
  python tools/main_job.py --workdir=/tmp/unloc_main
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from typing import Optional

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf import launch, spec  # noqa: E402
from unloc_tf.data import synthetic  # noqa: E402
from unloc_tf.launch import flags as launch_flags  # noqa: E402

# --workdir is launch's flag (the tools share it); here it defaults to
# /tmp/unloc_main and holds data/, runs/<task>/, export/ and the results.
DEFAULT_WORKDIR = "/tmp/unloc_main"
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train", None, "Train videos (default: 4000 embeddings, 240 frames).")
_NUM_VAL = flags.DEFINE_integer("num_val", 40, "Validation videos.")
_NUM_TEST = flags.DEFINE_integer(
    "num_test", None, "Test videos (default: 200 embeddings, 40 frames).")
_INPUT_MODE = flags.DEFINE_enum(
    "input_mode", "embeddings", ["frames", "embeddings"],
    "embeddings: the benchmark's scene embeddings (cached-embedding path,"
    " no pixels rendered); frames: from pixels through the image tower.")
_STEPS = flags.DEFINE_list(
    "steps", None,
    "Training steps for temporal_localization, moment_retrieval,"
    " action_segmentation (default: the experiments' TRAIN_STEPS for"
    " embeddings, 300 each for frames).")
_PARALLEL = flags.DEFINE_integer(
    "parallel", 2, "Training runs at a time (each gets one CPU thread when"
    " more than one runs).")
_REUSE_DATA = flags.DEFINE_bool(
    "reuse_data", False, "Reuse <workdir>/data if it was made before.")

TASKS = (spec.TAL, spec.MR, spec.AS)
EXPERIMENTS = {spec.TAL: "experiments/synthetic_tal",
               spec.MR: "experiments/synthetic_mr",
               spec.AS: "experiments/synthetic_as"}
# --input_mode: (experiment suffix, default train/test videos, steps).
MODES = {"embeddings": ("_embeddings", 4000, 200, None),
         "frames": ("", 240, 40, (300, 300, 300))}
# (metric key in the evaluator's output, label, target from the issue).
HEADLINE = {spec.TAL: ("mAP@0.5", "TAL mAP@0.5", 0.7),
            spec.MR: ("R@1,IoU=0.5", "MR R1@0.5", 0.7),
            spec.AS: ("accuracy", "AS frame accuracy", 0.85)}
TOOLS = os.path.dirname(os.path.abspath(__file__))


class _Tool:
  """tools/<name>.py in a fresh process (gin is process-global)."""

  def __init__(self, name: str, *args: str, log_path: str,
               threads: int = 0):
    env = dict(os.environ)
    if threads:
      env.update(TF_NUM_INTRAOP_THREADS=str(threads),
                 TF_NUM_INTEROP_THREADS=str(threads))
    self.name, self.log_path = name, log_path
    self._log = open(log_path, "w")
    self.proc = subprocess.Popen(
        [sys.executable, os.path.join(TOOLS, name), *args], stdout=self._log,
        stderr=subprocess.STDOUT, env=env)

  def wait(self) -> None:
    code = self.proc.wait()
    self._log.close()
    if code != 0:
      with open(self.log_path) as f:
        tail = f.read()[-4000:]
      raise RuntimeError(f"tools/{self.name} failed (exit {code}); log"
                         f" {self.log_path}:\n{tail}")


def _tool(name: str, *args: str, log_path: str) -> None:
  _Tool(name, *args, log_path=log_path).wait()


def _gin_args(task: str, data_dir: str, workdir: str,
              steps: Optional[int]) -> list:
  suffix = MODES[_INPUT_MODE.value][0]
  bindings = [f"DATA_DIR='{data_dir}'", "EVAL_SPLIT='test'"]
  if steps is not None:
    warmup = 100 if _INPUT_MODE.value == "embeddings" else 30
    bindings += [f"TRAIN_STEPS={steps}", f"CHECKPOINT_EVERY={steps}",
                 f"WARMUP_STEPS={min(warmup, steps // 5)}"]
  return ([f"--gin_file={EXPERIMENTS[task]}{suffix}", f"--workdir={workdir}"]
          + [f"--gin_bindings={b}" for b in bindings])


def _final_metrics(workdir: str) -> dict:
  with open(os.path.join(workdir, "eval_results.json")) as f:
    history = json.load(f)
  return history[max(history, key=int)]


def _iou(a, b) -> float:
  inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
  union = max(a[1], b[1]) - min(a[0], b[0])
  return inter / union if union > 0 else 0.0


def _serve_one_request(export_base: str, data_dir: str, gin_args: list
                       ) -> dict:
  """Loads the newest exported version and sends it one test video with
  its captions as strings (the `serving_text` signature)."""
  import tensorflow as tf  # noqa: PLC0415
  import tensorflow_text  # noqa: F401, PLC0415 (registers TF-Text ops)

  from unloc_tf.data import pipeline  # noqa: PLC0415

  config = launch.load_experiment(
      [a.split("=", 1)[1] for a in gin_args if a.startswith("--gin_file=")],
      [a.split("=", 1)[1] for a in gin_args
       if a.startswith("--gin_bindings=")]).eval_config
  files = os.path.join(data_dir, spec.MR, "test-*")
  batch = next(iter(pipeline.make_dataset(files, config, is_training=False,
                                          global_batch_size=1)))
  versions = sorted(int(v) for v in os.listdir(export_base) if v.isdigit())
  path = os.path.join(export_base, str(versions[-1]))
  loaded = tf.saved_model.load(path)
  serve = loaded.signatures["serving_text"]
  valid = batch[spec.TEXT_VALID].numpy()[0].astype(bool)
  queries = [q.decode() for q in batch[spec.TEXT_STRINGS].numpy()[0][valid]]
  video_key = (spec.FRAMES if config.input_mode == "frames"
               else spec.FRAME_EMBEDDINGS)
  request = {
      video_key: batch[video_key],
      spec.FRAME_MASK: batch[spec.FRAME_MASK],
      spec.NUM_FRAMES_TOTAL: batch[spec.NUM_FRAMES_TOTAL],
      spec.BATCH_SECS_PER_TIMESTEP: batch[spec.BATCH_SECS_PER_TIMESTEP],
      "queries": tf.constant([queries]),
  }
  t0 = time.perf_counter()
  out = serve(**request)
  latency = time.perf_counter() - t0
  gt_start = batch[spec.GT_START].numpy()[0][valid]
  gt_end = batch[spec.GT_END].numpy()[0][valid]
  answers = []
  for k, q in enumerate(queries):
    n = int(out["num_detections"][0, k])
    top = ([float(x) for x in out["segments"][0, k, 0].numpy()]
           if n else [0.0, 0.0])
    gt = [float(gt_start[k]), float(gt_end[k])]
    answers.append({"query": q, "top_segment": [round(x, 2) for x in top],
                    "score": round(float(out["scores"][0, k, 0]), 3)
                    if n else 0.0,
                    "ground_truth": [round(x, 2) for x in gt],
                    "iou": round(_iou(top, gt), 3)})
  return {"model": path, "video": batch[spec.VIDEO_ID].numpy()[0].decode(),
          "latency_s": round(latency, 3), "answers": answers}


def _train_all(pending, running, work, data_dir, steps, mode, threads,
               results, timings) -> None:
  """Runs the training tools, at most --parallel at a time; fills
  `results` and `timings` as each run ends."""
  while pending or running:
    while pending and len(running) < _PARALLEL.value:
      task = pending.pop(0)
      run_dir = os.path.join(work, "runs", task)
      log = os.path.join(work, f"train_{task}.log")
      print(f"[2/5] training {task} ({steps[task] or 'gin'} steps, {mode})"
            f" -> {run_dir} (log {log}) ...", flush=True)
      running.append((task, run_dir, time.perf_counter(), _Tool(
          "train.py", *_gin_args(task, data_dir, run_dir, steps[task]),
          log_path=log, threads=threads)))
    done = next((r for r in running if r[3].proc.poll() is not None), None)
    if done is None:
      time.sleep(0.5)
      continue
    running.remove(done)
    task, run_dir, t0, tool = done
    tool.wait()
    results[task] = _final_metrics(run_dir)
    key, label, target = HEADLINE[task]
    print(f"      {label} on the test split: {results[task][key]:.4f}"
          f" ({time.perf_counter() - t0:.0f} s)", flush=True)
    timings[f"train+eval {task}"] = time.perf_counter() - t0


def _peak_rss_gib() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  return max(own, children) / 2**20  # ru_maxrss is in KiB on Linux


def main(argv):
  del argv
  start = time.perf_counter()
  work = launch_flags.WORKDIR.value or DEFAULT_WORKDIR
  mode = _INPUT_MODE.value
  _, default_train, default_test, default_steps = MODES[mode]
  steps_flag = _STEPS.value or default_steps
  if steps_flag is not None and len(steps_flag) != len(TASKS):
    raise app.UsageError(f"--steps needs {len(TASKS)} values")
  steps = dict(zip(TASKS, (int(s) for s in steps_flag) if steps_flag
                   else [None] * len(TASKS)))
  if _PARALLEL.value < 1:
    raise app.UsageError("--parallel must be >= 1")
  data_dir = os.path.join(work, "data")
  embeddings = mode == "embeddings"
  timings = {}

  t0 = time.perf_counter()
  summary_path = os.path.join(data_dir, "summary.json")
  if _REUSE_DATA.value and os.path.exists(summary_path):
    with open(summary_path) as f:
      summary = json.load(f)
    print(f"[1/5] reusing the synthetic benchmark in {data_dir}")
  else:
    config = synthetic.SyntheticConfig(
        num_train=(default_train if _NUM_TRAIN.value is None
                   else _NUM_TRAIN.value),
        num_val=_NUM_VAL.value,
        num_test=default_test if _NUM_TEST.value is None else _NUM_TEST.value)
    print(f"[1/5] generating the synthetic benchmark in {data_dir} ...",
          flush=True)
    summary = synthetic.write_benchmark(data_dir, config, tasks=TASKS,
                                        zero_shot_records=False,
                                        state_embeddings=embeddings,
                                        render=not embeddings)
  print(synthetic.format_summary(summary))
  timings["data"] = time.perf_counter() - t0

  results = {}
  t_train = time.perf_counter()
  threads = 1 if _PARALLEL.value > 1 else 0
  pending, running = list(TASKS), []
  try:
    _train_all(pending, running, work, data_dir, steps, mode, threads,
               results, timings)
  finally:  # a failed run stops the others
    for *_, tool in running:
      tool.proc.kill()
  timings["training (wall)"] = time.perf_counter() - t_train

  t0 = time.perf_counter()
  export_base = os.path.join(work, "export", spec.MR)
  mr_args = _gin_args(spec.MR, data_dir, os.path.join(work, "runs", spec.MR),
                      steps[spec.MR])
  print(f"[3/5] exporting the moment-retrieval model to {export_base} ...",
        flush=True)
  _tool("export_saved_model.py", *mr_args, f"--export_dir={export_base}",
        log_path=os.path.join(work, "export.log"))
  timings["export"] = time.perf_counter() - t0

  t0 = time.perf_counter()
  print("[4/5] one request through the exported model (serving_text) ...",
        flush=True)
  served = _serve_one_request(export_base, data_dir, mr_args)
  timings["serve"] = time.perf_counter() - t0
  print(f"      video {served['video']}, {len(served['answers'])} queries,"
        f" {served['latency_s'] * 1000:.0f} ms")
  for a in served["answers"]:
    print(f"      {a['query']!r}: top {a['top_segment']} (score"
          f" {a['score']}) vs ground truth {a['ground_truth']}, IoU"
          f" {a['iou']}")

  total = time.perf_counter() - start
  rows = []
  for task in TASKS:
    key, label, target = HEADLINE[task]
    value = float(results[task][key])
    rows.append({"task": task, "metric": label, "value": round(value, 4),
                 "target": target, "reached": value >= target})
  print("\n[5/5] results on the synthetic test split"
        f" ({mode}, official metrics):")
  print(f"  {'metric':<22}{'value':>8}{'target':>9}  reached")
  for r in rows:
    print(f"  {r['metric']:<22}{r['value']:>8.4f}{r['target']:>9.2f}  "
          f"{'yes' if r['reached'] else 'NO'}")
  peak = _peak_rss_gib()
  print(f"  wall time {total:.0f} s; peak RSS {peak:.2f} GiB; "
        + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
  out_path = os.path.join(work, "main_job.json")
  with open(out_path, "w") as f:
    json.dump({"input_mode": mode, "steps": steps,
               "headline": rows, "metrics": results, "served": served,
               "benchmark": summary["overall"],
               "seconds": {k: round(v, 1) for k, v in timings.items()},
               "wall_time_s": round(total, 1),
               "peak_rss_gib": round(peak, 2)}, f, indent=2)
  print(f"results in {out_path}")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
