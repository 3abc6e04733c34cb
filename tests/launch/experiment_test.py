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


# -- a user's mistakes, each named with what to do ---------------------------
def test_a_binding_of_a_macro_no_config_reads_is_refused():
  with pytest.raises(ValueError, match=r"^unknown macro TRAIN_STEP \(did you"
                     r" mean TRAIN_STEPS\?\)"):
    launch.load_experiment(["experiments/synthetic_tal"],
                           ["DATA_DIR = '/x'", "TRAIN_STEP = 10"])
  # A macro of the experiment, a configurable binding and a macro set from
  # another macro are all accepted.
  launch.load_experiment(["experiments/synthetic_tal"],
                         ["DATA_DIR = '/x'", "TRAIN_STEPS = 10",
                          "trainer.train.log_every = 5",
                          "WARMUP_STEPS = %TRAIN_STEPS"])


def test_a_binding_that_does_not_parse_is_quoted():
  with pytest.raises(ValueError, match=r"--gin_bindings='TRAIN_STEPS=' does"
                     r" not parse: Unable to parse value"):
    launch.load_experiment(["experiments/synthetic_tal"],
                           ["DATA_DIR = '/x'", "TRAIN_STEPS="])


def test_a_required_macro_is_named_with_the_binding_to_add():
  with pytest.raises(ValueError, match=r"experiments/synthetic_tal needs"
                     r" DATA_DIR: add --gin_bindings=\"DATA_DIR = \.\.\.\""
                     r" with the directory of records"):
    launch.load_experiment(["experiments/synthetic_tal"])


def test_a_misspelt_gin_file_gets_the_closest_names():
  with pytest.raises(FileNotFoundError, match=r"'experiments/synthetic_tl'"
                     r" not found .*did you mean experiments/synthetic_tal"):
    launch.load_experiment(["experiments/synthetic_tl"])


def test_missing_and_empty_data_dirs_get_different_messages(tmp_path):
  missing = launch.load_experiment(
      ["experiments/synthetic_tal"], [f"DATA_DIR = '{tmp_path}/none'"])
  with pytest.raises(FileNotFoundError, match=r"records' directory .*/none/"
                     r"temporal_localization does not exist: write records"
                     r" there with tools/make_synthetic.py"):
    missing.check_training_records()
  (tmp_path / "temporal_localization").mkdir()
  (tmp_path / "temporal_localization" / "notes.txt").write_text("x")
  empty = launch.load_experiment(
      ["experiments/synthetic_tal"], [f"DATA_DIR = '{tmp_path}'"])
  with pytest.raises(FileNotFoundError, match=r"no train records match .*"
                     r"temporal_localization/train-\*.* holds 1 entries:"
                     r" notes.txt\): write them with tools/make_synthetic"):
    empty.check_training_records()


def test_evaluating_without_a_checkpoint_fails_before_building(tmp_path,
                                                             monkeypatch):
  exp = launch.load_experiment(["experiments/synthetic_tal"],
                               [f"DATA_DIR = '{tmp_path}'", *TINY])

  def no_build():
    raise AssertionError("the model was built")

  monkeypatch.setattr(exp, "build_model", no_build)
  with pytest.raises(FileNotFoundError, match=r"workdir .*/w does not exist:"
                     r" train first \(tools/train.py --workdir="):
    exp.evaluate(str(tmp_path / "w"))
  (tmp_path / "w").mkdir()
  with pytest.raises(FileNotFoundError, match=r"no latest checkpoint in .*/w"
                     r" yet: train first"):
    exp.evaluate(str(tmp_path / "w"))
  with pytest.raises(FileNotFoundError, match=r"no best checkpoint in .*"
                     r"EVAL_EVERY"):
    exp.export(str(tmp_path / "w"), str(tmp_path / "export"),
               checkpoint="best")
  with pytest.raises(FileNotFoundError, match=r"checkpoint /a/ckpt-3 not"
                     r" found \(no /a/ckpt-3.index\)"):
    exp.load_model(str(tmp_path / "w"), "/a/ckpt-3")
