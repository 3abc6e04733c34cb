"""Tests of unloc_tf.metrics.retrieval (Recall@K,IoU=m; mIoU).

IoU = ∩ / (max(ends) - min(starts)), clipped at 0; values by hand in the
comments.  Real data: Charades-STA test and ActivityNet Captions val_1 GT
(with the 2D-TAN loader rules) scored against themselves.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from unloc_tf.metrics import retrieval as ret

DATA = os.environ.get("UNLOC_SHARED_DATA", os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
        __file__)))), "..", "shared", "data"))


def test_temporal_iou_by_hand():
  assert ret.temporal_iou((0, 10), (5, 15)) == pytest.approx(1 / 3)  # 5 / 15
  assert ret.temporal_iou((2, 4), (0, 10)) == pytest.approx(0.2)  # 2 / 10
  assert ret.temporal_iou((0, 5), (10, 20)) == 0  # ∩ clipped at 0
  assert ret.temporal_iou((0, 5), (5, 10)) == 0  # touching
  assert ret.temporal_iou((3, 7), (3, 7)) == 1
  # Identical zero-length segments: hull 0 -> 0 (documented choice).
  assert ret.temporal_iou((3, 3), (3, 3)) == 0


def test_iou_exactly_at_threshold_rules():
  # GT (0, 10); top-1 (0, 5): IoU 0.5;  (0, 7): IoU 7 / 10 = 0.7 exactly.
  # ">=" (VSLNet, UnLoc) hits at 0.5 / 0.7; ">" (2D-TAN) misses.
  for pred, m in (((0, 5), 0.5), ((0, 7), 0.7)):
    ge = ret.recall_at_k([[pred]], [(0, 10)], ks=(1,), thresholds=(m,))
    gt = ret.recall_at_k([[pred]], [(0, 10)], ks=(1,), thresholds=(m,),
                         rule=">")
    assert ge[f"R@1,IoU={m}"] == 1.0 and gt[f"R@1,IoU={m}"] == 0.0


def test_recall_at_k_by_hand():
  # q1: GT (0, 10); ranked (20, 30) [IoU 0], (0, 8) [0.8]   -> R@1 0, R@5 1
  # q2: GT (10, 20); ranked (10, 16) [0.6], ...               -> R@1 at 0.5
  # q3: GT (0, 4); no candidate                               -> miss, IoU 0
  # q4: GT (0, 10); (0, 10, 0.3) [score ignored, IoU 1]        -> hits all
  preds = [[(20, 30), (0, 8)], [(10, 16), (0, 1)], [], [(0, 10, 0.3)]]
  gts = [(0, 10), (10, 20), (0, 4), (0, 10)]
  r = ret.recall_at_k(preds, gts)
  # R@1: 0.3 -> q2, q4 = 2/4; 0.5 -> q2, q4; 0.7 -> q4 only (0.6 < 0.7).
  # R@5: adds q1 (0.8) at every threshold.
  assert r == pytest.approx({
      "R@1,IoU=0.3": 0.5, "R@1,IoU=0.5": 0.5, "R@1,IoU=0.7": 0.25,
      "R@5,IoU=0.3": 0.75, "R@5,IoU=0.5": 0.75, "R@5,IoU=0.7": 0.5,
      # top-1 IoUs 0, 0.6, 0, 1 -> 1.6 / 4
      "mIoU": 0.4})
  assert list(r) == ["R@1,IoU=0.3", "R@1,IoU=0.5", "R@1,IoU=0.7",
                     "R@5,IoU=0.3", "R@5,IoU=0.5", "R@5,IoU=0.7", "mIoU"]


def test_only_the_first_k_count():
  # The hit is at rank 3: R@2 misses, R@3 hits.
  preds = [[(50, 60), (40, 45), (0, 10)]]
  r = ret.recall_at_k(preds, [(0, 10)], ks=(2, 3), thresholds=(0.5,))
  assert r["R@2,IoU=0.5"] == 0.0 and r["R@3,IoU=0.5"] == 1.0


def test_2d_tan_nms():
  # Ranked (0, 10), (0, 9), (20, 30), (0, 5).  NMS 0.5 (true-union IoU):
  #   keep (0, 10); (0, 9): 9 / 10 = 0.9 > 0.5 dropped; (20, 30): 0 kept;
  #   (0, 5): 5 / 10 = 0.5 <= 0.5 kept (only > is suppressed).
  kept = ret.nms_2d_tan([(0, 10), (0, 9), (20, 30), (0, 5)], 0.5)
  np.testing.assert_array_equal(kept, [[0, 10], [20, 30], [0, 5]])
  np.testing.assert_array_equal(
      ret.nms_2d_tan([(0, 10), (0, 9), (20, 30), (0, 5)], 0.5, top_k=2),
      [[0, 10], [20, 30]])
  # Threshold 1.0 keeps everything; an empty list stays empty.
  assert len(ret.nms_2d_tan([(0, 10), (0, 10)], 1.0)) == 2
  assert ret.nms_2d_tan([], 0.5).shape == (0, 2)
  # In recall_at_k: GT (20, 30).  Without NMS the top 2 are (0, 10), (0, 9)
  # -> R@2 0; with NMS the top 2 are (0, 10), (20, 30) -> R@2 1.
  preds = [[(0, 10), (0, 9), (20, 30)]]
  plain = ret.recall_at_k(preds, [(20, 30)], ks=(2,), thresholds=(0.5,),
                          rule=">")
  nms = ret.recall_at_k(preds, [(20, 30)], ks=(2,), thresholds=(0.5,),
                        rule=">", nms_threshold=0.5)
  assert plain["R@2,IoU=0.5"] == 0.0 and nms["R@2,IoU=0.5"] == 1.0


def test_errors():
  with pytest.raises(ValueError, match="rule"):
    ret.recall_at_k([[(0, 1)]], [(0, 1)], rule="=>")
  with pytest.raises(ValueError, match="prediction lists"):
    ret.recall_at_k([[(0, 1)]], [(0, 1), (0, 2)])
  with pytest.raises(ValueError, match="no queries"):
    ret.recall_at_k([], [])


# ---------------------------------------------------------------------------
# Real data.
# ---------------------------------------------------------------------------
def _charades_test_gt():
  txt = os.path.join(DATA, "charades_sta", "charades_sta_test.txt")
  csv_path = os.path.join(DATA, "charades_sta", "Charades_v1_test.csv")
  if not os.path.exists(txt):
    pytest.skip(f"shared data not found: {txt}")
  with open(csv_path) as f:
    length = {r["id"]: float(r["length"]) for r in csv.DictReader(f)}
  raw, gts = [], []
  with open(txt) as f:
    for line in f:
      if not line.strip():
        continue
      vid, s, e = line.split("##")[0].split()
      raw.append((float(s), float(e)))
      # The 2D-TAN loader rule: end clipped to the video length.
      gts.append((float(s), min(float(e), length[vid])))
  return raw, gts


def test_real_charades_sta_test_against_itself():
  raw, gts = _charades_test_gt()
  assert len(gts) == 3720 and all(s < e for s, e in gts)
  assert sum(c != r for c, r in zip(gts, raw)) == 562  # clipped ends
  preds = [[g] for g in gts]
  for rule in (">=", ">"):
    r = ret.recall_at_k(preds, gts, rule=rule, nms_threshold=0.5)
    assert all(v == 1.0 for v in r.values()), (rule, r)
  # The unclipped GT as predictions: the clipped GT lies inside it, so the
  # IoU is len(clipped) / len(raw) (1 for the 3158 unclipped queries).
  ious = np.array([(c[1] - c[0]) / (r[1] - r[0]) for r, c in zip(raw, gts)])
  assert np.sum(ious < 1) == 562
  r = ret.recall_at_k([[g] for g in raw], gts, ks=(1,), thresholds=(0.9,))
  assert r["mIoU"] == pytest.approx(np.mean(ious), abs=1e-12)
  assert r["R@1,IoU=0.9"] == pytest.approx(np.mean(ious >= 0.9), abs=1e-12)
  assert r["mIoU"] < 1.0 and r["R@1,IoU=0.9"] < 1.0


def test_real_activitynet_captions_val_1_against_itself():
  path = os.path.join(DATA, "activitynet_captions", "val_1.json")
  if not os.path.exists(path):
    pytest.skip(f"shared data not found: {path}")
  with open(path) as f:
    data = json.load(f)
  gts = []
  for v in data.values():
    for s, e in v["timestamps"]:
      if s < e:  # 2D-TAN loader: keep t0 < t1, clip to [0, duration]
        gts.append((max(0.0, s), min(e, v["duration"])))
  assert len(gts) == 17505
  r = ret.recall_at_k([[g] for g in gts], gts, ks=(1, 5),
                      thresholds=(0.3, 0.5, 0.7), rule=">")
  assert all(v == 1.0 for v in r.values())
  # Shifted by its own length (disjoint, touching): every candidate misses.
  r = ret.recall_at_k([[(e, 2 * e - s)] for s, e in gts], gts)
  assert all(v == 0.0 for v in r.values())
