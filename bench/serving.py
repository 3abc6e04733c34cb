"""Exported-model serving speed: latency and throughput per batch size.

The ActivityNet-Captions moment-retrieval setting of the UnLoc-B model: one
video of N0 = 128 frames and one query of 32 CLIP tokens per request,
CLIP-B text tower, fusion 512 wide / 8 heads / MLP 2048 / 6 layers, 4-level
pyramid, 3-layer heads, and the exported post-processing (decode + Soft-NMS,
100 detections).  Weights are random (speed only).  Each model is exported
with `unloc_tf.export.export`, then a FRESH process that imports only
tensorflow loads it with `tf.saved_model.load` and times
`signatures["serving_default"]` (first call excluded: graph optimisation).

Rows:
  embeddings   cached 768-d frame embeddings (the frozen ViT-B/16 tower's
               output) → base_16 fusion: the CPU serving path.
  frames/tiny  uint8 frames 224×224 (19 MB per request) through the repo's
               `tiny` image tower (ViT, patch 16, 64 wide, 2 layers) →
               base_16 fusion.  The tower is small on purpose: this row
               measures what the raw-frame path adds besides the tower
               (request size, normalisation, patchify) with the same fusion,
               text tower and post-processing; a real tower's cost is the
               next row.
  frames/base_16  (with --base16_frames) the real ViT-B/16 tower on 128
               frames: ~2.2 TFLOP per request, so batch 1 only, few repeats.

For each signature and each batch size B of --batches (1, 4, 8, 16: what
TF Serving's batching would form, see serving/batching_parameters.txt) it
prints batch_ms (median time of one call with B videos, outputs fetched),
ms_per_video, videos_per_s (= B / batch_ms) and the serving process's peak
RSS after that batch size (batch sizes run in increasing order, so it is the
peak up to B); per signature also the export time, SavedModel size, load
time and first-call time (batch 1), and the exporting process's peak RSS.

Run: python bench/serving.py [--repeats 5] [--batches 1,4,8,16]
    [--base16_frames]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

N0, LT, D_EMB, IMAGE = 128, 32, 768, 224

# The serving process: imports only tensorflow (and numpy).
_CHILD = r'''
import json, resource, statistics, sys, time
import numpy as np
import tensorflow as tf

cfg = json.loads(sys.argv[1])
t0 = time.perf_counter()
fn = tf.saved_model.load(cfg["dir"]).signatures["serving_default"]
load_s = time.perf_counter() - t0


def request(batch):
  rng = np.random.default_rng(batch)
  n0, lt = cfg["num_frames"], cfg["text_length"]
  ids = np.zeros((batch, 1, lt), np.int32)
  ids[:, 0, :12] = rng.integers(1, 49000, (batch, 12))
  ids[:, 0, 0], ids[:, 0, 12] = 49406, 49407
  x = {"frame_mask": np.ones((batch, n0), np.int32),
       "text_ids": ids, "text_mask": (ids > 0).astype(np.int32),
       "total_frames": np.full((batch,), 3000, np.int32),
       "secs_per_timestep": np.full((batch,), 0.04, np.float32)}
  if cfg["input_mode"] == "frames":
    s = cfg["image_size"]
    x["frames"] = rng.integers(0, 256, (batch, n0, s, s, 3), dtype=np.uint8)
  else:
    x["frame_embeddings"] = rng.normal(
        size=(batch, n0, cfg["embedding_dim"])).astype(np.float32)
  return {k: tf.constant(v) for k, v in x.items()}


def timed(batch, repeats):
  x = request(batch)
  t = time.perf_counter()
  out = fn(**x)
  first = time.perf_counter() - t
  assert out["segments"].shape[0] == batch
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    out = fn(**x)
    {k: v.numpy() for k, v in out.items()}
    times.append(time.perf_counter() - t)
  del x, out
  return first, statistics.median(times)


res = {"load_s": load_s, "batches": []}
for batch in cfg["batches"]:
  first, median = timed(batch, cfg["repeats"])
  res["batches"].append({
      "batch": batch, "first_s": first, "median_s": median,
      "peak_rss_mib": resource.getrusage(
          resource.RUSAGE_SELF).ru_maxrss / 1024.0})
res["modules"] = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("unloc_tf", "keras_hub"))
res["peak_rss_mib"] = resource.getrusage(
    resource.RUSAGE_SELF).ru_maxrss / 1024.0
print("RESULT " + json.dumps(res))
'''


def _dir_mib(path: str) -> float:
  total = 0
  for root, _, files in os.walk(path):
    total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
  return total / 2**20


def build_model(kind: str):
  """A random-weight UnLoc-B moment retriever for one row."""
  import keras

  from unloc_tf import spec
  from unloc_tf.layers import clip_image_encoder
  from unloc_tf.models import unloc_backbone, variants
  from unloc_tf.tasks import moment_retriever

  keras.utils.set_random_seed(0)
  pyr = spec.PyramidSpec(N0)
  mode = "frames" if kind == "frames/base_16" else "embeddings"
  model = moment_retriever.build_moment_retriever(
      unloc_backbone.BackboneConfig("base_16", input_mode=mode,
                                    text_max_length=LT),
      pyramid_spec=pyr)
  if kind == "frames/tiny":
    cfg = dict(variants.size_config("tiny")["image_encoder"],
               image_size=IMAGE, num_frames=N0)
    model.backbone.image_encoder = clip_image_encoder.CLIPImageEncoder(
        **cfg, name="image_encoder")
  return model


def export_row(kind: str, workdir: str):
  from unloc_tf import spec
  from unloc_tf.export import saved_model

  model = build_model(kind)
  frames = kind.startswith("frames")
  t = time.perf_counter()
  path = saved_model.export(
      model=model, export_dir=os.path.join(workdir, kind.replace("/", "_")),
      task=spec.MR, num_frames=N0,
      input_mode="frames" if frames else "embeddings",
      image_size=IMAGE if frames else None,
      embedding_dim=None if frames else D_EMB, text_max_length=LT,
      num_text=1, text_signature=False, audit=False)
  export_s = time.perf_counter() - t
  params = int(sum(int(v.numpy().size) for v in model.weights))
  del model
  return path, export_s, params


def serve_row(path: str, kind: str, repeats: int, batches) -> dict:
  cfg = {"dir": path, "num_frames": N0, "text_length": LT,
         "input_mode": "frames" if kind.startswith("frames") else "embeddings",
         "image_size": IMAGE, "embedding_dim": D_EMB, "repeats": repeats,
         "batches": list(batches)}
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(cfg)],
                        capture_output=True, text=True, env=env,
                        cwd=tempfile.gettempdir(), check=False)
  lines = [line for line in proc.stdout.splitlines()
           if line.startswith("RESULT ")]
  if proc.returncode or not lines:
    raise RuntimeError(f"serving process failed:\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--repeats", type=int, default=5,
                      help="timed calls per signature and batch size")
  parser.add_argument("--batches", default="1,4,8,16",
                      help="comma-separated batch sizes, increasing")
  parser.add_argument("--base16_frames", action="store_true",
                      help="also the ViT-B/16 tower on raw frames (slow)")
  parser.add_argument("--base16_repeats", type=int, default=1)
  parser.add_argument("--workdir", default=None,
                      help="keep the exports here (default: a temp dir)")
  args = parser.parse_args()

  sys.path.insert(0, os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  from bench import common

  batches = [int(b) for b in args.batches.split(",")]
  if batches != sorted(batches) or batches[0] < 1:
    parser.error(f"--batches must be increasing and >= 1, got {batches}")
  workdir = args.workdir or tempfile.mkdtemp(prefix="unloc_serving_")
  kinds = [("embeddings", args.repeats, batches),
           ("frames/tiny", args.repeats, batches)]
  if args.base16_frames:
    kinds.append(("frames/base_16", args.base16_repeats, [1]))
  rows, signatures = [], []
  try:
    for kind, reps, kind_batches in kinds:
      path, export_s, params = export_row(kind, workdir)
      res = serve_row(path, kind, reps, kind_batches)
      if res["modules"]:
        raise RuntimeError(f"the serving process imported {res['modules']}")
      signatures.append({
          "signature": kind,
          "params_M": round(params / 1e6, 1),
          "savedmodel_MiB": round(_dir_mib(path), 0),
          "export_s": round(export_s, 1),
          "load_s": round(res["load_s"], 1),
          "first_call_s": round(res["batches"][0]["first_s"], 2),
          "serve_rss_MiB": round(res["peak_rss_mib"], 0),
      })
      print(json.dumps(signatures[-1]), flush=True)
      for b in res["batches"]:
        rows.append({
            "signature": kind,
            "batch": b["batch"],
            "batch_ms": round(1000 * b["median_s"], 0),
            "ms_per_video": round(1000 * b["median_s"] / b["batch"], 1),
            "videos_per_s": round(b["batch"] / b["median_s"], 2),
            "peak_rss_MiB": round(b["peak_rss_mib"], 0),
            "reps": reps,
        })
        print(json.dumps(rows[-1]), flush=True)
  finally:
    if args.workdir is None:
      shutil.rmtree(workdir, ignore_errors=True)
  common.report("serving", rows, extra={
      "signatures": signatures,
      "num_frames": N0, "text_length": LT, "image_size": IMAGE,
      "cpu_count": os.cpu_count(),
      "export_process_peak_rss_mib": round(
          resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)})


if __name__ == "__main__":
  main()
