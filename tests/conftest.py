"""Test settings shared by every test: quiet TensorFlow, CPU only."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

# The tests that take a minute or more (whole tools in subprocesses, training
# to a threshold, two workers, SIGKILL and resume, the export fixtures) run
# first, so that `pytest -n 2` ends with short tests on both workers instead
# of one worker finishing a long test alone (measured: the last 4% of the
# suite took 6 of its 17 minutes when these came last, as they sort).
_LONG_FIRST = (
    "tests/tools/main_job_test.py",
    "tests/tools/end_to_end_test.py",
    "tests/tasks/training_test.py",
    "tests/train/multi_worker_test.py",
    "tests/train/resume_test.py",
    "tests/export/saved_model_test.py",
    "tests/train/trainer_test.py",
    "tests/predict/",
    "tests/tools/",
)


def _rank(item) -> int:
  for i, prefix in enumerate(_LONG_FIRST):
    if item.nodeid.startswith(prefix):
      return i
  return len(_LONG_FIRST)


def pytest_collection_modifyitems(config, items):
  del config
  items.sort(key=_rank)  # stable: the same order in every xdist worker
