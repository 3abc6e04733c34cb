"""Every bundled experiment parses, finalizes, and builds its model (at tiny
size) and input configs — so a misspelt binding fails here."""

import json
import re

import numpy as np
import pytest

import gin
from unloc_tf import launch
from unloc_tf.launch import bindings, config_files
from unloc_tf.train import trainer

EXPERIMENTS = [c for c in config_files.list_configs("experiments")]


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _data_dir(tmp_path, num_classes):
  with open(tmp_path / "classes.txt", "w") as f:
    f.write("\n".join(f"class {i}" for i in range(num_classes)) + "\n")
  np.save(tmp_path / "emb.npy", np.zeros((num_classes, 2, 16), np.float32))
  splits = {"splits": [{"seen_indices": list(range(0, num_classes, 2)),
                        "unseen_indices": list(range(1, num_classes, 2))}]}
  (tmp_path / "zs.json").write_text(json.dumps(splits))
  return str(tmp_path)


def test_every_experiment_is_found():
  assert len(EXPERIMENTS) >= 15
  for name in ("synthetic_mr.gin", "activitynet_tal_base_16.gin",
               "coin_large_14.gin", "kinetics_pretrain_base_16.gin"):
    assert f"experiments/{name}" in EXPERIMENTS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_header(name):
  text = open(config_files.find(name)).read()
  assert text.startswith("# "), name
  header = text[:re.search(r"^[^#\n]", text, re.M).start()]
  assert "Run:" in header, f"{name}: the header gives the command to run it"
  assert re.search(r"Result:|Expected:|Paper Table \d", header), (
      f"{name}: the header gives the result it should reach")


_DATA_MACROS = ("DATA_DIR", "CLASS_EMBEDDINGS", "ZERO_SHOT_SPLITS",
                "TRAIN_STEPS")


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_at_tiny_size(tmp_path, name):
  """The README's laptop recipe: the experiment, then models/tiny_cpu, and
  only the macros its header requires (so the header is checked too)."""
  launch.parse_gin([name, "models/tiny_cpu"], finalize=False)
  fixed_classes = gin.query_parameter("%NUM_CLASSES") if (
      "NUM_CLASSES" in bindings.macros_defined()) else 1
  if not isinstance(fixed_classes, int):  # read from classes.txt
    fixed_classes = None
  header = open(config_files.find(name)).read()
  required = re.search(r"^# Required: (.*)$", header, re.M)
  needed = [m for m in _DATA_MACROS
            if required and m in required.group(1).split(".  ")[0]]
  data_dir = _data_dir(tmp_path, fixed_classes or 5)
  values = {"DATA_DIR": f"'{data_dir}'",
            "CLASS_EMBEDDINGS": f"'{data_dir}/emb.npy'",
            "ZERO_SHOT_SPLITS": f"'{data_dir}/zs.json'",
            "TRAIN_STEPS": "10"}
  experiment = launch.load_experiment(
      [name, "models/tiny_cpu"], [f"{m} = {values[m]}" for m in needed])
  train_kwargs = gin.get_bindings(trainer.train)
  assert train_kwargs["total_steps"] > 0
  model = experiment.build_model()
  assert model.built and model.task == experiment.task
  assert model.count_params() < 5_000_000, "tiny, not the recipe's size"
  optimizer = train_kwargs["optimizer_fn"]()
  assert optimizer is not None
  assert experiment.evaluator.decode_settings.max_detections > 0
  for config in (experiment.train_config, experiment.eval_config):
    assert config.task
    if config.class_names is not None:
      assert len(config.class_names) == config.num_output_classes or (
          config.class_subset is not None)
      if fixed_classes is None:  # the count is the class list's
        assert config.num_classes == 5


def test_class_count_defaults_to_the_dataset_without_a_class_list(tmp_path):
  launch.parse_gin(["experiments/activitynet_tal_base_16"],
                   [f"DATA_DIR = '{tmp_path}'"])
  assert gin.query_parameter("%NUM_CLASSES") is not None
  from unloc_tf.data import pipeline  # noqa: PLC0415
  assert pipeline.count_class_names(200, data_dir=str(tmp_path)) == 200
  _data_dir(tmp_path, 12)
  assert pipeline.count_class_names(200, data_dir=str(tmp_path)) == 12
  with pytest.raises(FileNotFoundError, match="bind NUM_CLASSES"):
    pipeline.count_class_names(data_dir=str(tmp_path / "none"))


@pytest.mark.parametrize("task", ["tal", "mr", "as"])
def test_synthetic_embedding_experiments_match_the_benchmark(task):
  """The main job's experiments read what `write_benchmark` stores."""
  from unloc_tf.data import synthetic  # noqa: PLC0415
  launch.parse_gin([f"experiments/synthetic_{task}_embeddings"],
                   ["DATA_DIR = '/unused'"], finalize=False)
  assert gin.query_parameter("%INPUT_MODE") == "embeddings"
  assert gin.query_parameter("%EMBEDDING_DIM") == (
      synthetic.SCENE_EMBEDDING_DIM)
  assert gin.query_parameter("%SECS_PER_TIMESTEP") == pytest.approx(
      1 / synthetic.SyntheticConfig().fps)
