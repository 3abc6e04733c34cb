"""Tests of unloc_tf.metrics.qvhighlights (moment_detr standalone_eval).

Hand cases for every rule of design/metrics.md §2 (values in percent, as the
reference reports them), then the real val data: the official sample
submission must give every number of its official metrics file, and perfect
predictions the numbers stated in metrics.md.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pytest

from unloc_tf.metrics import localization
from unloc_tf.metrics import qvhighlights as qvh

DATA = os.environ.get("UNLOC_SHARED_DATA", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "..", "shared", "data"))
QVH = os.path.join(DATA, "qvhighlights")


def _gt(qid, windows, duration=150, clip_ids=(), saliency=()):
  return {"qid": qid, "duration": duration, "relevant_windows": windows,
          "relevant_clip_ids": list(clip_ids),
          "saliency_scores": [list(s) for s in saliency]}


def _mr(sub, gt, bucket="full"):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # empty buckets in tiny examples
    return qvh.eval_moment_retrieval(sub, gt)[bucket]


# ---------------------------------------------------------------------------
# Moment retrieval.
# ---------------------------------------------------------------------------
def test_thresholds_are_exact_two_decimals():
  assert qvh.MR_IOU_THRESHOLDS[8] == 0.9
  assert localization.DEFAULT_TIOU_THRESHOLDS[8] != 0.9


def test_r1_uses_the_first_listed_window_map_sorts_by_score():
  # GT [0, 10].  Listed: [0, 10] (score 0.1), [50, 60] (score 0.9).
  # R1: the first as listed hits -> 100.
  # mAP: by score [50, 60] (FP) then [0, 10] (TP): P [0, 1/2], R [0, 1]
  #   -> AP 1/2 -> 50.
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 0.1], [50, 60, 0.9]]}]
  r = _mr(sub, [_gt(1, [[0, 10]])])
  assert set(r["MR-R1"].values()) == {100.0}
  assert set(r["MR-mAP"].values()) == {50.0}


def test_map_ties_keep_input_order():
  # Equal scores keep input order (stable sort), the opposite of the
  # ActivityNet toolkit's argsort()[::-1] for two predictions:
  #   [FP, TP] -> AP 1/2;  [TP, FP] -> AP 1.
  gt = [_gt(1, [[0, 10]])]
  fp, tp = [50, 60, 0.5], [0, 10, 0.5]
  assert _mr([{"qid": 1, "pred_relevant_windows": [fp, tp]}],
             gt)["MR-mAP"]["average"] == 50.0
  assert _mr([{"qid": 1, "pred_relevant_windows": [tp, fp]}],
             gt)["MR-mAP"]["average"] == 100.0
  ap = localization.average_precision_detection(
      [{"video_id": 1, "t_start": 0, "t_end": 10}],
      [{"video_id": 1, "t_start": s, "t_end": e, "score": c}
       for s, e, c in (tp, fp)])
  np.testing.assert_allclose(ap, 0.5)  # toolkit: reversed -> 1/2


def test_only_the_first_ten_windows_count():
  # Ten wrong windows then the right one with the highest score: the cut is
  # taken BEFORE sorting, so the right one is never seen -> AP 0.
  wrong = [[20 + 10 * i, 25 + 10 * i, 0.5] for i in range(10)]
  gt = [_gt(1, [[0, 10]])]
  assert _mr([{"qid": 1, "pred_relevant_windows": wrong + [[0, 10, 1.0]]}],
             gt)["MR-mAP"]["average"] == 0.0
  # As the 10th window it counts: ranked first by score -> AP 1.
  assert _mr([{"qid": 1, "pred_relevant_windows": wrong[:9] + [[0, 10, 1.0]]}],
             gt)["MR-mAP"]["average"] == 100.0


def test_more_than_ten_gt_windows_caps_ap():
  # 12 GT windows, all 12 predicted exactly: only 10 are seen, precision 1,
  # recall 10/12 -> AP 10/12 = 83.33.
  windows = [[10 * i, 10 * i + 5] for i in range(12)]
  sub = [{"qid": 1, "pred_relevant_windows": [w + [1.0] for w in windows]}]
  r = _mr(sub, [_gt(1, windows)])
  assert r["MR-mAP"]["0.5"] == 83.33 and r["MR-mAP"]["average"] == 83.33
  assert r["MR-R1"]["0.95"] == 100.0


def test_r1_against_the_best_gt_window_and_exact_thresholds():
  # GT [0, 10], [20, 30]; first window [20, 28]: IoU 8/10 = 0.8 with the
  # second (the max) -> hits at t <= 0.8.
  r = _mr([{"qid": 1, "pred_relevant_windows": [[20, 28, 1.0]]}],
          [_gt(1, [[0, 10], [20, 30]])])["MR-R1"]
  assert [r[str(t)] for t in qvh.MR_IOU_THRESHOLDS] == [100.0] * 7 + [0.0] * 3
  # IoU exactly 0.5 (GT [0, 10], window [0, 5]): a hit at 0.5 (>=).
  r = _mr([{"qid": 1, "pred_relevant_windows": [[0, 5, 1.0]]}],
          [_gt(1, [[0, 10]])])
  assert r["MR-R1"]["0.5"] == 100.0 and r["MR-R1"]["0.55"] == 0.0
  assert r["MR-mAP"]["0.5"] == 100.0 and r["MR-mAP"]["0.55"] == 0.0
  # GT [0, 7], window [0.7, 7]: the two IoUs differ in the last bit.
  #   R1 (hull): 6.3 / (7 - 0) = 0.9 exactly -> a hit at 0.9.
  #   mAP (true union): 6.3 / (7 + 6.3 - 6.3) = 6.3 / 7.000000000000001
  #   = 0.8999999999999999 -> a miss at QVHighlights' exact 0.9 (the
  #   ActivityNet toolkit's 0.8999999999999999 threshold counts it).
  r = _mr([{"qid": 1, "pred_relevant_windows": [[0.7, 7, 1.0]]}],
          [_gt(1, [[0, 7]])])
  assert r["MR-R1"]["0.9"] == 100.0 and r["MR-R1"]["0.95"] == 0.0
  assert r["MR-mAP"]["0.85"] == 100.0 and r["MR-mAP"]["0.9"] == 0.0


def test_length_buckets_filter_gt_only_and_empty_bucket_is_nan():
  # GT windows [0, 4] (short) and [20, 60] (long); both predicted, the short
  # one with the higher score and listed first.
  #   full:  2 TPs -> AP 1; R1 first [0, 4] hits.
  #   short: GT [0, 4] only; preds unfiltered: [0, 4] TP first -> AP 1.
  #   long:  GT [20, 60] only; [0, 4] (FP) ranked first -> AP 1/2;
  #          R1: first window [0, 4] vs [20, 60] -> miss.
  #   middle: no GT window in (10, 30] -> NaN (documented; the reference
  #          crashes) and a warning.
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 4, 0.9], [20, 60, 0.8]]}]
  gt = [_gt(1, [[0, 4], [20, 60]])]
  with pytest.warns(UserWarning, match="'middle'"):
    res = qvh.evaluate_qvhighlights(sub, gt)
  assert res["full"]["MR-mAP"]["average"] == 100.0
  assert res["short"]["MR-mAP"]["average"] == 100.0
  assert res["long"]["MR-mAP"]["average"] == 50.0
  assert res["long"]["MR-R1"]["0.5"] == 0.0
  assert np.isnan(res["brief"]["MR-middle-mAP"])
  assert all(np.isnan(v) for v in res["middle"]["MR-mAP"].values())
  assert all(np.isnan(v) for v in res["middle"]["MR-R1"].values())


def test_empty_prediction_list():
  # q2 has no window: left out of mAP (mean over q1 only = 100) and an R1
  # miss (R1 = 1/2 = 50).  The reference raises IndexError in R1.
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 1.0]]},
         {"qid": 2, "pred_relevant_windows": []}]
  r = _mr(sub, [_gt(1, [[0, 10]]), _gt(2, [[0, 10]])])
  assert r["MR-mAP"]["average"] == 100.0 and r["MR-R1"]["0.5"] == 50.0


def test_map_is_a_mean_over_queries():
  # q1 AP 1, q2 AP 1/2 (FP then TP) -> 75; R1: q1 hit, q2 miss -> 50.
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 1.0]]},
         {"qid": 2, "pred_relevant_windows": [[50, 60, 0.9], [0, 10, 0.8]]}]
  r = _mr(sub, [_gt(1, [[0, 10]]), _gt(2, [[0, 10]])])
  assert r["MR-mAP"]["average"] == 75.0 and r["MR-R1"]["0.5"] == 50.0


# ---------------------------------------------------------------------------
# Highlight detection.
# ---------------------------------------------------------------------------
def test_get_ap_by_hand():
  # All-zero labels -> 0, all-one -> 1.
  assert qvh.get_ap([0, 0, 0], [0.1, 0.5, 0.2]) == 0
  assert qvh.get_ap([1, 1], [0.1, 0.5]) == 1
  # y [0, 1, 1], s [.9, .8, .7]: points (P, R) = (0, 0), (1/2, 1/2),
  # (2/3, 1).  Interpolated P at the recall levels 1/2 and 1 is 2/3 and 2/3
  # -> mean 2/3 (sklearn's average_precision_score gives 1/4 + 1/3 = 7/12).
  assert qvh.get_ap([0, 1, 1], [0.9, 0.8, 0.7]) == pytest.approx(2 / 3)
  # Ties: y [1, 0, 1].  Distinct s [.6, .5, .1]: (1, 1/2), (1/2, 1/2),
  # (2/3, 1) -> interpolated 1 at R 1/2, 2/3 at R 1 -> 5/6.
  # Tied s [.5, .5, .1]: one point for the tie, (1/2, 1/2), then (2/3, 1)
  # -> 2/3 at both levels -> 2/3.
  assert qvh.get_ap([1, 0, 1], [0.6, 0.5, 0.1]) == pytest.approx(5 / 6)
  assert qvh.get_ap([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(2 / 3)
  with pytest.raises(ValueError, match="same length"):
    qvh.get_ap([0, 1], [0.1])


def test_highlight_hit1_and_map_by_hand():
  # duration 8 -> 4 clips.  Clip 1 scored [4, 1, 0], clip 2 [2, 2, 2].
  #   Fair (>= 2):    annotator columns [0,1,1,0], [0,0,1,0], [0,0,1,0]
  #   VeryGood (>= 4): [0,1,0,0], [0,0,0,0], [0,0,0,0]
  # Prediction [0.1, 0.9, 0.9, 0.2] (3 values, padded with 0 to 4 clips
  # would not matter here, it has 4): argmax = clip 1 (first max).
  #   Hit1 Fair: max over annotators of clip 1 = 1 -> 100;
  #   Hit1 VeryGood: clip 1 -> annotator 0 -> 100.
  # HL-mAP VeryGood: annotator 0 labels [0,1,0,0], scores tied .9 at clips
  #   1, 2: one point (P 1/2, R 1) -> 1/2; annotators 1, 2 all zero -> 0.
  #   mean (1/2 + 0 + 0) / 3 = 16.67.
  gt = [_gt(1, [[2, 6]], duration=8, clip_ids=[1, 2],
            saliency=[[4, 1, 0], [2, 2, 2]])]
  sub = [{"qid": 1, "pred_saliency_scores": [0.1, 0.9, 0.9, 0.2]}]
  hl = qvh.evaluate_qvhighlights(sub, gt)
  assert hl["HL-min-Fair"]["HL-Hit1"] == 100.0
  assert hl["HL-min-VeryGood"]["HL-Hit1"] == 100.0
  assert hl["HL-min-VeryGood"]["HL-mAP"] == 16.67
  # Fair: annotator 0 labels [0,1,1,0]: the tie (.9) holds both -> P 1, R 1
  # -> 1; annotators 1, 2 labels [0,0,1,0]: the tie gives P 1/2 at R 1 ->
  # 1/2.  mean (1 + 1/2 + 1/2) / 3 = 66.67.
  assert hl["HL-min-Fair"]["HL-mAP"] == 66.67
  assert list(hl) == ["brief", "HL-min-Fair", "HL-min-Good",
                      "HL-min-VeryGood"]  # no MR without windows
  # The first max is clip 2 when it comes first: VeryGood misses.
  sub = [{"qid": 1, "pred_saliency_scores": [0.1, 0.5, 0.9, 0.9]}]
  hl = qvh.evaluate_qvhighlights(sub, gt)
  assert hl["HL-min-VeryGood"]["HL-Hit1"] == 0.0
  assert hl["HL-min-Fair"]["HL-Hit1"] == 100.0
  # Longer prediction whose max lies beyond the 4 clips: a miss; the AP cuts
  # it to 4 clips ([.1, .2, .3, .4]: clip 1 ranked 3rd for annotator 0 ->
  # P 1/3 at R 1 -> VeryGood mAP (1/3) / 3 = 11.11).
  sub = [{"qid": 1, "pred_saliency_scores": [0.1, 0.2, 0.3, 0.4, 0.9]}]
  hl = qvh.evaluate_qvhighlights(sub, gt)
  assert hl["HL-min-Fair"]["HL-Hit1"] == 0.0
  assert hl["HL-min-VeryGood"]["HL-mAP"] == 11.11
  # Shorter prediction: zero-padded ([.1, .9, 0, 0]) -> VeryGood annotator 0:
  # clip 1 first -> 1 -> 33.33.  Empty list: Hit1 miss, all-zero scores.
  sub = [{"qid": 1, "pred_saliency_scores": [0.1, 0.9]}]
  assert qvh.evaluate_qvhighlights(
      sub, gt)["HL-min-VeryGood"]["HL-mAP"] == 33.33
  sub = [{"qid": 1, "pred_saliency_scores": []}]
  hl = qvh.evaluate_qvhighlights(sub, gt)
  assert hl["HL-min-Fair"]["HL-Hit1"] == 0.0


@pytest.mark.filterwarnings("ignore:QVHighlights MR")  # empty buckets
def test_qid_checks():
  gt = [_gt(1, [[0, 10]]), _gt(2, [[0, 10]])]
  sub = [{"qid": 1, "pred_relevant_windows": [[0, 10, 1.0]]}]
  with pytest.raises(ValueError, match="must match"):
    qvh.evaluate_qvhighlights(sub, gt)
  res = qvh.evaluate_qvhighlights(sub, gt, match_number=False)
  assert res["brief"]["MR-full-R1@0.5"] == 100.0
  with pytest.raises(ValueError, match="duplicate qid"):
    qvh.evaluate_qvhighlights(sub + sub, gt, match_number=False)
  with pytest.raises(ValueError, match="empty submission"):
    qvh.evaluate_qvhighlights([], gt)


# ---------------------------------------------------------------------------
# Real data: QVHighlights val.
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def val_gt():
  path = os.path.join(QVH, "highlight_val_release.jsonl")
  if not os.path.exists(path):
    pytest.skip(f"shared data not found: {path}")
  return qvh.load_jsonl(path)


def test_real_sample_submission_reproduces_official_metrics(val_gt):
  sub = qvh.load_jsonl(os.path.join(QVH, "sample_val_preds.jsonl"))
  with open(os.path.join(QVH, "sample_val_preds_metrics_raw.json")) as f:
    expected = json.load(f)
  result = qvh.evaluate_qvhighlights(sub, val_gt)
  assert result == expected  # every number, after the 2-decimal rounding
  assert list(result) == list(expected)
  assert list(result["brief"]) == list(expected["brief"])
  # The headline numbers, spelled out.
  assert result["brief"]["MR-full-mAP"] == 32.2
  assert result["brief"]["MR-full-R1@0.5"] == 53.94
  assert result["brief"]["HL-min-VeryGood-mAP"] == 35.65
  assert result["brief"]["HL-min-VeryGood-Hit1"] == 55.55


def test_real_perfect_predictions(val_gt):
  assert len(val_gt) == 1550
  n_windows = [len(d["relevant_windows"]) for d in val_gt]
  assert sum(n > 10 for n in n_windows) == 13
  sub = []
  for d in val_gt:
    sal = qvh.gt_saliency_matrix(d)
    sub.append({
        "qid": d["qid"],
        "pred_relevant_windows": [w + [1.0] for w in d["relevant_windows"]],
        # max over annotators: its argmax is a clip with the query's top
        # score, so Hit1 at level s is the share of queries with a clip >= s.
        "pred_saliency_scores": sal.max(axis=1).tolist(),
    })
  b = qvh.evaluate_qvhighlights(sub, val_gt)["brief"]
  # metrics.md §2: R1 100; mAP 99.76 (AP = 10/n for the 13 queries with
  # n > 10 GT windows); long / middle / short 92.73 / 89.80 / 79.75.
  assert b["MR-full-R1@0.5"] == 100.0 and b["MR-full-R1@0.7"] == 100.0
  assert b["MR-full-mAP"] == 99.76
  assert round(100 * np.mean([min(1, 10 / n) for n in n_windows]), 2) == 99.76
  assert (b["MR-long-mAP"], b["MR-middle-mAP"], b["MR-short-mAP"]) == (
      92.73, 89.80, 79.75)
  for name, level in (("Fair", 2), ("Good", 3), ("VeryGood", 4)):
    share = np.mean([(qvh.gt_saliency_matrix(d) >= level).any()
                     for d in val_gt])
    assert b[f"HL-min-{name}-Hit1"] == round(100 * share, 2)
  # 1381 of the 4650 (query, annotator) pairs have no VeryGood clip (AP 0),
  # so HL-min-VeryGood-mAP <= 100 * 3269 / 4650 = 70.30.
  no_positive = sum(
      not (qvh.gt_saliency_matrix(d)[:, a] >= 4).any()
      for d in val_gt for a in range(3))
  assert no_positive == 1381
  assert b["HL-min-VeryGood-mAP"] <= 70.30
