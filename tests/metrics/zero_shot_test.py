"""Zero-shot class splits, restriction to a split and mean ± std."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from unloc_tf.datasets import activitynet
from unloc_tf.metrics import localization, zero_shot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
DATA = os.environ.get("UNLOC_SHARED_DATA",
                      os.path.join(ROOT, "..", "shared", "data"))
ANET_VAL = os.path.join(DATA, "activitynet1.3",
                        "sample_detection_prediction.json")
real_data = pytest.mark.skipif(not os.path.exists(ANET_VAL),
                               reason=f"{ANET_VAL} not found")

CLASSES = [f"class {i:03d}" for i in range(200)]


@pytest.mark.parametrize("fraction,seen", [(0.75, 150), (0.5, 100)])
def test_splits_sizes_disjoint_covering(fraction, seen):
  splits = zero_shot.make_splits(CLASSES, seen_fraction=fraction)
  assert len(splits) == 10
  for i, s in enumerate(splits):
    assert s["split"] == i
    assert (len(s["seen"]), len(s["unseen"])) == (seen, 200 - seen)
    assert not set(s["seen"]) & set(s["unseen"])
    assert set(s["seen"]) | set(s["unseen"]) == set(CLASSES)
    assert s["seen_indices"] == sorted(s["seen_indices"])
    assert s["seen"] == [CLASSES[j] for j in s["seen_indices"]]
    assert s["unseen"] == [CLASSES[j] for j in s["unseen_indices"]]
  # Ten different random splits.
  assert len({tuple(s["unseen_indices"]) for s in splits}) == 10


def test_splits_deterministic_in_seed():
  a = zero_shot.make_splits(CLASSES, 0.75, num_splits=3, seed=5)
  assert a == zero_shot.make_splits(CLASSES, 0.75, num_splits=3, seed=5)
  assert a != zero_shot.make_splits(CLASSES, 0.75, num_splits=3, seed=6)
  # The first splits do not depend on how many are drawn.
  assert a[:2] == zero_shot.make_splits(CLASSES, 0.75, num_splits=2, seed=5)
  # Every class is unseen in some split (the draws are not stuck).
  many = zero_shot.make_splits(CLASSES, 0.75, num_splits=40, seed=0)
  assert set().union(*(s["unseen"] for s in many)) == set(CLASSES)


def test_num_seen_classes_rounding_and_errors():
  assert zero_shot.num_seen_classes(200, 0.75) == 150
  assert zero_shot.num_seen_classes(5, 0.5) == 3  # Halves round up.
  assert zero_shot.num_seen_classes(3, 0.75) == 2
  assert zero_shot.num_seen_classes(2, 0.01) == 1  # At least one each.
  assert zero_shot.num_seen_classes(2, 0.99) == 1
  with pytest.raises(ValueError, match="seen_fraction"):
    zero_shot.make_splits(CLASSES, seen_fraction=1.0)
  with pytest.raises(ValueError, match="at least 2 classes"):
    zero_shot.make_splits(["a"])
  with pytest.raises(ValueError, match=r"duplicate class names: \['b'\]"):
    zero_shot.make_splits(["a", "b", "b"])
  with pytest.raises(ValueError, match="num_splits"):
    zero_shot.make_splits(CLASSES, num_splits=0)


def test_aggregate_by_hand():
  per_split = [
      {"mAP@0.5": 0.40, "mAP": [0.4, 0.2], "n": 3, "nested": {"x": 1.0}},
      {"mAP@0.5": 0.50, "mAP": [0.6, 0.2], "n": 5, "nested": {"x": 2.0}},
      {"mAP@0.5": 0.30, "mAP": [0.5, 0.2], "n": 4, "nested": {"x": 6.0}},
  ]
  agg = zero_shot.aggregate(per_split)
  assert agg["mAP@0.5"]["mean"] == pytest.approx(0.4)
  # Population std: sqrt(((0.0)^2 + 0.1^2 + 0.1^2) / 3).
  assert agg["mAP@0.5"]["std"] == pytest.approx(math.sqrt(0.02 / 3))
  assert agg["mAP@0.5"]["values"] == [0.4, 0.5, 0.3]
  assert agg["mAP"]["mean"] == pytest.approx([0.5, 0.2])
  assert agg["mAP"]["std"] == pytest.approx([math.sqrt(0.02 / 3), 0.0])
  assert agg["n"] == {"mean": 4.0, "std": pytest.approx(math.sqrt(2 / 3)),
                      "values": [3.0, 5.0, 4.0]}
  assert agg["nested"]["x"]["mean"] == pytest.approx(3.0)
  assert agg["nested"]["x"]["std"] == pytest.approx(math.sqrt(14 / 3))
  sample = zero_shot.aggregate(per_split, ddof=1)
  assert sample["mAP@0.5"]["std"] == pytest.approx(0.1)
  assert math.isnan(zero_shot.aggregate(per_split[:1], ddof=1)["n"]["std"])
  assert zero_shot.format_mean_std(agg, scale=100) == {
      "mAP@0.5": "40.0 ± 8.2", "n": "400.0 ± 81.6", "nested.x": "300.0 ± 216.0"}
  only = zero_shot.aggregate(per_split, keys=["n"])
  assert list(only) == ["n"]


@pytest.mark.parametrize("metrics,match", [
    ([{"a": 1.0}, {"b": 1.0}], "split 1: metrics: keys"),
    ([{"a": 1.0}, {"a": "x"}], "split 1: a: expected a number"),
    ([{"a": [1.0]}, {"a": [1.0, 2.0]}], "split 1: a: shape"),
    ([{"a": {"b": 1.0}}, {"a": {"c": 1.0}}], "split 1: a: keys"),
    ([{"a": True}], "split 0: a: expected a number"),
    ([], "at least one split"),
])
def test_aggregate_errors(metrics, match):
  with pytest.raises(ValueError, match=match):
    zero_shot.aggregate(metrics)


def test_restrict_ground_truth():
  gt = {"v1": [{"segment": [0, 1], "label": "a"},
               {"segment": [2, 3], "label": "b"}],
        "v2": [{"segment": [0, 1], "label": "b"}],
        "v3": [{"segment": [0, 1], "label": "c", "score": 0.5}]}
  assert zero_shot.restrict_ground_truth(gt, ["a", "c"]) == {
      "v1": [{"segment": [0, 1], "label": "a"}],
      "v3": [{"segment": [0, 1], "label": "c", "score": 0.5}]}
  assert zero_shot.restrict_ground_truth(gt, {"a"},
                                         keep_empty_videos=True) == {
      "v1": [{"segment": [0, 1], "label": "a"}], "v2": [], "v3": []}
  out = zero_shot.restrict_ground_truth(gt, ["b"])
  out["v2"][0]["label"] = "changed"
  assert gt["v2"][0]["label"] == "b"  # A copy.


@real_data
def test_zero_shot_evaluation_on_activitynet_val():
  """A split of the real val GT; perfect unseen predictions score mAP 1."""
  gt, _ = activitynet.read_activitynet(ANET_VAL)
  names = activitynet.activitynet_class_names(gt)
  splits = zero_shot.make_splits(names, 0.75, num_splits=2)
  total = sum(len(v) for v in gt.values())
  results = []
  for s in splits[:2]:
    unseen = zero_shot.restrict_ground_truth(gt, s["unseen"])
    seen = zero_shot.restrict_ground_truth(gt, s["seen"])
    assert (sum(len(v) for v in unseen.values())
            + sum(len(v) for v in seen.values())) == total
    assert {a["label"] for v in unseen.values() for a in v} == set(
        s["unseen"])
    # Predictions: the unseen GT with score 1, plus seen-class predictions
    # restricted away as the protocol requires.
    preds = {v: [{**a, "score": 1.0} for a in anns] for v, anns in gt.items()}
    preds = zero_shot.restrict_ground_truth(preds, s["unseen"])
    r = localization.evaluate_detection(unseen, preds, tiou_thresholds=[0.5])
    assert len(r["classes"]) == 50
    results.append({"mAP@0.5": float(r["mAP"][0])})
  agg = zero_shot.aggregate(results)
  assert agg["mAP@0.5"]["mean"] == pytest.approx(1.0)
  assert agg["mAP@0.5"]["std"] == pytest.approx(0.0)


def _run_tool(*args):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "make_zero_shot_splits.py"),
       *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_make_zero_shot_splits_tool(tmp_path):
  classes = tmp_path / "classes.txt"
  classes.write_text("".join(f"{c}\n" for c in CLASSES[:20]))
  out = tmp_path / "out" / "splits.json"
  r = _run_tool(f"--class_list={classes}", "--seen_fraction=0.5",
                "--num_splits=4", "--seed=3", f"--output={out}")
  assert r.returncode == 0, r.stderr
  assert "10 seen / 10 unseen" in r.stdout
  data = json.loads(out.read_text())
  assert data["class_names"] == CLASSES[:20]
  assert (data["seen_fraction"], data["num_splits"], data["seed"]) == (0.5, 4,
                                                                       3)
  assert data["splits"] == zero_shot.make_splits(CLASSES[:20], 0.5, 4, 3)
  classes.write_text("a\nb\na\n")
  r = _run_tool(f"--class_list={classes}", f"--output={out}")
  assert r.returncode != 0
  assert "line 3: class 'a' duplicates line 1" in r.stderr


@real_data
def test_make_zero_shot_splits_tool_on_activitynet_json(tmp_path):
  out = tmp_path / "anet.json"
  r = _run_tool(f"--class_list={ANET_VAL}", f"--output={out}")
  assert r.returncode == 0, r.stderr
  data = json.loads(out.read_text())
  assert len(data["class_names"]) == 200
  assert [len(s["unseen"]) for s in data["splits"]] == [50] * 10
  assert np.all(np.diff(
      [data["class_names"].index(c) for c in data["splits"][0]["seen"]]) > 0)


def test_evaluate_splits_by_hand():
  """Two splits of 4 classes; split 0's model is perfect on its unseen
  classes, split 1's finds one of its two unseen-class segments."""
  gt = {"v1": [{"segment": [0, 10], "label": "a"},
               {"segment": [20, 30], "label": "b"}],
        "v2": [{"segment": [5, 15], "label": "c"},
               {"segment": [40, 50], "label": "d"}]}
  splits = [{"seen": ["c", "d"], "unseen": ["a", "b"]},
            {"seen": ["a", "b"], "unseen": ["c", "d"]}]
  perfect = {v: [dict(a, score=1.0) for a in anns] for v, anns in gt.items()}
  half = {"v2": [{"segment": [5, 15], "label": "c", "score": 0.9},
                 {"segment": [0, 3], "label": "d", "score": 0.8}],
          "v1": [{"segment": [0, 10], "label": "a", "score": 0.9}]}
  out = zero_shot.evaluate_splits(gt, [perfect, half], splits)
  # Split 0: both unseen classes AP 1 -> mAP 1 at every threshold.
  assert out["per_split"][0]["average_mAP"] == pytest.approx(1.0)
  # Split 1: class c AP 1, class d AP 0 (its only prediction misses);
  # the 'a' prediction is outside the split and is dropped -> mAP 0.5.
  assert out["per_split"][1]["average_mAP"] == pytest.approx(0.5)
  agg = out["aggregate"]["average_mAP"]
  assert agg["mean"] == pytest.approx(0.75)
  assert agg["std"] == pytest.approx(0.25)  # population std of {1, 0.5}
  with pytest.raises(ValueError, match="prediction sets"):
    zero_shot.evaluate_splits(gt, [perfect], splits)


def test_evaluate_zero_shot_tool(tmp_path):
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  gt = {"version": "VERSION 1.3", "database": {
      "v1": {"subset": "validation", "duration": 60.0, "annotations": [
          {"segment": [0, 10], "label": "a"},
          {"segment": [20, 30], "label": "b"}]}}}
  (tmp_path / "gt.json").write_text(json.dumps(gt))
  (tmp_path / "splits.json").write_text(json.dumps({"splits": [
      {"seen": ["b"], "unseen": ["a"]}, {"seen": ["a"], "unseen": ["b"]}]}))
  for i, label in enumerate(["a", "b"]):
    seg = [0, 10] if label == "a" else [50, 55]
    (tmp_path / f"p{i}.json").write_text(json.dumps({"results": {"v1": [
        {"segment": seg, "label": label, "score": 0.9}]}}))
  out = subprocess.run(
      [sys.executable, os.path.join(root, "tools", "evaluate_zero_shot.py"),
       f"--ground_truth={tmp_path / 'gt.json'}",
       f"--splits={tmp_path / 'splits.json'}",
       f"--predictions={tmp_path}/p{{split}}.json",
       f"--output={tmp_path / 'm.json'}"],
      capture_output=True, text=True, check=True)
  assert "average_mAP: 50.0 ± 50.0" in out.stdout
  assert json.loads((tmp_path / "m.json").read_text())["aggregate"]
