"""Tests of unloc_tf.losses (reference_spec.md §4, §4.5).

Expected values are computed by hand in the comments.  Logits are chosen so
that sigmoids are simple fractions:

  sigmoid(0) = 1/2,  sigmoid(ln 3) = 3/4,  sigmoid(-ln 3) = 1/4.

Focal loss with alpha = 0.25, gamma = 2 (fl = ce * (1 - p_t)^2 * alpha_t):

  z = 0,     y = 1: ce = ln 2, p_t = 1/2, (1/2)^2 = 1/4, a = 1/4 -> ln2 / 16
  z = 0,     y = 0: ce = ln 2, p_t = 1/2, 1/4,           a = 3/4 -> 3 ln2 / 16
  z = ln 3,  y = 0: ce = ln 4, p_t = 1/4, (3/4)^2 = 9/16, a = 3/4
                    -> 2 ln2 * 27/64 = 27 ln2 / 32
  z = -ln 3, y = 1: ce = ln 4, p_t = 1/4, 9/16,          a = 1/4
                    -> 2 ln2 * 9/64 = 9 ln2 / 32

Boxes (pred, target) used throughout, u = max(ps,gs) + max(pe,ge):

  A: pred (1, 3), target (2, 2): u = 2 + 3 = 5, inter = 1 + 2 = 3
     iou = 3/5 -> 'iou' 0.4;  'l1' = (1 + 1)/5 = 0.4;
     centre offset 0.5 * ((3 - 1) - (2 - 2)) = 1 -> (1/5)^2 = 0.04;
     'diou' = 0.44
  B: pred (0, 4), target (2, 2): u = 2 + 4 = 6, inter = 0 + 2 = 2
     iou = 1/3 -> 'iou' 2/3;  'l1' = (2 + 2)/6 = 2/3;
     centre offset 0.5 * (4 - 0) = 2 -> (2/6)^2 = 1/9;  'diou' = 7/9
  P: pred (2, 2), target (2, 2): iou = 4 / (4 + 1e-6) ~ 1 -> every term ~ 0
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf import losses

LN2 = math.log(2.0)
LN3 = math.log(3.0)

BOX_A = ([1.0, 3.0], [2.0, 2.0])
BOX_B = ([0.0, 4.0], [2.0, 2.0])
BOX_P = ([2.0, 2.0], [2.0, 2.0])


def _c(x, dtype=tf.float32):
  return tf.constant(x, dtype)


def _close(actual, expected, atol=1e-6, rtol=1e-5):
  np.testing.assert_allclose(
    np.asarray(actual, np.float64), expected, atol=atol, rtol=rtol
  )


# Shared TAL-style case: B=1, T=2, C=2.
#   token 0: logits (0, ln3),   labels (1, 0)
#   token 1: logits (-ln3, 0),  labels (1, 1)
TAL_LOGITS = [[[0.0, LN3], [-LN3, 0.0]]]
TAL_LABELS = [[[1, 0], [1, 1]]]
# Focal elements: ln2/16, 27 ln2/32, 9 ln2/32, ln2/16 -> sum = 40/32 ln2.
TAL_FOCAL_SUM = 40.0 / 32.0 * LN2


# ---------------------------------------------------------------------------
# Focal loss and sigmoid CE.
# ---------------------------------------------------------------------------
def test_focal_loss_by_hand_normalised_by_tokens():
  # Two valid tokens: 1.25 ln2 / 2 (3 positives, but tokens normalise).
  out = losses.sigmoid_focal_loss(
    _c(TAL_LOGITS), tf.constant(TAL_LABELS), _c([[1.0, 1.0]])
  )
  _close(out, TAL_FOCAL_SUM / 2.0)
  assert out.dtype == tf.float32 and out.shape == ()


def test_focal_loss_weights_mask_tokens():
  # Only token 0: (ln2/16 + 27 ln2/32) / 1 = 29/32 ln2.
  out = losses.sigmoid_focal_loss(
    _c(TAL_LOGITS), _c(TAL_LABELS), _c([[1.0, 0.0]])
  )
  _close(out, 29.0 / 32.0 * LN2)


def test_focal_loss_other_alpha_gamma():
  # gamma = 0, alpha = 0.5: fl = 0.5 * ce; ce = ln2, ln4, ln4, ln2 = 6 ln2;
  # 0.5 * 6 ln2 / 2 tokens = 1.5 ln2.
  out = losses.sigmoid_focal_loss(
    _c(TAL_LOGITS), _c(TAL_LABELS), _c([[1.0, 1.0]]), alpha=0.5, gamma=0.0
  )
  _close(out, 1.5 * LN2)
  # gamma = 1, alpha = 0.75, token 0 only:
  #   (z=0, y=1): ln2 * 1/2 * 3/4 = 3/8 ln2
  #   (z=ln3, y=0): 2 ln2 * 3/4 * 1/4 = 3/8 ln2  -> 3/4 ln2.
  out = losses.sigmoid_focal_loss(
    _c(TAL_LOGITS), _c(TAL_LABELS), _c([[1.0, 0.0]]), alpha=0.75, gamma=1.0
  )
  _close(out, 0.75 * LN2)


def test_focal_loss_single_class_and_none_weights():
  # C = 1, weights None -> all 3 tokens count:
  # (0, 1): ln2/16; (0, 0): 3 ln2/16; (ln3, 0): 27 ln2/32 -> 35/32 ln2 / 3.
  out = losses.sigmoid_focal_loss(
    _c([[0.0], [0.0], [LN3]]), _c([[1], [0], [0]]), None
  )
  _close(out, 35.0 / 32.0 * LN2 / 3.0)


def test_focal_loss_rejects_alpha_none_and_bad_weights_rank():
  with pytest.raises(ValueError, match="alpha"):
    losses.sigmoid_focal_loss(_c([[0.0]]), _c([[1.0]]), _c([1.0]), alpha=None)
  with pytest.raises(ValueError, match="rank"):
    losses.sigmoid_focal_loss(_c([[0.0]]), _c([[1.0]]), _c([[1.0]]))


def test_sigmoid_cross_entropy_by_hand():
  # ce = ln2, ln4, ln4, ln2 = 6 ln2 over 2 tokens -> 3 ln2.
  _close(
    losses.sigmoid_cross_entropy(
      _c(TAL_LOGITS), _c(TAL_LABELS), _c([[1.0, 1.0]])
    ),
    3.0 * LN2,
  )
  # Token 1 of two, token 0 padded: logits (-ln3, 0), labels (0, 1):
  # (z=-ln3, y=0): -ln(3/4) = ln(4/3); (z=0, y=1): ln2; over 1 token.
  _close(
    losses.sigmoid_cross_entropy(
      _c([[[9.0, 9.0], [-LN3, 0.0]]]), _c([[[0, 0], [0, 1]]]), _c([[0.0, 1.0]])
    ),
    math.log(4.0 / 3.0) + LN2,
  )


# ---------------------------------------------------------------------------
# Box terms, parsing, box loss.
# ---------------------------------------------------------------------------
def test_box_terms_by_hand():
  pred = _c([BOX_A[0], BOX_B[0]])
  target = _c([BOX_A[1], BOX_B[1]])
  terms = losses.box_loss_terms(pred, target)
  assert set(terms) == set(losses.BOX_LOSS_TERMS)
  _close(terms["iou"], [0.4, 2.0 / 3.0])
  _close(terms["l1"], [0.4, 2.0 / 3.0])
  _close(terms["center_offset_squared"], [0.04, 1.0 / 9.0])
  _close(terms["diou"], [0.44, 7.0 / 9.0])
  _close(losses.temporal_iou(pred, target), [0.6, 1.0 / 3.0])


def test_box_terms_asymmetric_l1():
  # pred (3, 1), target (1, 4): u = 3 + 4 = 7; inter = 1 + 1 = 2;
  # l1 = (2 + 3) / 7; iou loss = 1 - 2/7 = 5/7;
  # centre: 0.5 * ((1 - 3) - (4 - 1)) = -2.5 -> (2.5 / 7)^2.
  terms = losses.box_loss_terms(_c([3.0, 1.0]), _c([1.0, 4.0]))
  _close(terms["l1"], 5.0 / 7.0)
  _close(terms["iou"], 5.0 / 7.0)
  _close(terms["center_offset_squared"], (2.5 / 7.0) ** 2)


@pytest.mark.parametrize(
  "spec,expected",
  [
    ("iou", [(1.0, "iou")]),
    ("l1+iou", [(1.0, "l1"), (1.0, "iou")]),
    (" 0.5 * l1 + 1.0*iou ", [(0.5, "l1"), (1.0, "iou")]),
    ("diou", [(1.0, "diou")]),
    (
      "iou+center_offset_squared",
      [(1.0, "iou"), (1.0, "center_offset_squared")],
    ),
  ],
)
def test_parse_box_loss_type(spec, expected):
  assert losses.parse_box_loss_type(spec) == expected


@pytest.mark.parametrize(
  "spec,fragment",
  [
    ("giou", "'giou'"),
    ("l1+giou", "'giou'"),
    ("a*iou", "'a'"),
    ("", "empty"),
    ("iou+", "empty"),
    ("1*2*iou", "'1*2*iou'"),
    ("-1*iou", "'-1*iou'"),
    ("nan*iou", "'nan*iou'"),
    ("0.5*", "''"),
  ],
)
def test_parse_box_loss_type_errors_name_the_term(spec, fragment):
  with pytest.raises(ValueError) as err:
    losses.parse_box_loss_type(spec)
  assert fragment in str(err.value)


def test_box_loss_weighted_sum_and_positive_normalisation():
  # "0.5*l1+1.0*iou": A: 0.5*0.4 + 0.4 = 0.6; B: 0.5*2/3 + 2/3 = 1.0.
  # A third element with sentinel target (9, 9) is not positive.
  pred = _c([BOX_A[0], BOX_B[0], [0.0, 0.0]])
  target = _c([BOX_A[1], BOX_B[1], [9.0, 9.0]])
  spec = "0.5*l1+1.0*iou"
  # positives (1, 1, 0): (0.6 + 1.0) / 2 = 0.8 (divided by positives, not 3).
  _close(losses.box_loss(pred, target, _c([1.0, 1.0, 0.0]), spec), 0.8)
  # positives (1, 0, 0): 0.6.
  _close(losses.box_loss(pred, target, _c([1.0, 0.0, 0.0]), spec), 0.6)
  # positive weight 2 on B: 2 * 1.0 / 2 = 1.0.
  _close(losses.box_loss(pred, target, _c([0.0, 2.0, 0.0]), spec), 1.0)
  # plain iou: (0.4 + 2/3) / 2.
  _close(
    losses.box_loss(pred, target, _c([1.0, 1.0, 0.0])),
    (0.4 + 2.0 / 3.0) / 2.0,
  )
  # diou: (0.44 + 7/9) / 2.
  _close(
    losses.box_loss(pred, target, _c([1.0, 1.0, 0.0]), "diou"),
    (0.44 + 7.0 / 9.0) / 2.0,
  )
  # mean iou: (0.6 + 1/3) / 2.
  _close(losses.mean_iou(pred, target, _c([1.0, 1.0, 0.0])), (0.6 + 1 / 3) / 2)


def test_perfect_box_prediction_and_zero_positives():
  pred = _c([BOX_P[0], [4.0, 1.0]])
  target = _c([BOX_P[1], [4.0, 1.0]])
  pos = _c([1.0, 1.0])
  for spec in ("iou", "l1", "diou", "0.5*l1+1.0*iou+center_offset_squared"):
    # 1 - 4 / (4 + 1e-6) = 2.5e-7 and 1 - 5 / (5 + 1e-6) = 2e-7.
    _close(losses.box_loss(pred, target, pos, spec), 0.0, atol=1e-6)
  _close(losses.mean_iou(pred, target, pos), 1.0, atol=1e-6)
  # No positives at all: 0 / (0 + 1e-8) = 0, not NaN.
  zero = _c([0.0, 0.0])
  _close(losses.box_loss(_c([BOX_A[0], BOX_B[0]]), target, zero), 0.0)
  _close(losses.mean_iou(_c([BOX_A[0], BOX_B[0]]), target, zero), 0.0)


def test_degenerate_boxes_outside_positives_give_no_nan():
  # pred (0, -1e-6), target (-1, -1e-6): union = 0 + (-1e-6) + 1e-6 = 0
  # exactly in float32, so the raw terms are inf / NaN there.  Weight 0 must
  # keep both the loss and its gradient finite.
  pred = tf.Variable([[1.0, 3.0], [0.0, -1e-6]])
  target = _c([[2.0, 2.0], [-1.0, -1e-6]])
  raw = losses.box_loss_terms(pred, target)["iou"].numpy()
  assert not np.isfinite(raw[1])  # the hazard is real
  with tf.GradientTape() as tape:
    value = losses.box_loss(pred, target, _c([1.0, 0.0]), "l1+diou")
  grad = tape.gradient(value, pred).numpy()
  # Box A: l1 0.4 + diou 0.44 = 0.84.
  _close(value, 0.84)
  assert np.all(np.isfinite(grad))
  np.testing.assert_array_equal(grad[1], [0.0, 0.0])


def test_box_gradients_finite_at_zero_prediction():
  # pred == 0 with a real target and with a zero target (union = 1e-6).
  pred = tf.Variable(tf.zeros([2, 2]))
  target = _c([[2.0, 3.0], [0.0, 0.0]])
  for spec in ("iou", "l1", "center_offset_squared", "diou", "0.5*l1+1.0*iou"):
    with tf.GradientTape() as tape:
      value = losses.box_loss(pred, target, _c([1.0, 1.0]), spec)
    grad = tape.gradient(value, pred)
    assert np.isfinite(value.numpy()), spec
    assert np.all(np.isfinite(grad.numpy())), spec
  with tf.GradientTape() as tape:
    value = losses.mean_iou(pred, target, _c([1.0, 1.0]))
  assert np.all(np.isfinite(tape.gradient(value, pred).numpy()))


# ---------------------------------------------------------------------------
# precision@1 / frame accuracy.
# ---------------------------------------------------------------------------
def test_top_one_correct_background_rule():
  # t0: argmax 0, max 2 > 0 -> foreground, label[0] = 1 -> correct
  # t1: max -1 <= 0 -> background, labels all 0      -> correct
  # t2: max -1 <= 0 -> background, labels not all 0  -> wrong
  # t3: argmax 1, max 3 > 0, label[1] = 0            -> wrong
  # t4: max 0 <= 0 -> background (threshold is strict), label (0, 1) -> wrong
  logits = _c([[2.0, 1.0], [-1.0, -2.0], [-1.0, -2.0], [1.0, 3.0], [0.0, -1]])
  labels = _c([[1, 0], [0, 0], [1, 0], [1, 0], [0, 1]])
  _close(losses.top_one_correct(logits, labels), [1, 1, 0, 0, 0])


def test_top_one_correct_single_class_uses_logit_ge_zero():
  # C = 1: (logit >= 0) == label.  t0: 0 >= 0 -> 1 == 1 correct (the C > 1
  # rule would call it background, wrong); t1: -1 -> 0 == 0 correct;
  # t2: 2 -> 1 != 0 wrong.
  out = losses.top_one_correct(_c([[0.0], [-1.0], [2.0]]), _c([[1], [0], [0]]))
  _close(out, [1, 1, 0])


def test_segmentation_loss_by_hand():
  # B=1, T=4, C=2, last frame padded (weight 0).
  logits = _c([[[2.0, 1.0], [-1.0, -2.0], [-1.0, -2.0], [1.0, 3.0]]])
  labels = _c([[[1, 0], [0, 0], [1, 0], [1, 0]]])
  out = losses.segmentation_loss(logits, labels, _c([[1.0, 1.0, 1.0, 0.0]]))
  # frame accuracy: frames 0, 1 correct, frame 2 wrong (see above) -> 2/3.
  _close(out["frame_accuracy"], 2.0 / 3.0)
  # BCE: softplus(-z) for y=1, softplus(z) for y=0.
  sp = lambda z: math.log1p(math.exp(z))  # noqa: E731
  expected = (
    (sp(-2.0) + sp(1.0)) + (sp(-1.0) + sp(-2.0)) + (sp(1.0) + sp(-2.0))
  ) / 3.0
  _close(out["loss"], expected)


def test_classification_loss_by_hand():
  # row 0: logits (0, ln3), labels (1, 0): ce = ln2 + ln4; argmax 1 -> miss
  # row 1: logits (-ln3, 0), labels (0, 1): ce = ln(4/3) + ln2; argmax 1 hit
  logits = _c([[0.0, LN3], [-LN3, 0.0]])
  labels = _c([[1, 0], [0, 1]])
  out = losses.classification_loss(logits, labels)
  _close(out["loss"], (3 * LN2 + math.log(4.0 / 3.0) + LN2) / 2.0)
  _close(out["precision@1"], 0.5)
  out = losses.classification_loss(logits, labels, _c([0.0, 1.0]))
  _close(out["loss"], math.log(8.0 / 3.0))
  _close(out["precision@1"], 1.0)


# ---------------------------------------------------------------------------
# TAL / HD.
# ---------------------------------------------------------------------------
def _tal_inputs():
  # Pairs (t, c): (0,0) box A, (1,0) box B, (1,1) perfect box P; (0,1) is
  # negative with a sentinel target.
  disp_pred = _c([[[BOX_A[0], [0.0, 0.0]], [BOX_B[0], BOX_P[0]]]])
  disp = _c([[[BOX_A[1], [9.0, 9.0]], [BOX_B[1], BOX_P[1]]]])
  return _c(TAL_LOGITS), disp_pred, _c(TAL_LABELS, tf.int32), disp


def test_localization_loss_by_hand():
  logits, disp_pred, labels, disp = _tal_inputs()
  out = losses.localization_loss(
    logits, disp_pred, labels, disp, _c([[1, 1]], tf.int32)
  )
  cls = TAL_FOCAL_SUM / 2.0  # 0.625 ln2
  box = (0.4 + 2.0 / 3.0 + 0.0) / 3.0  # 3 positive pairs
  _close(out["classification_loss"], cls)
  _close(out["box_loss"], box)
  _close(out["iou_loss"], box)
  _close(out["mean_iou"], (0.6 + 1.0 / 3.0 + 1.0) / 3.0)
  _close(out["loss"], 10.0 * cls + box)
  # t0: argmax 1 (ln3 > 0), label 0 -> wrong; t1: max 0 -> background but
  # labels (1, 1) -> wrong.
  _close(out["precision@1"], 0.0)
  assert set(out) == {
    "loss",
    "classification_loss",
    "box_loss",
    "mean_iou",
    "precision@1",
    "iou_loss",
  }


def test_localization_loss_per_term_entries_and_alpha():
  logits, disp_pred, labels, disp = _tal_inputs()
  out = losses.localization_loss(
    logits,
    disp_pred,
    labels,
    disp,
    _c([[1.0, 1.0]]),
    box_loss_type="0.5*l1+1.0*iou",
    classification_loss_alpha=2.0,
  )
  # l1 per pair: A 0.4, B 2/3, P 0;  iou same -> box = (0.6 + 1.0) / 3.
  _close(out["l1_loss"], (0.4 + 2.0 / 3.0) / 3.0)
  _close(out["iou_loss"], (0.4 + 2.0 / 3.0) / 3.0)
  _close(out["box_loss"], 1.6 / 3.0)
  _close(out["loss"], 2.0 * TAL_FOCAL_SUM / 2.0 + 1.6 / 3.0)


def test_localization_loss_all_padding_is_zero_and_finite():
  logits, disp_pred, labels, disp = _tal_inputs()
  logits = tf.Variable(logits)
  with tf.GradientTape() as tape:
    out = losses.localization_loss(
      logits, disp_pred, labels, disp, _c([[0.0, 0.0]])
    )
  for key, value in out.items():
    _close(value, 0.0, atol=0.0)
    assert np.isfinite(value.numpy()), key
  assert np.all(np.isfinite(tape.gradient(out["loss"], logits).numpy()))


def test_localization_loss_zero_positives():
  logits, disp_pred, _, disp = _tal_inputs()
  out = losses.localization_loss(
    logits, disp_pred, tf.zeros([1, 2, 2], tf.int32), disp, _c([[1.0, 1.0]])
  )
  # All labels 0: focal = (3 ln2/16 + 27 ln2/32 + ... ) is finite; box 0.
  _close(out["box_loss"], 0.0, atol=0.0)
  _close(out["mean_iou"], 0.0, atol=0.0)
  # Elements: (0, y0) 3 ln2/16, (ln3, y0) 27 ln2/32, (-ln3, y0):
  # ce = ln(4/3), p_t = 3/4, (1/4)^2, a = 3/4 -> 3/64 ln(4/3); (0, y0) 3/16.
  expected = (
    3 * LN2 / 16 + 27 * LN2 / 32 + 3 / 64 * math.log(4 / 3) + 3 * LN2 / 16
  ) / 2.0
  _close(out["classification_loss"], expected)


# ---------------------------------------------------------------------------
# Moment retrieval.
# ---------------------------------------------------------------------------
def _mr_two_videos():
  # Bv = Bc = 2, K = 1, T = 2, all logits 0.
  # Video 0's caption positive at t0, video 1's at t1.
  logits = tf.zeros([2, 2, 1, 2])
  labels = _c([[[1, 0]], [[0, 1]]])
  # Own-caption box predictions [Bv, K, T, 2]: box A at video 0's positive
  # t0, box B at video 1's positive t1; the non-positive tokens carry
  # negative MR targets (t - s' < 0 before the segment).
  disp_pred = _c([[[BOX_A[0], [5.0, 5.0]]], [[[5.0, 5.0], BOX_B[0]]]])
  disp = _c([[[BOX_A[1], [-3.0, 7.0]]], [[[-1.0, 2.0], BOX_B[1]]]])
  return logits, disp_pred, labels, disp


def test_mr_all_pairs_targets_by_hand():
  logits, disp_pred, labels, disp = _mr_two_videos()
  out = losses.moment_retrieval_loss(
    logits, disp_pred, labels, disp, tf.ones([2, 2]), tf.ones([2, 1])
  )
  # 8 (i, j, t) elements; targets are the labels on the diagonal only:
  # 2 positives (ln2/16 each) and 6 negatives (3 ln2/16 each):
  # (2 + 18) / 16 ln2 / 8 = 20/128 ln2.  (If off-diagonal pairs carried the
  # labels too it would be 4 + 4: (4 + 12) / 16 ln2 / 8 = ln2 / 8.)
  _close(out["classification_loss"], 20.0 / 128.0 * LN2)
  # logit 0 predicts positive: correct exactly at the 2 positives -> 2/8.
  _close(out["accuracy"], 0.25)
  # Box loss at the 2 positives: (0.4 + 2/3) / 2; mean iou (0.6 + 1/3) / 2.
  _close(out["box_loss"], (0.4 + 2.0 / 3.0) / 2.0)
  _close(out["mean_iou"], (0.6 + 1.0 / 3.0) / 2.0)
  _close(out["loss"], 10.0 * 20.0 / 128.0 * LN2 + (0.4 + 2.0 / 3.0) / 2.0)


def test_mr_diagonal_only():
  logits, disp_pred, labels, disp = _mr_two_videos()
  out = losses.moment_retrieval_loss(
    logits,
    disp_pred,
    labels,
    disp,
    tf.ones([2, 2]),
    tf.ones([2, 1]),
    all_pairs=False,
  )
  # 4 elements: 2 positives, 2 negatives: (2 + 6) / 16 ln2 / 4 = ln2 / 8.
  _close(out["classification_loss"], LN2 / 8.0)
  _close(out["accuracy"], 0.5)
  _close(out["box_loss"], (0.4 + 2.0 / 3.0) / 2.0)


def test_mr_own_caption_logit_layouts():
  # Diagonal read from [Bv, Bc, K, T]: logits[i, i] = (-1, 1) for i = 0, 1
  # and off-diagonal 5.  Own layouts [Bv, K, T] and [Bv, 1, K, T] hold the
  # diagonal directly.  Labels: video 0 (1, 0), video 1 (0, 1).
  # Accuracy (logit >= 0 vs label): video 0: (0 vs 1 wrong, 1 vs 0 wrong),
  # video 1: (0 vs 0 right, 1 vs 1 right) -> 2/4.
  _, disp_pred, labels, disp = _mr_two_videos()
  own = _c([[[-1.0, 1.0]], [[-1.0, 1.0]]])  # [2, 1, 2]
  pairs = np.full([2, 2, 1, 2], 5.0, np.float32)
  pairs[0, 0] = pairs[1, 1] = [[-1.0, 1.0]]
  common = (disp_pred, labels, disp, tf.ones([2, 2]), tf.ones([2, 1]))
  # Focal: ce(z=-1, y=1) = ce(z=1, y=0) = softplus(1) = c1, p_t = e^-c1;
  # ce(z=-1, y=0) = ce(z=1, y=1) = softplus(-1) = c0.
  # With f = c (1 - e^-c)^2, per element (alpha 1/4 for y=1, 3/4 for y=0):
  #   v0 t0 (z=-1, y=1): f1 / 4;   v0 t1 (z=1, y=0): 3 f1 / 4;
  #   v1 t0 (z=-1, y=0): 3 f0 / 4; v1 t1 (z=1, y=1): f0 / 4
  # sum f1 + f0 over 4 tokens -> (f1 + f0) / 4.
  f = [
    c * (1.0 - math.exp(-c)) ** 2
    for c in (math.log1p(math.exp(1.0)), math.log1p(math.exp(-1.0)))
  ]
  for layout in (own, own[:, None], _c(pairs)):
    out = losses.moment_retrieval_loss(
      layout, *common, all_pairs=False, caption_offset=None
    )
    _close(out["accuracy"], 0.5)
    _close(out["classification_loss"], (f[0] + f[1]) / 4.0)


def test_mr_batch_mask_and_caption_valid():
  logits, disp_pred, labels, disp = _mr_two_videos()
  out = losses.moment_retrieval_loss(
    logits,
    disp_pred,
    labels,
    disp,
    tf.ones([2, 2]),
    tf.ones([2, 1]),
    batch_mask=_c([1.0, 0.0]),
  )
  # Only (i=0, j=0): t0 positive ln2/16 + t1 negative 3 ln2/16 over 2.
  _close(out["classification_loss"], LN2 / 8.0)
  _close(out["box_loss"], 0.4)  # video 0 only: box A
  # Same with the second video's caption invalid instead: pairs with
  # j = 0 survive for both videos i: (0,0): pos + neg, (1,0): 2 neg ->
  # (1 + 3 + 3 + 3) / 16 ln2 / 4; box: video 0 only.
  out = losses.moment_retrieval_loss(
    logits, disp_pred, labels, disp, tf.ones([2, 2]), _c([[1], [0]])
  )
  _close(out["classification_loss"], 10.0 / 64.0 * LN2)
  _close(out["box_loss"], 0.4)


def test_mr_frame_mask_indexed_by_video_or_by_caption_video():
  # frame_weights (1, 1) / (1, 0); labels: both videos positive at t0.
  # logits 0 except [i=1, j=0, t1] = ln3.
  logits = np.zeros([2, 2, 1, 2], np.float32)
  logits[1, 0, 0, 1] = LN3
  labels = _c([[[1, 0]], [[1, 0]]])
  boxes = tf.ones([2, 1, 2, 2])
  disp = tf.ones([2, 1, 2, 2])
  fw = _c([[1.0, 1.0], [1.0, 0.0]])
  args = (_c(logits), boxes, labels, disp, fw, tf.ones([2, 1]))
  # Default (mask of video i): weighted (i, j, t): all of i = 0 and t0 of
  # i = 1 -> 6 elements; positives (0,0,t0), (1,1,t0): 2 * ln2/16;
  # negatives (0,0,t1), (0,1,t0), (0,1,t1), (1,0,t0), logit 0: 4 * 3 ln2/16.
  # -> 14/16 ln2 / 6.
  out = losses.moment_retrieval_loss(*args)
  _close(out["classification_loss"], 14.0 / 16.0 * LN2 / 6.0)
  # Reference (mask of caption video j): all of j = 0 and t0 of j = 1; the
  # negative (1,0,t1) has logit ln3 -> 27 ln2/32 and (0,1,t1) drops out:
  # (2/16 + 9/16 + 27/32) ln2 / 6 = 49/32 ln2 / 6.
  out = losses.moment_retrieval_loss(*args, frame_mask_from_caption_video=True)
  _close(out["classification_loss"], 49.0 / 32.0 * LN2 / 6.0)


def test_mr_caption_offset():
  # This replica holds 1 video, the second of 2 in the gathered caption
  # batch (offset 1).  Its caption is positive at t1.
  # logits[0, j=0] = (-1, -1), logits[0, j=1] = (-1, 1).
  logits = _c([[[[-1.0, -1.0]], [[-1.0, 1.0]]]])
  labels = _c([[[0, 1]]])
  disp_pred = _c([[[[0.0, 0.0], BOX_A[0]]]])  # own caption, t1: box A
  disp = _c([[[[0.0, 0.0], BOX_A[1]]]])
  kw = dict(caption_batch_mask=tf.ones([2]))
  # The gathered caption_valid marks caption 0 (video 0's) invalid, so the
  # offset also selects which row validates the own caption.
  args = (
    logits,
    disp_pred,
    labels,
    disp,
    tf.ones([1, 2]),
    _c([[0.0], [1.0]]),
    tf.ones([1]),
  )
  out = losses.moment_retrieval_loss(*args, caption_offset=1, **kw)
  # Only j = 1 is weighted (caption 0 invalid).  Targets there: (0, 1);
  # predictions (logit >= 0): (0, 1) -> accuracy 1.
  _close(out["accuracy"], 1.0)
  # Own caption valid (row 1): box A, iou loss 0.4, mean iou 0.6.
  _close(out["box_loss"], 0.4)
  _close(out["mean_iou"], 0.6)
  # Focal over the 2 weighted tokens: (j=1,t0) z=-1,y=0 and (j=1,t1) z=1,
  # y=1 both have ce = softplus(-1), p_t = sigmoid(1); alphas 3/4 and 1/4
  # -> fl * (3/4 + 1/4) / 2.
  ce = math.log1p(math.exp(-1.0))
  fl = ce * (1.0 - math.exp(-ce)) ** 2
  _close(out["classification_loss"], fl / 2.0)
  # Offset 0 puts the diagonal at j = 0: targets (0, 1) there, but j = 0 is
  # invalid, so the weighted j = 1 tokens have targets (0, 0) vs
  # predictions (0, 1): accuracy 1/2; the own caption (row 0) is invalid:
  # no positives, box loss 0.
  out0 = losses.moment_retrieval_loss(*args, caption_offset=0, **kw)
  _close(out0["accuracy"], 0.5)
  _close(out0["box_loss"], 0.0, atol=0.0)


def test_mr_gathered_captions_need_caption_side_masks():
  logits = tf.zeros([1, 2, 1, 2])
  args = (
    logits,
    tf.ones([1, 1, 2, 2]),
    tf.zeros([1, 1, 2]),
    tf.ones([1, 1, 2, 2]),
    tf.ones([1, 2]),
    tf.ones([2, 1]),
    tf.ones([1]),
  )
  with pytest.raises(ValueError, match="caption_batch_mask"):
    losses.moment_retrieval_loss(*args, caption_offset=1)
  with pytest.raises(ValueError, match="caption_frame_weights"):
    losses.moment_retrieval_loss(
      *args,
      caption_offset=1,
      caption_batch_mask=tf.ones([2]),
      frame_mask_from_caption_video=True,
    )
  with pytest.raises(ValueError, match="diagonal"):
    losses.moment_retrieval_loss(
      logits, tf.ones([1, 2, 1, 2, 2]), *args[2:], caption_offset=1
    )
  with pytest.raises(ValueError, match="rank"):  # [Bv, K, T] needs !all_pairs
    losses.moment_retrieval_loss(
      logits[:, 0], *args[1:], caption_batch_mask=tf.ones([2])
    )
  with pytest.raises(ValueError, match="Bc >= Bv"):
    losses.moment_retrieval_loss(
      tf.zeros([2, 1, 1, 2]),
      tf.ones([2, 1, 2, 2]),
      tf.zeros([2, 1, 2]),
      tf.ones([2, 1, 2, 2]),
      tf.ones([2, 2]),
      tf.ones([2, 1]),
    )


def test_mr_all_padding_is_zero_and_finite():
  logits, disp_pred, labels, disp = _mr_two_videos()
  out = losses.moment_retrieval_loss(
    logits,
    disp_pred,
    labels,
    disp,
    tf.ones([2, 2]),
    tf.ones([2, 1]),
    batch_mask=tf.zeros([2]),
  )
  for key, value in out.items():
    assert value.numpy() == 0.0, key


# ---------------------------------------------------------------------------
# XLA and gradients.
# ---------------------------------------------------------------------------
def _assert_same(eager: dict, compiled: dict):
  assert set(eager) == set(compiled)
  for key in eager:
    _close(compiled[key], eager[key].numpy(), atol=1e-6, rtol=1e-5)


def test_everything_under_xla_matches_eager():
  logits, disp_pred, labels, disp = _tal_inputs()
  w = _c([[1.0, 1.0]])

  def tal(*a):
    return losses.localization_loss(*a, box_loss_type="0.5*l1+1.0*diou")

  _assert_same(
    tal(logits, disp_pred, labels, disp, w),
    tf.function(tal, jit_compile=True)(logits, disp_pred, labels, disp, w),
  )

  def small(lg, lb, w):
    return {
      "focal": losses.sigmoid_focal_loss(lg, lb, w),
      "ce": losses.sigmoid_cross_entropy(lg, lb, w),
      **losses.segmentation_loss(lg, lb, w),
      **{
        f"cls_{k}": v
        for k, v in losses.classification_loss(lg[0], lb[0], w[0]).items()
      },
    }

  _assert_same(
    small(logits, labels, w),
    tf.function(small, jit_compile=True)(logits, labels, w),
  )

  m_logits, m_pred, m_labels, m_disp = _mr_two_videos()

  def mr(offset, *a):
    return losses.moment_retrieval_loss(
      *a,
      caption_offset=offset,
      caption_batch_mask=tf.ones([2]),
      caption_frame_weights=tf.ones([2, 2]),
      frame_mask_from_caption_video=True,
    )

  m_args = (
    m_logits,
    m_pred,
    m_labels,
    m_disp,
    tf.ones([2, 2]),
    tf.ones([2, 1]),
    _c([1.0, 1.0]),
  )
  zero = tf.constant(0, tf.int32)
  _assert_same(
    mr(zero, *m_args), tf.function(mr, jit_compile=True)(zero, *m_args)
  )
  # Offset as a traced tensor: one video against the gathered 2.
  one = tf.constant(1, tf.int32)
  o_args = (
    m_logits[1:],
    m_pred[1:],
    m_labels[1:],
    m_disp[1:],
    tf.ones([1, 2]),
    tf.ones([2, 1]),
    _c([1.0]),
  )
  eager = mr(one, *o_args)
  _assert_same(eager, tf.function(mr, jit_compile=True)(one, *o_args))
  # Video 1 against both captions: (1,0): 2 negatives, (1,1): t1 positive:
  # (3 + 3 + 3 + 1) / 16 ln2 / 4;  box B on its diagonal -> 2/3.
  _close(eager["classification_loss"], 10.0 / 64.0 * LN2)
  _close(eager["box_loss"], 2.0 / 3.0)


def test_gradients_finite_under_xla_at_zero_prediction():
  # Zero logits, zero box predictions, one zero-length target (union 1e-6).
  disp_pred = tf.Variable(tf.zeros([1, 2, 2, 2]))
  logits = tf.Variable(tf.zeros([1, 2, 2]))
  disp = _c([[[[2.0, 3.0], [9.0, 9.0]], [[0.0, 0.0], [1.0, 1.0]]]])
  labels = _c([[[1, 0], [1, 1]]])

  @tf.function(jit_compile=True)
  def grads():
    with tf.GradientTape() as tape:
      out = losses.localization_loss(
        logits,
        disp_pred,
        labels,
        disp,
        _c([[1.0, 1.0]]),
        box_loss_type="l1+diou",
      )
    return out["loss"], tape.gradient(out["loss"], [logits, disp_pred])

  loss, (g_logits, g_pred) = grads()
  assert np.isfinite(loss.numpy())
  assert np.all(np.isfinite(g_logits.numpy()))
  assert np.all(np.isfinite(g_pred.numpy()))
  # The negative pair (t0, c1) gets no box gradient.
  np.testing.assert_array_equal(g_pred.numpy()[0, 0, 1], [0.0, 0.0])
  # A positive pair does.
  assert np.any(g_pred.numpy()[0, 0, 0] != 0.0)
