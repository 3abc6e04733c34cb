"""tools/build_records.py: every format on tiny synthetic mp4s (frames,
indices, labels, the pipeline), the real annotation files (videos missing),
the report, bad videos, and kill-and-resume."""

from __future__ import annotations

import csv
import dataclasses
import glob
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("av")  # An optional dependency.

from tests.tools import video_helpers as vh  # noqa: E402
from tools import build_records as br  # noqa: E402
from tools import video_io  # noqa: E402
from unloc_tf import spec  # noqa: E402
from unloc_tf.data import pipeline, synthetic  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
DATA = os.environ.get("UNLOC_SHARED_DATA",
                      os.path.join(ROOT, "..", "shared", "data"))

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


@pytest.fixture(scope="module")
def syn(tmp_path_factory) -> Synthetic:
  root = str(tmp_path_factory.mktemp("synthetic"))
  synthetic.write_benchmark(root, CONFIG, tasks=(), write_videos=True)
  videos = {v.video_id: v for split in synthetic.SPLITS
            for v in synthetic.generate_split(split, CONFIG)}
  # Kinetics: one clip per train event (whole seconds); the full videos are
  # cut to the clip, one clip is also a trimmed file of its own.
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
  cid = br.kinetics_clip_id(first["youtube_id"], first["time_start"],
                            first["time_end"])
  v = videos[first["youtube_id"]]
  synthetic.write_mp4(
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


def _ann(syn, fmt, split="train"):
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


def _convert(syn, fmt, out, split="train", **kw):
  ann, extra = _ann(syn, fmt, split)
  extra.update(kw)
  extra.setdefault("short_side", 0)
  extra.setdefault("num_shards", 2)
  videos_dir = syn.kinetics_dir if fmt == "kinetics" else syn.videos_dir
  opts = br.Options(fmt, ann, extra.pop("videos_dir", videos_dir), str(out),
                    split=split, progress=False, **extra)
  return br.convert(opts)


def _read(out, split="train"):
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


def _pixels(jpegs):
  return np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs]).astype(int)


def _source_index(i, fps, n_src):
  """video_io's rule for a constant-rate source at SRC_FPS."""
  return min(n_src - 1, math.floor(i * SRC_FPS / fps + 0.5 + 1e-9))


def _check_frames(rec, video, fps):
  """Stored frame i = source frame `_source_index(i)` of the render, within
  the codec tolerance."""
  got = _pixels(rec["jpegs"])
  ks = [_source_index(i, fps, video.num_frames) for i in range(rec["n"])]
  err = np.abs(got - video.frames[ks]).mean(axis=(1, 2, 3))
  assert err.max() < RENDER_TOLERANCE, (rec["media_id"], err)


def _round(x):
  """Half up (the converter's rule; Python's round is half to even)."""
  return math.floor(x + 0.5)


def _check_segments(rec, events, fps, n):
  assert rec["start"] == [min(_round(e.start_time * fps), n - 1)
                          for e in events]
  assert rec["end"] == [min(_round(e.end_time * fps), n - 1)
                        for e in events]
  assert rec["start_us"] == [round(e.start_time * 1e6) for e in events]
  assert rec["end_us"] == [round(e.end_time * 1e6) for e in events]


def _classes(syn, splits=synthetic.SPLITS):
  """Sorted labels of the videos of `splits` (an annotation file's)."""
  return sorted({e.action for vid, v in syn.videos.items()
                 if vid.split("_")[1] in splits for e in v.events})


def _through_pipeline(out, task, num_classes=1, class_names=None,
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


def _no_issues(report):
  assert sum(report["issue_counts"].values()) == 0, report["issues"]
  assert report["dropped"] == {"videos": 0, "records": 0, "segments": 0}


# ---------------------------------------------------------------------------
# Resume and worker count (first: the slowest test, xdist starts it early).
# ---------------------------------------------------------------------------
def test_worker_count_does_not_change_the_bytes_and_resume_does(syn,
                                                                 tmp_path):
  """A conversion killed mid-way (a video that blocks: a FIFO) and resumed
  with 2 worker processes writes the bytes of an uninterrupted in-process
  run, and skips the shards that were finished."""
  ann, extra = _ann(syn, "activitynet")
  ref = tmp_path / "ref"
  common = dict(fps=SRC_FPS, short_side=24, num_shards=4)
  ref_report = _convert(syn, "activitynet", ref, **common)
  vdir = tmp_path / "videos"
  vdir.mkdir()
  train = sorted(v for v in syn.videos if v.startswith("syn_train"))
  assert len(train) == 4
  for vid in train:
    target = vdir / f"{vid}.mp4"
    if vid == train[1]:
      os.mkfifo(target)  # opening it blocks: shard 1 never finishes
    else:
      os.symlink(os.path.join(syn.videos_dir, f"{vid}.mp4"), target)
  out = tmp_path / "out"
  args = [sys.executable, os.path.join(ROOT, "tools", "build_records.py"),
          "--format=activitynet", f"--annotations={ann}",
          f"--subset={extra['subset']}", f"--videos_dir={vdir}",
          f"--output_dir={out}", "--split=train", "--num_shards=4",
          f"--fps={SRC_FPS}", "--short_side=24", "--noprogress"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  shards = [out / os.path.basename(p) for p in ref_report["shards"]]
  try:
    deadline = time.time() + 120
    while not (shards[0].exists()
               and os.path.exists(str(shards[1]) + ".incomplete")):
      assert proc.poll() is None, proc.communicate()
      assert time.time() < deadline, "the conversion did not start"
      time.sleep(0.1)
    time.sleep(0.3)
    assert proc.poll() is None  # blocked on the FIFO
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
  assert shards[0].exists() and not any(s.exists() for s in shards[1:])
  mtime = shards[0].stat().st_mtime_ns
  os.remove(vdir / f"{train[1]}.mp4")
  os.symlink(os.path.join(syn.videos_dir, f"{train[1]}.mp4"),
             vdir / f"{train[1]}.mp4")
  report = _convert(syn, "activitynet", out, videos_dir=str(vdir),
                    num_workers=2, **common)
  assert report["shards_resumed"] == 1
  assert shards[0].stat().st_mtime_ns == mtime  # skipped, not rewritten
  for s in shards:
    with open(s, "rb") as f, open(ref / s.name, "rb") as g:
      assert f.read() == g.read(), s.name
  assert not glob.glob(str(out / "*.incomplete"))
  for key in ("issues", "annotated", "written", "issue_counts"):
    assert report[key] == ref_report[key]
  # A third run resumes everything and writes nothing.
  again = _convert(syn, "activitynet", out, videos_dir=str(vdir), **common)
  assert again["shards_resumed"] == 4
  assert again["written"] == ref_report["written"]
  # Other options on the same output are refused, not mixed.
  with pytest.raises(ValueError, match="fingerprint"):
    _convert(syn, "activitynet", out, videos_dir=str(vdir),
             **dict(common, fps=2.0))
  with pytest.raises(ValueError, match="another --num_shards"):
    _convert(syn, "activitynet", out, videos_dir=str(vdir),
             **dict(common, num_shards=2))


# ---------------------------------------------------------------------------
# Every format on synthetic mp4s.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [SRC_FPS, 10.0, 2.0])
def test_activitynet_frames_and_segments(syn, tmp_path, fps):
  report = _convert(syn, "activitynet", tmp_path, fps=fps)
  _no_issues(report)
  classes = _classes(syn)
  with open(tmp_path / "classes.txt") as f:
    assert f.read().splitlines() == classes
  with open(tmp_path / "classes.json") as f:
    assert json.load(f) == {c: i for i, c in enumerate(classes)}
  recs = _read(tmp_path)
  train = sorted(v for v in syn.videos if v.startswith("syn_train"))
  # Video i of the sorted list goes to shard i % 2.
  assert [r["media_id"] for r in recs] == train[0::2] + train[1::2]
  for rec in recs:
    v = syn.videos[rec["media_id"]]
    n = math.floor(v.duration * fps + 1e-6)
    assert rec["n"] == n == len(rec["jpegs"])
    assert rec["spt"] == pytest.approx(1.0 / fps)
    assert rec["duration"] == pytest.approx(v.duration)
    _check_frames(rec, v, fps)
    _check_segments(rec, v.events, fps, n)
    assert rec["label"] == [classes.index(e.action) for e in v.events]
    assert rec["text"] == [e.action for e in v.events]
  # Stored frames are also exactly the decoded mp4 frames (JPEG tolerance).
  v = syn.videos[recs[0]["media_id"]]
  decoded = video_io.decode_video(
      os.path.join(syn.videos_dir, v.video_id + ".mp4"), fps, short_side=0)
  assert np.abs(_pixels(recs[0]["jpegs"]) - decoded.frames).mean() < (
      JPEG_TOLERANCE)


def test_default_fps_and_short_side(syn, tmp_path):
  report = _convert(syn, "activitynet", tmp_path, short_side=256,
                    num_shards=1, split="test")
  assert report["fps"] == 10.0 and report["short_side"] == 256
  (rec,) = _read(tmp_path, "test")
  assert tf.io.decode_jpeg(rec["jpegs"][0]).shape == (256, 256, 3)
  assert rec["n"] == round(syn.videos[rec["media_id"]].duration * 10)


def test_activitynet_captions(syn, tmp_path):
  _no_issues(_convert(syn, "activitynet_captions", tmp_path))
  recs = _read(tmp_path)
  assert len(recs) == CONFIG.num_train
  for rec in recs:
    v = syn.videos[rec["media_id"]]
    assert rec["text"] == [e.caption for e in v.events]
    assert rec["label"] == [-1] * len(v.events)
    assert rec["n"] == 2 * v.num_frames  # 10 fps (the default) from 5 fps
    _check_segments(rec, v.events, 10.0, rec["n"])
    _check_frames(rec, v, 10.0)


def test_charades_sta_one_record_per_query(syn, tmp_path):
  _no_issues(_convert(syn, "charades_sta", tmp_path, fps=SRC_FPS))
  recs = _read(tmp_path)
  queries = [(vid, e) for vid in sorted(syn.videos)
             if vid.startswith("syn_train") for e in syn.videos[vid].events]
  assert len(recs) == len(queries)
  by_id = {r["example_id"][0]: r for r in recs}
  # example_id = the query's 0-based index in the txt (file order).
  for qid, (vid, ev) in enumerate(queries):
    rec = by_id[qid]
    assert rec["media_id"] == vid
    assert rec["text"] == [ev.caption + "."]
    _check_segments(rec, [ev], SRC_FPS, rec["n"])
    _check_frames(rec, syn.videos[vid], SRC_FPS)
  # The queries of a video are consecutive records (one decode per video).
  ids = [r["media_id"] for r in recs]
  assert len([k for k, _ in itertools.groupby(ids)]) == len(set(ids))


@pytest.mark.parametrize("task", [spec.HD, spec.MR])
def test_qvhighlights(syn, tmp_path, task):
  report = _convert(syn, "qvhighlights", tmp_path, task=task, fps=SRC_FPS)
  _no_issues(report)
  assert report["task"] == task
  recs = _read(tmp_path)
  events = {e.query_id: (v, k, e) for v in syn.videos.values()
            for k, e in enumerate(v.events)}
  assert len(recs) == CONFIG.num_train  # hd_max_queries = 1
  for rec in recs:
    v, k, ev = events[rec["example_id"][0]]
    assert rec["media_id"] == v.video_id
    assert rec["text"] == [ev.caption]
    assert rec["label"] == [0 if task == spec.HD else -1]
    _check_segments(rec, [ev], SRC_FPS, rec["n"])
    _check_frames(rec, v, SRC_FPS)
    if task == spec.HD:
      sal = v.saliency[k]
      assert rec["saliency_ids"] == list(sal.clip_index)
      np.testing.assert_allclose(rec["saliency"],
                                 np.asarray(sal.scores).reshape(-1))
    else:
      assert rec["saliency_ids"] == []


def test_coin_frame_labels(syn, tmp_path):
  _no_issues(_convert(syn, "coin", tmp_path, fps=SRC_FPS))
  classes = _classes(syn, ("train", "test"))  # COIN.json has no val
  recs = _read(tmp_path)
  for rec in recs:
    v = syn.videos[rec["media_id"]]
    assert rec["label"] == [classes.index(e.action) for e in v.events]
    # synthetic labels are ACTIONS indices; the converter's are sorted-name
    # indices of COIN's step labels.
    want = [[classes.index(synthetic.ACTIONS[a])] if a >= 0 else []
            for a in v.frame_labels]
    assert rec["frame_labels"] == want
    _check_frames(rec, v, SRC_FPS)


def test_coin_default_fps_is_two(syn, tmp_path):
  report = _convert(syn, "coin", tmp_path, num_shards=1, split="test")
  assert report["fps"] == 2.0
  (rec,) = _read(tmp_path, "test")
  v = syn.videos[rec["media_id"]]
  assert rec["n"] == math.floor(v.duration * 2 + 1e-6)
  _check_frames(rec, v, 2.0)


def test_kinetics_clips(syn, tmp_path):
  report = _convert(syn, "kinetics", tmp_path, fps=SRC_FPS)
  _no_issues(report)
  classes = sorted({r["label"] for r in syn.kinetics_rows})
  recs = {r["media_id"]: r for r in _read(tmp_path)}
  assert len(recs) == len(syn.kinetics_rows)
  for row in syn.kinetics_rows:
    s, e = row["time_start"], row["time_end"]
    rec = recs[br.kinetics_clip_id(row["youtube_id"], s, e)]
    v = syn.videos[row["youtube_id"]]
    assert rec["clip_labels"] == [classes.index(row["label"])]
    end = min(e, v.duration)
    assert rec["n"] == round(end * SRC_FPS) - round(s * SRC_FPS)
    assert rec["duration"] == pytest.approx(end - s)
    got = _pixels(rec["jpegs"])
    ref = v.frames[round(s * SRC_FPS):round(s * SRC_FPS) + rec["n"]]
    assert np.abs(got - ref).mean(axis=(1, 2, 3)).max() < RENDER_TOLERANCE


def test_every_task_decodes_through_the_pipeline(syn, tmp_path):
  """`pipeline.make_dataset` (with its record checks) reads the records of
  every task (one test: the first dataset of a process is the slow one)."""
  for fmt, task, kw in [("activitynet", spec.TAL, {}),
                        ("activitynet_captions", spec.MR, {}),
                        ("qvhighlights", spec.HD, {}),
                        ("coin", spec.AS, {}),
                        ("kinetics", spec.CLS, dict(fps=SRC_FPS))]:
    out = tmp_path / fmt
    report = _convert(syn, fmt, out, **kw)
    classes = None
    if task in (spec.TAL, spec.AS, spec.CLS):
      classes = pipeline.read_class_names(data_dir=str(out))
    batches, ids = _through_pipeline(
        out, task, len(classes) if classes else 1, classes)
    if task != spec.AS:  # AS: one example per 8-frame window
      assert len(ids) == report["written"]["records"], fmt
    assert sorted(set(ids)) == sorted({r["media_id"] for r in _read(out)})
    if task == spec.HD:
      assert batches[0][spec.SALIENCY].shape[-1] == 3


# ---------------------------------------------------------------------------
# The report: bad videos and bad segments.
# ---------------------------------------------------------------------------
def test_corrupt_truncated_and_missing_videos_are_reported(syn, tmp_path):
  train = sorted(v for v in syn.videos if v.startswith("syn_train"))
  vdir = tmp_path / "videos"
  vdir.mkdir()
  vh.garbage(str(vdir / f"{train[0]}.mp4"))
  vh.truncate(os.path.join(syn.videos_dir, f"{train[1]}.mp4"),
              str(vdir / f"{train[1]}.mp4"))
  # train[2] is missing; train[3] is fine (ActivityNet's v_ prefix, .mkv
  # preferred after .mp4 only).
  os.symlink(os.path.join(syn.videos_dir, f"{train[3]}.mp4"),
             vdir / f"v_{train[3]}.mp4")
  report = _convert(syn, "activitynet", tmp_path / "out", fps=SRC_FPS,
                    videos_dir=str(vdir))
  counts = report["issue_counts"]
  assert counts[br.UNDECODABLE_VIDEO] == 2
  assert counts[br.MISSING_VIDEO] == 1
  by_video = {i["video_id"]: i for i in report["issues"]}
  assert by_video[train[0]]["error"] == "open"
  assert by_video[train[1]]["error"] == "open"
  assert str(vdir / f"{train[1]}.mp4") in by_video[train[1]]["detail"]
  assert by_video[train[2]]["reason"] == br.MISSING_VIDEO
  assert report["written"]["videos"] == 1 and report["written"][
      "records"] == 1
  assert report["dropped"]["videos"] == 3
  assert [r["media_id"] for r in _read(tmp_path / "out")] == [train[3]]
  with open(tmp_path / "out" / "train.report.json") as f:
    assert json.load(f)["issue_counts"] == counts
  assert "undecodable_video 2" in br.summary_line(report)


def test_segment_problems_are_reported(syn, tmp_path):
  vid = sorted(v for v in syn.videos if v.startswith("syn_train"))[0]
  d = syn.videos[vid].duration
  anns = [
      ([0.5, 1.5], "a"),  # fine
      ([-0.4, 1.0], "a"),  # clipped start
      ([2.0, d + 3.0], "b"),  # clipped end
      ([d + 1.0, d + 2.0], "a"),  # outside the video
      ([2.0, 2.0], "a"),  # zero length
      ([3.0, 1.0], "b"),  # reversed
      ([1.0, 2.0], "zzz"),  # not in --class_list
  ]
  gt = {"version": "VERSION 1.3", "database": {
      vid: {"subset": "training", "duration": d + 4.0,
            "annotations": [{"segment": s, "label": lab}
                            for s, lab in anns]},
      "not_there": {"subset": "training", "duration": 3.0,
                    "annotations": [{"segment": [0.0, 1.0], "label": "a"}]},
  }}
  ann = tmp_path / "gt.json"
  ann.write_text(json.dumps(gt))
  classes = tmp_path / "classes.txt"
  classes.write_text("b\na\n")
  opts = br.Options("activitynet", str(ann), syn.videos_dir,
                    str(tmp_path / "out"), subset="training", fps=10.0,
                    short_side=0, num_shards=1, class_list=str(classes),
                    progress=False)
  report = br.convert(opts)
  c = report["issue_counts"]
  assert (c[br.SEGMENT_CLIPPED], c[br.SEGMENT_OUTSIDE], c[br.SEGMENT_ZERO],
          c[br.SEGMENT_REVERSED], c[br.UNKNOWN_CLASS], c[br.MISSING_VIDEO],
          c[br.DURATION_MISMATCH]) == (2, 1, 1, 1, 1, 1, 1)
  by_seg = {(i["video_id"], i.get("segment")): i for i in report["issues"]}
  assert by_seg[(vid, 2)]["stored"] == [2.0, pytest.approx(d)]
  assert by_seg[(vid, 1)]["stored"] == [0.0, 1.0]
  assert by_seg[(vid, 6)]["label"] == "zzz"
  assert by_seg[(vid, None)]["reason"] == br.DURATION_MISMATCH
  assert by_seg[(vid, None)]["annotation_duration"] == d + 4.0
  assert report["annotated"] == {"videos": 2, "records": 2, "segments": 8}
  assert report["written"]["segments"] == 3
  assert report["dropped"] == {"videos": 1, "records": 1, "segments": 5}
  (rec,) = _read(tmp_path / "out")
  n = rec["n"]
  assert n == round(d * 10)
  assert rec["start"] == [5, 0, 20] and rec["end"] == [15, 10, n - 1]
  assert rec["label"] == [1, 1, 0]  # --class_list order: b=0, a=1
  assert rec["start_us"] == [500000, 0, 2000000]
  assert rec["end_us"][2] == round(d * 1e6)
  with open(tmp_path / "out" / "classes.txt") as f:
    assert f.read() == "b\na\n"


def test_video_lookup(tmp_path):
  for rel in ("a.mp4", "a.webm", "sub/v_b.mkv", "sub/deeper/c_000001_000003"
              ".avi", "notes.txt", "d.MP4"):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
  index = br.index_videos(str(tmp_path))
  assert index["a"].endswith("a.mp4")  # .mp4 before .webm
  assert set(index) == {"a", "v_b", "c_000001_000003", "d"}
  items = [br.VideoItem("v_a", [], br._names("v_a")),
           br.VideoItem("b", [], br._names("b")),
           br.VideoItem("c_000001_000003", [], [("c_000001_000003", None),
                                                ("c", (1.0, 3.0))]),
           br.VideoItem("e", [], br._names("e"))]
  br.locate_videos(items, index)
  assert [os.path.basename(i.path or "") for i in items] == [
      "a.mp4", "v_b.mkv", "c_000001_000003.avi", ""]
  assert items[2].window is None


def test_bad_options_and_files(syn, tmp_path):
  ann, _ = _ann(syn, "charades_sta")
  with pytest.raises(ValueError, match="task"):
    br.Options("charades_sta", ann, syn.videos_dir, str(tmp_path),
               task=spec.HD).check()
  with pytest.raises(FileNotFoundError, match="annotations"):
    br.Options("coin", str(tmp_path / "nope.json"), syn.videos_dir,
               str(tmp_path)).check()
  bad = tmp_path / "bad.csv"
  bad.write_text("label,youtube_id,time_start,time_end,split\n"
                 "x,abc,zero,10,train\n")
  with pytest.raises(ValueError, match=r"bad.csv: line 2: field "
                     r"'time_start'"):
    br.read_kinetics_csv(str(bad))


# ---------------------------------------------------------------------------
# The real annotation files (no videos: everything is reported).
# ---------------------------------------------------------------------------
REAL = [
    # (format, file, options, annotated videos, annotated records, missing
    # videos, other issue counts); SOURCES.md has the numbers.
    ("activitynet", "activitynet1.3/sample_detection_prediction.json", {},
     4926, 4926, 4926, {br.SEGMENT_ZERO: 3}),
    ("activitynet", "activitynet1.3/bsn_anet_anno_action.json",
     {"subset": "validation",
      "video_info": "activitynet1.3/bsn_video_info_new.csv"}, 4728, 4728,
     4728, {br.SEGMENT_ZERO: 3}),
    ("activitynet_captions", "activitynet_captions/val_1.json", {}, 4917,
     4917, 4917, {}),
    ("charades_sta", "charades_sta/charades_sta_test.txt",
     {"charades_csv": "charades_sta/Charades_v1_test.csv"}, 1334, 3720, 1334,
     {}),
    # 4 reversed queries, the only ones of video AKKWU and of another one.
    ("charades_sta", "charades_sta/charades_sta_train.txt", {}, 5338, 12408,
     5336, {br.SEGMENT_REVERSED: 4, br.NO_SEGMENTS: 4}),
    ("qvhighlights", "qvhighlights/highlight_val_release.jsonl", {}, 1519,
     1550, 1519, {}),
    # No labels in the release test file: nothing to write, all reported.
    ("qvhighlights", "qvhighlights/highlight_test_release.jsonl", {}, 1529,
     1542, 0, {br.NO_SEGMENTS: 1542}),
]


@pytest.mark.parametrize(
    "fmt,rel,options,videos,num_records,missing_videos,others", REAL,
    ids=[r[1].split("/")[-1] for r in REAL])
def test_real_annotations_without_videos(tmp_path, fmt, rel, options,
                                         videos, num_records, missing_videos,
                                         others):
  path = os.path.join(DATA, rel)
  if not os.path.exists(path):
    pytest.skip(f"shared data not found: {path}")
  options = {k: os.path.join(DATA, v) if k in ("video_info",
                                               "charades_csv") else v
             for k, v in options.items()}
  empty = tmp_path / "videos"
  empty.mkdir()
  report = br.convert(br.Options(fmt, path, str(empty), str(tmp_path / "o"),
                                 split="val", num_shards=2, progress=False,
                                 **options))
  a = report["annotated"]
  assert (a["videos"], a["records"]) == (videos, num_records)
  assert report["written"] == {"videos": 0, "records": 0, "frames": 0,
                               "segments": 0}
  counts = report["issue_counts"]
  assert counts[br.MISSING_VIDEO] == missing_videos
  for reason, count in others.items():
    assert counts[reason] == count
  missing = [i for i in report["issues"] if i["reason"] == br.MISSING_VIDEO]
  assert all(i["video_id"] and i["detail"] for i in missing)
  assert report["dropped"]["records"] == num_records
  assert sum(counts.values()) == len(report["issues"])
  for shard in report["shards"]:  # empty, but there
    assert os.path.getsize(tmp_path / "o" / shard) == 0
  assert (f"missing_video {missing_videos}" in br.summary_line(report)
          or not missing_videos)
