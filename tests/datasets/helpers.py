"""Shared by the builder tests: a tiny synthetic benchmark with mp4s (every
format's annotations), converting it and reading the records back."""

from __future__ import annotations

import csv
import dataclasses
import glob
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf import datasets, spec
from unloc_tf.data import pipeline, synthetic
from unloc_tf.data import video as video_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
DATA = os.environ.get("UNLOC_SHARED_DATA",
                      os.path.join(ROOT, "..", "shared", "data"))
real_data = pytest.mark.skipif(
    not os.path.isdir(DATA), reason=f"shared data not found at {DATA}")

SRC_FPS = 5.0
CONFIG = synthetic.SyntheticConfig(
    frame_size=32, fps=SRC_FPS, min_duration=4.0, max_duration=6.0,
    num_train=4, num_val=1, num_test=1, min_events=2, max_events=3,
    min_event_seconds=1.0, num_distractors=(0, 1))
# Mean absolute error (0..255 levels) of h264 (crf 18, 4:2:0 chroma on
# 32 px frames) + JPEG against the synthetic render; JPEG alone.
RENDER_TOLERANCE = 10.0
JPEG_TOLERANCE = 3.0


@dataclasses.dataclass
class Synthetic:
  root: str
  videos_dir: str
  annotations: str
  videos: dict  # video id -> SyntheticVideo (rendered)
  kinetics_csv: str
  kinetics_dir: str
  kinetics_rows: list


def make_synthetic(root: str) -> Synthetic:
  """Writes the synthetic benchmark's videos and annotations under `root`,
  and Kinetics clips + csv (one clip per train event, whole seconds; the
  full videos are cut to the clip, one clip is also a trimmed file)."""
  synthetic.write_benchmark(root, CONFIG, tasks=(), write_videos=True)
  videos = {v.video_id: v for split in synthetic.SPLITS
            for v in synthetic.generate_split(split, CONFIG)}
  kdir = os.path.join(root, "kinetics_videos")
  os.makedirs(os.path.join(kdir, "some_class"))
  rows, seen = [], set()
  for vid, v in sorted(videos.items()):
    if not vid.startswith("syn_train"):
      continue
    os.symlink(os.path.join(root, "videos", vid + ".mp4"),
               os.path.join(kdir, vid + ".mp4"))
    for ev in v.events:
      s, e = math.floor(ev.start_time), math.ceil(ev.end_time)
      if (vid, s, e) not in seen:
        seen.add((vid, s, e))
        rows.append({"label": ev.action, "youtube_id": vid,
                     "time_start": s, "time_end": e, "split": "train"})
  first = rows[0]
  cid = datasets.kinetics_clip_id(first["youtube_id"], first["time_start"],
                                  first["time_end"])
  v = videos[first["youtube_id"]]
  video_io.write_mp4(
      os.path.join(kdir, "some_class", cid + ".mp4"),
      v.frames[int(first["time_start"] * SRC_FPS):
               int(first["time_end"] * SRC_FPS)], SRC_FPS)
  kcsv = os.path.join(root, "kinetics_train.csv")
  with open(kcsv, "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=["label", "youtube_id", "time_start",
                                      "time_end", "split"])
    w.writeheader()
    w.writerows(rows)
  return Synthetic(root, os.path.join(root, "videos"),
                   os.path.join(root, "annotations"), videos, kcsv, kdir,
                   rows)


def annotation_options(syn, fmt, split="train"):
  """(annotations path, extra options) of a format in the benchmark."""
  a = syn.annotations
  subset = {"train": "training", "val": "validation", "test": "testing"}
  if fmt == "activitynet":
    return (os.path.join(a, "activitynet1.3", "activity_net.v1-3.min.json"),
            dict(subset=subset[split]))
  if fmt == "activitynet_captions":
    return os.path.join(a, "activitynet_captions", f"{split}.json"), {}
  if fmt == "charades_sta":
    return (os.path.join(a, "charades_sta", f"charades_sta_{split}.txt"),
            dict(charades_csv=os.path.join(a, "charades_sta",
                                           f"Charades_v1_{split}.csv")))
  if fmt == "qvhighlights":
    return os.path.join(a, "qvhighlights",
                        f"highlight_{split}_release.jsonl"), {}
  if fmt == "coin":
    return os.path.join(a, "coin", "COIN.json"), dict(subset=subset[split])
  if fmt == "kinetics":
    return syn.kinetics_csv, dict(subset=split)
  raise ValueError(fmt)


def convert(syn, fmt, out, split="train", **kw):
  """`datasets.convert` of a format of `syn` (short_side 0, 2 shards)."""
  ann, extra = annotation_options(syn, fmt, split)
  extra.update(kw)
  extra.setdefault("short_side", 0)
  extra.setdefault("num_shards", 2)
  videos_dir = syn.kinetics_dir if fmt == "kinetics" else syn.videos_dir
  opts = datasets.Options(fmt, ann, extra.pop("videos_dir", videos_dir),
                          str(out), split=split, progress=False, **extra)
  return datasets.convert(opts)


def read_records(out, split="train"):
  """Every record of the shards, in shard order, as python values."""
  recs = []
  for path in sorted(glob.glob(os.path.join(str(out),
                                            f"{split}-*.tfrecord"))):
    for raw in tf.data.TFRecordDataset(path):
      ex = tf.train.SequenceExample.FromString(raw.numpy())
      c = ex.context.feature
      fl = ex.feature_lists.feature_list

      def ints(key, c=c):
        return list(c[key].int64_list.value)

      recs.append({
          "media_id": c[spec.MEDIA_ID].bytes_list.value[0].decode(),
          "n": ints(spec.CLIP_FRAMES)[0],
          "spt": c[spec.SECS_PER_TIMESTEP].float_list.value[0],
          "duration": c[spec.DURATION].float_list.value[0],
          "example_id": ints(spec.EXAMPLE_ID) or None,
          "start": ints(spec.SEGMENT_START_INDEX),
          "end": ints(spec.SEGMENT_END_INDEX),
          "start_us": ints(spec.SEGMENT_START_TIMESTAMP),
          "end_us": ints(spec.SEGMENT_END_TIMESTAMP),
          "label": ints(spec.SEGMENT_LABEL_INDEX),
          "text": [s.decode() for s in
                   c[spec.SEGMENT_LABEL_STRING].bytes_list.value],
          "clip_labels": ints(spec.CLIP_LABEL_INDEX),
          "saliency_ids": ints(spec.SALIENCY_CLIP_INDEX),
          "saliency": list(c[spec.SALIENCY_SCORES].float_list.value),
          "jpegs": [f.bytes_list.value[0]
                    for f in fl[spec.IMAGE_ENCODED].feature],
          "frame_labels": [list(f.int64_list.value)
                           for f in fl[spec.FRAME_LABEL_INDEX].feature],
      })
  return recs


def pixels(jpegs):
  return np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]).astype(int)


def source_index(i, fps, n_src):
  """video_io's rule for a constant-rate source at SRC_FPS."""
  return min(n_src - 1, math.floor(i * SRC_FPS / fps + 0.5 + 1e-9))


def check_frames(rec, video, fps):
  """Stored frame i = source frame `source_index(i)` of the render, within
  the codec tolerance."""
  got = pixels(rec["jpegs"])
  ks = [source_index(i, fps, video.num_frames) for i in range(rec["n"])]
  err = np.abs(got - video.frames[ks]).mean(axis=(1, 2, 3))
  assert err.max() < RENDER_TOLERANCE, (rec["media_id"], err)


def round_half_up(x):
  """Half up (the converter's rule; Python's round is half to even)."""
  return math.floor(x + 0.5)


def check_segments(rec, events, fps, n):
  assert rec["start"] == [min(round_half_up(e.start_time * fps), n - 1)
                          for e in events]
  assert rec["end"] == [min(round_half_up(e.end_time * fps), n - 1)
                        for e in events]
  assert rec["start_us"] == [round(e.start_time * 1e6) for e in events]
  assert rec["end_us"] == [round(e.end_time * 1e6) for e in events]


def classes_of(syn, splits=synthetic.SPLITS):
  """Sorted labels of the videos of `splits` (an annotation file's)."""
  return sorted({e.action for vid, v in syn.videos.items()
                 if vid.split("_")[1] in splits for e in v.events})


def through_pipeline(out, task, num_classes=1, class_names=None,
                     split="train"):
  """The records decode through `pipeline.make_dataset` (with checks)."""
  kw = dict(task=task, num_frames=8, crop_size=16, min_resize=20,
            max_num_segments=4, text_mode="none",
            pyramid=spec.PyramidSpec(8, num_levels=2,
                                     regression_ranges=((0, 2),
                                                        (2, math.inf))))
  if task in (spec.TAL, spec.AS, spec.CLS):
    kw.update(num_classes=num_classes, class_names=tuple(class_names))
  config = pipeline.InputConfig(**kw)
  ds = pipeline.make_dataset(os.path.join(str(out), f"{split}-*.tfrecord"),
                             config, is_training=False, global_batch_size=4)
  batches = list(ds)
  assert batches
  ids = [m.decode() for b in batches
         for m, ok in zip(b[spec.VIDEO_ID].numpy(), b["batch_mask"].numpy())
         if ok]
  return batches, ids


def no_issues(report):
  assert sum(report["issue_counts"].values()) == 0, report["issues"]
  assert report["dropped"] == {"videos": 0, "records": 0, "segments": 0}


def write(path, text):
  """Writes `text` to `path`; returns the path as a str."""
  with open(path, "w") as f:
    f.write(text)
  return str(path)
