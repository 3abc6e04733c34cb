"""The shared planner pieces: the checks, the class list, the video lookup."""

from __future__ import annotations

import json
import os

import pytest

from tests.datasets.helpers import DATA, real_data
from unloc_tf.datasets import common
from unloc_tf.metrics import formats


def test_planner_checks_and_report_entries():
  item = common.VideoItem("v", [], common.video_names("v"))
  rec = common.RecordPlan("v")
  planner = common.Planner({"a": 0, "b": 1})
  planner.segment(item, rec, 0, 1.0, 2.0, label="b")
  planner.segment(item, rec, 1, 2.0, 2.0, label="a")
  planner.segment(item, rec, 2, 3.0, 1.0, label="a")
  planner.segment(item, rec, 3, 1.0, 2.0, label="zzz")
  planner.finish(item, rec, required=True)
  assert rec.segments == [common.SegmentPlan(0, 1.0, 2.0, 1, "b")]
  assert [i["reason"] for i in item.issues] == [
      common.SEGMENT_ZERO, common.SEGMENT_REVERSED, common.UNKNOWN_CLASS]
  assert item.issues[2] == {"reason": common.UNKNOWN_CLASS, "video_id": "v",
                            "label": "zzz", "record": "v", "segment": 3,
                            "annotation": [1.0, 2.0]}
  assert (item.num_records, item.num_segments, item.records) == (1, 4, [rec])
  # Captions: an empty one is dropped; a query record needs a segment.
  query = common.RecordPlan("v", example_id=7)
  planner = common.Planner(None)
  planner.segment(item, query, 0, 1.0, 2.0, text="")
  planner.finish(item, query, required=True)
  assert [i["reason"] for i in item.issues[3:]] == [common.EMPTY_CAPTION,
                                                    common.NO_SEGMENTS]
  assert item.issues[-1] == {"reason": common.NO_SEGMENTS, "video_id": "v",
                             "example_id": 7}
  assert item.records == [rec]
  assert common.video_names("v_x") == [("v_x", None), ("v_v_x", None),
                                       ("x", None)]


def test_video_lookup(tmp_path):
  for rel in ("a.mp4", "a.webm", "sub/v_b.mkv", "sub/deeper/c_000001_000003"
              ".avi", "notes.txt", "d.MP4"):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")
  index = common.index_videos(str(tmp_path))
  assert index["a"].endswith("a.mp4")  # .mp4 before .webm
  assert set(index) == {"a", "v_b", "c_000001_000003", "d"}
  items = [common.VideoItem("v_a", [], common.video_names("v_a")),
           common.VideoItem("b", [], common.video_names("b")),
           common.VideoItem("c_000001_000003", [],
                            [("c_000001_000003", None), ("c", (1.0, 3.0))]),
           common.VideoItem("e", [], common.video_names("e"))]
  common.locate_videos(items, index)
  assert [os.path.basename(i.path or "") for i in items] == [
      "a.mp4", "v_b.mkv", "c_000001_000003.avi", ""]
  assert items[2].window is None


# ---------------------------------------------------------------------------
# read_class_list: text, JSON list / {name: index}, ActivityNet GT.
# ---------------------------------------------------------------------------
def test_read_class_list_text(tmp_path):
  path = tmp_path / "classes.txt"
  path.write_text("# ActivityNet\nBallet\n\n  Zumba \nArm wrestling\n")
  assert common.read_class_list(str(path)) == ["Ballet", "Zumba",
                                               "Arm wrestling"]
  path.write_text("Ballet\nZumba\nBallet\n")
  with pytest.raises(ValueError, match="line 3: class 'Ballet' duplicates"
                     " line 1"):
    common.read_class_list(str(path))
  path.write_text("\n# nothing\n")
  with pytest.raises(formats.FormatError, match="classes.txt: no class names"):
    common.read_class_list(str(path))


def test_read_class_list_json(tmp_path):
  path = tmp_path / "classes.json"
  path.write_text(json.dumps(["b", "a"]))
  assert common.read_class_list(str(path)) == ["b", "a"]
  path.write_text(json.dumps({"a": 1, "b": 0}))
  assert common.read_class_list(str(path)) == ["b", "a"]
  for bad, match in [({"a": 1, "b": 2}, "indices must be 0..C-1"),
                     (["a", "b", "a"], r"duplicate names \['a'\]"),
                     ([], "no class names"),
                     (3, "expected a list of names")]:
    path.write_text(json.dumps(bad))
    with pytest.raises(formats.FormatError, match=match):
      common.read_class_list(str(path))


def test_read_class_list_activitynet(tmp_path):
  path = tmp_path / "gt.json"
  path.write_text(json.dumps({"version": "VERSION 1.3", "database": {
      "v1": {"subset": "training", "duration": 9.0,
             "annotations": [{"segment": [0, 1], "label": "Zumba"},
                             {"segment": [1, 2], "label": "Ballet"}]},
      "v2": {"subset": "validation", "duration": 9.0,
             "annotations": [{"segment": [0, 1], "label": "Zumba"}]}}}))
  assert common.read_class_list(str(path)) == ["Ballet", "Zumba"]
  path.write_text(json.dumps({"results": {"v1": []}}))
  with pytest.raises(ValueError, match="no class label found"):
    common.read_class_list(str(path))


@real_data
def test_read_class_list_real_activitynet():
  path = os.path.join(DATA, "activitynet1.3",
                      "sample_detection_prediction.json")
  names = common.read_class_list(path)
  assert len(names) == 200 and names == sorted(names)


def test_resolve_classes(tmp_path):
  assert common.resolve_classes(["b", "a", "b"], None) == ["a", "b"]
  path = tmp_path / "c.txt"
  path.write_text("z\ny\n")
  assert common.resolve_classes(["b", "a"], str(path)) == ["z", "y"]
