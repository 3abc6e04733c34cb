"""Tests of unloc_tf.metrics.segmentation (COIN frame accuracy, mAP, edit, F1).

Hand values in the comments.  Label -1 is background.  Real data: COIN.json
is not available (design/metrics.md §4), so ActivityNet-1.3 validation GT
segments rasterised at 1 fps stand in for real segment statistics.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from unloc_tf.metrics import segmentation as seg

DATA = os.environ.get("UNLOC_SHARED_DATA", "/work/shared/data")
B = -1


# ---------------------------------------------------------------------------
# Frame accuracy.
# ---------------------------------------------------------------------------
def test_frame_accuracy_is_micro_and_counts_background():
  # Video A: 4 frames, 3 right (two of them background); video B: 1 frame,
  # wrong.  Micro: 3 / 5 = 0.6 (a per-video mean would be (3/4 + 0)/2).
  preds = [np.array([B, 0, 1, B]), np.array([2])]
  labels = [np.array([B, 0, 0, B]), np.array([1])]
  assert seg.frame_accuracy(preds, labels) == pytest.approx(0.6)


def test_frame_accuracy_prediction_length_rules():
  # Shorter prediction: only its 2 frames are compared (both right) -> 1.
  assert seg.frame_accuracy([np.array([0, 0])], [np.array([0, 0, 1, 1])]) == 1
  # Longer prediction: an error naming the video.
  with pytest.raises(ValueError, match="video 1"):
    seg.frame_accuracy([np.array([0]), np.array([0, 0, 0])],
                       [np.array([0]), np.array([0, 0])])
  with pytest.raises(ValueError, match="no frames"):
    seg.frame_accuracy([np.array([])], [np.array([])])
  # String labels compare as strings.
  assert seg.frame_accuracy([np.array(["a", "b"])],
                            [np.array(["a", "c"])]) == 0.5


def test_frame_accuracy_multi_hot():
  # Labels rows [1,0], [0,0], [1,1].
  #   preds [0, B, 1]: label[0,0]=1 ok; background on an all-zero row ok;
  #   label[2,1]=1 ok -> 1.
  #   preds [1, 0, B]: label[0,1]=0; class on an all-zero row; background on
  #   a labelled row -> 0.
  labels = [np.array([[1, 0], [0, 0], [1, 1]])]
  assert seg.frame_accuracy([np.array([0, B, 1])], labels) == 1
  assert seg.frame_accuracy([np.array([1, 0, B])], labels) == 0
  with pytest.raises(ValueError, match="outside"):
    seg.frame_accuracy([np.array([2, 0, 0])], labels)


# ---------------------------------------------------------------------------
# Frame mAP (sklearn average_precision_score semantics).
# ---------------------------------------------------------------------------
def test_average_precision_by_hand():
  # y [0, 1, 1], s [.9, .8, .7]: (P, R) = (0, 0), (1/2, 1/2), (2/3, 1)
  # -> 1/2 * 1/2 + 1/2 * 2/3 = 7/12 (no interpolation).
  assert seg.average_precision([0, 1, 1], [0.9, 0.8, 0.7]) == pytest.approx(
      7 / 12)
  # Ties: y [1, 0, 1].  s [.6, .5, .1]: (1, 1/2), (1/2, 1/2), (2/3, 1)
  # -> 1/2 + 0 + 1/2 * 2/3 = 5/6.  s [.5, .5, .1]: the tie is one point
  # (1/2, 1/2), then (2/3, 1) -> 1/4 + 1/3 = 7/12.
  assert seg.average_precision([1, 0, 1], [0.6, 0.5, 0.1]) == pytest.approx(
      5 / 6)
  assert seg.average_precision([1, 0, 1], [0.5, 0.5, 0.1]) == pytest.approx(
      7 / 12)
  assert math.isnan(seg.average_precision([0, 0], [0.1, 0.2]))


def test_mean_average_precision_pools_frames_and_skips_absent_classes():
  # Class 0 over the pooled frames: y [0, 1 | 1], s [.9, .8 | .7] -> 7/12.
  # Class 1: positive only at frame 0 (score .3, the top) -> 1.
  # Class 2: no positive -> NaN, left out.  mAP = (7/12 + 1) / 2 = 19/24.
  scores = [np.array([[0.9, 0.3, 0.5], [0.8, 0.1, 0.5]]),
            np.array([[0.7, 0.2, 0.5]])]
  labels = [np.array([1, 0]), np.array([0])]
  assert seg.mean_average_precision(scores, labels) == pytest.approx(19 / 24)
  # The same as multi-hot; background (-1) rows are all-zero.
  multi = [np.array([[0, 1, 0], [1, 0, 0]]), np.array([[1, 0, 0]])]
  assert seg.mean_average_precision(scores, multi) == pytest.approx(19 / 24)
  # Perfect scores -> 1.
  onehot = [np.eye(3)[[0, 1, 2, 1]]]
  assert seg.mean_average_precision(onehot, [np.array([0, 1, 2, 1])]) == 1.0
  # Only background: every class NaN -> NaN.
  assert math.isnan(seg.mean_average_precision(onehot, [np.full(4, B)]))


# ---------------------------------------------------------------------------
# Edit score and F1 (MS-TCN).
# ---------------------------------------------------------------------------
def test_frame_labels_to_segments():
  assert seg.frame_labels_to_segments([B, 1, 1, B, 2, 1, 1]) == [
      (1, 1, 3), (2, 4, 5), (1, 5, 7)]
  assert seg.frame_labels_to_segments([B, 0, 0], background=None) == [
      (B, 0, 1), (0, 1, 3)]
  assert seg.frame_labels_to_segments([]) == []


def test_edit_score_by_hand():
  # Segments P = [1, 2, 3], Y = [1, 2]: 1 deletion, max length 3
  # -> (1 - 1/3) * 100 = 66.67.
  assert seg.edit_score([1, 1, 2, 2, 3], [1, 1, 2, 2, 2]) == pytest.approx(
      200 / 3)
  # Background runs are not segments: P = [1, 1] (split by background),
  # Y = [1] -> (1 - 1/2) * 100 = 50.  Counting background: P = [B,1,B,1],
  # Y = [1] -> 3 edits / 4 -> 25.
  assert seg.edit_score([B, 1, B, 1], [1, 1, 1, 1]) == 50
  assert seg.edit_score([B, 1, B, 1], [1, 1, 1, 1], background=None) == 25
  # Substitution: P = [1, 3], Y = [1, 2] -> 1 / 2 -> 50.  Same order -> 100.
  assert seg.edit_score([1, 3], [1, 2]) == 50
  assert seg.edit_score([5, 5, 7], [5, 7, 7]) == 100
  # Neither has a segment: 100 (documented; MS-TCN gives 0/0 = NaN).
  assert seg.edit_score([B, B], [B, B]) == 100
  assert seg.edit_score([B, B], [1, 1]) == 0


def test_f1_by_hand():
  # GT: class 0 at [0, 4), class 1 at [6, 10).
  # Pred: class 0 at [0, 3), class 1 at [7, 10).  Each IoU = 3 / 4 = 0.75.
  label = [0, 0, 0, 0, B, B, 1, 1, 1, 1]
  pred = [0, 0, 0, B, B, B, B, 1, 1, 1]
  assert seg.f1_at_overlaps(pred, label) == {
      "F1@10": 100.0, "F1@25": 100.0, "F1@50": 100.0}
  # IoU exactly at the overlap is a TP (>=); above it both are FP:
  # tp 0, fp 2, fn 2 -> 0.
  f1 = seg.f1_at_overlaps(pred, label, overlaps=(0.75, 0.8))
  assert f1 == {"F1@75": 100.0, "F1@80": 0.0}
  # Wrong class: IoU x [same label] = 0 -> FP.
  assert seg.f1_at_overlaps([1] * 4, [0] * 4)["F1@10"] == 0.0


def test_f1_duplicates_and_micro_average():
  # GT one segment [0, 10).  Pred [0, 4) and [6, 10), both class 0, IoU 0.4
  # each: the first is a TP at 0.1 / 0.25, the second finds its best GT
  # already matched -> FP.  tp 1, fp 1, fn 0: P 1/2, R 1 -> F1 2/3 = 66.67.
  # At 0.5 both FP: tp 0, fp 2, fn 1 -> 0.
  pred = [0, 0, 0, 0, B, B, 0, 0, 0, 0]
  label = [0] * 10
  f1 = seg.f1_at_overlaps(pred, label)
  assert f1["F1@10"] == pytest.approx(200 / 3)
  assert f1["F1@25"] == pytest.approx(200 / 3) and f1["F1@50"] == 0.0
  # Over videos tp/fp/fn are summed: video 1 perfect (2 TPs), video 2 one FP
  # and one FN: P = R = 2/3 -> F1 66.67 (a per-video mean would be 50).
  preds = [np.array([0, 0, B, 1, 1]), np.array([2, 2])]
  labels = [np.array([0, 0, B, 1, 1]), np.array([3, 3])]
  assert seg.f1_at_overlaps(preds, labels)["F1@50"] == pytest.approx(200 / 3)
  # Predicted segments in a video without GT segment: all FP (MS-TCN
  # crashes there); nothing anywhere -> 0.
  assert seg.f1_at_overlaps([1, 1], [B, B])["F1@10"] == 0.0
  assert seg.f1_at_overlaps([B, B], [B, B])["F1@10"] == 0.0


def test_evaluate_segmentation():
  # Video 1 perfect; video 2: frames [0, 0, 1] vs [0, 1, 1].
  # accuracy (3 + 2) / 6 = 5/6.
  # edit: video 1 100, video 2 segments [0, 1] vs [0, 1] -> 100.
  # F1@50, video 2: class 0 pred [0, 2) vs GT [0, 1): 1 / 2; class 1 pred
  #   [2, 3) vs GT [1, 3): 1 / 2 -> TPs at 0.5 (>=) -> 100.
  preds = [np.array([0, 1, 1]), np.array([0, 0, 1])]
  labels = [np.array([0, 1, 1]), np.array([0, 1, 1])]
  scores = [np.eye(2)[p] for p in preds]
  r = seg.evaluate_segmentation(preds, labels, scores=scores)
  assert set(r) == {"accuracy", "mAP", "edit", "F1@10", "F1@25", "F1@50"}
  assert r["accuracy"] == pytest.approx(5 / 6)
  assert r["edit"] == 100.0 and r["F1@50"] == 100.0
  # mAP, class 0: scores 1 at frames {0, 3, 4} (positives {0, 3}) -> one
  # point P 2/3, R 1 -> 2/3; class 1: scores 1 at {1, 2, 5}, positives
  # {1, 2, 4, 5}: P 1 at R 3/4, then P 4/6 at R 1 -> 3/4 + 1/4 * 2/3 = 11/12.
  assert r["mAP"] == pytest.approx((2 / 3 + 11 / 12) / 2)
  assert "mAP" not in seg.evaluate_segmentation(preds, labels)


# ---------------------------------------------------------------------------
# Real segment statistics: ActivityNet-1.3 val rasterised at 1 fps.
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def anet_frames():
  path = os.path.join(DATA, "activitynet1.3",
                      "sample_detection_prediction.json")
  if not os.path.exists(path):
    pytest.skip(f"shared data not found: {path}")
  with open(path) as f:
    results = json.load(f)["results"]
  classes = sorted({r["label"] for rs in results.values() for r in rs})
  index = {c: i for i, c in enumerate(classes)}
  videos = []
  for rs in results.values():
    n = int(math.ceil(max(r["segment"][1] for r in rs))) + 1
    frames = np.full(n, B)
    for r in rs:  # frame t covers [t, t + 1); later segments overwrite
      s, e = r["segment"]
      frames[int(math.floor(s)):int(math.ceil(e))] = index[r["label"]]
    videos.append(frames)
  return videos, len(classes)


def test_real_rasterised_anet_against_itself(anet_frames):
  videos, num_classes = anet_frames
  assert len(videos) == 4926 and num_classes == 200
  r = seg.evaluate_segmentation(videos, videos)
  assert r == {"accuracy": 1.0, "edit": 100.0, "F1@10": 100.0,
               "F1@25": 100.0, "F1@50": 100.0}
  # Truncated predictions only count their own frames: still 1.
  assert seg.frame_accuracy([v[: len(v) // 2] for v in videos], videos) == 1
  # mAP on a subset (speed): one-hot scores of the GT -> 1.
  sub = videos[:300]
  scores = [np.eye(num_classes + 1)[v][:, :num_classes] for v in sub]
  assert seg.mean_average_precision(scores, sub) == pytest.approx(1.0)


def test_real_rasterised_anet_shifted(anet_frames):
  videos, _ = anet_frames
  # Every prediction delayed by 3 frames (background enters at the start).
  shifted = [np.r_[np.full(3, B), v][: len(v)] for v in videos]
  r = seg.evaluate_segmentation(shifted, videos)
  # The accuracy is the share of frames whose label equals the label 3
  # frames earlier, counted independently here.
  same = sum(int(np.sum(p == v)) for p, v in zip(shifted, videos))
  total = sum(len(v) for v in videos)
  assert r["accuracy"] == pytest.approx(same / total)
  assert 0.5 < r["accuracy"] < 1.0
  # A shift keeps the segment sequence unless a segment is pushed out:
  # edit stays high; F1 decreases with the overlap threshold.
  assert r["edit"] > 90.0
  assert 100.0 > r["F1@10"] >= r["F1@25"] >= r["F1@50"]
