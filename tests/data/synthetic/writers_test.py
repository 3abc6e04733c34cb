"""Writers: statistics, records, the benchmark on disk and its tool."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow as tf

from tests.data.synthetic import helpers
from unloc_tf import spec
from unloc_tf.data import pipeline, records
from unloc_tf.data.synthetic import embeddings, render, scene, writers

TINY = helpers.TINY


@pytest.fixture(scope="module")
def layouts():
  """Layouts (no pixels) of a default-sized benchmark, per split."""
  return helpers.default_layouts()


@pytest.fixture(scope="module")
def tiny_videos():
  return helpers.tiny_videos()


# ---------------------------------------------------------------------------
# Statistics of the default benchmark (layouts only).
# ---------------------------------------------------------------------------
def test_statistics_make_a_real_localization_problem(layouts):
  st = writers.statistics(layouts["train"] + layouts["val"] + layouts["test"])
  f = st["event_length_fraction"]
  assert f["min"] <= 0.05 and f["max"] >= 0.5
  # Every length bin (and so every pyramid level) gets events.
  assert all(v > 0.05 for v in st["event_length_fraction_bins"].values())
  assert 0.3 <= st["background_frame_fraction"] <= 0.7
  assert st["overlap_different_classes_fraction"] > 0.3
  assert st["videos_with_distractors_fraction"] > 0.3
  assert 2 <= st["events_per_video"]["mean"] <= 5
  counts = np.array(list(st["class_counts"].values()))
  assert counts.min() > 0.5 * counts.mean()  # roughly balanced
  assert st["num_videos"] == 320
  # Recomputed by hand for one number.
  bg = sum(int((v.frame_labels < 0).sum()) for s in layouts.values()
           for v in s)
  assert st["background_frame_fraction"] == pytest.approx(
      bg / st["num_frames"])


# ---------------------------------------------------------------------------
# Records.
# ---------------------------------------------------------------------------
def test_records_of_every_task_validate_and_round_trip(tiny_videos, tmp_path):
  videos = tiny_videos["train"]
  for task in spec.TASKS:
    recs = [r for v in videos for r in writers.to_records(v, task)]
    for r in recs:
      records.validate(r, task)
    paths = records.write_shards(recs, str(tmp_path / task / "train"), 2,
                                 task)
    raw = [tf.train.SequenceExample.FromString(x.numpy())
           for x in tf.data.TFRecordDataset(paths)]
    assert len(raw) == len(recs)
    ex = raw[0]
    ctx = ex.context.feature
    n = ctx[spec.CLIP_FRAMES].int64_list.value[0]
    jpegs = ex.feature_lists.feature_list[spec.IMAGE_ENCODED].feature
    assert len(jpegs) == n
    img = tf.io.decode_jpeg(jpegs[0].bytes_list.value[0]).numpy()
    assert img.shape == (64, 64, 3)
  v = videos[0]
  [tal] = writers.to_records(v, spec.TAL)
  assert [s.label_index for s in tal.segments] == [e.label for e in v.events]
  assert [s.start_time for s in tal.segments] == [e.start_time
                                                  for e in v.events]
  [zs] = writers.to_records(v, spec.TAL, zero_shot=True)
  classes = scene.compositional_classes()
  assert [classes[s.label_index] for s in zs.segments] == [
      e.zero_shot_name for e in v.events]
  [mr] = writers.to_records(v, spec.MR)
  assert [s.label_string for s in mr.segments] == [e.caption for e in
                                                   v.events]
  [seg] = writers.to_records(v, spec.AS)
  assert [lab[0] if lab else -1 for lab in seg.frame_labels] == list(
      v.frame_labels)
  # JPEG bytes are records.encode_jpeg's, encoded once per video.
  assert tal.frames is mr.frames
  assert tal.frames[:2] == records.encode_jpeg(v.frames[:2])


def test_hd_records_and_saliency(tiny_videos, layouts):
  v = tiny_videos["val"][0]
  hd = writers.to_records(v, spec.HD, hd_max_queries=None)
  assert len(hd) == len(v.events)
  assert len({r.example_id for r in hd}) == len(hd)
  for r in hd:
    [s] = r.segments
    ev = next(e for e in v.events if e.caption == s.label_string)
    sal = r.saliency
    clips = np.asarray(sal.clip_index)
    assert sal.secs_per_clip == 2.0 and sal.scores.shape == (len(clips), 3)
    # Exactly the 2 s clips that touch the window.
    assert clips.min() == math.floor(ev.start_time / 2)
    assert clips.max() == math.ceil(ev.end_time / 2) - 1
  assert len(writers.to_records(v, spec.HD)) == 1  # default: one query (QVH)
  # Scores follow the overlap: full clips score high, thin slivers low.
  full, sliver = [], []
  for lay in layouts["train"][:150]:
    for ev, sal in zip(lay.events, lay.saliency):
      for j, sc in zip(sal.clip_index, sal.scores):
        ov = max(0.0, min(2 * j + 2, ev.end_time, lay.duration)
                 - max(2 * j, ev.start_time)) / min(2.0, lay.duration - 2 * j)
        assert np.all((sc >= 0) & (sc <= 4) & (sc == np.round(sc)))
        (full if ov > 0.99 else sliver if ov < 0.25 else []).append(sc.mean())
  assert np.mean(full) > 3.3 and np.mean(sliver) < 1.0


def test_cls_clips(tiny_videos):
  for v in tiny_videos["train"]:
    recs = writers.to_records(v, spec.CLS)
    assert len(recs) == len(v.events)
    for k, r in enumerate(recs):
      assert v.events[k].label in r.clip_labels
      assert 10 <= r.num_frames <= 50 or r.num_frames == v.num_frames
      assert list(r.clip_label_strings) == [scene.ACTIONS[i]
                                            for i in r.clip_labels]


# ---------------------------------------------------------------------------
# The benchmark on disk.
# ---------------------------------------------------------------------------
def test_write_benchmark_without_pixels(tmp_path):
  """render=False: embedding-only records of the same layouts, which the
  cached-embedding pipeline reads."""
  out = str(tmp_path / "emb")
  tasks = (spec.TAL, spec.MR, spec.AS)
  summary = writers.write_benchmark(out, TINY, tasks=tasks, num_shards=1,
                                    zero_shot_records=False,
                                    state_embeddings=True, render=False)
  assert summary["frames"] is False
  assert summary["embedding_dim"] == embeddings.SCENE_EMBEDDING_DIM
  layout = list(render.generate_split("test", TINY, render=False))
  for task in tasks:
    [path] = records.shard_paths(os.path.join(out, task, "test"), 1)
    serialized = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    assert len(serialized) == len(layout)
    ex = tf.train.SequenceExample.FromString(serialized[0])
    keys = set(ex.feature_lists.feature_list)
    assert spec.IMAGE_EMBEDDING in keys and "image/encoded" not in keys
    rows = ex.feature_lists.feature_list[spec.IMAGE_EMBEDDING].feature
    np.testing.assert_allclose(
        [list(f.float_list.value) for f in rows],
        embeddings.scene_embeddings(layout[0], TINY), atol=1e-6)
  config = pipeline.InputConfig(
      task=spec.MR, num_frames=16, input_mode="embeddings",
      embedding_dim=embeddings.SCENE_EMBEDDING_DIM, num_captions_eval=3)
  batch = next(iter(pipeline.make_dataset(
      os.path.join(out, spec.MR, "test-*"), config, is_training=False,
      global_batch_size=2)))
  assert batch[spec.FRAME_EMBEDDINGS].shape == (
      2, 16, embeddings.SCENE_EMBEDDING_DIM)
  with pytest.raises(ValueError, match="render=False"):
    writers.write_benchmark(str(tmp_path / "bad"), TINY, render=False)


def test_write_benchmark_with_videos_and_annotations(tmp_path):
  out = str(tmp_path / "syn")
  summary = writers.write_benchmark(out, TINY, num_shards=2, write_videos=True)
  videos = {s: list(render.generate_split(s, TINY, render=False))
            for s in scene.SPLITS}
  for task in spec.TASKS:
    for split in scene.SPLITS:
      paths = records.shard_paths(os.path.join(out, task, split), 2)
      assert all(os.path.exists(p) for p in paths)
      count = sum(1 for _ in tf.data.TFRecordDataset(paths))
      assert count == summary["num_records"][task][split]
  assert summary["num_records"][spec.TAL]["train"] == 4
  with open(os.path.join(out, "classes.txt")) as f:
    assert tuple(f.read().split("\n")[:-1]) == scene.ACTIONS
  with open(os.path.join(out, "summary.json")) as f:
    saved = json.load(f)
  assert saved["statistics"]["train"]["num_videos"] == 4
  with open(os.path.join(out, "zero_shot.json")) as f:
    zs = json.load(f)
  assert len(zs["class_names"]) == 32 and len(zs["held_out"]) == 6
  assert all(zs["occurrence"]["train"][c] == 0 for c in zs["held_out"])

  # mp4s decode to the expected number of frames.
  for v in videos["val"]:
    with av.open(os.path.join(out, "videos", f"{v.video_id}.mp4")) as c:
      stream = c.streams.video[0]
      assert stream.codec_context.name == "h264"
      frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert abs(len(frames) - v.num_frames) <= 1
    assert frames[0].shape == (64, 64, 3)

  ann = os.path.join(out, "annotations")
  with open(os.path.join(ann, "activitynet1.3",
                         "activity_net.v1-3.min.json")) as f:
    anet = json.load(f)
  assert anet["version"] == "VERSION 1.3"
  v = videos["train"][1]
  entry = anet["database"][v.video_id]
  assert entry["subset"] == "training"
  assert entry["duration"] == pytest.approx(v.duration)
  assert [(a["segment"], a["label"]) for a in entry["annotations"]] == [
      ([e.start_time, e.end_time], e.action) for e in v.events]
  assert anet["database"][videos["val"][0].video_id]["subset"] == "validation"
  with open(os.path.join(ann, "activitynet_captions", "val.json")) as f:
    caps = json.load(f)
  w = videos["val"][0]
  assert caps[w.video_id]["sentences"] == [e.caption for e in w.events]
  assert caps[w.video_id]["timestamps"] == [[e.start_time, e.end_time]
                                            for e in w.events]
  with open(os.path.join(ann, "charades_sta", "charades_sta_test.txt")) as f:
    lines = f.read().splitlines()
  assert len(lines) == sum(len(u.events) for u in videos["test"])
  vid, st, et = lines[0].split("##")[0].split()
  first = videos["test"][0].events[0]
  assert vid == videos["test"][0].video_id
  assert (float(st), float(et)) == (first.start_time, first.end_time)
  with open(os.path.join(ann, "charades_sta", "Charades_v1_test.csv")) as f:
    rows = list(csv.DictReader(f))
  assert [r["id"] for r in rows] == [u.video_id for u in videos["test"]]
  assert float(rows[0]["length"]) == pytest.approx(videos["test"][0].duration)
  with open(os.path.join(ann, "qvhighlights",
                         "highlight_train_release.jsonl")) as f:
    qvh = [json.loads(line) for line in f]
  assert len(qvh) == 4
  q = qvh[0]
  ev = next(e for e in videos["train"][0].events if e.caption == q["query"])
  assert q["relevant_windows"] == [[ev.start_time, ev.end_time]]
  assert len(q["saliency_scores"]) == len(q["relevant_clip_ids"])
  with open(os.path.join(ann, "coin", "COIN.json")) as f:
    coin = json.load(f)["database"]
  assert {k.split("_")[1] for k in coin} == {"train", "test"}
  entry = coin[v.video_id]
  assert [int(a["id"]) for a in entry["annotation"]] == [e.label
                                                         for e in v.events]


def test_tool_runs(tmp_path):
  out = str(tmp_path / "tool")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__)))))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  res = subprocess.run(
      [sys.executable, os.path.join(root, "tools", "make_synthetic.py"),
       f"--output_dir={out}",
       "--num_train=2", "--num_val=1", "--num_test=1",
       "--tasks=temporal_localization,moment_retrieval", "--num_shards=1"],
      cwd=root, env=env, capture_output=True, text=True, timeout=120)
  assert res.returncode == 0, res.stderr[-2000:]
  assert "background frames" in res.stdout
  assert sorted(os.listdir(out)) == [
      "classes.txt", "moment_retrieval", "summary.json",
      "temporal_localization", "temporal_localization_zero_shot",
      "zero_shot.json"]

