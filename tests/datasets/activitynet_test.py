"""ActivityNet 1.3: the GT reader (real files and layouts) and the records
converted from synthetic mp4s (frames, indices, labels)."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from tests.datasets.helpers import (
  DATA,
  JPEG_TOLERANCE,
  SRC_FPS,
  check_frames,
  check_segments,
  classes_of,
  convert,
  no_issues,
  pixels,
  read_records,
  real_data,
  write,
)
from unloc_tf.data import video as video_io
from unloc_tf.datasets import activitynet
from unloc_tf.metrics import formats

ANET = os.path.join(DATA, "activitynet1.3")


@pytest.fixture(scope="module")
def anet_val():
  return activitynet.read_activitynet(
      os.path.join(ANET, "sample_detection_prediction.json"))


@real_data
def test_activitynet_val_gt_from_results_layout(anet_val):
  gt, durations = anet_val
  assert len(gt) == 4926
  assert sum(len(v) for v in gt.values()) == 7654
  assert len(activitynet.activitynet_class_names(gt)) == 200
  assert set(durations.values()) == {None}
  assert gt["wONwHYy59Tc"] == [{"segment": [94.52138901727746,
                                            130.48707650118757],
                                "label": "Blow-drying hair"}]
  zero = [v for v, anns in gt.items() for a in anns
          if a["segment"][0] == a["segment"][1]]
  assert sorted(zero) == sorted(["QhiKgeJV3k0", "e6J_ygZ779A",
                                 "6kgJx6ahgq0"])
  with pytest.raises(ValueError, match="no subsets"):
    activitynet.read_activitynet(
        os.path.join(ANET, "sample_detection_prediction.json"),
        subset="validation")


@real_data
def test_activitynet_bsn_layout_strips_v_prefix(anet_val):
  path = os.path.join(ANET, "bsn_anet_anno_action.json")
  info = os.path.join(ANET, "bsn_video_info_new.csv")
  gt, durations = activitynet.read_activitynet(path)
  assert len(gt) == 19228
  assert not any(v.startswith("v_") for v in gt if v[2:] in anet_val[0])
  assert durations["QOlSCBRmfWY"] == 82.73
  val, val_durations = activitynet.read_activitynet(path, "validation",
                                                    video_info=info)
  assert len(val) == 4728
  # BSN's validation videos agree exactly with the results-layout val GT.
  assert all(val[v] == anet_val[0][v] for v in val)
  over = sum(a["segment"][1] > val_durations[v]
             for v, anns in val.items() for a in anns)
  assert over == 71
  train, _ = activitynet.read_activitynet(path, "training", video_info=info)
  test, _ = activitynet.read_activitynet(path, "testing", video_info=info)
  assert (len(train), len(test)) == (9649, 4851)
  assert not any(test.values())
  raw, _ = activitynet.read_activitynet(path, strip_v_prefix=False)
  assert all(v.startswith("v_") for v in raw)
  with pytest.raises(ValueError, match="video_info"):
    activitynet.read_activitynet(path, "validation")


def _official(tmp_path, database):
  return write(tmp_path / "activity_net.v1-3.min.json", json.dumps(
      {"version": "VERSION 1.3", "taxonomy": [], "database": database}))


def test_activitynet_official_layout_and_subsets(tmp_path):
  path = _official(tmp_path, {
      "a": {"subset": "training", "duration": 10.0, "url": "",
            "annotations": [{"segment": [1, 2], "label": "x"}]},
      "v_b": {"subset": "validation", "duration": 20.5,
              "annotations": [{"segment": [3.5, 30.0], "label": "y"},
                              {"segment": [0, 1], "label": "x"}]},
      "c": {"subset": "testing", "duration": 5.0, "annotations": []},
  })
  gt, durations = activitynet.read_activitynet(path)
  assert list(gt) == ["a", "v_b", "c"]  # Official ids are never modified.
  assert gt["c"] == []
  val, val_durations = activitynet.read_activitynet(path, "validation")
  assert val == {"v_b": [{"segment": [3.5, 30.0], "label": "y"},
                         {"segment": [0.0, 1.0], "label": "x"}]}
  assert val_durations == {"v_b": 20.5}
  with pytest.raises(ValueError, match=r"'val'.*\['testing', 'training',"
                     r" 'validation'\]"):
    activitynet.read_activitynet(path, "val")


@pytest.mark.parametrize("video,field", [
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"segment": [0, 1]}]}, "label"),
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"label": "x"}]}, "segment"),
    ({"subset": "training", "annotations": []}, "duration"),
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"segment": [0, "1"], "label": "x"}]}, "segment"),
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"segment": [0, 1, 2], "label": "x"}]}, "segment"),
])
def test_activitynet_bad_input_names_file_video_field(tmp_path, video, field):
  path = _official(tmp_path, {"ok": {"subset": "training", "duration": 1.0,
                                     "annotations": []},
                              "bad_vid": video})
  with pytest.raises(formats.FormatError) as e:
    activitynet.read_activitynet(path)
  msg = str(e.value)
  assert path in msg and "'bad_vid'" in msg and f"field {field!r}" in msg
  assert e.value.field == field


def test_activitynet_not_an_activitynet_file(tmp_path):
  path = write(tmp_path / "x.json", json.dumps({"foo": 1}))
  with pytest.raises(formats.FormatError, match="not an ActivityNet file"):
    activitynet.read_activitynet(path)
  path = write(tmp_path / "broken.json", '{"database": {\n"a": }')
  with pytest.raises(formats.FormatError, match="line 2: invalid JSON"):
    activitynet.read_activitynet(path)


# ---------------------------------------------------------------------------
# Records (synthetic mp4s).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("fps", [SRC_FPS, 10.0, 2.0])
def test_activitynet_frames_and_segments(syn, tmp_path, fps):
  report = convert(syn, "activitynet", tmp_path, fps=fps)
  no_issues(report)
  classes = classes_of(syn)
  with open(tmp_path / "classes.txt") as f:
    assert f.read().splitlines() == classes
  with open(tmp_path / "classes.json") as f:
    assert json.load(f) == {c: i for i, c in enumerate(classes)}
  recs = read_records(tmp_path)
  train = sorted(v for v in syn.videos if v.startswith("syn_train"))
  # Video i of the sorted list goes to shard i % 2.
  assert [r["media_id"] for r in recs] == train[0::2] + train[1::2]
  for rec in recs:
    v = syn.videos[rec["media_id"]]
    n = math.floor(v.duration * fps + 1e-6)
    assert rec["n"] == n == len(rec["jpegs"])
    assert rec["spt"] == pytest.approx(1.0 / fps)
    assert rec["duration"] == pytest.approx(v.duration)
    check_frames(rec, v, fps)
    check_segments(rec, v.events, fps, n)
    assert rec["label"] == [classes.index(e.action) for e in v.events]
    assert rec["text"] == [e.action for e in v.events]
  # Stored frames are also exactly the decoded mp4 frames (JPEG tolerance).
  v = syn.videos[recs[0]["media_id"]]
  decoded = video_io.decode_video(
      os.path.join(syn.videos_dir, v.video_id + ".mp4"), fps, short_side=0)
  assert np.abs(pixels(recs[0]["jpegs"]) - decoded.frames).mean() < (
      JPEG_TOLERANCE)
