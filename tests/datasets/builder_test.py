"""The record builder: default options, every task through the input
pipeline, the report (bad videos, bad segments), bad options, and the real
annotation files without videos."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.data import video_helpers as vh
from tests.datasets.helpers import (
  DATA,
  ROOT,
  SRC_FPS,
  annotation_options,
  convert,
  read_records,
  through_pipeline,
)
from unloc_tf import datasets, spec
from unloc_tf.data import pipeline


def test_readers_import_no_tensorflow():
  """The builder (TensorFlow) is loaded on first use of its names."""
  code = ("import sys; import unloc_tf.datasets as d;"
          " assert 'tensorflow' not in sys.modules;"
          " d.read_class_list; assert 'tensorflow' not in sys.modules;"
          " d.Options; assert 'tensorflow' in sys.modules")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT,
                 timeout=120)


def test_default_fps_and_short_side_never_upscales(syn, tmp_path):
  """The 32x32 videos are smaller than --short_side=256: stored at 32x32
  and reported (stored_at_source_size); --upscale resizes them to 256."""
  report = convert(syn, "activitynet", tmp_path, short_side=256,
                   num_shards=1, split="test")
  assert report["fps"] == 10.0 and report["short_side"] == 256
  assert not report["upscale"]
  (rec,) = read_records(tmp_path, "test")
  assert tf.io.decode_jpeg(rec["jpegs"][0]).shape == (32, 32, 3)
  assert rec["n"] == round(syn.videos[rec["media_id"]].duration * 10)
  assert report["issue_counts"][datasets.SOURCE_SIZE_KEPT] == 1
  (entry,) = report["issues"]
  assert entry == {
      "reason": "stored_at_source_size", "video_id": rec["media_id"],
      "source_size": [32, 32], "short_side": 256,
      "detail": "short side 32 < --short_side=256: stored at the source"
                " size, not upscaled"}
  assert "stored_at_source_size 1" in datasets.summary_line(report)
  assert report["dropped"]["records"] == 0
  # Downscaling is unchanged: short side 24 < 32.
  convert(syn, "activitynet", tmp_path / "down", short_side=24,
          num_shards=1, split="test")
  (rec,) = read_records(tmp_path / "down", "test")
  assert tf.io.decode_jpeg(rec["jpegs"][0]).shape == (24, 24, 3)
  # The old rule, as an option.
  report = convert(syn, "activitynet", tmp_path / "up", short_side=256,
                   num_shards=1, split="test", upscale=True)
  assert report["upscale"] and not report["issues"]
  (rec,) = read_records(tmp_path / "up", "test")
  assert tf.io.decode_jpeg(rec["jpegs"][0]).shape == (256, 256, 3)


def test_every_task_decodes_through_the_pipeline(syn, tmp_path):
  """`pipeline.make_dataset` (with its record checks) reads the records of
  every task (one test: the first dataset of a process is the slow one)."""
  for fmt, task, kw in [("activitynet", spec.TAL, {}),
                        ("activitynet_captions", spec.MR, {}),
                        ("qvhighlights", spec.HD, {}),
                        ("coin", spec.AS, {}),
                        ("kinetics", spec.CLS, dict(fps=SRC_FPS))]:
    out = tmp_path / fmt
    report = convert(syn, fmt, out, **kw)
    classes = None
    if task in (spec.TAL, spec.AS, spec.CLS):
      classes = pipeline.read_class_names(data_dir=str(out))
    batches, ids = through_pipeline(
        out, task, len(classes) if classes else 1, classes)
    if task != spec.AS:  # AS: one example per 8-frame window
      assert len(ids) == report["written"]["records"], fmt
    assert sorted(set(ids)) == sorted({r["media_id"]
                                       for r in read_records(out)})
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
  report = convert(syn, "activitynet", tmp_path / "out", fps=SRC_FPS,
                   videos_dir=str(vdir))
  counts = report["issue_counts"]
  assert counts[datasets.UNDECODABLE_VIDEO] == 2
  assert counts[datasets.MISSING_VIDEO] == 1
  by_video = {i["video_id"]: i for i in report["issues"]}
  assert by_video[train[0]]["error"] == "open"
  assert by_video[train[1]]["error"] == "open"
  assert str(vdir / f"{train[1]}.mp4") in by_video[train[1]]["detail"]
  assert by_video[train[2]]["reason"] == datasets.MISSING_VIDEO
  assert report["written"]["videos"] == 1 and report["written"][
      "records"] == 1
  assert report["dropped"]["videos"] == 3
  assert [r["media_id"] for r in read_records(tmp_path / "out")] == [train[3]]
  with open(tmp_path / "out" / "train.report.json") as f:
    assert json.load(f)["issue_counts"] == counts
  assert "undecodable_video 2" in datasets.summary_line(report)


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
  opts = datasets.Options("activitynet", str(ann), syn.videos_dir,
                          str(tmp_path / "out"), subset="training", fps=10.0,
                          short_side=0, num_shards=1, class_list=str(classes),
                          progress=False)
  report = datasets.convert(opts)
  c = report["issue_counts"]
  assert (c[datasets.SEGMENT_CLIPPED], c[datasets.SEGMENT_OUTSIDE],
          c[datasets.SEGMENT_ZERO], c[datasets.SEGMENT_REVERSED],
          c[datasets.UNKNOWN_CLASS], c[datasets.MISSING_VIDEO],
          c[datasets.DURATION_MISMATCH]) == (2, 1, 1, 1, 1, 1, 1)
  by_seg = {(i["video_id"], i.get("segment")): i for i in report["issues"]}
  assert by_seg[(vid, 2)]["stored"] == [2.0, pytest.approx(d)]
  assert by_seg[(vid, 1)]["stored"] == [0.0, 1.0]
  assert by_seg[(vid, 6)]["label"] == "zzz"
  assert by_seg[(vid, None)]["reason"] == datasets.DURATION_MISMATCH
  assert by_seg[(vid, None)]["annotation_duration"] == d + 4.0
  assert report["annotated"] == {"videos": 2, "records": 2, "segments": 8}
  assert report["written"]["segments"] == 3
  assert report["dropped"] == {"videos": 1, "records": 1, "segments": 5}
  (rec,) = read_records(tmp_path / "out")
  n = rec["n"]
  assert n == round(d * 10)
  assert rec["start"] == [5, 0, 20] and rec["end"] == [15, 10, n - 1]
  assert rec["label"] == [1, 1, 0]  # --class_list order: b=0, a=1
  assert rec["start_us"] == [500000, 0, 2000000]
  assert rec["end_us"][2] == round(d * 1e6)
  with open(tmp_path / "out" / "classes.txt") as f:
    assert f.read() == "b\na\n"


def test_bad_options(syn, tmp_path):
  ann, _ = annotation_options(syn, "charades_sta")
  with pytest.raises(ValueError, match="task"):
    datasets.Options("charades_sta", ann, syn.videos_dir, str(tmp_path),
                     task=spec.HD).check()
  with pytest.raises(FileNotFoundError, match="annotations"):
    datasets.Options("coin", str(tmp_path / "nope.json"), syn.videos_dir,
                     str(tmp_path)).check()
  with pytest.raises(ValueError, match=r"^per_query is for"
                     r" --format=charades_sta \(records of --format=coin"):
    datasets.Options("coin", ann, syn.videos_dir, str(tmp_path),
                     per_query=True).check()


# ---------------------------------------------------------------------------
# The real annotation files (no videos: everything is reported).
# ---------------------------------------------------------------------------
REAL = [
    # (format, file, options, annotated videos, annotated records, missing
    # videos, other issue counts); SOURCES.md has the numbers.
    ("activitynet", "activitynet1.3/sample_detection_prediction.json", {},
     4926, 4926, 4926, {datasets.SEGMENT_ZERO: 3}),
    ("activitynet", "activitynet1.3/bsn_anet_anno_action.json",
     {"subset": "validation",
      "video_info": "activitynet1.3/bsn_video_info_new.csv"}, 4728, 4728,
     4728, {datasets.SEGMENT_ZERO: 3}),
    ("activitynet_captions", "activitynet_captions/val_1.json", {}, 4917,
     4917, 4917, {}),
    # One record per video (1,334), or per query (3,720).
    ("charades_sta", "charades_sta/charades_sta_test.txt",
     {"charades_csv": "charades_sta/Charades_v1_test.csv"}, 1334, 1334, 1334,
     {}),
    ("charades_sta", "charades_sta/charades_sta_test.txt",
     {"charades_csv": "charades_sta/Charades_v1_test.csv",
      "per_query": True}, 1334, 3720, 1334, {}),
    # 4 reversed queries, the only ones of video AKKWU and of another one:
    # those 2 videos have no record (4 queries: 4 records per query).
    ("charades_sta", "charades_sta/charades_sta_train.txt", {}, 5338, 5338,
     5336, {datasets.SEGMENT_REVERSED: 4, datasets.NO_SEGMENTS: 2}),
    ("charades_sta", "charades_sta/charades_sta_train.txt",
     {"per_query": True}, 5338, 12408, 5336,
     {datasets.SEGMENT_REVERSED: 4, datasets.NO_SEGMENTS: 4}),
    ("qvhighlights", "qvhighlights/highlight_val_release.jsonl", {}, 1519,
     1550, 1519, {}),
    # No labels in the release test file: every query is planned as a record
    # without targets (only the videos are missing here).
    ("qvhighlights", "qvhighlights/highlight_test_release.jsonl", {}, 1529,
     1542, 1529, {datasets.NO_SEGMENTS: 0}),
]


@pytest.mark.parametrize(
    "fmt,rel,options,videos,num_records,missing_videos,others", REAL,
    ids=[r[1].split("/")[-1] + ("_per_query" if r[2].get("per_query")
                                else "") for r in REAL])
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
  report = datasets.convert(datasets.Options(
      fmt, path, str(empty), str(tmp_path / "o"), split="val", num_shards=2,
      progress=False, **options))
  a = report["annotated"]
  assert (a["videos"], a["records"]) == (videos, num_records)
  assert report["written"] == {"videos": 0, "records": 0, "frames": 0,
                               "segments": 0, "without_targets": 0,
                               "max_queries_per_record": 0}
  counts = report["issue_counts"]
  assert counts[datasets.MISSING_VIDEO] == missing_videos
  for reason, count in others.items():
    assert counts[reason] == count
  missing = [i for i in report["issues"]
             if i["reason"] == datasets.MISSING_VIDEO]
  assert all(i["video_id"] and i["detail"] for i in missing)
  assert report["dropped"]["records"] == num_records
  assert sum(counts.values()) == len(report["issues"])
  for shard in report["shards"]:  # empty, but there
    assert os.path.getsize(tmp_path / "o" / shard) == 0
  assert (f"missing_video {missing_videos}" in datasets.summary_line(report)
          or not missing_videos)
