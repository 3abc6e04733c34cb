"""Hour-long videos: chunked inference speed (seconds of video per second)
and peak RSS.

The tiny models of the synthetic experiments (random weights: speed only;
N0 = 64 tokens, 5 fps, 8 classes, the text tower on the class names):

  embeddings  a 1-hour cached-embedding record (18,000 frames of 132-d
              embeddings, the benchmark's scene-embedding size) evaluated as
              tools/evaluate.py --chunking does (`data.chunks.make_dataset`
              + the experiment's `Evaluator`: per-window decoding, merge,
              ActivityNet mAP).  "on": windows of N0 = 64 frames overlapping
              by 16 (375 windows); "off": whole-video mode, one example.
              Timed on a second pass; `startup_s` is what the first pass
              took longer (dataset and model tracing).
  frames      a 64x64 h264 mp4 at 5 fps (a moving square on changing
              colours, written by `data.video.write_mp4`) through
              `Predictor.from_workdir(...).predict` with chunking "auto"
              (which cuts these videos into 64-frame windows, overlap 16)
              or "off": decode → JPEG → windows → tiny image tower → merge.
              Timed after a first prediction on a 20 s clip (`startup_s`:
              tracing, tokenising the class names); run for 10 and 60
              minutes to show that the peak RSS does not grow with the
              video's length.

Every row runs in a fresh process (so its peak RSS, `getrusage`, is its
own: TensorFlow, the model and the pipeline included) and reports wall
time, CPU time (user + system of that process, the timed pass) and video
seconds per wall second.

Run: python bench/long_video.py [--minutes 10 60] [--rows embeddings frames]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402

FPS, SIZE, N0, DIM = 5.0, 64, 64, 132
_EXPERIMENTS = {"frames": "experiments/synthetic_tal",
                "embeddings": "experiments/synthetic_tal_embeddings"}


class _LazyFrames:
  """uint8 [n, SIZE, SIZE, 3] frames made one at a time (for write_mp4):
  a moving bright square on a background whose colour drifts."""

  def __init__(self, n: int):
    self.shape = (n, SIZE, SIZE, 3)

  def __iter__(self):
    for i in range(self.shape[0]):
      frame = np.empty(self.shape[1:], np.uint8)
      frame[:] = ((i * np.array([1, 3, 7])) % 200).astype(np.uint8)
      x = (2 * i) % (SIZE - 16)
      frame[20:36, x:x + 16] = 255
      yield frame


def _bindings(data_dir: str):
  return [f"DATA_DIR = '{data_dir}'", "EVAL_SPLIT = 'test'",
          "EVAL_BATCH_SIZE = 8"]


def _prepare(root: str, minutes, rows) -> None:
  """Class list, random tiny models saved as training saves them, the
  1-hour embedding record and the mp4s."""
  import keras  # noqa: PLC0415

  import gin  # noqa: PLC0415
  from unloc_tf import launch, spec  # noqa: PLC0415
  from unloc_tf.data import records  # noqa: PLC0415
  from unloc_tf.data import video as video_lib  # noqa: PLC0415
  from unloc_tf.train import checkpoints  # noqa: PLC0415

  data = os.path.join(root, "data")
  os.makedirs(os.path.join(data, spec.TAL), exist_ok=True)
  with open(os.path.join(data, "classes.txt"), "w") as f:
    f.write("\n".join(f"action {i}" for i in range(8)) + "\n")
  for kind in rows:
    exp = launch.load_experiment([_EXPERIMENTS[kind]], _bindings(data))
    keras.utils.set_random_seed(0)
    model = exp.build_model()
    work = os.path.join(root, f"work_{kind}")
    checkpoints.Checkpointer(os.path.join(work, "checkpoints"), model).save(1)
    with open(os.path.join(work, "operative_config.gin"), "w") as f:
      f.write(gin.config_str())
    gin.clear_config()
  if "embeddings" in rows:
    n = int(3600 * FPS)
    emb = np.random.default_rng(0).normal(size=(n, DIM)).astype(np.float32)
    records.write_shards([records.VideoRecord(
        media_id="hour", secs_per_timestep=1 / FPS, embeddings=emb,
        duration=3600.0, segments=[records.Segment(1000, 1100, 0)])],
                         os.path.join(data, spec.TAL, "test"), 1)
  if "frames" in rows:
    video_lib.write_mp4(os.path.join(root, "warmup.mp4"),
                        _LazyFrames(int(20 * FPS)), FPS)
    for m in minutes:
      path = os.path.join(root, f"video_{m}min.mp4")
      with common.Timer() as t:
        video_lib.write_mp4(path, _LazyFrames(int(m * 60 * FPS)), FPS)
      print(f"wrote {path} ({os.path.getsize(path) / 2**20:.1f} MiB) in"
            f" {t.seconds:.0f} s", flush=True)


def _cpu() -> float:
  own = resource.getrusage(resource.RUSAGE_SELF)
  return own.ru_utime + own.ru_stime


def _child(cfg: dict) -> dict:
  from unloc_tf import launch, predict  # noqa: PLC0415
  from unloc_tf.data import chunks  # noqa: PLC0415

  root, kind, mode = cfg["root"], cfg["kind"], cfg["mode"]
  work = os.path.join(root, f"work_{kind}")
  out = {"input": kind, "chunking": mode}
  if kind == "embeddings":
    exp = launch.load_experiment([_EXPERIMENTS[kind]],
                                 _bindings(os.path.join(root, "data")))
    model, _ = exp.load_model(work)
    walls = []
    for _ in range(2):  # cold (tracing included), then warm
      cpu0, wall0 = _cpu(), time.perf_counter()
      exp.evaluator(model, exp.eval_dataset(chunks.Chunking(mode)))
      walls.append(time.perf_counter() - wall0)
    out.update({"minutes": 60, "windows": chunks.Chunking(mode).plan(
        exp.task, N0, FPS).num_windows(int(3600 * FPS)),
                "startup_s": walls[0] - walls[1], "seconds": walls[1],
                "video_s_per_s": 3600.0 / walls[1], "cpu_s": _cpu() - cpu0})
  else:
    path = os.path.join(root, f"video_{cfg['minutes']}min.mp4")
    predictor = predict.Predictor.from_workdir(
        work, chunking=chunks.Chunking(mode))
    wall0 = time.perf_counter()  # tracing etc., on a 20 s clip
    predictor.predict([os.path.join(root, "warmup.mp4")],
                      report=lambda line: None)
    out["startup_s"] = time.perf_counter() - wall0
    cpu0, wall0 = _cpu(), time.perf_counter()
    [result] = predictor.predict([path], report=lambda line: None)
    wall = time.perf_counter() - wall0
    out.update({"minutes": cfg["minutes"], "windows": result["windows"],
                "seconds": wall, "video_s_per_s": result["duration"] / wall,
                "cpu_s": _cpu() - cpu0,
                "detections": len(result["detections"])})
  out["peak_rss_mib"] = common.peak_rss_mib()
  return out


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--minutes", type=int, nargs="+", default=[10, 60])
  parser.add_argument("--rows", nargs="+", default=["embeddings", "frames"],
                      choices=["embeddings", "frames"])
  parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.child:
    print("RESULT " + json.dumps(_child(json.loads(args.child))), flush=True)
    return
  root = tempfile.mkdtemp(prefix="unloc_bench_long_")
  _prepare(root, args.minutes, args.rows)
  jobs = []
  if "embeddings" in args.rows:
    jobs += [dict(kind="embeddings", mode=m) for m in ("on", "off")]
  if "frames" in args.rows:
    jobs += [dict(kind="frames", mode="auto", minutes=m)
             for m in args.minutes]
    jobs.append(dict(kind="frames", mode="off", minutes=min(args.minutes)))
  rows = []
  for job in jobs:
    job["root"] = root
    run = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--child",
         json.dumps(job)], capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    lines = [x for x in run.stdout.splitlines() if x.startswith("RESULT ")]
    if run.returncode or not lines:
      raise RuntimeError(f"{job}: {run.stderr[-3000:]}")
    row = json.loads(lines[-1][len("RESULT "):])
    print(row, flush=True)
    rows.append({k: row[k] for k in (
        "input", "minutes", "chunking", "windows", "startup_s", "seconds",
        "video_s_per_s", "cpu_s", "peak_rss_mib")})
  common.report("long_video", rows, {"root": root})


if __name__ == "__main__":
  main()
