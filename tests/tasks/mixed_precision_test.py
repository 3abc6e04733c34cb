"""Task models under Keras' mixed precision policies (unloc_tf/train/
precision.py): each task trains a few steps under mixed_bfloat16 with a
finite loss, its outputs match float32 with the same weights, the variables
stay float32, and a mixed_bfloat16 model exports with float32 signatures.

Tolerance (bfloat16 keeps 8 significant bits): the float32 and
mixed_bfloat16 outputs of the same weights differ by at most 2% of the
float32 output's largest magnitude (measured on these tiny models: 0.3% to
0.8%, e.g. 0.027 on TAL logits of magnitude 7.2).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from tests.tasks import tasks_test
from unloc_tf import spec
from unloc_tf.export import op_audit
from unloc_tf.export import saved_model as export_lib
from unloc_tf.tasks import action_segmenter, moment_retriever
from unloc_tf.train import optimizers, precision

TASKS = (spec.TAL, spec.MR, spec.AS, spec.HD)
# |mixed_bfloat16 - float32| <= RTOL * max|float32| for every float output.
RTOL = 0.02
STEPS = 3


_keeps_dtype_policy = pytest.fixture(autouse=True)(fixtures.keeps_dtype_policy)


def _model(task, text="embeddings"):
  kw = dict(input_mode="embeddings", text_input=text)
  if task in (spec.TAL, spec.HD):
    return tasks_test._tal(task=task, **kw)  # noqa: SLF001
  if task == spec.MR:
    return fixtures.build_task(
        moment_retriever.build_moment_retriever, "tiny",
        pyramid_spec=tasks_test.PYR, num_conv_layers=2, **tasks_test.SMALL,
        **kw)
  return fixtures.build_task(
      action_segmenter.build_action_segmenter, "tiny",
      num_frames=tasks_test.N0, **tasks_test.SMALL, **kw)


def _pair(task, text="embeddings"):
  """(float32 model, mixed_bfloat16 model with the same weights, batch) on
  cached frame embeddings and `text` ("embeddings" or "tokens")."""
  x = tasks_test.batch(task, "embeddings", text,
                       num_text=1 if task == spec.HD else tasks_test.C)
  keras.utils.set_random_seed(0)
  reference = _model(task, text)
  reference(x)
  with precision.policy_scope(precision.MIXED_BFLOAT16):
    mixed = _model(task, text)
    mixed(x)
  mixed.set_weights(reference.get_weights())
  return reference, mixed, x


@pytest.fixture(scope="module")
def tal_pair():
  """TAL with the text tower (tokens): shared by the parity and export
  tests (building costs seconds)."""
  return _pair(spec.TAL, text="tokens")


@pytest.mark.parametrize("task", TASKS)
def test_mixed_bfloat16_matches_float32_and_trains(task, request):
  if task == spec.TAL:
    reference, mixed, x = request.getfixturevalue("tal_pair")
  else:
    reference, mixed, x = _pair(task)
  assert keras.config.dtype_policy().name == "float32"
  assert mixed.dtype_policy.name == "mixed_bfloat16"
  assert reference.dtype_policy.name == "float32"
  want = reference(x, training=False)
  got = mixed(x, training=False)
  assert set(got) == set(want)
  for key, value in want.items():
    assert got[key].dtype == value.dtype, key  # float32 logits, int masks
    if value.dtype.is_floating:
      scale = float(np.abs(value.numpy()).max())
      err = float(np.abs(got[key].numpy() - value.numpy()).max())
      print(f"{task} {key}: max |bf16 - f32| {err:.4f} = "
            f"{err / scale:.4f} of max |f32| {scale:.3f}")
      assert err <= RTOL * scale, (key, err, scale)
  # A few training steps with the project's optimizer (eagerly: tracing
  # costs seconds; the trainer's XLA step is tests/train/precision_test.py).
  optimizer = optimizers.make_optimizer(
      learning_rate=0.01, lr_multipliers=optimizers.REFERENCE_LR_MULTIPLIERS)
  optimizer.build(mixed.trainable_variables)
  before = [v.numpy() for v in mixed.trainable_variables]
  for _ in range(STEPS):
    with tf.GradientTape() as tape:
      loss = mixed.compute_loss(x=x, y_pred=mixed(x, training=True))
    grads = tape.gradient(loss, mixed.trainable_variables)
    optimizer.apply(grads, mixed.trainable_variables)
    assert loss.dtype == tf.float32 and np.isfinite(loss.numpy()), loss
  assert all(g is None or g.dtype == tf.float32 for g in grads)
  assert {str(v.dtype) for v in mixed.weights} == {"float32"}
  assert {str(v.dtype) for v in optimizer.variables} <= {"float32", "int64"}
  moved = sum(not np.array_equal(b, v.numpy())
              for b, v in zip(before, mixed.trainable_variables))
  assert moved >= len(before) // 2, (moved, len(before))


def _signature_dtypes(path):
  """{signature: ({input: dtype}, {output: dtype})} as TF Serving reads
  them from saved_model.pb."""
  defs = op_audit.read_saved_model(path).meta_graphs[0].signature_def
  name = lambda info: tf.dtypes.as_dtype(info.dtype).name
  return {sig: ({k: name(v) for k, v in d.inputs.items()},
                {k: name(v) for k, v in d.outputs.items()})
          for sig, d in defs.items() if not sig.startswith("__")}


def test_mixed_bfloat16_export_keeps_the_signature_dtypes(tal_pair, tmp_path):
  reference, mixed, _ = tal_pair
  kwargs = dict(task=spec.TAL, num_frames=tasks_test.N0,
                input_mode="embeddings", embedding_dim=12,
                text_max_length=tasks_test.L, num_text=tasks_test.C,
                audit=False, text_signature=False)
  want = _signature_dtypes(export_lib.export(
      model=reference, export_dir=str(tmp_path / "float32"), **kwargs))
  got = _signature_dtypes(export_lib.export(
      model=mixed, export_dir=str(tmp_path / "mixed_bfloat16"), **kwargs))
  assert got == want
  inputs, outputs = want["serving_default"]
  assert inputs[spec.FRAME_EMBEDDINGS] == "float32"
  assert outputs == {"segments": "float32", "scores": "float32",
                     "classes": "int32", "num_detections": "int32"}
