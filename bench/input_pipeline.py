"""Input pipeline throughput: 128-frame clips at 224 px, JPEG and embeddings.

Writes a few TFRecord shards of realistic records (frames stored at short side
256, 256x341 JPEG, 10 fps, 300 stored frames per video), then measures in one
run:
  * raw `tf.io.decode_jpeg` of the frames the pipeline samples (tf.data, all
    cores): the ceiling for the JPEG pipeline;
  * the TAL evaluation pipeline (decode, centre crop, CLIP normalisation,
    class names, targets) and the training pipeline (random crop + flip);
  * the same pipelines in cached-embedding mode (768-d frame embeddings).
Prints examples/s, frames/s, the ratio to raw decode and the peak RSS.

Run: python bench/input_pipeline.py [--videos 24 --seconds 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from unloc_tf import spec  # noqa: E402
from unloc_tf.data import (
  pipeline,  # noqa: E402
  records,  # noqa: E402
)

N0 = 128


def _smooth_frames(rng, n, height, width):
  """Natural-ish frames: upsampled noise (JPEG cost similar to video)."""
  low = rng.integers(0, 255, size=(n, height // 16, width // 16, 3))
  frames = tf.image.resize(low.astype(np.float32), (height, width),
                           method="bicubic")
  noise = rng.normal(0, 6, size=(n, height, width, 3))
  return np.clip(frames.numpy() + noise, 0, 255).astype(np.uint8)


def make_records(out_dir, num_videos, frames_per_video, emb_dim, seed=0):
  rng = np.random.default_rng(seed)
  base = records.encode_jpeg(_smooth_frames(rng, 64, 256, 341), quality=90)
  recs = []
  for v in range(num_videos):
    jpegs = [base[(v * 7 + i) % len(base)] for i in range(frames_per_video)]
    emb = rng.normal(size=(frames_per_video, emb_dim)).astype(np.float32)
    segs = [records.Segment(20, 120, 3), records.Segment(150, 290, 7)]
    recs.append(records.VideoRecord(f"vid{v}", 0.1, frames=jpegs,
                                    embeddings=emb, segments=segs))
  return records.write_shards(recs, os.path.join(out_dir, "bench"), 4)


def raw_decode_rate(paths, seconds):
  """frames/s of decode_jpeg on the frames a linspace sampler would pick."""
  def sampled(serialized):
    p = tf.io.parse_single_sequence_example(
        serialized, context_features={
            spec.CLIP_FRAMES: tf.io.FixedLenFeature([], tf.int64)},
        sequence_features={spec.IMAGE_ENCODED: tf.io.FixedLenSequenceFeature(
            [], tf.string)})
    n = p[0][spec.CLIP_FRAMES]
    idx = tf.cast(tf.linspace(0.0, tf.cast(n - 1, tf.float32), N0), tf.int32)
    return tf.gather(p[1][spec.IMAGE_ENCODED], idx)

  ds = (tf.data.TFRecordDataset(paths).repeat().map(sampled)
        .unbatch()
        .map(lambda b: tf.io.decode_jpeg(b, channels=3),
             num_parallel_calls=tf.data.AUTOTUNE, deterministic=False)
        .batch(N0).prefetch(4))
  return _rate(ds, seconds) * N0


def _rate(ds, seconds):
  """Elements per second, after a warm-up, over about `seconds`."""
  it = iter(ds)
  for _ in range(3):
    next(it)
  count = 0
  with common.Timer() as t:
    while True:
      next(it)
      count += 1
      if count >= 4 and (t.start and (
          __import__("time").perf_counter() - t.start) > seconds):
        break
  return count / t.seconds


def pipeline_rate(paths, mode, is_training, seconds, emb_dim, batch=4,
                  normalize=False):
  cfg = pipeline.InputConfig(
      normalize=normalize,
      task=spec.TAL, num_frames=N0, num_classes=200,
      class_names=tuple(f"action number {i}" for i in range(200)),
      input_mode=mode, embedding_dim=emb_dim if mode == "embeddings" else None,
      max_text_length=16)
  ds = pipeline.make_dataset(paths, cfg, is_training=is_training,
                             global_batch_size=batch, repeat=True)
  return _rate(ds, seconds) * batch


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--videos", type=int, default=16)
  parser.add_argument("--frames_per_video", type=int, default=300)
  parser.add_argument("--seconds", type=float, default=15.0)
  parser.add_argument("--emb_dim", type=int, default=768)
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="unloc_bench_")
  paths = make_records(tmp, args.videos, args.frames_per_video, args.emb_dim)
  raw = raw_decode_rate(paths, args.seconds)
  rows = [{"pipeline": "raw decode_jpeg 256x341", "examples_per_s":
           raw / N0, "frames_per_s": raw, "ratio_to_raw": 1.0}]
  for mode, normalize in (("frames", False), ("frames", True),
                          ("embeddings", False)):
    for is_training in (False, True):
      ex = pipeline_rate(paths, mode, is_training, args.seconds, args.emb_dim,
                         normalize=normalize)
      name = {("frames", False): "JPEG->uint8", ("frames", True):
              "JPEG->float32 normalised", ("embeddings", False):
              "embeddings"}[(mode, normalize)]
      rows.append({
          "pipeline": f"TAL {name} {'train' if is_training else 'eval'}",
          "examples_per_s": ex, "frames_per_s": ex * N0,
          "ratio_to_raw": ex * N0 / raw})
  common.report("input_pipeline", rows, {"num_frames": N0, "crop": 224,
                                         "cores": os.cpu_count()})


if __name__ == "__main__":
  main()
