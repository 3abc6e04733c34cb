"""Every bundled experiment parses, finalizes, and builds its model (at tiny
size) and input configs — so a misspelt binding fails here."""

import json
import re

import numpy as np
import pytest

import gin
from unloc_tf import launch
from unloc_tf.launch import config_files
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


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_at_tiny_size(tmp_path, name):
  bindings = [
      "MODEL_SIZE = 'tiny'", "IMAGE_SIZE = 32", "MIN_RESIZE = 32",
      "FPN_LAYERS = (0, 1)",
  ]
  launch.parse_gin([name], bindings + ["DATA_DIR = '/unused'",
                                        "CLASS_EMBEDDINGS = '/unused'",
                                        "ZERO_SHOT_SPLITS = '/unused'",
                                        "NUM_CLASSES = 5",
                                        "TRAIN_STEPS = 10"]
                   if "kinetics" in name else
                   bindings + ["DATA_DIR = '/unused'",
                               "CLASS_EMBEDDINGS = '/unused'",
                               "ZERO_SHOT_SPLITS = '/unused'"],
                   finalize=False)
  try:
    num_classes = gin.query_parameter("%NUM_CLASSES")
  except ValueError:
    num_classes = 1
  try:
    fpn = gin.query_parameter("%PYRAMID") == "fpn"
  except ValueError:
    fpn = False
  if fpn:  # the tiny fusion has 2 blocks: 2 FPN levels
    bindings += ["NUM_LEVELS = 2", "REGRESSION_BOUNDS = (4,)"]
  data_dir = _data_dir(tmp_path, num_classes)
  gin.clear_config()
  extra = [f"DATA_DIR = '{data_dir}'",
           f"CLASS_EMBEDDINGS = '{data_dir}/emb.npy'",
           f"ZERO_SHOT_SPLITS = '{data_dir}/zs.json'"]
  if "kinetics" in name:
    extra += ["NUM_CLASSES = 5", "TRAIN_STEPS = 10"]
  experiment = launch.load_experiment([name], bindings + extra)
  train_kwargs = gin.get_bindings(trainer.train)
  assert train_kwargs["total_steps"] > 0
  model = experiment.build_model()
  assert model.built and model.task == experiment.task
  optimizer = train_kwargs["optimizer_fn"]()
  assert optimizer is not None
  assert experiment.evaluator.decode_settings.max_detections > 0
  for config in (experiment.train_config, experiment.eval_config):
    assert config.task
    if config.class_names is not None:
      assert len(config.class_names) == config.num_output_classes or (
          config.class_subset is not None)


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
