"""Tests of unloc_tf.metrics.localization (ActivityNet detection mAP).

Expected values are computed by hand in the comments.  Reminders:

  tIoU(p, g) = |∩| / (len_p + len_g - |∩|);
  AP = VOC2011 all-point AP: (0, 0) before, (recall 1, precision 0) after,
       precision made monotone from the right, sum of Δrecall × precision.

Real data: the ActivityNet-1.3 validation GT (`sample_detection_prediction
.json`, see shared/data/SOURCES.md) scored against itself, and BSN's copy of
the validation annotations (4,728 of the 4,926 videos) scored against it.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings

import numpy as np
import pytest

from unloc_tf.metrics import localization as loc

DATA = os.environ.get("UNLOC_SHARED_DATA", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "..", "shared", "data"))
ANET = os.path.join(DATA, "activitynet1.3")
T = loc.DEFAULT_TIOU_THRESHOLDS


def _gt(*rows):
  return [{"video_id": v, "t_start": s, "t_end": e} for v, s, e in rows]


def _pred(*rows):
  return [{"video_id": v, "t_start": s, "t_end": e, "score": c}
          for v, s, e, c in rows]


# ---------------------------------------------------------------------------
# segment_iou and interpolated AP.
# ---------------------------------------------------------------------------
def test_segment_iou_by_hand():
  # target [0, 10]:
  #   [5, 15]: ∩ 5, union 10 + 10 - 5 = 15 -> 1/3
  #   [10, 20]: touching, ∩ 0 -> 0
  #   [0, 10]: identical -> 1
  #   [2, 4]: ∩ 2, union 2 + 10 - 2 = 10 -> 0.2
  #   [30, 40]: ∩ clipped at 0 -> 0
  iou = loc.segment_iou([0, 10], [[5, 15], [10, 20], [0, 10], [2, 4],
                                  [30, 40]])
  np.testing.assert_allclose(iou, [1 / 3, 0, 1, 0.2, 0], rtol=1e-12)


def test_segment_iou_zero_length():
  # [3, 3] vs [3, 3]: 0 / (0 + 0 - 0) = NaN (the toolkit's value);
  # [3, 3] vs [0, 10]: ∩ 0, union 10 -> 0.
  iou = loc.segment_iou([3, 3], [[3, 3], [0, 10]])
  assert math.isnan(iou[0]) and iou[1] == 0


def test_interpolated_average_precision_by_hand():
  # precision [1, 1/2, 2/3], recall [1/2, 1/2, 1]
  # mprec [0, 1, 1/2, 2/3, 0] -> monotone from the right [1, 1, 2/3, 2/3, 0]
  # mrec  [0, 1/2, 1/2, 1, 1]: changes at 1 (0 -> 1/2) and 3 (1/2 -> 1)
  # AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
  ap = loc.interpolated_average_precision([1, 0.5, 2 / 3], [0.5, 0.5, 1])
  assert ap == pytest.approx(5 / 6, abs=1e-12)
  # Recall never reaching 1 gets nothing for the rest: P 1 at R 1/4 -> 1/4.
  assert loc.interpolated_average_precision([1.0], [0.25]) == 0.25


# ---------------------------------------------------------------------------
# average_precision_detection: the toolkit's rules.
# ---------------------------------------------------------------------------
def test_duplicate_detection_is_a_false_positive():
  # GT g1 [0, 10], g2 [20, 30].  Ranked: p1 = g1 (TP), p2 [0, 9] (tIoU 0.9
  # with g1, which is locked; 0 with g2 -> FP), p3 = g2 (TP).
  # tp [1, 0, 1], fp [0, 1, 0]: P [1, 1/2, 2/3], R [1/2, 1/2, 1] -> AP 5/6
  # at every threshold (p2 is an FP at all of them).
  ap = loc.average_precision_detection(
      _gt(("v", 0, 10), ("v", 20, 30)),
      _pred(("v", 0, 10, 0.9), ("v", 0, 9, 0.8), ("v", 20, 30, 0.7)))
  np.testing.assert_allclose(ap, np.full(10, 5 / 6), atol=1e-12)


def test_locked_gt_is_skipped_for_the_next_best():
  # g1 [0, 10], g2 [2, 12].
  # p1 [2, 11] (0.9): tIoU g1 = 8 / (9 + 10 - 8) = 8/11, g2 = 9 / 10 = 0.9
  #   -> takes g2 whenever 0.9 >= t, else FP (0.9 is the best).
  # p2 [2, 12] (0.8): tIoU g2 = 1, g1 = 8 / 12 = 2/3.
  # t <= 0.65: p1 -> g2, p2 skips locked g2, takes g1 (2/3 >= t): AP 1.
  # 0.7 .. 0.8999...: p1 -> g2; p2: g2 locked, g1 2/3 < t -> FP.
  #   P [1, 1/2], R [1/2, 1/2] -> AP 1/2.
  # 0.95: p1 FP (0.9 < 0.95); p2 -> g2 TP.  P [0, 1/2], R [0, 1/2]
  #   mprec [0, 0, 1/2, 0] -> [1/2, 1/2, 1/2, 0]; mrec [0, 0, 1/2, 1]
  #   AP = 1/2 * 1/2 = 1/4.
  ap = loc.average_precision_detection(
      _gt(("v", 0, 10), ("v", 2, 12)),
      _pred(("v", 2, 11, 0.9), ("v", 2, 12, 0.8)))
  np.testing.assert_allclose(
      ap, [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.5, 0.25], atol=1e-12)


def test_ties_follow_the_toolkit_argsort():
  # g [0, 10]; A = g (TP), B [50, 60] (FP), equal scores.  argsort()[::-1]
  # of two equal scores ranks the SECOND input first:
  #   input [A, B] -> B, A: P [0, 1/2], R [0, 1] -> AP 1 * 1/2 = 1/2
  #   input [B, A] -> A, B: P [1, 1/2], R [1, 1] -> AP 1
  a, b = ("v", 0, 10, 0.5), ("v", 50, 60, 0.5)
  gt = _gt(("v", 0, 10))
  np.testing.assert_allclose(
      loc.average_precision_detection(gt, _pred(a, b)), 0.5, atol=1e-12)
  np.testing.assert_allclose(
      loc.average_precision_detection(gt, _pred(b, a)), 1.0, atol=1e-12)
  # "reverse_input" is the same rule, deterministic; "input" (moment_detr's
  # stable sort) is the opposite.
  np.testing.assert_allclose(loc.average_precision_detection(
      gt, _pred(a, b), tie_order="reverse_input"), 0.5, atol=1e-12)
  np.testing.assert_allclose(loc.average_precision_detection(
      gt, _pred(a, b), tie_order="input"), 1.0, atol=1e-12)
  np.testing.assert_allclose(loc.average_precision_detection(
      gt, _pred(b, a), tie_order="input"), 0.5, atol=1e-12)
  with pytest.raises(ValueError, match="tie_order"):
    loc.average_precision_detection(gt, _pred(a), tie_order="random")


def test_tiou_exactly_at_threshold_is_a_match():
  # g [0, 10], p [0, 5]: tIoU 5 / 10 = 0.5 -> TP at 0.5 (>=), FP above.
  ap = loc.average_precision_detection(_gt(("v", 0, 10)),
                                       _pred(("v", 0, 5, 1.0)))
  np.testing.assert_array_equal(ap, [1] + [0] * 9)


def test_threshold_eight_is_0_8999999999999999():
  assert T[8] == 0.8999999999999999 and T[8] != 0.9
  # g [0, 7], p [0.7, 7]: ∩ 6.3, union 7 + 6.3 - 6.3 = 7.000000000000001 in
  # floating point -> 0.8999999999999999 (not 0.9): a TP at T[8], which an
  # exact 0.9 threshold misses.
  assert loc.segment_iou([0.7, 7], [[0, 7]])[0] == 0.8999999999999999
  gt, pred = _gt(("v", 0, 7)), _pred(("v", 0.7, 7, 1.0))
  np.testing.assert_array_equal(loc.average_precision_detection(gt, pred),
                                [1] * 9 + [0])
  np.testing.assert_array_equal(
      loc.average_precision_detection(gt, pred, tiou_thresholds=[0.9]), [0])


def test_zero_length_segments_nan_tiou_is_a_match():
  # g [5, 5], p [5, 5]: tIoU 0/0 = NaN, never < t -> TP at every threshold.
  np.testing.assert_array_equal(loc.average_precision_detection(
      _gt(("v", 5, 5)), _pred(("v", 5, 5, 1.0))), np.ones(10))
  # A zero-length prediction inside a real GT: tIoU 0 -> FP.
  np.testing.assert_array_equal(loc.average_precision_detection(
      _gt(("v", 0, 10)), _pred(("v", 5, 5, 1.0))), np.zeros(10))


def test_prediction_on_another_video_is_a_false_positive():
  # Same segment on video "w" (no GT there) ranked first: FP, then TP:
  # P [0, 1/2], R [0, 1] -> AP 1/2.
  ap = loc.average_precision_detection(
      _gt(("v", 0, 10)), _pred(("w", 0, 10, 0.9), ("v", 0, 10, 0.8)))
  np.testing.assert_allclose(ap, 0.5, atol=1e-12)


def test_empty_predictions_and_empty_gt():
  # No predictions -> AP 0 (the toolkit's first check), even without GT.
  np.testing.assert_array_equal(
      loc.average_precision_detection(_gt(("v", 0, 10)), []), np.zeros(10))
  np.testing.assert_array_equal(
      loc.average_precision_detection([], []), np.zeros(10))
  # Predictions but no GT: npos = 0, documented as NaN.
  assert np.isnan(loc.average_precision_detection(
      [], _pred(("v", 0, 1, 1.0)))).all()


def test_recall_below_one_caps_ap():
  # Two GTs, one found: P [1], R [1/2] -> AP 1/2.
  ap = loc.average_precision_detection(
      _gt(("v", 0, 10), ("v", 20, 30)), _pred(("v", 0, 10, 1.0)))
  np.testing.assert_allclose(ap, 0.5, atol=1e-12)


# ---------------------------------------------------------------------------
# evaluate_detection: classes, unknown labels, videos without GT.
# ---------------------------------------------------------------------------
def _seg(s, e, label, score=None):
  d = {"segment": [s, e], "label": label}
  if score is not None:
    d["score"] = score
  return d


GT = {"v1": [_seg(0, 10, "jump"), _seg(20, 30, "run")],
      "v2": [_seg(5, 15, "jump")]}


def test_evaluate_detection_classes_and_means():
  # jump: GT v1 [0, 10], v2 [5, 15]; predictions v1 [0, 10] (TP), v2 [5, 10]
  #   (tIoU 5 / 10 = 0.5: TP at 0.5 only) -> AP 1 at 0.5, else P [1, 1/2],
  #   R [1/2, 1/2] -> 1/2.
  # run: GT v1 [20, 30], no prediction -> AP 0 (and a warning).
  preds = {"v1": [_seg(0, 10, "jump", 0.9)], "v2": [_seg(5, 10, "jump", 0.8)]}
  with pytest.warns(UserWarning, match="no predictions for 1 class"):
    res = loc.evaluate_detection(GT, preds)
  assert res["classes"] == ["jump", "run"]  # first appearance in the GT
  assert res["ap_per_class"].shape == (2, 10)
  np.testing.assert_allclose(res["ap_per_class"][0], [1] + [0.5] * 9,
                             atol=1e-12)
  np.testing.assert_array_equal(res["ap_per_class"][1], np.zeros(10))
  # mAP = mean over the 2 classes: [1/2, 1/4, ...]; average = (0.5 + 9/4)/10
  np.testing.assert_allclose(res["mAP"], [0.5] + [0.25] * 9, atol=1e-12)
  assert res["average_mAP"] == pytest.approx(0.275, abs=1e-12)
  np.testing.assert_array_equal(res["tiou_thresholds"], T)


def test_evaluate_detection_unknown_label():
  preds = {"v1": [_seg(0, 10, "jump", 0.9), _seg(0, 10, "swim", 0.9)],
           "v2": [_seg(5, 15, "jump", 0.9)]}
  with pytest.raises(KeyError, match="'swim'.*ignore_unknown_labels"):
    loc.evaluate_detection(GT, preds)
  with pytest.warns(UserWarning):  # "run" has no prediction
    res = loc.evaluate_detection(GT, preds, ignore_unknown_labels=True)
  np.testing.assert_allclose(res["ap_per_class"][0], np.ones(10))


def test_evaluate_detection_videos_without_gt():
  # A "jump" prediction on v9 (not in the GT) ranked first is an FP:
  # jump P [0, 1/2, 2/3], R [0, 1/2, 1] -> mprec [0,0,1/2,2/3,0] monotone
  # [2/3, 2/3, 2/3, 2/3, 0]; Δrecall 1/2 at 2 and 1/2 at 3 -> AP 2/3.
  # Filtered to the GT videos it is dropped -> AP 1.
  preds = {"v9": [_seg(0, 10, "jump", 1.0)],
           "v1": [_seg(0, 10, "jump", 0.9), _seg(20, 30, "run", 0.9)],
           "v2": [_seg(5, 15, "jump", 0.8)]}
  res = loc.evaluate_detection(GT, preds)
  np.testing.assert_allclose(res["ap_per_class"][0], 2 / 3, atol=1e-12)
  res = loc.evaluate_detection(GT, preds, filter_to_ground_truth_videos=True)
  np.testing.assert_allclose(res["mAP"], 1.0, atol=1e-12)


def test_evaluate_detection_explicit_classes():
  # "swim" has no GT: AP NaN, left out of the mean (nanmean).
  preds = {"v1": [_seg(0, 10, "jump", 0.9), _seg(20, 30, "run", 0.9)],
           "v2": [_seg(5, 15, "jump", 0.9)]}
  res = loc.evaluate_detection(GT, preds, classes=["run", "jump", "swim"])
  assert res["classes"] == ["run", "jump", "swim"]
  assert np.isnan(res["ap_per_class"][2]).all()
  np.testing.assert_allclose(res["mAP"], 1.0, atol=1e-12)
  with pytest.raises(ValueError, match="no classes"):
    loc.evaluate_detection({}, {})


# ---------------------------------------------------------------------------
# Real data: ActivityNet-1.3 validation.
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def anet_val():
  path = os.path.join(ANET, "sample_detection_prediction.json")
  if not os.path.exists(path):
    pytest.skip(f"shared data not found: {path}")
  with open(path) as f:
    results = json.load(f)["results"]
  gt = {v: [{"segment": r["segment"], "label": r["label"]} for r in rs]
        for v, rs in results.items()}
  return gt, results


def test_real_anet_val_against_itself_is_perfect(anet_val):
  gt, preds = anet_val
  assert len(gt) == 4926 and sum(len(v) for v in gt.values()) == 7654
  # The three zero-length GT segments: their self tIoU is NaN (0/0), which
  # must count as a match for the mAP to be 1 at every threshold.
  zero = [(v, a["segment"]) for v, anns in gt.items() for a in anns
          if a["segment"][0] == a["segment"][1]]
  assert sorted(v for v, _ in zero) == ["6kgJx6ahgq0", "QhiKgeJV3k0",
                                        "e6J_ygZ779A"]
  for _, seg in zero:
    assert np.isnan(loc.segment_iou(seg, [seg])[0])
  res = loc.evaluate_detection(gt, preds)
  assert len(res["classes"]) == 200
  np.testing.assert_allclose(res["mAP"], np.ones(10), atol=1e-12)
  assert res["average_mAP"] == pytest.approx(1.0, abs=1e-12)


def test_real_anet_predictions_on_other_videos(anet_val):
  gt, preds = anet_val
  # The same segments on renamed videos: every one an FP -> mAP 0; filtered
  # to the GT videos nothing is left -> AP 0 and a warning per class list.
  moved = {"x_" + v: rs for v, rs in preds.items()}
  res = loc.evaluate_detection(gt, moved)
  np.testing.assert_array_equal(res["mAP"], np.zeros(10))
  with pytest.warns(UserWarning, match="200 class"):
    res = loc.evaluate_detection(gt, moved, filter_to_ground_truth_videos=True)
  np.testing.assert_array_equal(res["mAP"], np.zeros(10))


def test_real_bsn_annotations_recall_bound(anet_val):
  """BSN's validation annotations (198 videos fewer) as predictions.

  Every BSN segment equals a GT segment (SOURCES.md), so every prediction is
  a TP, precision stays 1 and each class's AP is its recall: (GT segments of
  the class in BSN's videos) / (all its GT segments), at every threshold.
  """
  gt, _ = anet_val
  anno = os.path.join(ANET, "bsn_anet_anno_action.json")
  info = os.path.join(ANET, "bsn_video_info_new.csv")
  with open(anno) as f:
    bsn = json.load(f)
  with open(info) as f:
    val = {r["video"][2:] for r in csv.DictReader(f)
           if r["subset"] == "validation"}
  assert len(val) == 4728 and val <= set(gt)
  preds = {v: [dict(a, score=1.0) for a in bsn["v_" + v]["annotations"]]
           for v in val}
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # every class still has predictions
    res = loc.evaluate_detection(gt, preds)
  total, found = {}, {}
  for v, anns in gt.items():
    for a in anns:
      total[a["label"]] = total.get(a["label"], 0) + 1
      found[a["label"]] = found.get(a["label"], 0) + (v in val)
  expected = np.mean([found[c] / total[c] for c in res["classes"]])
  assert expected < 0.99
  np.testing.assert_allclose(res["mAP"], np.full(10, expected), atol=1e-12)
