"""Test settings shared by every test: quiet TensorFlow, CPU only."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


# The files whose tests take minutes (then tens of seconds), longest first: collected first, so
# that `pytest -n 2` (files kept whole: --dist loadfile in pytest.ini)
# starts them at once and the two workers finish together (in path order
# they came last).
_SLOW_FILES = (
    "tests/tools/main_job_test.py",
    "tests/export/saved_model_test.py",
    "tests/tasks/training_test.py",
    "tests/train/multi_worker_test.py",
    "tests/tools/end_to_end_test.py",
    "tests/train/resume_test.py",
    "tests/predict/predictor_test.py",
    "tests/tasks/multitask_test.py",
    "tests/train/trainer_test.py",
    "tests/tools/build_records_test.py",
    "tests/tools/visualize_test.py",
    "tests/tasks/classifier_training_test.py",
    "tests/data/pipeline_test.py",
    "tests/tools/convert_reference_checkpoint_test.py",
    "tests/convert/reference_experiments_test.py",
    "tests/datasets/beam_conversion_test.py",
    "tests/features/beam_extraction_test.py",
    "tests/features/extract_test.py",
    "tests/tasks/distribute_test.py",
    "tests/tasks/tasks_test.py",
    "tests/predict/chunked_test.py",
    "tests/predict/tasks_test.py",
    "tests/tasks/moment_retriever_test.py",
)


def pytest_collection_modifyitems(config, items):
  del config
  rank = {path: i for i, path in enumerate(_SLOW_FILES)}
  items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0],
                                       len(rank)))
