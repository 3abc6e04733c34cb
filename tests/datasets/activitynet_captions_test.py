"""ActivityNet Captions: the reader (2D-TAN rules, real files) and the
moment-retrieval records of synthetic mp4s."""

from __future__ import annotations

import json
import os

import pytest

from tests.datasets.helpers import (
  CONFIG,
  DATA,
  check_frames,
  check_segments,
  convert,
  no_issues,
  read_records,
  real_data,
  write,
)
from unloc_tf.datasets import activitynet_captions
from unloc_tf.metrics import formats

CAPTIONS = os.path.join(DATA, "activitynet_captions")


@real_data
def test_activitynet_captions_val_1_2d_tan_rules():
  path = os.path.join(CAPTIONS, "val_1.json")
  rows, stats = activitynet_captions.read_activitynet_captions(
      path, return_stats=True)
  assert len(rows) == 17505
  assert stats == {"videos": 4917, "total": 17505, "kept": 17505,
                   "dropped": 0, "clipped_start": 0, "clipped_end": 134}
  assert len({r["video_id"] for r in rows}) == 4917
  assert all(0 <= r["segment"][0] < r["segment"][1] <= r["duration"]
             for r in rows)
  assert rows[0] == {"video_id": "v_uqiMw7tQ1Cc",
                     "query": "A weight lifting tutorial is given.",
                     "segment": [0.28, 55.15], "duration": 55.15,
                     "sentence_index": 0}
  assert rows[1]["query"].startswith("The coach helps")  # Leading spaces.
  raw = activitynet_captions.read_activitynet_captions(path, preprocess=None)
  assert len(raw) == 17505
  assert sum(r["segment"][1] > r["duration"] for r in raw) == 134


@real_data
def test_activitynet_captions_train_drops_empty_segments():
  rows, stats = activitynet_captions.read_activitynet_captions(
      os.path.join(CAPTIONS, "train.json"), return_stats=True)
  assert (len(rows), stats["dropped"], stats["clipped_end"]) == (37417, 4,
                                                                 261)
  rows, stats = activitynet_captions.read_activitynet_captions(
      os.path.join(CAPTIONS, "val_2.json"), return_stats=True)
  assert (len(rows), stats["videos"]) == (17031, 4885)


def test_activitynet_captions_rules_and_bad_input(tmp_path):
  path = write(tmp_path / "c.json", json.dumps({"v": {
      "duration": 10.0, "timestamps": [[-1, 4], [5, 5], [6, 12], [8, 2]],
      "sentences": ["a", "b", " c ", "d"]}}))
  rows, stats = activitynet_captions.read_activitynet_captions(
      path, return_stats=True)
  assert [(r["query"], r["segment"], r["sentence_index"]) for r in rows] == [
      ("a", [0.0, 4.0], 0), ("c", [6.0, 10.0], 2)]
  assert stats == {"videos": 1, "total": 4, "kept": 2, "dropped": 2,
                   "clipped_start": 1, "clipped_end": 1}
  path = write(tmp_path / "bad.json", json.dumps({
      "v": {"duration": 10.0, "timestamps": [[0, 1]],
            "sentences": ["a", "b"]}}))
  with pytest.raises(formats.FormatError,
                     match=r"bad\.json: video 'v': field 'sentences'"):
    activitynet_captions.read_activitynet_captions(path)
  path = write(tmp_path / "bad2.json", json.dumps({
      "v": {"timestamps": [], "sentences": []}}))
  with pytest.raises(formats.FormatError, match="field 'duration': missing"):
    activitynet_captions.read_activitynet_captions(path)


# ---------------------------------------------------------------------------
# Records (synthetic mp4s).
# ---------------------------------------------------------------------------
def test_activitynet_captions(syn, tmp_path):
  no_issues(convert(syn, "activitynet_captions", tmp_path))
  recs = read_records(tmp_path)
  assert len(recs) == CONFIG.num_train
  for rec in recs:
    v = syn.videos[rec["media_id"]]
    assert rec["text"] == [e.caption for e in v.events]
    assert rec["label"] == [-1] * len(v.events)
    assert rec["n"] == 2 * v.num_frames  # 10 fps (the default) from 5 fps
    check_segments(rec, v.events, 10.0, rec["n"])
    check_frames(rec, v, 10.0)
