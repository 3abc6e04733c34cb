"""The synthetic benchmark with mp4s, written once per test session."""

import pytest

from tests.datasets import helpers


@pytest.fixture(scope="session")
def syn(tmp_path_factory) -> helpers.Synthetic:
  pytest.importorskip("av")  # An optional dependency (writes the mp4s).
  return helpers.make_synthetic(str(tmp_path_factory.mktemp("synthetic")))
