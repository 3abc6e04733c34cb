"""unloc_tf.predict for moment retrieval (queries split over records) and
action segmentation (sliding windows): the evaluator's results on records
built from the same mp4s (checkpoint path; TAL and the SavedModel path are
in predict_test.py)."""

import json
import os

import keras
import numpy as np
import pytest

import gin
from tests import fixtures
from unloc_tf import datasets, launch, predict, spec
from unloc_tf.data import synthetic
from unloc_tf.train import checkpoints

FPS = 5.0
BINDINGS = ["NUM_FRAMES = 16", "NUM_LEVELS = 2", "REGRESSION_BOUNDS = (4,)",
            "EVAL_BATCH_SIZE = 2", "EVAL_SPLIT = 'test'"]


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("syn"))
  config = synthetic.SyntheticConfig(num_train=1, num_val=1, num_test=2,
                                     min_duration=6, max_duration=10,
                                     min_events=3)
  synthetic.write_benchmark(out, config, tasks=(spec.TAL,), num_shards=1,
                            write_videos=True, zero_shot_records=False)
  return out


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()


def _records(syn, data, fmt, annotations, task, **kw):
  datasets.convert(datasets.Options(
      format=fmt, annotations=os.path.join(syn, "annotations", annotations),
      videos_dir=os.path.join(syn, "videos"),
      output_dir=os.path.join(data, task), split="test", fps=FPS,
      short_side=64, num_shards=1, progress=False, **kw))


def _model(experiment, data, workdir, *extra):
  """A random tiny model saved as tools/train.py saves it + its evaluator
  run on the records."""
  exp = launch.load_experiment(
      [experiment], [f"DATA_DIR = '{data}'",
                     *fixtures.bindings_read_by([experiment], BINDINGS),
                     *extra])
  keras.utils.set_random_seed(0)
  model = exp.build_model()
  checkpoints.Checkpointer(os.path.join(workdir, "checkpoints"),
                           model).save(1)
  with open(os.path.join(workdir, "operative_config.gin"), "w") as f:
    f.write(gin.config_str())
  evaluator = exp.evaluator
  evaluator(model, exp.eval_dataset())
  gin.clear_config()
  return evaluator.last_predictions


def test_moment_retrieval_queries(syn, tmp_path):
  data, work = str(tmp_path / "data"), str(tmp_path / "work")
  _records(syn, data, "activitynet_captions",
           os.path.join("activitynet_captions", "test.json"), spec.MR)
  rows = _model("experiments/synthetic_mr", data, work,
                "NUM_CAPTIONS_EVAL = 2")
  with open(os.path.join(syn, "annotations", "activitynet_captions",
                         "test.json")) as f:
    captions = json.load(f)
  vid, ann = sorted(captions.items())[0]
  queries = ann["sentences"]
  assert len(queries) >= 3  # two records of K = 2 queries
  path = os.path.join(syn, "videos", vid + ".mp4")
  [result] = predict.Predictor.from_workdir(work).predict([path],
                                                          queries=queries)
  assert result["queries"] == queries
  got = {}
  for d in result["detections"]:
    assert set(d) == {"query", "segment", "score"}
    got.setdefault(d["query"], []).append(d)
  assert set(got) == set(queries)
  # The records of build_records hold the first K = 2 captions.
  evaluated = [r for r in rows if r["video_id"] == vid]
  assert len(evaluated) == 2
  for row in evaluated:
    mine = got[queries[row["caption_index"]]]
    assert len(mine) == len(row["candidates"]) > 0
    for d, (s, e, score) in zip(mine, row["candidates"]):
      np.testing.assert_allclose(d["segment"], [s, e], atol=1e-5)
      np.testing.assert_allclose(d["score"], score, atol=1e-5)


def test_action_segmentation_windows(syn, tmp_path):
  data, work = str(tmp_path / "data"), str(tmp_path / "work")
  _records(syn, data, "coin", os.path.join("coin", "COIN.json"), spec.AS,
           subset="testing", class_list=os.path.join(syn, "classes.txt"))
  with open(os.path.join(syn, "classes.txt")) as f:
    names = [line.strip() for line in f if line.strip()]
  with open(os.path.join(data, "classes.txt"), "w") as f:
    f.write("\n".join(names) + "\n")
  preds = _model("experiments/synthetic_as", data, work,
                 "HEAD_BIAS = 0.0")["predictions"]
  videos = sorted(os.path.join(syn, "videos", v) for v in
                  os.listdir(os.path.join(syn, "videos")) if "test" in v)
  results = predict.Predictor.from_workdir(
      work, class_names=tuple(names)).predict(videos)
  assert len(preds) == len(videos) == 2
  for frame_pred, result in zip(preds, results):
    n = result["num_frames"]
    assert len(frame_pred) == n > 16  # several windows
    assert result["secs_per_token"] == pytest.approx(1 / FPS)
    # Re-paint the segments onto frames: the evaluator's frame classes.
    painted = np.full(n, -1)
    for d in result["detections"]:
      a = int(round(d["segment"][0] * FPS))
      b = int(round(d["segment"][1] * FPS))
      painted[a:b] = names.index(d["label"])
      assert 0 < d["score"] < 1
    np.testing.assert_array_equal(painted, frame_pred)
    assert (painted >= 0).any()
