"""Charades-STA: the reader (2D-TAN rules with the csv lengths, real files)
and the one-record-per-query moment-retrieval records of synthetic mp4s."""

from __future__ import annotations

import itertools
import os

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
def test_charades_sta_one_record_per_query(syn, tmp_path):
  no_issues(convert(syn, "charades_sta", tmp_path, fps=SRC_FPS))
  recs = read_records(tmp_path)
  queries = [(vid, e) for vid in sorted(syn.videos)
             if vid.startswith("syn_train") for e in syn.videos[vid].events]
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
