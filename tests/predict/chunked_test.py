"""Chunked prediction on mp4 files: planted segments found at the right
time through the whole path (stream → windows → model → merge), frames
decoded window by window, and the tiny model end to end (predictor ==
chunked evaluation of records built from the same file)."""

import json
import os

import keras
import numpy as np
import pytest

import gin
from tests import fixtures
from unloc_tf import launch, postprocess, predict, spec, tasks
from unloc_tf.data import chunks, pipeline, records
from unloc_tf.data import video as video_lib
from unloc_tf.predict import videos as videos_lib
from unloc_tf.train import checkpoints

FPS, N0 = 5.0, 16
# Stored frames (inclusive) shown white: inside the window starting at 96;
# across the end of the window 216..231 (whole in the window 228..243).
PLANTED = ((100, 105), (229, 233))


def _mp4(path, n, white=()):
  frames = np.zeros((n, 32, 32, 3), np.uint8)
  for s, e in white:
    frames[s:e + 1] = 255
  video_lib.write_mp4(path, frames, FPS)
  return path


class _PlantedRunner:
  """A fake model on the pipeline's batches: tokens showing a white frame
  show the planted action (`fixtures.planted_outputs`), decoded by the real
  post-processing; counts the frames decoded before each batch."""

  def __init__(self, decoded):
    self.decoded = decoded
    self.decoded_at_call = []

  def __call__(self, batch):
    self.decoded_at_call.append(len(self.decoded))
    b = {k: v.numpy() for k, v in batch.items()}
    inside = b[spec.FRAMES].mean(axis=(2, 3, 4)) > 128
    logits, disp = fixtures.planted_outputs(inside)
    dets = postprocess.localization_detections(
        logits, disp, b[spec.FRAME_MASK], b[spec.NUM_FRAMES_TOTAL],
        b[spec.BATCH_SECS_PER_TIMESTEP], pyramid_level_lengths=(N0,))
    return b, {k: v.numpy() for k, v in dets.items()}


def test_planted_segments_in_a_long_video(tmp_path, monkeypatch):
  path = _mp4(str(tmp_path / "long.mp4"), 600, PLANTED)
  decoded = []
  jpegs = videos_lib.jpegs

  def counted(reader, quality=90):
    for jpeg in jpegs(reader, quality):
      decoded.append(1)
      yield jpeg

  monkeypatch.setattr(videos_lib, "jpegs", counted)
  config = pipeline.InputConfig(
      task=spec.TAL, num_frames=N0, crop_size=32, min_resize=32,
      secs_per_timestep=1 / FPS, text_mode="none",
      pyramid=spec.PyramidSpec(N0, 1, ((0, float("inf")),)))
  runner = _PlantedRunner(decoded)
  predictor = predict.Predictor(
      config, runner, tasks.MetricSettings(class_names=("act",)), "planted",
      batch_size=4, chunking=chunks.Chunking("on", overlap_frames=4))
  lines = []
  [result] = predictor.predict([path], report=lines.append)
  assert result["chunked"] and result["windows"] == 50
  assert result["num_frames"] == 600 and result["secs_per_token"] == 0.2
  assert lines == [f"{path}: 120.0 s, 600 frames at 5 fps; 50 windows of 16"
                   " frames (overlap 4): 0.200 s per model token"]
  dets = result["detections"]
  np.testing.assert_allclose([d["segment"] for d in dets[:2]],
                             [[20.0, 21.2], [45.8, 46.8]], atol=1e-5)
  assert [d["label"] for d in dets[:2]] == ["act", "act"]  # the class
  # Window by window: the first batch ran before half the video was read.
  assert runner.decoded_at_call[0] < 300 and len(decoded) == 600

  # Whole-video mode ("off"): 16 tokens over 600 frames miss them.
  predictor.chunking = chunks.Chunking("off")
  [coarse] = predictor.predict([path], report=lines.append)
  assert not coarse["chunked"] and coarse["windows"] == 1
  assert not any(abs(d["segment"][0] - 20.0) < 0.5 for d in coarse[
      "detections"])
  assert "WARNING" in lines[-1] and "--chunking=auto or on" in lines[-1]


def test_tiny_model_end_to_end(tmp_path):
  """A random tiny TAL model from a workdir on a 12 s video in windows of
  16 frames: detections in the video's time, and the same as the chunked
  evaluation of records built from the same file."""
  data, work = tmp_path / "data", str(tmp_path / "work")
  (data / spec.TAL).mkdir(parents=True)
  names = [f"class {i}" for i in range(8)]
  (data / "classes.txt").write_text("\n".join(names) + "\n")
  rng = np.random.default_rng(0)
  path = str(tmp_path / "short.mp4")
  video_lib.write_mp4(path, rng.integers(0, 255, (60, 48, 64, 3),
                                         dtype=np.uint8), FPS)
  bindings = [f"DATA_DIR = '{data}'", f"NUM_FRAMES = {N0}", "NUM_LEVELS = 2",
              "REGRESSION_BOUNDS = (4,)", "EVAL_BATCH_SIZE = 4",
              "EVAL_SPLIT = 'test'"]
  experiment = launch.load_experiment(["experiments/synthetic_tal"],
                                      bindings)
  keras.utils.set_random_seed(0)
  model = experiment.build_model()
  checkpoints.Checkpointer(os.path.join(work, "checkpoints"), model).save(1)
  with open(os.path.join(work, "operative_config.gin"), "w") as f:
    f.write(gin.config_str())
  # Records of the same file, as the converters write them.
  video = videos_lib.decode(path, "short", FPS, 64)
  [(rec, _)] = videos_lib.video_records(video, spec.TAL, [], 1)
  records.write_shards([rec], str(data / spec.TAL / "test"), 1)

  windows = chunks.Chunking("on")
  [result] = predict.Predictor.from_workdir(work, chunking=windows).predict(
      [path])
  assert result["chunked"] and result["windows"] == 5  # 0 12 24 36 44
  dets = result["detections"]
  assert 0 < len(dets) <= 100
  assert all(0 <= d["segment"][0] <= d["segment"][1] <= 12.0 + 1e-4
             and 0 < d["score"] <= 1 and d["label"] in names for d in dets)
  assert [d["score"] for d in dets] == sorted(
      (d["score"] for d in dets), reverse=True)
  assert max(d["segment"][1] for d in dets) > 9.0  # the last windows count

  evaluated = launch.load_experiment(
      ["experiments/synthetic_tal"], bindings).evaluate(work,
                                                        chunking=windows)
  with open(evaluated["predictions"]) as f:
    want = json.load(f)["results"]["short"]
  assert len(want) == len(dets)
  for w, g in zip(want, dets):
    assert g["label"] == w["label"]
    np.testing.assert_allclose(g["segment"], w["segment"], atol=1e-5)
    np.testing.assert_allclose(g["score"], w["score"], atol=1e-5)


@pytest.fixture(autouse=True)
def _clear_gin():
  gin.clear_config()
  yield
  gin.clear_config()
