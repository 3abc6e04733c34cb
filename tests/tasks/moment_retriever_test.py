"""MomentRetriever's all-pairs loss with padded frames: which video's frame
mask weighs a (video i, caption of video j) pair — video i's (default) or
the caption's video j's (`frame_mask_from_caption_video`, the reference's
rule, bound in gin/tasks/moment_retrieval.gin) — by hand, on the model's
own outputs, across two replicas, and through gin."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

import gin
from tests import fixtures
from tests.tasks import tasks_test as t
from tests.tasks import two_replicas
from unloc_tf import launch, spec
from unloc_tf.tasks import moment_retriever

LN2, LN3 = math.log(2.0), math.log(3.0)


def _model(**kw):
  return fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=t.PYR,
      input_mode="embeddings", num_conv_layers=2, **t.SMALL, **kw)


def test_loss_terms_by_hand_with_a_padded_frame():
  """B = 2 videos, K = 1 caption, T = 2 tokens; video 1's t1 is padding.

  Labels: video 0 positive at t1, video 1 at t0.  Pair logits 0 except
  (i=0, j=1, t1) = ln 3.  Focal (alpha 0.25, gamma 2) at z = 0: ln2/16 for
  a positive, 3 ln2/16 for a negative; at z = ln 3, y = 0: ce = 2 ln2,
  p_t = 1/4, 2 ln2 * 9/16 * 3/4 = 27/32 ln2.
  """
  pair_logits = np.zeros([2, 2, 1, 2], np.float32)
  pair_logits[0, 1, 0, 1] = LN3
  own = np.zeros([2, 1, 2], np.float32)
  outputs = {
      "pair_logits": tf.constant(pair_logits),
      "caption_offset": tf.constant(0, tf.int32),
      "logits": tf.constant(own),
      # Positives predict (1, 1) against targets (1, 3): IoU 1/2.
      "displacements": tf.ones([2, 1, 2, 2]),
      "token_mask": tf.constant([[1, 1], [1, 0]], tf.int32),
  }
  batch = {
      spec.LABELS: tf.constant([[[0, 1]], [[1, 0]]], tf.int32),
      spec.DISPLACEMENTS: tf.constant(
          [[[[1.0, 3.0]] * 2], [[[1.0, 3.0]] * 2]], tf.float32),
      spec.TEXT_VALID: tf.ones([2, 1], tf.int32),
  }
  model = _model()
  assert model.frame_mask_from_caption_video is False  # the default
  default = model.loss_terms(batch, outputs)
  # Video i's mask: i = 0 at t0, t1 and i = 1 at t0 only:
  # (0,0,t0) 3 + (0,0,t1) 1 + (0,1,t0) 3 + (0,1,t1) 27/2 + (1,0,t0) 3
  # + (1,1,t0) 1  [ln2/16] = 49/32 ln2 over 6 weighted elements.
  np.testing.assert_allclose(default["classification_loss"],
                             49.0 / 32.0 * LN2 / 6.0, rtol=1e-6)
  model.frame_mask_from_caption_video = True
  ref = model.loss_terms(batch, outputs)
  # Caption video j's mask: j = 0 at t0, t1 and j = 1 at t0 only:
  # (0,0,t0) 3 + (0,0,t1) 1 + (1,0,t0) 3 + (1,0,t1) 3 + (0,1,t0) 3
  # + (1,1,t0) 1  [ln2/16] = 14/16 ln2 over 6; the ln 3 logit drops out.
  np.testing.assert_allclose(ref["classification_loss"],
                             14.0 / 16.0 * LN2 / 6.0, rtol=1e-6)
  # The box loss (own captions, own frames) is the same rule either way.
  for out in (default, ref):
    np.testing.assert_allclose(out["box_loss"], 0.5, rtol=1e-5)
    np.testing.assert_allclose(
        out["loss"], 10.0 * out["classification_loss"] + 0.5, rtol=1e-5)


def _focal(z, y, alpha=0.25, gamma=2.0):
  ce = np.where(y > 0, np.logaddexp(0.0, -z), np.logaddexp(0.0, z))
  return ce * (1 - np.exp(-ce)) ** gamma * (alpha * y + (1 - alpha) * (1 - y))


def _padded_batch():
  x = dict(t.batch(spec.MR, "embeddings", num_text=t.K))
  mask = np.ones((t.B, t.N0), np.int32)
  mask[1, 5:] = 0  # video 1 is 5 frames long
  x[spec.FRAME_MASK] = tf.constant(mask)
  return x


def test_model_outputs_with_padded_frames_follow_each_rule():
  """On the model's own all-pairs outputs, each rule equals the reference
  formula (§4.1) with the frame mask of video i or of video j."""
  keras.utils.set_random_seed(3)
  model = _model()
  x = _padded_batch()
  out = model(x, training=True)
  z = out["pair_logits"].numpy()  # [B, B, K, T]
  mask = out["token_mask"].numpy().astype(np.float32)  # [B, T]
  assert mask[1].min() == 0.0 and mask[0].min() == 1.0
  labels = x[spec.LABELS].numpy().astype(np.float32)  # [B, K, T]
  eye = np.eye(t.B, dtype=np.float32)
  y = eye[:, :, None, None] * labels[:, None]
  fl = _focal(z, y)
  for from_caption, w in ((False, mask[:, None, None, :]),
                          (True, mask[None, :, None, :])):
    model.frame_mask_from_caption_video = from_caption
    got = model.loss_terms(x, out)["classification_loss"].numpy()
    w = np.broadcast_to(w, z.shape)
    np.testing.assert_allclose(got, (fl * w).sum() / (w.sum() + 1e-8),
                               rtol=1e-5, err_msg=str(from_caption))
  model.frame_mask_from_caption_video = False
  default = model.loss_terms(x, out)
  model.frame_mask_from_caption_video = True
  ref = model.loss_terms(x, out)
  assert abs(float(default["classification_loss"])
             - float(ref["classification_loss"])) > 1e-4
  assert float(default["box_loss"]) == float(ref["box_loss"])
  # Evaluation (each video with its own captions) has one rule only.
  eval_out = model(x, training=False)
  assert "pair_logits" not in eval_out
  model.frame_mask_from_caption_video = False
  a = model.loss_terms(x, eval_out)["loss"]
  model.frame_mask_from_caption_video = True
  assert float(model.loss_terms(x, eval_out)["loss"]) == float(a)


def test_option_survives_get_config():
  model = _model(frame_mask_from_caption_video=True)
  config = model.get_config()
  assert config["frame_mask_from_caption_video"] is True
  clone = moment_retriever.MomentRetriever.from_config(config)
  assert clone.frame_mask_from_caption_video is True


@pytest.mark.parametrize("value", [None, True])
def test_gin_binds_the_option(value):
  gin.clear_config()
  try:
    bindings = ["DATA_DIR = '/unused'"]
    if value is not None:
      bindings.append(f"FRAME_MASK_FROM_CAPTION_VIDEO = {value}")
    experiment = launch.load_experiment(["experiments/synthetic_mr"],
                                        bindings)
    model = experiment.model_fn()
    assert model.frame_mask_from_caption_video is bool(value)
  finally:
    gin.clear_config()


SETUP = """
from tests.tasks import moment_retriever_test as m

x = m._padded_batch()
tf.keras.utils.set_random_seed(1)
model = m._model(frame_mask_from_caption_video=True)
model(x, training=True)
"""
AFTER = """
model.frame_mask_from_caption_video = False
extra.append(float(model.compute_loss(x=x, y_pred=model(x, training=True))))
"""


def test_reference_rule_across_two_replicas_matches_one_device():
  """The caption videos' frame masks are gathered with the captions."""
  (single, replicated, default), grad_diff = two_replicas.compare(SETUP,
                                                                  AFTER)
  assert float(single) == pytest.approx(float(replicated), rel=1e-5)
  assert float(single) != pytest.approx(float(default), rel=1e-4)
  assert grad_diff < 1e-4
