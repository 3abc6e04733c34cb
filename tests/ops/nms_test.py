"""Tests of unloc_tf.ops.nms (TF Soft-NMS semantics, reference_spec.md §5.3).

Hand case used throughout (seconds):

  A = [0, 10]  score 0.9
  B = [2, 10]  score 0.8   IoU(A, B) = 8/10,  IoU(B, C) = 5/13
  C = [5, 15]  score 0.6   IoU(A, C) = 5/15

Soft-NMS with sigma 0.3 multiplies by w(iou) = exp(-0.5 * iou**2 / 0.3):
A is taken (0.9); then C (0.6 * w(1/3) = 0.4986 > B's 0.8 * w(0.8) =
0.2753); then B, decayed once more by C: 0.8 * w(0.8) * w(5/13) = 0.2152.
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from unloc_tf.ops import nms
from unloc_tf.ops import segments as seg

SEGS = np.array([[0.0, 10.0], [2.0, 10.0], [5.0, 15.0]], np.float32)
SCORES = np.array([0.9, 0.8, 0.6], np.float32)


def w(iou, sigma=0.3):
  return math.exp(-0.5 * iou * iou / sigma)


def test_soft_nms_decay_by_hand():
  segs, scores, idx, num = nms.soft_nms_1d(SEGS, SCORES, max_detections=5)
  assert int(num) == 3
  np.testing.assert_array_equal(idx.numpy(), [0, 2, 1, -1, -1])
  expected = [0.9, 0.6 * w(1 / 3), 0.8 * w(0.8) * w(5 / 13), 0.0, 0.0]
  np.testing.assert_allclose(scores.numpy(), expected, rtol=1e-5)
  np.testing.assert_array_equal(
      segs.numpy(), [[0, 10], [5, 15], [2, 10], [0, 0], [0, 0]])


def test_decay_uses_the_temporal_iou():
  iou = seg.temporal_iou(SEGS[0], SEGS[1]).numpy()
  np.testing.assert_allclose(iou, 0.8, rtol=1e-6)
  _, scores, _, _ = nms.soft_nms_1d(SEGS[:2], SCORES[:2], 2, soft_nms_sigma=0.5)
  np.testing.assert_allclose(scores.numpy(), [0.9, 0.8 * w(iou, 0.5)],
                             rtol=1e-5)


def test_hard_nms_when_sigma_is_zero():
  _, scores, idx, num = nms.soft_nms_1d(SEGS, SCORES, 5, soft_nms_sigma=0.0)
  # B (IoU 0.8 > 0.5) is removed; C (IoU 1/3) keeps its undecayed score.
  assert int(num) == 2
  np.testing.assert_array_equal(idx.numpy()[:3], [0, 2, -1])
  np.testing.assert_allclose(scores.numpy()[:2], [0.9, 0.6])
  _, _, idx, num = nms.soft_nms_1d(SEGS, SCORES, 5, iou_threshold=0.3,
                                   soft_nms_sigma=0.0)
  assert int(num) == 1 and idx.numpy()[0] == 0


def test_score_threshold_drops_up_front_and_after_decay():
  segs = np.array([[0, 10], [0, 10], [20, 30], [40, 50]], np.float32)
  # [1] is a copy of A: 0.0025 * w(1) = 0.00047 <= 0.001 -> removed;
  # [2] has score == threshold -> dropped (the kernel keeps score > thr);
  # [3] is above the threshold and overlaps nothing -> kept.
  scores = np.array([0.9, 0.0025, 0.001, 0.0011], np.float32)
  _, out, idx, num = nms.soft_nms_1d(segs, scores, 4)
  assert int(num) == 2
  np.testing.assert_array_equal(idx.numpy(), [0, 3, -1, -1])
  np.testing.assert_allclose(out.numpy(), [0.9, 0.0011, 0, 0])
  # Without a threshold the copy survives with its decayed score.
  _, out, idx, num = nms.soft_nms_1d(segs, scores, 4,
                                     score_threshold=float("-inf"))
  assert int(num) == 4
  np.testing.assert_allclose(out.numpy()[-1], 0.0025 * w(1.0), rtol=1e-5)


def test_max_detections_keeps_the_best():
  segs = np.array([[0, 1], [2, 3], [4, 5]], np.float32)
  out_segs, out, idx, num = nms.soft_nms_1d(segs, [0.2, 0.7, 0.5], 2)
  assert int(num) == 2 and out_segs.shape == (2, 2)
  np.testing.assert_array_equal(idx.numpy(), [1, 2])
  np.testing.assert_allclose(out.numpy(), [0.7, 0.5])


def test_groups_do_not_suppress_each_other():
  segs = np.array([[0, 10], [0, 10], [2, 10]], np.float32)
  scores = np.array([0.9, 0.8, 0.7], np.float32)
  # One group: [2] (0.7 * w(0.8) = 0.241) beats [1] (0.8 * w(1) = 0.151),
  # which is then decayed again by [2]: 0.8 * w(1) * w(0.8).
  _, agnostic, idx, _ = nms.soft_nms_1d(segs, scores, 3)
  np.testing.assert_array_equal(idx.numpy(), [0, 2, 1])
  np.testing.assert_allclose(
      agnostic.numpy(), [0.9, 0.7 * w(0.8), 0.8 * w(1.0) * w(0.8)], rtol=1e-5)
  # Groups [0, 1, 1]: [1] is untouched by [0]; [2] decays by [1] only.
  _, grouped, idx, _ = nms.soft_nms_1d(segs, scores, 3, groups=[0, 1, 1])
  np.testing.assert_array_equal(idx.numpy(), [0, 1, 2])
  np.testing.assert_allclose(grouped.numpy(), [0.9, 0.8, 0.7 * w(0.8)],
                             rtol=1e-5)


def test_empty_input():
  segs, scores, idx, num = nms.soft_nms_1d(np.zeros((0, 2), np.float32),
                                           np.zeros((0,), np.float32), 3)
  assert int(num) == 0
  np.testing.assert_array_equal(idx.numpy(), [-1, -1, -1])
  np.testing.assert_array_equal(scores.numpy(), [0, 0, 0])


def test_batched_under_tf_function_dynamic_batch_and_batch_zero():
  fn = tf.function(
      lambda s, c: nms.batched_soft_nms_1d(s, c, max_detections=4),
      input_signature=[tf.TensorSpec([None, None, 2], tf.float32),
                       tf.TensorSpec([None, None], tf.float32)])
  segs = np.stack([SEGS, SEGS[::-1]])
  scores = np.stack([SCORES, [0.5, 0.0, 0.95]]).astype(np.float32)
  out_segs, out_scores, idx, num = fn(segs, scores)
  assert out_segs.shape == (2, 4, 2)
  np.testing.assert_array_equal(num.numpy(), [3, 2])
  for b in range(2):
    ref = nms.soft_nms_1d(segs[b], scores[b], 4)
    np.testing.assert_array_equal(idx.numpy()[b], ref[2].numpy())
    np.testing.assert_allclose(out_scores.numpy()[b], ref[1].numpy())
  empty = fn(np.zeros((0, 3, 2), np.float32), np.zeros((0, 3), np.float32))
  assert [tuple(t.shape) for t in empty] == [(0, 4, 2), (0, 4), (0, 4), (0,)]


def test_batched_with_per_row_groups():
  segs = np.stack([SEGS[:2], SEGS[:2]])
  scores = np.stack([SCORES[:2], SCORES[:2]])
  groups = np.array([[0, 0], [0, 1]], np.int32)
  _, out, _, _ = nms.batched_soft_nms_1d(segs, scores, 2, groups=groups)
  np.testing.assert_allclose(out.numpy(), [[0.9, 0.8 * w(0.8)], [0.9, 0.8]],
                             rtol=1e-5)
