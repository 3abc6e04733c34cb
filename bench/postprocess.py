"""Post-processing speed: decode + Soft-NMS per video, and ActivityNet mAP.

Part 1 — `unloc_tf.postprocess` on the ActivityNet TAL shape: 200 classes ×
240 pyramid tokens (N0 = 128, levels 128/64/32/16), 48,000 (token, class)
pairs per video.  Logits imitate a trained focal-loss model: background
~ N(-10.5, 1.5) (about 0.8 % of the pairs, some hundreds per video, pass
the 0.001 threshold) plus 3 actions per video with logits 0..3 on the tokens
inside them.  Everything runs under `tf.function` (the serving path); the
first call (tracing) is excluded.  Rows: class-agnostic Soft-NMS (the
reference) at batch 1 and 16, per-class Soft-NMS, a candidate cap
(`max_candidates=1000`), decode only, a dense stress case (~10 % of the pairs
above threshold) and MR (27 captions × 240 tokens per video).

Part 2 — ActivityNet mAP (`unloc_tf.metrics.localization.evaluate_detection`,
if present) on synthetic results: 5,000 videos, 200 classes, 1-3 GT segments
per video and 100 detections per video (noisy copies of the GT and random
segments), tIoU 0.5:0.05:0.95 and the reference's 19 thresholds 0.05:0.95.

Prints a table, the peak RSS and one JSON line.

Run: python bench/postprocess.py [--videos 5000 --repeats 10]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import os
import statistics
import sys

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from unloc_tf import postprocess as pp  # noqa: E402
from unloc_tf.ops import segments as seg_lib  # noqa: E402

LEVELS = (128, 64, 32, 16)
T_TOT = sum(LEVELS)
N0 = 128
C = 200
K_CAPTIONS = 27


def make_tal_outputs(rng, batch, background=(-10.5, 1.5), num_actions=3):
  """Random logits/displacements with a realistic score distribution."""
  logits = rng.normal(*background, (batch, T_TOT, C)).astype(np.float32)
  disp = rng.gamma(2.0, 2.0, (batch, T_TOT, C, 2)).astype(np.float32)
  pos = seg_lib.token_positions(LEVELS).numpy()
  for b in range(batch):
    for _ in range(num_actions):
      c = rng.integers(C)
      s = rng.uniform(0, 100)
      e = s + rng.uniform(5, 28)
      inside = (pos >= s) & (pos <= e)
      logits[b, inside, c] = rng.uniform(0, 3, inside.sum())
  total_frames = rng.integers(300, 2000, batch).astype(np.int32)
  return (tf.constant(logits), tf.constant(disp),
          tf.ones((batch, T_TOT), tf.int32), tf.constant(total_frames),
          tf.fill([batch], 0.1))


def time_fn(fn, args, repeats):
  out = fn(*args)  # trace + warm-up
  times = []
  for _ in range(repeats):
    with common.Timer() as t:
      out = fn(*args)
      tf.nest.map_structure(lambda x: x.numpy(), out)
    times.append(t.seconds)
  return statistics.median(times), out


@functools.lru_cache(maxsize=None)
def tal_fn(**kw):
  sig = [tf.TensorSpec([None, T_TOT, None], tf.float32),
         tf.TensorSpec([None, T_TOT, None, 2], tf.float32),
         tf.TensorSpec([None, T_TOT], tf.int32),
         tf.TensorSpec([None], tf.int32),
         tf.TensorSpec([None], tf.float32)]

  @tf.function(input_signature=sig)
  def fn(logits, disp, mask, n, secs):
    return pp.localization_detections(
        logits, disp, mask, n, secs, pyramid_level_lengths=LEVELS,
        num_frames=N0, **kw)

  return fn


@tf.function(input_signature=[tf.TensorSpec([None, T_TOT, None, 2]),
                              tf.TensorSpec([None], tf.int32),
                              tf.TensorSpec([None], tf.float32)])
def decode_only(disp, n, secs):
  return seg_lib.decode_segments(disp, LEVELS, n, N0, secs)


@tf.function(input_signature=[tf.TensorSpec([None, None, T_TOT]),
                              tf.TensorSpec([None, None, T_TOT, 2]),
                              tf.TensorSpec([None, T_TOT], tf.int32),
                              tf.TensorSpec([None], tf.int32),
                              tf.TensorSpec([None], tf.float32)])
def mr_fn(logits, disp, mask, n, secs):
  return pp.retrieval_detections(logits, disp, mask, n, secs,
                                 pyramid_level_lengths=LEVELS, num_frames=N0)


def same(a, b) -> bool:
  """Whether two detection dicts are identical."""
  return all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)


def bench_postprocess(repeats):
  rng = np.random.default_rng(0)
  rows = []

  def add(name, batch, seconds, candidates, out, same="-"):
    rows.append({
        "case": name, "batch": batch, "same_as_uncapped": same,
        "ms_per_video": round(1000 * seconds / batch, 3),
        "candidates_per_video": candidates,
        "detections_per_video": round(
            float(np.mean(out["num_detections"].numpy())), 1)
        if isinstance(out, dict) else "-",
    })

  def cands(args):
    return int(np.mean(np.sum(tf.sigmoid(args[0]).numpy() >= 0.001,
                              axis=(1, 2))))

  for batch in (1, 16):
    args = make_tal_outputs(rng, batch)
    sec, out = time_fn(tal_fn(), args, repeats)
    add("TAL soft-NMS, class-agnostic", batch, sec, cands(args), out)
  args16 = make_tal_outputs(rng, 16)
  c16 = cands(args16)
  full16 = tal_fn()(*args16)
  sec, out = time_fn(tal_fn(per_class=True), args16, repeats)
  add("TAL soft-NMS, per class", 16, sec, c16, out)
  sec, out = time_fn(tal_fn(max_candidates=1000), args16, repeats)
  add("TAL agnostic, max_candidates=1000", 16, sec, c16, out,
      same(out, full16))
  sec, _ = time_fn(decode_only, (args16[1], args16[3], args16[4]), repeats)
  add("decode only", 16, sec, "-", None)
  dense = make_tal_outputs(rng, 4, background=(-8.2, 1.2))
  sec, full = time_fn(tal_fn(), dense, repeats)
  add("TAL agnostic, dense stress", 4, sec, cands(dense), full)
  sec, out = time_fn(tal_fn(max_candidates=1000), dense, repeats)
  add("dense stress, max_candidates=1000", 4, sec, cands(dense), out,
      same(out, full))

  b = 4
  mr_logits = tf.constant(
      rng.normal(-4.0, 2.0, (b, K_CAPTIONS, T_TOT)).astype(np.float32))
  mr_disp = tf.constant(
      rng.gamma(2.0, 2.0, (b, K_CAPTIONS, T_TOT, 2)).astype(np.float32))
  mr_args = (mr_logits, mr_disp, tf.ones((b, T_TOT), tf.int32),
             tf.fill([b], 1200), tf.fill([b], 0.1))
  sec, out = time_fn(mr_fn, mr_args, repeats)
  mr_c = int(np.mean(np.sum(tf.sigmoid(mr_logits).numpy() > 0.001,
                            axis=(1, 2))))
  add(f"MR soft-NMS, {K_CAPTIONS} captions/video", b, sec, mr_c, None)
  rows[-1]["detections_per_video"] = round(
      float(np.mean(np.sum(out["num_detections"].numpy(), axis=1))), 1)
  return rows


def synthetic_anet(rng, videos, classes=C, per_video=100):
  """GT and padded detection arrays shaped like `localization_detections`."""
  names = [f"class_{i:03d}" for i in range(classes)]
  gt, seg, score, cls = {}, [], [], []
  ids = [f"v_{i:05d}" for i in range(videos)]
  for vid in ids:
    dur = rng.uniform(30, 240)
    m = rng.integers(1, 4)
    starts = rng.uniform(0, dur * 0.8, m)
    ends = np.minimum(starts + rng.uniform(2, dur * 0.5, m), dur)
    labels = rng.integers(classes, size=m)
    gt[vid] = [{"segment": [float(s), float(e)], "label": names[c]}
               for s, e, c in zip(starts, ends, labels)]
    # 20 noisy copies of GT, 80 random segments; random classes for half.
    j = rng.integers(m, size=per_video)
    noise = rng.normal(0, 0.1 * (ends - starts)[j, None], (per_video, 2))
    s = np.stack([starts[j], ends[j]], 1) + noise
    rand = rng.uniform(0, dur, (per_video, 2))
    use_rand = np.arange(per_video) >= 20
    s = np.where(use_rand[:, None], np.sort(rand, 1), np.sort(s, 1))
    c = np.where(rng.random(per_video) < 0.5, labels[j],
                 rng.integers(classes, size=per_video))
    sc = np.sort(rng.random(per_video))[::-1]
    seg.append(s)
    score.append(sc)
    cls.append(c)
  return (ids, names, gt, np.stack(seg), np.stack(score), np.stack(cls))


def bench_map(videos):
  try:
    loc = importlib.import_module("unloc_tf.metrics.localization")
    evaluate = loc.evaluate_detection
  except (ImportError, AttributeError) as e:
    print(f"skipping the mAP benchmark: evaluate_detection not available"
          f" ({e})")
    return [], {}
  try:
    formats = importlib.import_module("unloc_tf.metrics.formats")
    to_anet = formats.detections_to_activitynet
  except (ImportError, AttributeError):
    to_anet = None
  rng = np.random.default_rng(1)
  with common.Timer() as t_gen:
    ids, names, gt, seg, score, cls = synthetic_anet(rng, videos)
  num = np.full((videos,), seg.shape[1], np.int32)
  with common.Timer() as t_conv:
    if to_anet is not None:
      preds = to_anet(ids, seg, score, cls, num, names)
    else:
      preds = {v: [{"segment": [float(a), float(b)], "label": names[c],
                    "score": float(s)}
                   for (a, b), s, c in zip(seg[i], score[i], cls[i])]
               for i, v in enumerate(ids)}
  rows = [{"case": "results arrays -> ActivityNet dict", "videos": videos,
           "seconds": round(t_conv.seconds, 2), "average_mAP": "-"}]
  extra = {}
  for name, thr in (("tIoU 0.5:0.05:0.95 (10)", np.linspace(0.5, 0.95, 10)),
                    ("tIoU 0.05:0.05:0.95 (19, reference)",
                     np.linspace(0.05, 0.95, 19))):
    with common.Timer() as t:
      res = evaluate(gt, preds, tiou_thresholds=thr, classes=names)
    rows.append({"case": f"evaluate_detection, {name}", "videos": videos,
                 "seconds": round(t.seconds, 2),
                 "average_mAP": round(float(res["average_mAP"]), 4)})
  extra["synthetic_generation_s"] = round(t_gen.seconds, 2)
  extra["predictions"] = int(seg.shape[0] * seg.shape[1])
  return rows, extra


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--repeats", type=int, default=10)
  parser.add_argument("--videos", type=int, default=5000)
  args = parser.parse_args()
  print(f"TF {tf.__version__}, {os.cpu_count()} CPUs, C={C}, T_tot={T_TOT}")
  rows = bench_postprocess(args.repeats)
  common.report("postprocess", rows)
  map_rows, extra = bench_map(args.videos)
  if map_rows:
    common.report("activitynet_map", map_rows, extra)


if __name__ == "__main__":
  main()
