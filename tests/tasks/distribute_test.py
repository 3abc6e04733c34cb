"""MR in-batch negatives across replicas: a 2-replica MirroredStrategy run
(two logical CPUs, in a subprocess) gives the single-device loss and
gradients on the same global batch."""

import pytest

from tests.tasks import (
  tasks_test,  # noqa: F401 (the subprocess imports it)
  two_replicas,
)

SETUP = """
from tests.tasks import tasks_test as t
from tests import fixtures
from unloc_tf import spec
from unloc_tf.tasks import moment_retriever

x = t.batch(spec.MR, "embeddings", num_text=t.K)
tf.keras.utils.set_random_seed(1)
model = fixtures.build_task(
    moment_retriever.build_moment_retriever, "tiny", pyramid_spec=t.PYR,
    input_mode="embeddings", num_conv_layers=2, **t.SMALL)
model(x, training=True)
"""


def test_two_replica_mr_loss_matches_single_device():
  (single, replicated), grad_diff = two_replicas.compare(SETUP)
  assert float(single) == pytest.approx(float(replicated), rel=1e-5)
  assert grad_diff < 1e-4
