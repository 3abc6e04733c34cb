"""Charades-STA: the reader (2D-TAN rules with the csv lengths, real files)
and the moment-retrieval records of synthetic mp4s: one per video with all
its queries (default) or one per query (per_query)."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from tests.datasets.helpers import (
  DATA,
  SRC_FPS,
  check_frames,
  check_segments,
  convert,
  no_issues,
  read_records,
  real_data,
  write,
)
from unloc_tf import spec
from unloc_tf.data import pipeline
from unloc_tf.datasets import charades_sta
from unloc_tf.metrics import formats

CHARADES = os.path.join(DATA, "charades_sta")


@real_data
def test_charades_sta_test_with_lengths():
  txt = os.path.join(CHARADES, "charades_sta_test.txt")
  rows, stats = charades_sta.read_charades_sta(
      txt, os.path.join(CHARADES, "Charades_v1_test.csv"), return_stats=True)
  assert len(rows) == 3720
  assert stats == {"videos": 1334, "total": 3720, "kept": 3720, "dropped": 0,
                   "clipped_end": 562}
  assert rows[0] == {"video_id": "3MSZA", "query": "person turn a light on.",
                     "segment": [24.3, 30.4], "duration": rows[0]["duration"]}
  assert all(r["segment"][0] < r["segment"][1] <= r["duration"]
             for r in rows)
  raw = charades_sta.read_charades_sta(txt)
  assert len(raw) == 3720 and raw[0]["duration"] is None
  assert sum(a["segment"][1] != b["segment"][1]
             for a, b in zip(raw, rows)) == 562
  train = charades_sta.read_charades_sta(
      os.path.join(CHARADES, "charades_sta_train.txt"))
  assert len(train) == 12408


@pytest.mark.parametrize("line,field", [
    ("AAAAA 1.0 2.0 person sits.", "sentence"),
    ("AAAAA 1.0##person sits.", "end"),
    ("AAAAA 1.0 x##person sits.", "end"),
    ("AAAAA one 2.0##person sits.", "start"),
    ("ZZZZZ 1.0 2.0##person sits.", "video_id"),
])
def test_charades_sta_bad_line_names_line_and_field(tmp_path, line, field):
  txt = write(tmp_path / "sta.txt", f"AAAAA 0.5 3.0##ok.\n{line}\n")
  csv_path = write(tmp_path / "c.csv", "id,length\nAAAAA,10.5\n")
  with pytest.raises(formats.FormatError) as e:
    charades_sta.read_charades_sta(txt, csv_path)
  assert str(e.value).startswith(f"{txt}: line 2: field {field!r}")


def test_charades_sta_clips_and_drops(tmp_path):
  txt = write(tmp_path / "sta.txt",
              "A 1 12##clipped.\r\nA 11 12##dropped.\n\nB 0 2##kept.\n")
  csv_path = write(tmp_path / "c.csv", "id,x,length\nA,1,10\nB,2,5.5\n")
  rows, stats = charades_sta.read_charades_sta(txt, csv_path, return_stats=True)
  assert [(r["video_id"], r["query"], r["segment"], r["duration"])
          for r in rows] == [("A", "clipped.", [1.0, 10.0], 10.0),
                             ("B", "kept.", [0.0, 2.0], 5.5)]
  assert stats == {"videos": 2, "total": 3, "kept": 2, "dropped": 1,
                   "clipped_end": 2}
  bad_csv = write(tmp_path / "bad.csv", "id,length\nA,long\n")
  with pytest.raises(formats.FormatError,
                     match=r"bad\.csv: line 2: field 'length'"):
    charades_sta.read_charades_sta(txt, bad_csv)


# ---------------------------------------------------------------------------
# Records (synthetic mp4s).
# ---------------------------------------------------------------------------
def _queries(syn):
  """(video id, event) of every train query, in txt order."""
  return [(vid, e) for vid in sorted(syn.videos)
          if vid.startswith("syn_train") for e in syn.videos[vid].events]


def test_charades_sta_one_record_per_video(syn, tmp_path):
  """Default: one record per video with all its queries in txt order, as
  ActivityNet Captions; evaluation reads every query of a video."""
  report = convert(syn, "charades_sta", tmp_path, fps=SRC_FPS)
  no_issues(report)
  recs = read_records(tmp_path)
  queries = _queries(syn)
  videos = sorted({vid for vid, _ in queries})
  assert len(recs) == len(videos) == report["written"]["records"]
  assert report["written"]["segments"] == len(queries)
  assert report["written"]["max_queries_per_record"] == max(
      len(syn.videos[v].events) for v in videos)
  assert not report["per_query"]
  for rec in recs:
    vid = rec["media_id"]
    events = [e for v, e in queries if v == vid]
    assert rec["example_id"] is None
    assert rec["text"] == [e.caption + "." for e in events]
    check_segments(rec, events, SRC_FPS, rec["n"])
    check_frames(rec, syn.videos[vid], SRC_FPS)
  # Frames are stored once per video instead of once per query.
  per_query = convert(syn, "charades_sta", tmp_path / "q", fps=SRC_FPS,
                      per_query=True)
  assert per_query["written"]["frames"] == sum(
      r["n"] * len(r["text"]) for r in recs)
  assert report["written"]["frames"] == sum(r["n"] for r in recs)
  assert per_query["written"]["frames"] > report["written"]["frames"]


def test_charades_sta_queries_of_a_video_through_the_evaluation_pipeline(
    syn, tmp_path):
  """The MR evaluation input gives each caption of a video its own row
  (K = the most queries of a video), with its own ground truth."""
  convert(syn, "charades_sta", tmp_path, fps=SRC_FPS)
  recs = {r["media_id"]: r for r in read_records(tmp_path)}
  k = max(len(r["text"]) for r in recs.values())
  config = pipeline.InputConfig(
      task=spec.MR, num_frames=8, crop_size=16, min_resize=20,
      text_mode="none", num_captions_eval=k,
      pyramid=spec.PyramidSpec(8, num_levels=2,
                               regression_ranges=((0, 2), (2, math.inf))))
  ds = pipeline.make_dataset(os.path.join(str(tmp_path), "train-*.tfrecord"),
                             config, is_training=False, global_batch_size=4)
  rows = 0
  for b in ds:
    for i, ok in enumerate(b["batch_mask"].numpy()):
      if not ok:
        continue
      rec = recs[b[spec.VIDEO_ID][i].numpy().decode()]
      q = len(rec["text"])
      valid = b[spec.TEXT_VALID][i].numpy()
      assert list(valid) == [1] * q + [0] * (k - q)
      assert [t.decode() for t in b[spec.TEXT_STRINGS][i].numpy()[:q]] == (
          rec["text"])
      np.testing.assert_allclose(b[spec.GT_START][i].numpy()[:q],
                                 np.asarray(rec["start_us"]) / 1e6,
                                 atol=1e-6)
      rows += q
  assert rows == sum(len(r["text"]) for r in recs.values())


def test_charades_sta_one_record_per_query(syn, tmp_path):
  """per_query: the reference's layout, one record per query."""
  report = convert(syn, "charades_sta", tmp_path, fps=SRC_FPS, per_query=True)
  no_issues(report)
  assert report["per_query"]
  recs = read_records(tmp_path)
  queries = _queries(syn)
  assert len(recs) == len(queries)
  by_id = {r["example_id"][0]: r for r in recs}
  # example_id = the query's 0-based index in the txt (file order).
  for qid, (vid, ev) in enumerate(queries):
    rec = by_id[qid]
    assert rec["media_id"] == vid
    assert rec["text"] == [ev.caption + "."]
    check_segments(rec, [ev], SRC_FPS, rec["n"])
    check_frames(rec, syn.videos[vid], SRC_FPS)
  # The queries of a video are consecutive records (one decode per video).
  ids = [r["media_id"] for r in recs]
  assert len([k for k, _ in itertools.groupby(ids)]) == len(set(ids))


def test_charades_sta_problems_name_the_query(tmp_path):
  """Per video, a dropped query is named by its index in the txt."""
  txt = write(tmp_path / "sta.txt",
              "A 1 2##ok.\nB 3 1##reversed.\nA 2 2##zero.\nB 4 4##zero.\n")
  items, _ = charades_sta.plan_charades_sta(txt)
  a, b = items
  assert [s.index for s in a.records[0].segments] == [0]
  assert [(i["reason"], i.get("segment")) for i in a.issues] == [
      ("segment_zero_length", 2)]
  assert b.records == []
  assert [(i["reason"], i.get("segment"), i.get("record")) for i in b.issues
          ] == [("segment_reversed", 1, "B"), ("segment_zero_length", 3, "B"),
                ("no_segments", None, "B")]
  assert (a.num_records, a.num_segments, b.num_records) == (1, 2, 1)
