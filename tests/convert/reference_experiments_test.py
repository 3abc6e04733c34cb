"""Reference → unloc_tf → reference is exact for every reference experiment.

Each of the 8 reference configs (gin/experiments, reference_spec.md §2.9)
at tiny size, as configured and on cached frame embeddings whose width is
neither D nor 512 (768: ViT-B/16 features, the issue's UnLoc-B MR case): a
reference-named tree → `reference.convert` (a workdir checkpoint, fresh
model) → `reference.to_reference` (another fresh model) gives back the same
names and the same arrays bit for bit.  The CLI runs the 768-wide MR case.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import gin
from unloc_tf import launch
from unloc_tf.convert import reference, reference_io

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

# The released reference configs (reference_spec.md §2.9, §7.2).
REFERENCE_EXPERIMENTS = (
    "activitynet_tal_base_16", "activitynet_tal_large_14",
    "activitynet_captions_base_16", "activitynet_captions_large_14",
    "charades_sta_base_16", "qvhighlights_base_16", "qvhighlights_large_14",
    "coin_large_14")
FPN = ("activitynet_captions_large_14", "charades_sta_base_16")
TEXT_EMBEDDINGS = ("activitynet_tal_large_14", "coin_large_14")
FRAME_WIDTH = 768  # != D (64 at tiny size) and != 512 (UnLoc-B's D)


def _bindings(name, frame_width):
  out = ["DATA_DIR = '/unused'", "MODEL_SIZE = 'tiny'", "IMAGE_SIZE = 32", "MIN_RESIZE = 32",
         "TEXT_LENGTH = 8", "FPN_LAYERS = (0, 1)",
         # Levels of 16, 8, 4, 2 (, 1 for TAL-L) tokens; COIN's window.
         "NUM_FRAMES = 16"]
  if name in TEXT_EMBEDDINGS:
    out.append("CLASS_EMBEDDINGS = '/unused'")
  if name in FPN:  # the tiny fusion has 2 blocks: 2 FPN levels
    out += ["NUM_LEVELS = 2", "REGRESSION_BOUNDS = (4,)"]
  if frame_width:
    out += ["INPUT_MODE = 'embeddings'", f"EMBEDDING_DIM = {frame_width}"]
  return out


def _perturb(model, seed):
  rng = np.random.default_rng(seed)
  for v in model.variables:
    v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))


def _reference_tree(model_fn, name, frame_width):
  """A reference-layout tree of the config (random values)."""
  model = model_fn()
  d = model.backbone.embed_dim
  shapes = {}
  if frame_width:
    shapes["video_projection/kernel"] = (frame_width, d)
  reference.build_task_model(model, shapes)
  _perturb(model, seed=1)
  tree = reference.export_reference_tree(model)
  if name in TEXT_EMBEDDINGS:
    # pass_through_encoder: D-wide class-name embeddings, no projection.
    assert tree.pop("text_projection/kernel").shape == (d, d)
  return tree


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


# Each config as configured, and one per task family (TAL, MR with the
# reference FPN, HD, AS with class-name embeddings) on 768-wide cached frame
# embeddings: the width `to_reference` must take from the checkpoint.
WIDE = ("activitynet_tal_base_16", "charades_sta_base_16",
        "qvhighlights_base_16", "coin_large_14")
CASES = ([(n, None) for n in REFERENCE_EXPERIMENTS]
         + [(n, FRAME_WIDTH) for n in WIDE])


@pytest.mark.parametrize(
    "name,frame_width", CASES,
    ids=[f"{n}-{'embeddings%d' % w if w else 'as_configured'}"
         for n, w in CASES])
def test_reference_round_trip_is_exact(name, frame_width, tmp_path):
  experiment = launch.load_experiment([f"experiments/{name}"],
                                      _bindings(name, frame_width))
  tree = _reference_tree(experiment.model_fn, name, frame_width)
  if frame_width:
    assert tree["video_projection/kernel"].shape == (FRAME_WIDTH, 64)
  src = reference_io.write_reference_tree(str(tmp_path / "checkpoint_3"),
                                          tree, wrapper="params")
  work = str(tmp_path / "work")
  summary = reference.convert(src, experiment.model_fn(), work)
  assert summary["synthesized"] == (
      ["text_projection/kernel"] if name in TEXT_EMBEDDINGS else [])
  out = str(tmp_path / "back.npz")
  result = reference.to_reference(experiment.model_fn(), work, out)
  assert result["num_names"] == len(tree)
  assert result["omitted"] == (
      ["text_projection/kernel"] if name in TEXT_EMBEDDINGS else [])
  back = reference_io.read_reference_tree(out)
  assert sorted(back) == sorted(tree)
  for key, value in tree.items():
    assert back[key].dtype == value.dtype, key
    np.testing.assert_array_equal(back[key], value, err_msg=key)


def test_trained_text_projection_is_kept(tmp_path):
  """A non-identity projection of cached text embeddings (trained) is
  written: dropping it would change the model."""
  name = "activitynet_tal_large_14"
  experiment = launch.load_experiment([f"experiments/{name}"],
                                      _bindings(name, None))
  tree = _reference_tree(experiment.model_fn, name, None)
  src = reference_io.write_reference_tree(str(tmp_path / "ref.npz"), tree)
  work = str(tmp_path / "work")
  reference.convert(src, experiment.model_fn(), work)
  model = reference.build_task_model(experiment.model_fn())
  from unloc_tf.train import checkpoints  # noqa: PLC0415
  checkpoints.restore_partial(model, os.path.join(work, "checkpoints"))
  kernel = model.backbone.text_projection.kernel
  kernel.assign(kernel.numpy() * 1.5)
  work2 = str(tmp_path / "work2")
  checkpoints.Checkpointer(os.path.join(work2, "checkpoints"), model).save(1)
  result = reference.to_reference(experiment.model_fn(), work2,
                                  str(tmp_path / "back.npz"))
  assert result["omitted"] == []
  back = reference_io.read_reference_tree(str(tmp_path / "back.npz"))
  np.testing.assert_array_equal(back["text_projection/kernel"],
                                kernel.numpy())


def test_to_reference_with_the_wrong_model_names_the_workdir(tmp_path):
  name = "activitynet_captions_base_16"
  experiment = launch.load_experiment([f"experiments/{name}"],
                                      _bindings(name, FRAME_WIDTH))
  tree = _reference_tree(experiment.model_fn, name, FRAME_WIDTH)
  src = reference_io.write_reference_tree(str(tmp_path / "ref.npz"), tree)
  work = str(tmp_path / "work")
  reference.convert(src, experiment.model_fn(), work)
  gin.clear_config()
  other = launch.load_experiment(
      [f"experiments/{name}"],
      _bindings(name, FRAME_WIDTH) + ["HEAD_CONV_LAYERS = 2"])
  with pytest.raises(ValueError) as err:
    reference.to_reference(other.model_fn(), work, str(tmp_path / "x.npz"))
  msg = str(err.value)
  assert os.path.join(work, "checkpoints") in msg
  assert "conv2" in msg  # the variable the gin model lacks
  assert "operative_config.gin" in msg
  assert not (tmp_path / "x.npz").exists()


def _cli(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.run(
      [sys.executable, "tools/convert_reference_checkpoint.py", *args],
      cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_cli_round_trip_of_mr_on_768_wide_embeddings(tmp_path):
  """The issue's case: UnLoc-B MR on 768-d frame embeddings (here at tiny
  size): --to_reference used to fail with a (768, D) shape mismatch."""
  name = "activitynet_captions_base_16"
  bindings = _bindings(name, FRAME_WIDTH)
  experiment = launch.load_experiment([f"experiments/{name}"], bindings)
  tree = _reference_tree(experiment.model_fn, name, FRAME_WIDTH)
  gin.clear_config()
  src = reference_io.write_reference_tree(str(tmp_path / "ref.npz"), tree)
  work = tmp_path / "work"
  gin_args = [f"--gin_file=experiments/{name}",
              *[f"--gin_bindings={b}" for b in bindings]]
  out = _cli(*gin_args, f"--reference_checkpoint={src}", f"--workdir={work}")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  out = _cli(*gin_args, f"--workdir={work}",
             f"--to_reference={tmp_path / 'back.npz'}")
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  assert json.loads(out.stdout)["num_names"] == len(tree)
  back = reference_io.read_reference_tree(str(tmp_path / "back.npz"))
  assert back["video_projection/kernel"].shape == (FRAME_WIDTH, 64)
  assert sorted(back) == sorted(tree)
  for key, value in tree.items():
    np.testing.assert_array_equal(back[key], value, err_msg=key)
