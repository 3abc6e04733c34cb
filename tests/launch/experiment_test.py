"""The experiment loader: one parse, resolved on demand, clear errors."""

import os

import pytest

import gin
from unloc_tf import launch, spec
from unloc_tf.launch import experiment as experiment_lib

TINY = ["NUM_FRAMES = 16", "NUM_LEVELS = 2", "REGRESSION_BOUNDS = (4,)"]


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def test_building_the_model_reads_no_data():
  """Only what a job needs is resolved: the model of an experiment whose
  data directory does not exist (as the reference converter needs)."""
  exp = launch.load_experiment(["experiments/synthetic_tal"],
                               ["DATA_DIR = '/no/such/dir'", *TINY])
  model = exp.model_fn()
  assert model.task == spec.TAL and not model.built
  with pytest.raises(Exception, match="no/such/dir"):
    exp.eval_config  # noqa: B018 (the class list is read from DATA_DIR)


def test_class_names_replace_the_config_class_list():
  names = ("jumping", "running", "sitting")
  exp = launch.load_experiment(["experiments/synthetic_tal"],
                               ["DATA_DIR = '/no/such/dir'", *TINY],
                               class_names=names)
  assert exp.eval_config.class_names == names
  assert exp.eval_config.num_classes == 3
  assert exp.evaluator.class_names == names
  model = exp.build_model()
  assert model.built and model.text_kind == "class_names"


def test_flag_owned_arguments_cannot_be_bound_in_gin():
  with pytest.raises(ValueError, match="trainer.train.workdir is set by a"
                     " flag"):
    launch.load_experiment(["experiments/synthetic_tal"],
                           ["DATA_DIR = '/x'", "trainer.train.workdir = '/w'"])


def test_a_config_without_a_model_is_refused():
  with pytest.raises(ValueError, match="bind no trainer.train.model_fn"):
    launch.load_experiment(["datasets/synthetic"], ["DATA_DIR = '/x'",
                                                    "TASK = 'x'"])


def test_workdir_gin_files(tmp_path):
  assert experiment_lib.workdir_gin_files(["a.gin"], None) == ["a.gin"]
  with pytest.raises(FileNotFoundError, match="has no operative_config.gin"):
    experiment_lib.workdir_gin_files([], str(tmp_path))
  (tmp_path / "operative_config.gin").write_text("")
  assert experiment_lib.workdir_gin_files([], str(tmp_path)) == [
      os.path.join(str(tmp_path), "operative_config.gin")]
  with pytest.raises(ValueError, match="give --gin_file"):
    experiment_lib.workdir_gin_files([], None)
