"""unloc_tf.predict on synthetic mp4s: the same detections as evaluating
records built from the same files (checkpoint and SavedModel paths), and the
JSON / PNG outputs."""

import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

import gin
from unloc_tf import datasets, launch, predict, spec
from unloc_tf.data import synthetic
from unloc_tf.export import saved_model
from unloc_tf.launch import flags as launch_flags
from unloc_tf.tasks import action_segmenter
from unloc_tf.train import checkpoints

FPS = 5.0
BINDINGS = ["NUM_FRAMES = 16", "NUM_LEVELS = 2", "REGRESSION_BOUNDS = (4,)",
            "EVAL_BATCH_SIZE = 2", "EVAL_SPLIT = 'test'"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  """Synthetic mp4s, TAL records built from them, a random tiny model saved
  as tools/train.py saves it, and the evaluator's detections on the
  records."""
  root = tmp_path_factory.mktemp("predict")
  syn = str(root / "syn")
  config = synthetic.SyntheticConfig(num_train=1, num_val=1, num_test=2,
                                     min_duration=6, max_duration=10)
  synthetic.write_benchmark(syn, config, tasks=(spec.TAL,), num_shards=1,
                            write_videos=True, zero_shot_records=False)
  data = str(root / "records")
  datasets.convert(datasets.Options(
      format="activitynet",
      annotations=os.path.join(syn, "annotations", "activitynet1.3",
                               "activity_net.v1-3.min.json"),
      videos_dir=os.path.join(syn, "videos"),
      output_dir=os.path.join(data, spec.TAL), split="test",
      subset="testing", fps=FPS, short_side=64, num_shards=1,
      class_list=os.path.join(syn, "classes.txt"), progress=False))
  classes = os.path.join(data, "classes.txt")
  shutil.copy(os.path.join(data, spec.TAL, "classes.txt"), classes)

  bindings = [f"DATA_DIR = '{data}'", *BINDINGS]
  experiment = launch.load_experiment(["experiments/synthetic_tal"], bindings)
  keras.utils.set_random_seed(0)
  model = experiment.build_model()
  work = str(root / "work")
  checkpoints.Checkpointer(os.path.join(work, "checkpoints"), model).save(1)
  with open(os.path.join(work, "operative_config.gin"), "w") as f:
    f.write(gin.config_str())
  # The evaluator on the records (tools/evaluate.py's call, without
  # rebuilding and restoring the same weights).
  evaluator = experiment.evaluator
  evaluator(model, experiment.eval_dataset())
  expected = evaluator.last_predictions["results"]
  # tools/export_saved_model.py's export (without the op audit, for time).
  export_dir = str(root / "serve")
  config = experiment.eval_config
  saved_model.export(
      model=model, export_dir=export_dir, task=config.task,
      num_frames=config.num_frames, input_mode=config.input_mode,
      image_size=config.crop_size, embedding_dim=config.embedding_dim,
      text_max_length=config.max_text_length,
      class_names=config.class_names, keep_eos=config.keep_eos,
      operative_config=gin.config_str(), text_signature=True, audit=False)
  gin.clear_config()
  videos = [os.path.join(syn, "videos", f"{vid}.mp4")
            for vid in sorted(expected)]
  yield dict(root=root, work=work, classes=classes, videos=videos,
             expected=expected, export_dir=export_dir, data=data)
  gin.clear_config()


def _check_same(expected, results):
  assert len(results) == len(expected)
  for result in results:
    vid = os.path.splitext(os.path.basename(result["video"]))[0]
    want = expected[vid]
    got = result["detections"]
    assert len(got) == len(want) > 0
    for w, g in zip(want, got):
      assert g["label"] == w["label"]
      np.testing.assert_allclose(g["segment"], w["segment"], atol=1e-5)
      np.testing.assert_allclose(g["score"], w["score"], atol=1e-5)


def test_checkpoint_predictions_equal_evaluation(setup, capsys):
  out_dir = str(setup["root"] / "out_ckpt")
  predictor = predict.Predictor.from_workdir(
      setup["work"], task=spec.TAL,
      class_names=launch_flags.parse_class_names(setup["classes"]))
  results = predictor.predict(setup["videos"], coarse_secs=0.3)
  for result in results:
    predict.write_outputs(out_dir, result)
  _check_same(setup["expected"], results)
  printed = capsys.readouterr().out
  assert "s per model token" in printed
  assert "WARNING" in printed and "coarse temporal resolution" in printed
  for path in setup["videos"]:
    name = os.path.splitext(os.path.basename(path))[0]
    assert os.path.getsize(os.path.join(out_dir, name + ".png")) > 0
    with open(os.path.join(out_dir, name + ".json")) as f:
      doc = json.load(f)
    assert doc["video"] == path and doc["task"] == spec.TAL
    assert doc["fps"] == FPS and doc["num_tokens"] == 16
    assert doc["num_frames"] == round(doc["duration"] * FPS)
    assert doc["secs_per_token"] == pytest.approx(
        (doc["num_frames"] - 1) / 15 / FPS)
    scores = [d["score"] for d in doc["detections"]]
    assert scores == sorted(scores, reverse=True)
    for d in doc["detections"]:
      assert set(d) == {"label", "segment", "score"}
      assert d["label"] in doc["class_names"]
      assert 0 <= d["segment"][0] <= d["segment"][1] <= doc["duration"] + 1e-3


@pytest.mark.parametrize("signature", ["serving_default", "serving_text"])
def test_saved_model_predictions_equal_evaluation(setup, signature):
  predictor = predict.Predictor.from_saved_model(
      setup["export_dir"], signature=signature,
      gin_bindings=[f"DATA_DIR = '{setup['data']}'"])
  _check_same(setup["expected"], predictor.predict(setup["videos"]))


def test_queries_become_records():
  video = predict.Video("/v/a.mp4", "a", [b"j"] * 10, 5.0, 2.0)
  recs = predict.video_records(video, spec.MR, ["q1", "q2", "q3"], 2)
  assert [qs for _, qs in recs] == [["q1", "q2"], ["q3"]]
  assert [r.example_id for r, _ in recs] == [0, 1]
  assert [s.label_string for s in recs[0][0].segments] == ["q1", "q2"]
  recs = predict.video_records(video, spec.HD, ["q1", "q2"], 5)
  assert [(r.example_id, qs) for r, qs in recs] == [(0, ["q1"]),
                                                    (1, ["q2"])]
  recs = predict.video_records(video, spec.AS, [], 5)
  assert len(recs) == 1 and not recs[0][0].segments
  assert predict.output_names(["x/a.mp4", "y/a.mkv", "b.mp4"]) == [
      "a", "a_1", "b"]
  assert predict.temporal_resolution(spec.TAL, 101, 11, 5.0) == 2.0
  assert predict.temporal_resolution(spec.AS, 101, 11, 5.0) == 0.2


def test_segments_from_frame_logits():
  logits = np.array([[-1, -2], [3, 1], [2, 0], [-1, 4], [np.nan, np.nan],
                     [1, 0]], np.float32)
  segs = action_segmenter.segments_from_frame_logits(logits, 0.5, ["a", "b"])
  assert [(s["label"], s["segment"]) for s in segs] == [
      ("a", [0.5, 1.5]), ("b", [1.5, 2.0]), ("a", [2.5, 3.0])]
  sig = 1 / (1 + np.exp(-np.array([3.0, 2.0])))
  assert segs[0]["score"] == pytest.approx(sig.mean())


def test_the_tool_writes_what_the_predictor_returns(setup, tmp_path):
  """tools/predict.py is flags → Predictor → files: same detections."""
  out_dir = str(tmp_path / "out")
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  video = setup["videos"][0]
  run = subprocess.run(
      [sys.executable, "tools/predict.py", f"--workdir={setup['work']}",
       f"--video={video}", f"--class_names={setup['classes']}",
       f"--output_dir={out_dir}", "--noplot"], cwd=root, capture_output=True,
      text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert run.returncode == 0, run.stderr[-3000:]
  name = os.path.splitext(os.path.basename(video))[0]
  with open(os.path.join(out_dir, name + ".json")) as f:
    doc = json.load(f)
  want = setup["expected"][name]
  assert len(doc["detections"]) == len(want) > 0
  for w, g in zip(want, doc["detections"]):
    assert g["label"] == w["label"]
    np.testing.assert_allclose(g["segment"], w["segment"], atol=1e-5)
  assert f"{video}: {len(want)} detections ->" in run.stdout
  bad = subprocess.run(
      [sys.executable, "tools/predict.py", f"--workdir={setup['work']}",
       f"--saved_model={setup['export_dir']}", f"--video={video}",
       f"--output_dir={out_dir}"], cwd=root, capture_output=True, text=True,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert bad.returncode != 0
  assert "give exactly one of --workdir and --saved_model" in bad.stderr
