"""Tests of unloc_tf.postprocess (reference_spec.md §5).

Round-trip pyramid: level lengths (16, 8, 4), 28 tokens (flat index: t):

  level 0: idx 0..15  -> t = 0..15,        stride 1
  level 1: idx 16..23 -> t = 0, 2, .., 14, stride 2
  level 2: idx 24..27 -> t = 0, 4, 8, 12,  stride 4

Video with n = 31 stored frames: (n-1)/(N0-1) = 30/15 = 2 frames per token
unit; at 0.5 s per frame one token unit is exactly 1 second.  Planted:

  seg1: class 0, idx 3  (t=3),  d=(2, 1)      -> frames (2, 8)   = (1, 4) s
  seg2: class 2, idx 19 (t=6),  d=(0.5, 1)    -> frames (10, 16) = (5, 8) s
  seg3: class 1, idx 27 (t=12), d=(0.5, 0.75) -> frames (20, 30) = (10, 15) s
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf import postprocess as pp
from unloc_tf import spec

LEVELS = (16, 8, 4)
T_TOT = 28
N, SPT = 31, 0.5
LOW = -20.0  # sigmoid(-20) = 2e-9, far below the 0.001 threshold


def sigmoid(x):
  return float(tf.sigmoid(tf.constant(x, tf.float32)).numpy())


def w(iou, sigma=0.3):
  return math.exp(-0.5 * iou * iou / sigma)


PLANTS = [  # (idx, class, logit, (d_s, d_e), expected seconds)
    (3, 0, 3.0, (2.0, 1.0), (1.0, 4.0)),
    (19, 2, 2.0, (0.5, 1.0), (5.0, 8.0)),
    (27, 1, 1.0, (0.5, 0.75), (10.0, 15.0)),
]


def _tal_batch(num_classes=3):
  rng = np.random.default_rng(0)
  logits = np.full((2, T_TOT, num_classes), LOW, np.float32)
  disp = rng.uniform(0, 3, (2, T_TOT, num_classes, 2)).astype(np.float32)
  for idx, c, logit, d, _ in PLANTS:
    logits[0, idx, c] = logit
    disp[0, idx, c] = d
  mask = np.ones((2, T_TOT), np.int32)
  mask[0, 5] = 0
  logits[0, 5, 0] = 5.0  # a confident prediction on a padded token
  return logits, disp, mask


def _detect(logits, disp, mask, n=(N, 40), spt=(SPT, 1.0), **kw):
  return pp.localization_detections(
      logits, disp, mask, tf.constant(n), tf.constant(spt, tf.float32),
      pyramid_level_lengths=LEVELS, num_frames=16, **kw)


def _check_round_trip(out):
  assert out["segments"].shape == (2, 5, 2)
  np.testing.assert_array_equal(out["num_detections"].numpy(), [3, 0])
  np.testing.assert_allclose(out["segments"].numpy()[0, :3],
                             [p[4] for p in PLANTS], atol=1e-6)
  np.testing.assert_allclose(out["scores"].numpy()[0],
                             [sigmoid(p[2]) for p in PLANTS] + [0, 0],
                             rtol=1e-6)
  np.testing.assert_array_equal(out["classes"].numpy(),
                                [[0, 2, 1, -1, -1], [-1] * 5])
  np.testing.assert_array_equal(out["scores"].numpy()[1], 0.0)


def test_round_trip_recovers_planted_segments():
  out = _detect(*_tal_batch(), max_detections=5)
  _check_round_trip(out)


def test_round_trip_with_pyramid_spec_and_candidate_cap():
  pyr = spec.PyramidSpec(num_frames=16, num_levels=3,
                         regression_ranges=((0, 4), (4, 8), (8, math.inf)))
  logits, disp, mask = _tal_batch()
  out = pp.localization_detections(
      logits, disp, mask, tf.constant([N, 40]), tf.constant([SPT, 1.0]),
      pyramid_level_lengths=pyr, max_detections=5, max_candidates=4)
  _check_round_trip(out)


def test_candidate_cap_cuts_low_scores():
  logits, disp, mask = _tal_batch()
  out = _detect(logits, disp, mask, max_detections=5, max_candidates=2)
  np.testing.assert_array_equal(out["num_detections"].numpy(), [2, 0])
  np.testing.assert_array_equal(out["classes"].numpy()[0, :3], [0, 2, -1])


def test_localization_under_tf_function_dynamic_batch_and_classes():
  fn = tf.function(
      lambda l, d, m, n, s: pp.localization_detections(
          l, d, m, n, s, pyramid_level_lengths=LEVELS, num_frames=16,
          max_detections=5),
      input_signature=[tf.TensorSpec([None, T_TOT, None], tf.float32),
                       tf.TensorSpec([None, T_TOT, None, 2], tf.float32),
                       tf.TensorSpec([None, T_TOT], tf.int32),
                       tf.TensorSpec([None], tf.int32),
                       tf.TensorSpec([None], tf.float32)])
  logits, disp, mask = _tal_batch()
  _check_round_trip(fn(logits, disp, mask, tf.constant([N, 40]),
                       tf.constant([SPT, 1.0])))
  empty = fn(logits[:0], disp[:0], mask[:0], tf.zeros([0], tf.int32),
             tf.zeros([0]))
  assert empty["segments"].shape == (0, 5, 2)
  assert empty["num_detections"].shape == (0,)


def _reference_decode_np(probs, disp, mask, n, secs, thr):
  """NumPy transcription of the reference decode (§5.2), float32 as there."""
  disp = disp.copy()
  disp[..., 0] *= -1.0
  segs = []
  for level, cur in enumerate(np.split(disp, np.cumsum(LEVELS)[:-1], axis=0)):
    stride = 2**level
    t = np.arange(0, 16, stride, dtype=np.float32)[:, None, None]
    segs.append((t + cur * stride) * (n - 1) / 15)
  segs = np.concatenate(segs, 0)[mask.astype(bool)]
  segs[..., 0] = np.maximum(segs[..., 0], 0)
  segs[..., 1] = np.minimum(segs[..., 1], n)
  segs = segs * secs
  probs = probs[mask.astype(bool)]
  keep = probs >= thr
  return keep.nonzero()[1], probs[keep], segs[keep]


def test_matches_a_numpy_transcription_of_the_reference():
  rng = np.random.default_rng(3)
  logits = rng.normal(-4.0, 2.5, (1, T_TOT, 4)).astype(np.float32)
  disp = rng.uniform(0, 6, (1, T_TOT, 4, 2)).astype(np.float32)
  mask = np.ones((1, T_TOT), np.int32)
  mask[0, 10:12] = 0
  probs = tf.sigmoid(logits).numpy()[0]
  classes, scores, segs = _reference_decode_np(probs, disp[0], mask[0], 37,
                                               0.1, 0.001)
  boxes = np.stack([np.zeros_like(scores), segs[:, 0], np.ones_like(scores),
                    segs[:, 1]], 1)
  idx, ref_scores = tf.image.non_max_suppression_with_scores(
      boxes, scores, 10, 0.5, 0.001, 0.3)
  idx = idx.numpy()
  assert len(classes) > 20 and len(idx) == 10  # the test has teeth
  out = _detect(logits, disp, mask, n=[37], spt=[0.1], max_detections=10)
  np.testing.assert_array_equal(out["classes"].numpy()[0], classes[idx])
  np.testing.assert_array_equal(out["scores"].numpy()[0], ref_scores.numpy())
  np.testing.assert_array_equal(out["segments"].numpy()[0], segs[idx])


def test_per_class_vs_class_agnostic():
  # Two classes predict the same segment (1, 4) s at the same token.
  logits = np.full((1, T_TOT, 2), LOW, np.float32)
  disp = np.zeros((1, T_TOT, 2, 2), np.float32)
  logits[0, 3] = [math.log(9.0), math.log(4.0)]  # p = 0.9, 0.8
  disp[0, 3] = [[2.0, 1.0], [2.0, 1.0]]
  mask = np.ones((1, T_TOT), np.int32)
  p0, p1 = sigmoid(math.log(9.0)), sigmoid(math.log(4.0))
  agnostic = _detect(logits, disp, mask, n=[N], spt=[SPT], max_detections=3)
  per_class = _detect(logits, disp, mask, n=[N], spt=[SPT], max_detections=3,
                      per_class=True)
  # Class-agnostic: IoU 1 -> the second decays by exp(-0.5 / 0.3).
  np.testing.assert_allclose(agnostic["scores"].numpy()[0],
                             [p0, p1 * w(1.0), 0.0], rtol=1e-5)
  # Per class: no interaction between classes.
  np.testing.assert_allclose(per_class["scores"].numpy()[0], [p0, p1, 0.0],
                             rtol=1e-6)
  for out in (agnostic, per_class):
    np.testing.assert_array_equal(out["classes"].numpy()[0], [0, 1, -1])
    np.testing.assert_allclose(out["segments"].numpy()[0, :2],
                               [[1.0, 4.0], [1.0, 4.0]], atol=1e-6)


def test_hard_nms_option():
  logits = np.full((1, T_TOT, 1), LOW, np.float32)
  disp = np.zeros((1, T_TOT, 1, 2), np.float32)
  logits[0, 3, 0], logits[0, 4, 0] = 2.0, 1.0
  disp[0, 3, 0] = [2.0, 1.0]  # (1, 4) s
  disp[0, 4, 0] = [3.0, 0.0]  # (1, 4) s as well
  mask = np.ones((1, T_TOT), np.int32)
  out = _detect(logits, disp, mask, n=[N], spt=[SPT], max_detections=3,
                soft_nms_sigma=0.0)
  np.testing.assert_array_equal(out["num_detections"].numpy(), [1])


def _mr_batch():
  logits = np.full((2, 2, T_TOT), LOW, np.float32)
  disp = np.zeros((2, 2, T_TOT, 2), np.float32)
  logits[0, 0, 19], disp[0, 0, 19] = 2.0, (0.5, 1.0)    # (5, 8) s
  logits[0, 1, 3], disp[0, 1, 3] = 3.0, (2.0, 1.0)      # (1, 4) s
  logits[1, 0, 27], disp[1, 0, 27] = 1.0, (0.5, 0.75)   # (10, 15) s
  logits[1, 1, 3] = 4.0  # caption 1 of video 1 is padding
  mask = np.ones((2, T_TOT), np.int32)
  mask[0, 4] = 0
  logits[0, :, 4] = 6.0  # padded token
  return logits, disp, mask, np.array([[1, 1], [1, 0]], np.int32)


def test_retrieval_per_caption():
  logits, disp, mask, caps = _mr_batch()
  out = pp.retrieval_detections(
      logits, disp, mask, [N, N], [SPT, SPT], pyramid_level_lengths=LEVELS,
      num_frames=16, caption_mask=caps, max_detections=4)
  assert out["segments"].shape == (2, 2, 4, 2)
  np.testing.assert_array_equal(out["num_detections"].numpy(),
                                [[1, 1], [1, 0]])
  np.testing.assert_allclose(out["segments"].numpy()[:, :, 0],
                             [[[5, 8], [1, 4]], [[10, 15], [0, 0]]],
                             atol=1e-6)
  np.testing.assert_allclose(out["scores"].numpy()[:, :, 0],
                             [[sigmoid(2.0), sigmoid(3.0)], [sigmoid(1.0), 0]],
                             rtol=1e-6)


def test_retrieval_without_threshold_keeps_every_real_token():
  logits, disp, mask, caps = _mr_batch()
  fn = tf.function(
      lambda l, d, m, n, s, c: pp.retrieval_detections(
          l, d, m, n, s, pyramid_level_lengths=LEVELS, caption_mask=c,
          max_detections=40, score_threshold=float("-inf")),
      input_signature=[tf.TensorSpec([None, None, T_TOT], tf.float32),
                       tf.TensorSpec([None, None, T_TOT, 2], tf.float32),
                       tf.TensorSpec([None, T_TOT], tf.int32),
                       tf.TensorSpec([None], tf.int32),
                       tf.TensorSpec([None], tf.float32),
                       tf.TensorSpec([None, None], tf.int32)])
  out = fn(logits, disp, mask, tf.constant([N, N]), tf.constant([SPT, SPT]),
           caps)
  # Video 0 has 27 real tokens, video 1 all 28; the padded caption none.
  np.testing.assert_array_equal(out["num_detections"].numpy(),
                                [[27, 27], [28, 0]])
  empty = fn(logits[:0], disp[:0], mask[:0], tf.zeros([0], tf.int32),
             tf.zeros([0]), caps[:0])
  assert empty["scores"].shape == (0, 2, 40)


def test_prompt_ensembling_averages_raw_outputs():
  logits = np.full((2, 1, T_TOT, 1), LOW, np.float32)  # [P, B, T, C]
  disp = np.zeros((2, 1, T_TOT, 1, 2), np.float32)
  logits[0, 0, 3, 0], logits[1, 0, 3, 0] = 4.0, 0.0
  disp[0, 0, 3, 0], disp[1, 0, 3, 0] = (2.0, 1.0), (0.0, 3.0)  # mean (1, 2)
  mask = np.ones((1, T_TOT), np.int32)
  prompts = [{"logits": logits[p], "displacements": disp[p],
              "token_mask": mask} for p in range(2)]
  merged = pp.ensemble_prompts(prompts)
  stacked = pp.ensemble_prompts({"logits": logits, "displacements": disp,
                                 "token_mask": np.stack([mask, mask])})
  for m in (merged, stacked):
    np.testing.assert_allclose(m["logits"].numpy()[0, 3, 0], 2.0)
    np.testing.assert_allclose(m["displacements"].numpy()[0, 3, 0], [1, 2])
    np.testing.assert_array_equal(np.asarray(m["token_mask"]), mask)
  out = _detect(merged["logits"], merged["displacements"],
                merged["token_mask"], n=[N], spt=[SPT], max_detections=2)
  score = out["scores"].numpy()[0, 0]
  # sigmoid(mean logit) = sigmoid(2) = 0.881, not the mean probability
  # (sigmoid(4) + sigmoid(0)) / 2 = 0.741.
  np.testing.assert_allclose(score, sigmoid(2.0), rtol=1e-6)
  assert abs(score - (sigmoid(4.0) + sigmoid(0.0)) / 2) > 0.1
  # (3 - 1) * 2 = 4 frames = 2 s; (3 + 2) * 2 = 10 frames = 5 s.
  np.testing.assert_allclose(out["segments"].numpy()[0, 0], [2.0, 5.0])


def test_segmentation_background_threshold():
  logits = tf.constant([[[1.0, 2.0, -1.0],     # foreground: class 1
                         [-1.0, -0.5, -2.0],   # max <= 0: background
                         [0.0, 0.0, 0.0],      # max == 0: background
                         [0.5, 3.0, 3.0]]])    # tie: first max
  np.testing.assert_array_equal(pp.segmentation_predictions(logits).numpy(),
                                [[1, -1, -1, 1]])
  np.testing.assert_array_equal(
      pp.segmentation_predictions(logits, -1.0).numpy(), [[1, 1, 0, 1]])
  np.testing.assert_array_equal(
      pp.segmentation_predictions(logits, token_mask=[[1, 1, 1, 0]]).numpy(),
      [[1, -1, -1, -1]])


def _windows(offsets, n, window=8):
  """Window w, frame i, channel c -> 100 * w + i + 1000 * c."""
  wn = len(offsets)
  logits = (100.0 * np.arange(wn)[:, None, None]
            + np.arange(window)[None, :, None]
            + 1000.0 * np.arange(2)[None, None, :]).astype(np.float32)
  pos = np.asarray(offsets)[:, None] + np.arange(window)
  return logits, (pos < n).astype(np.int32)


def test_sliding_windows_cover_every_frame_exactly_once():
  n, window = 21, 8
  offsets = pp.sliding_window_offsets(n, window).numpy()
  np.testing.assert_array_equal(offsets, [0, 8, 16])
  logits, masks = _windows(offsets, n)
  np.testing.assert_array_equal(masks[2], [1, 1, 1, 1, 1, 0, 0, 0])
  out, counts = pp.assemble_windows(logits, offsets, masks, n,
                                    return_counts=True)
  f = np.arange(n)
  expected = np.stack([100.0 * (f // 8) + f % 8,
                       100.0 * (f // 8) + f % 8 + 1000.0], axis=1)
  np.testing.assert_array_equal(counts.numpy(), np.ones(n))
  np.testing.assert_array_equal(out.numpy(), expected)
  out_np, counts_np = pp.assemble_windows_np(logits, offsets, masks, n,
                                             return_counts=True)
  np.testing.assert_array_equal(out_np, expected)
  np.testing.assert_array_equal(counts_np, np.ones(n))


def test_centre_window_covers_only_its_frames():
  n = 21
  offset = (n - 8) // 2  # 6, the reference's evaluation window
  logits, masks = _windows([offset], n)
  out, counts = pp.assemble_windows(logits, [offset], masks, n,
                                    return_counts=True)
  out = out.numpy()
  np.testing.assert_array_equal(counts.numpy(),
                                [0] * 6 + [1] * 8 + [0] * 7)
  assert np.isnan(out[:6]).all() and np.isnan(out[14:]).all()
  np.testing.assert_array_equal(out[6:14, 0], np.arange(8))
  np.testing.assert_array_equal(
      np.isnan(pp.assemble_windows_np(logits, [offset], masks, n)),
      np.isnan(out))


def test_overlapping_windows_average_under_tf_function():
  fn = tf.function(
      lambda l, o, m, n: pp.assemble_windows(l, o, m, n),
      input_signature=[tf.TensorSpec([None, None, None], tf.float32),
                       tf.TensorSpec([None], tf.int32),
                       tf.TensorSpec([None, None], tf.int32),
                       tf.TensorSpec([], tf.int32)])
  logits, masks = _windows([0, 4], 12)
  out = fn(logits, tf.constant([0, 4]), masks, tf.constant(12)).numpy()
  # Frame 5: window 0 frame 5 (5) and window 1 frame 1 (101) -> 53.
  np.testing.assert_array_equal(out[5, 0], 53.0)
  np.testing.assert_array_equal(out[:4, 0], [0, 1, 2, 3])
  np.testing.assert_array_equal(out[8:, 0], [104, 105, 106, 107])
  np.testing.assert_array_equal(
      out, pp.assemble_windows_np(logits, [0, 4], masks, 12))


def test_highlight_saliency_by_hand():
  # Video 0: n = 30 at 1 s/frame, tokens show frames [0,4,8,...,24,29]
  # -> clips (2 s) [0,2,4,6,8,10,12,14]; 15 clips inside (0..14).
  # Odd clips have no token: clip 2k+1 (centre 4k+3) is nearest to token
  # k+1 (centre 4k+4.5, distance 1.5); clip 13 (centre 27) ties between
  # token 6 (24.5) and token 7 (29.5) -> the first, token 6.
  # Video 1: n = 8 at 0.5 s/frame, frames 0..7 -> clips [0,0,0,0,1,1,1,1];
  # duration 4 s -> clips 2.. are outside.  Token 1 is padding.
  l0 = np.array([[0.0, 1.0, -1.0, 2.0, -2.0, 0.5, 3.0, -3.0],
                 [0.0, 9.0, 1.0, -1.0, 2.0, -2.0, 0.5, 0.25]], np.float32)
  logits = np.concatenate([l0, np.full((2, 4), 7.0, np.float32)], 1)[..., None]
  mask = np.ones((2, 12), np.int32)
  mask[1, 1] = 0
  p = 1.0 / (1.0 + np.exp(-l0.astype(np.float64)))
  kw = dict(level_lengths=(8, 4), secs_per_clip=2.0, max_clips=16)
  out = pp.highlight_saliency(logits, mask, [30, 8], [1.0, 0.5], **kw).numpy()
  nearest = [0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 6, 7]
  np.testing.assert_allclose(out[0, :15], p[0, nearest], rtol=1e-6)
  assert out[0, 15] == 0.0
  np.testing.assert_allclose(
      out[1], [max(p[1, 0], p[1, 2], p[1, 3]), p[1, 4:].max()] + [0.0] * 14,
      rtol=1e-6)
  mean = pp.highlight_saliency(logits, mask, [30, 8], [1.0, 0.5],
                               reduction="mean", **kw).numpy()
  np.testing.assert_allclose(mean[1, :2], [p[1, [0, 2, 3]].mean(),
                                           p[1, 4:].mean()], rtol=1e-6)
  np.testing.assert_allclose(mean[0], out[0], rtol=1e-6)  # one token/clip


def test_highlight_saliency_under_tf_function():
  fn = tf.function(
      lambda l, m, n, s: pp.highlight_saliency(
          l, m, n, s, level_lengths=(8, 4), max_clips=5),
      input_signature=[tf.TensorSpec([None, 12, 1], tf.float32),
                       tf.TensorSpec([None, 12], tf.int32),
                       tf.TensorSpec([None], tf.int32),
                       tf.TensorSpec([None], tf.float32)])
  assert fn(np.zeros((0, 12, 1), np.float32), np.zeros((0, 12), np.int32),
            tf.zeros([0], tf.int32), tf.zeros([0])).shape == (0, 5)
  out = fn(np.zeros((1, 12, 1), np.float32), np.ones((1, 12), np.int32),
           tf.constant([8]), tf.constant([1.0])).numpy()
  np.testing.assert_allclose(out, [[0.5, 0.5, 0.5, 0.5, 0.0]])


def test_highlight_saliency_rejects_unknown_reduction():
  with pytest.raises(ValueError):
    pp.highlight_saliency(np.zeros((1, 12, 1)), np.ones((1, 12)), [8], [1.0],
                          level_lengths=(8, 4), max_clips=2,
                          reduction="median")
