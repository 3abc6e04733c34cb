"""COIN: the reader and the action-segmentation records (per-frame labels)
of synthetic mp4s."""

from __future__ import annotations

import json
import math

import pytest

from tests.datasets.helpers import (
  SRC_FPS,
  check_frames,
  classes_of,
  convert,
  no_issues,
  read_records,
  write,
)
from unloc_tf.data import synthetic
from unloc_tf.datasets import coin
from unloc_tf.metrics import formats


def test_coin(tmp_path):
  db = {"database": {
      "vidA": {"recipe_type": 3, "class": "ChangeBulb", "subset": "training",
               "start": 0.0, "end": 60.0, "duration": 61.0,
               "video_url": "https://example.com",
               "annotation": [{"id": "12", "segment": [1.0, 5.5],
                               "label": "take out the old bulb"},
                              {"id": 13, "segment": [6, 9],
                               "label": "install the new bulb"}]},
      "vidB": {"recipe_type": 4, "subset": "testing", "annotation": []},
  }}
  path = write(tmp_path / "COIN.json", json.dumps(db))
  entries = coin.read_coin(path)
  assert list(entries) == ["vidA", "vidB"]
  assert entries["vidA"]["annotation"][1] == {
      "id": "13", "segment": [6.0, 9.0], "label": "install the new bulb"}
  assert entries["vidA"]["class"] == "ChangeBulb"
  assert entries["vidB"]["duration"] is None
  assert list(coin.read_coin(path, subset="testing")) == ["vidB"]
  assert coin.coin_segments(coin.read_coin(path, "training")) == {
      "vidA": [{"segment": [1.0, 5.5], "label": "take out the old bulb"},
               {"segment": [6.0, 9.0], "label": "install the new bulb"}]}
  with pytest.raises(ValueError, match="subsets in the file"):
    coin.read_coin(path, subset="validation")
  del db["database"]["vidA"]["annotation"][0]["segment"]
  path = write(tmp_path / "bad.json", json.dumps(db))
  with pytest.raises(formats.FormatError,
                     match=r"video 'vidA' annotation\[0\]: field 'segment'"):
    coin.read_coin(path)


# ---------------------------------------------------------------------------
# Records (synthetic mp4s).
# ---------------------------------------------------------------------------
def test_coin_frame_labels(syn, tmp_path):
  no_issues(convert(syn, "coin", tmp_path, fps=SRC_FPS))
  classes = classes_of(syn, ("train", "test"))  # COIN.json has no val
  recs = read_records(tmp_path)
  for rec in recs:
    v = syn.videos[rec["media_id"]]
    assert rec["label"] == [classes.index(e.action) for e in v.events]
    # synthetic labels are ACTIONS indices; the converter's are sorted-name
    # indices of COIN's step labels.
    want = [[classes.index(synthetic.ACTIONS[a])] if a >= 0 else []
            for a in v.frame_labels]
    assert rec["frame_labels"] == want
    check_frames(rec, v, SRC_FPS)


def test_coin_default_fps_is_two(syn, tmp_path):
  report = convert(syn, "coin", tmp_path, num_shards=1, split="test")
  assert report["fps"] == 2.0
  (rec,) = read_records(tmp_path, "test")
  v = syn.videos[rec["media_id"]]
  assert rec["n"] == math.floor(v.duration * 2 + 1e-6)
  check_frames(rec, v, 2.0)
