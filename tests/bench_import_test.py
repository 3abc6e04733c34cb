"""Every benchmark script imports (benchmarks are not run in CI: they are
timed by hand, see README; this keeps a refactor from breaking them)."""

import glob
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHES = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(ROOT, "bench",
                                                             "*.py"))
    if not os.path.basename(p).startswith("_"))


def test_benches_are_found():
  assert {"serving", "model_step", "input_pipeline", "postprocess",
          "build_records"} <= set(BENCHES)


@pytest.mark.parametrize("name", BENCHES)
def test_bench_imports_and_has_main(name):
  module = importlib.import_module(f"bench.{name}")
  if name != "common":
    assert callable(getattr(module, "main", None)), name
