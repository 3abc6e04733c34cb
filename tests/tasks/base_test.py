"""The task base class: a symbolic build that creates every variable (and
no Keras warning), prompt ensembling in both layouts, and the results
table."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import postprocess, spec, tasks
from unloc_tf.tasks import action_localizer, base

N0, B, L, C, P = 8, 2, 6, 3, 2
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 2),
                                                            (2, np.inf)))


def _tal():
  return fixtures.build_task(action_localizer.build_action_localizer,
                             pyramid_spec=PYR, input_mode="embeddings",
                             text_max_length=L, num_conv_layers=1)


def _batch(prompt_axis):
  rng = np.random.default_rng(0)
  shape = (B, P, C, L) if prompt_axis else (B, C * P, L)
  ids = rng.integers(1, 400, shape).astype(np.int32)
  return {spec.FRAME_EMBEDDINGS: rng.normal(size=(B, N0, 5)).astype(
              np.float32),
          spec.FRAME_MASK: np.ones((B, N0), np.int32),
          spec.TEXT_IDS: ids, spec.TEXT_MASK: np.ones_like(ids)}


def test_build_creates_every_variable_without_a_keras_warning():
  model = _tal()
  x = _batch(False)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    model.build({k: v.shape for k, v in x.items()})
  assert not [w for w in caught if "build()" in str(w.message)]
  count = len(model.weights)
  assert count > 0 and model.backbone.built
  model(x)  # the first real call creates nothing more
  assert len(model.weights) == count


def test_prompt_ensembling_averages_raw_outputs_in_both_layouts():
  model = _tal()
  x = _batch(True)  # [B, P, C, L]
  per_prompt = [model({**x, spec.TEXT_IDS: x[spec.TEXT_IDS][:, p],
                       spec.TEXT_MASK: x[spec.TEXT_MASK][:, p]})
                for p in range(P)]
  want = postprocess.ensemble_prompts(per_prompt)
  got = model.forward(x)
  for key in ("logits", "displacements"):
    np.testing.assert_allclose(got[key], want[key], atol=1e-6)
  # Class-major flat rows (the serving layout): row c * P + p.
  flat = {**x, spec.TEXT_IDS: tf.reshape(
      tf.transpose(x[spec.TEXT_IDS], [0, 2, 1, 3]), [B, C * P, L]),
          spec.TEXT_MASK: tf.reshape(
              tf.transpose(x[spec.TEXT_MASK], [0, 2, 1, 3]), [B, C * P, L])}
  got = model.forward(flat, num_prompts=P)
  for key in ("logits", "displacements"):
    np.testing.assert_allclose(got[key], want[key], atol=1e-5)


@pytest.mark.parametrize("task,kind", [
    (spec.TAL, tasks.LocalizationResults), (spec.HD, tasks.LocalizationResults),
    (spec.MR, tasks.RetrievalResults), (spec.AS, tasks.SegmentationResults),
    (spec.CLS, tasks.ClassificationResults)])
def test_results_for_every_task(task, kind):
  assert isinstance(tasks.results_for(task, base.MetricSettings()), kind)


def test_results_for_an_unknown_task():
  with pytest.raises(ValueError, match="unknown task 'x'"):
    tasks.results_for("x", base.MetricSettings())
