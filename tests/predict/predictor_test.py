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


def _videos_dir(setup, tmp_path):
  """The two good mp4s and x.mp4, 4 KiB of random bytes."""
  videos_dir = tmp_path / "videos"
  videos_dir.mkdir()
  for path in setup["videos"]:
    shutil.copy(path, videos_dir)
  bad = videos_dir / "x.mp4"
  bad.write_bytes(np.random.default_rng(0).bytes(4096))
  names = sorted(os.path.splitext(os.path.basename(p))[0]
                 for p in setup["videos"])
  return str(videos_dir), str(bad), names


def test_the_tool_skips_a_bad_video_and_resumes(setup, tmp_path):
  """--videos_dir with an undecodable file: the others are written, the bad
  one is one FAILED line, exit 1; a rerun skips the written ones."""
  videos_dir, bad, names = _videos_dir(setup, tmp_path)
  out_dir = tmp_path / "out"
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))

  def tool(*extra):
    return subprocess.run(
        [sys.executable, "tools/predict.py", f"--workdir={setup['work']}",
         f"--videos_dir={videos_dir}", f"--class_names={setup['classes']}",
         f"--output_dir={out_dir}", *extra], cwd=root, capture_output=True,
        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))

  run = tool()
  assert run.returncode == 1, run.stderr[-3000:]
  failed = [line for line in run.stderr.splitlines()
            if line.startswith("FAILED")]
  assert len(failed) == 1, run.stderr[-3000:]
  assert failed[0].startswith(
      f"FAILED: {bad}: open: cannot open the container")
  assert "Invalid data found" in failed[0]
  assert run.stdout.rstrip().endswith(
      f"predict.py: 2 done, 0 skipped (outputs exist), 1 failed: {bad}")
  assert sorted(os.listdir(out_dir)) == sorted(
      n + ext for n in names for ext in (".json", ".png"))
  first = out_dir / f"{names[0]}.json"
  assert json.loads(first.read_text())["detections"]
  first.write_text("{}")  # a rerun must not touch it

  run = tool()
  assert run.returncode == 1, run.stderr[-3000:]
  assert f"FAILED: {bad}: open:" in run.stderr
  assert run.stdout.rstrip().endswith(
      f"predict.py: 0 done, 2 skipped (outputs exist), 1 failed: {bad}")
  assert first.read_text() == "{}"  # (--overwrite: the next test)


def test_predict_videos_resumes_after_a_kill(setup, tmp_path, monkeypatch):
  """A killed run's leftovers (a PNG without its JSON, a partial temporary
  JSON) are redone; a complete rerun loads no model; `overwrite` redoes
  existing outputs; without matplotlib one line says what to install and
  the JSONs are still written."""
  from unloc_tf import visualize  # noqa: PLC0415

  videos = sorted(setup["videos"])
  names = predict.output_names(videos)
  out = tmp_path / "out"
  out.mkdir()
  (out / f"{names[0]}.png").write_bytes(b"partial")  # killed before JSON
  (out / f"{names[1]}.json.incomplete").write_text('{"trunc')
  made = []

  def make():
    made.append(1)
    return predict.Predictor.from_workdir(
        setup["work"], class_names=launch_flags.parse_class_names(
            setup["classes"]))

  lines = []
  summary = predict.predict_videos(make, videos, str(out), report=lines.append,
                                   warn=lines.append)
  assert (summary.done, summary.skipped, summary.failed) == (videos, [], [])
  assert sorted(os.listdir(out)) == sorted(
      n + ext for n in names for ext in (".json", ".png"))
  assert os.path.getsize(out / f"{names[0]}.png") > 1000  # redrawn
  for name in names:
    assert json.loads((out / f"{name}.json").read_text())["detections"]
  summary = predict.predict_videos(make, videos, str(out), report=lines.append,
                                   warn=lines.append)
  assert summary.skipped == videos and not summary.done
  assert summary.line() == "0 done, 2 skipped (outputs exist), 0 failed"
  assert len(made) == 1  # the rerun made no model
  first = out / f"{names[0]}.json"
  first.write_text("{}")
  summary = predict.predict_videos(make, videos, str(out), overwrite=True,
                                   report=lines.append, warn=lines.append)
  assert summary.line() == "2 done, 0 skipped (outputs exist), 0 failed"
  assert json.loads(first.read_text())["detections"]

  monkeypatch.setitem(sys.modules, "matplotlib", None)  # not installed
  visualize._mpl.cache_clear()  # pylint: disable=protected-access
  try:
    lines.clear()
    out2 = tmp_path / "no_mpl"
    summary = predict.predict_videos(make, videos[:1], str(out2),
                                     report=lines.append, warn=lines.append)
    assert summary.done == videos[:1]
    assert [line for line in lines if "matplotlib" in line] == [
        "no timeline PNGs: plotting needs matplotlib, which is not"
        " installed: pip install matplotlib (or pip install"
        " 'unloc_tf[data]'); or pass --noplot"]
    assert os.listdir(out2) == [f"{names[0]}.json"]
    with pytest.raises(ImportError, match="pip install matplotlib"):
      predict.write_outputs(str(out2), dict(json.loads(
          (out2 / f"{names[0]}.json").read_text()), name="other"))
    assert os.listdir(out2) == [f"{names[0]}.json"]  # nothing written
  finally:
    monkeypatch.undo()
    visualize._mpl.cache_clear()  # pylint: disable=protected-access
