"""The synthetic benchmark: determinism, statistics, pixels, records, files."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess
import sys

import av
import numpy as np
import pytest
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import pipeline, records
from unloc_tf.data import synthetic as syn

TINY = syn.SyntheticConfig(num_train=4, num_val=2, num_test=2,
                           min_duration=8.0, max_duration=14.0)
FPS = syn.SyntheticConfig().fps


@pytest.fixture(scope="module")
def layouts():
  """Layouts (no pixels) of a default-sized benchmark, per split."""
  cfg = syn.SyntheticConfig()
  return {s: list(syn.generate_split(s, cfg, render=False))
          for s in syn.SPLITS}


@pytest.fixture(scope="module")
def tiny_videos():
  return {s: list(syn.generate_split(s, TINY)) for s in syn.SPLITS}


# ---------------------------------------------------------------------------
# Determinism.
# ---------------------------------------------------------------------------
def test_same_seed_same_video_different_seed_different():
  a = syn.generate_video("v", 7, TINY)
  b = syn.generate_video("v", 7, TINY)
  c = syn.generate_video("v", 8, TINY)
  assert a.frames.dtype == np.uint8 and a.frames.ndim == 4
  assert a.frames.shape[1:] == (64, 64, 3)
  np.testing.assert_array_equal(a.frames, b.frames)
  assert a.events == b.events
  np.testing.assert_array_equal(a.frame_labels, b.frame_labels)
  assert (a.frames.shape != c.frames.shape
          or np.abs(a.frames.astype(int) - c.frames).mean() > 5)
  assert a.events != c.events


def test_splits_deterministic_and_disjoint(tiny_videos):
  again = list(syn.generate_split("train", TINY))
  for x, y in zip(again, tiny_videos["train"]):
    assert x.video_id == y.video_id and x.events == y.events
    np.testing.assert_array_equal(x.frames, y.frames)
  ids = [v.video_id for s in syn.SPLITS for v in tiny_videos[s]]
  assert len(ids) == len(set(ids)) == 8
  train0, test0 = tiny_videos["train"][0], tiny_videos["test"][0]
  assert train0.events != test0.events
  # Another master seed gives other videos.
  other = next(syn.generate_split("train", dataclasses.replace(TINY, seed=1)))
  assert other.events != train0.events


def test_layout_is_what_gets_rendered(tiny_videos):
  for v in tiny_videos["val"]:
    lay = syn.sample_layout(v.video_id, v.seed, TINY, split="val", index=int(
        v.video_id[-5:]))
    assert lay.frames is None
    assert lay.events == v.events and lay.objects == v.objects
    np.testing.assert_array_equal(lay.frame_labels, v.frame_labels)
    assert v.frames.shape[0] == v.num_frames == round(v.duration * v.fps)


# ---------------------------------------------------------------------------
# Statistics of the default benchmark (layouts only).
# ---------------------------------------------------------------------------
def test_statistics_make_a_real_localization_problem(layouts):
  st = syn.statistics(layouts["train"] + layouts["val"] + layouts["test"])
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


def test_objects_sizes_and_distractor_speed(layouts):
  cfg = syn.SyntheticConfig()
  for v in layouts["train"][:100]:
    assert len({(o.colour, o.shape) for o in v.objects}) == len(v.objects)
    assert len([o for o in v.objects if o.event is not None]) == len(v.events)
    for o in v.objects:
      assert 10 <= o.size <= 24
      if o.event is None:
        ax, ay, period, _ = o.drift
        speed = 2 * math.pi * math.hypot(ax, ay) / period  # px/s, max
        assert speed < 0.25 * cfg.move_speed[0]


def test_captions_unique_and_compositional(layouts):
  for v in layouts["train"]:
    caps = [e.caption for e in v.events]
    assert len(set(caps)) == len(caps)
    for e in v.events:
      assert f"{e.colour} {e.shape}" in e.caption


# ---------------------------------------------------------------------------
# Labels.
# ---------------------------------------------------------------------------
def test_frame_labels_follow_index_rule_later_start_wins(layouts):
  for v in layouts["val"]:
    n = v.num_frames
    expected = np.full([n], -1)
    for i in range(n):
      covering = [e for e in v.events
                  if round(e.start_time * v.fps) <= i
                  <= min(round(e.end_time * v.fps), n - 1)]
      if covering:
        expected[i] = max(covering, key=lambda e: e.start_time).label
    np.testing.assert_array_equal(v.frame_labels, expected)
    for e in v.events:
      assert 0 <= e.start_index(v.fps) < e.end_index(v.fps, n) < n
      assert 0 <= e.start_time < e.end_time <= v.duration
      frac = (e.start_time * v.fps) % 1.0
      assert abs(frac - 0.5) > 1e-3  # no rounding ambiguity


def test_zero_shot_held_out(layouts):
  cfg = syn.SyntheticConfig()
  held = syn.held_out_combinations(cfg)
  assert len(held) == cfg.num_held_out
  names = {syn.compositional_name(s, a) for s, a in held}
  train = {e.zero_shot_name for v in layouts["train"] for e in v.events}
  test = {e.zero_shot_name for v in layouts["test"] for e in v.events}
  assert not names & train
  assert names <= test
  train_shapes = {e.shape for v in layouts["train"] for e in v.events}
  train_actions = {e.action for v in layouts["train"] for e in v.events}
  assert {s for s, _ in held} <= train_shapes
  assert {a for _, a in held} <= train_actions
  assert syn.held_out_combinations(dataclasses.replace(cfg, seed=5)) != held


# ---------------------------------------------------------------------------
# Pixels: the event's object really does the action.
# ---------------------------------------------------------------------------
def _scene(action, **kwargs):
  """The frames of `_scene_video`."""
  return syn.render_frames(_scene_video(action, **kwargs),
                           syn.SyntheticConfig())


def _scene_video(action, rate=0.0, start=2.0, end=6.0, x=32.0, y=32.0,
                 colour="red", shape="square", size=16.0, angle=0.0,
                 drift=None, duration=10.0):
  """One object doing `action` from `start` to `end` (or drifting)."""
  ev = syn.Event(colour, shape, action, start, end, caption="c")
  obj = syn.SceneObject(colour, shape, x, y, size, angle,
                        event=None if drift else 0, rate=rate,
                        drift=drift or (0.0, 0.0, 1.0, 0.0))
  n = int(round(duration * FPS))
  events = [] if drift else [ev]
  return syn.SyntheticVideo(
      "scene", None, FPS, duration, events,
      syn.frame_labels_from_events(events, n, FPS), objects=[obj], seed=3,
      background=(40.0, 40.0, 40.0))


def _mask(frames, colour):
  diff = np.abs(frames.astype(int) - np.array(syn.COLOUR_RGB[colour]))
  return diff.max(-1) < 40


def _area(frames, colour="red"):
  return _mask(frames, colour).sum(axis=(1, 2))


def _centroid_x(frames, colour="red"):
  m = _mask(frames, colour)
  xs = np.arange(frames.shape[2])
  return (m.sum(1) * xs).sum(1) / np.maximum(m.sum((1, 2)), 1)


def test_move_left_and_right_shift_the_centroid():
  f = _scene(syn.MOVE_LEFT, rate=8.0, x=52.0)  # 32 px over 4 s
  cx = _centroid_x(f)
  assert np.ptp(cx[:10]) < 0.5 and np.ptp(cx[31:]) < 0.5  # static outside
  assert cx[30] - cx[10] == pytest.approx(-32, abs=1.5)
  assert np.all(np.diff(cx[10:31]) < 0)
  f = _scene(syn.MOVE_RIGHT, rate=8.0, x=12.0)
  cx = _centroid_x(f)
  assert cx[30] - cx[10] == pytest.approx(32, abs=1.5)


def test_grow_and_shrink_change_the_area():
  base = _area(_scene(syn.GROW, rate=4.0))[:10].mean()
  area = _area(_scene(syn.GROW, rate=4.0))
  assert area[29] > 1.8 * base  # ~1.5^2 at the end of the ramp
  assert base <= area[10] < area[20] < area[29]
  assert abs(area[35] - base) < 0.1 * base  # back to the base size
  area = _area(_scene(syn.SHRINK, rate=4.0))
  assert area[29] < 0.4 * base
  assert base >= area[10] > area[20] > area[29]


def test_appear_disappear_and_blink():
  area = _area(_scene(syn.APPEAR))
  assert area[:10].max() == 0 and area[31:].min() > 120
  area = _area(_scene(syn.DISAPPEAR))
  assert area[:10].min() > 120 and area[31:].max() == 0
  area = _area(_scene(syn.BLINK, rate=1.2))
  assert area[:10].min() > 120 and area[31:].min() > 120
  during = area[10:31]
  assert (during == 0).sum() >= 6 and (during > 120).sum() >= 6


def _two_squares(n=50):
  """A red square appearing at (32, 16) from 2 s to 6 s and a static blue
  square at (0, 32): a 10 s layout of n frames."""
  ev = syn.Event("red", "square", syn.APPEAR, 2.0, 6.0, caption="c")
  red = syn.SceneObject("red", "square", 32.0, 16.0, 16.0, 90.0, event=0)
  blue = syn.SceneObject("blue", "square", 0.0, 32.0, 16.0, 0.0)
  return syn.SyntheticVideo("scene", None, FPS, 10.0, [ev],
                            syn.frame_labels_from_events([ev], n, FPS),
                            objects=[red, blue])


def test_scene_state_embeddings_by_hand():
  """Appearing red square at (32, 16) and a static blue square at (0, 32):
  the groups sum their objects' states; other groups are 0."""
  n = 50
  video = _two_squares(n)
  emb = syn.scene_state_embeddings(video)
  assert emb.shape == (n, syn.STATE_EMBEDDING_DIM) and emb.dtype == np.float32
  g = {name: emb.reshape(n, len(syn.STATE_GROUPS), -1)[:, i]
       for i, name in enumerate(syn.STATE_GROUPS)}
  for name in ("green", "yellow", "white", "purple", "circle", "triangle",
               "cross"):
    assert not g[name].any(), name
  opacity = g["red"][:, 0]
  assert opacity[:10].max() == 0 and np.all(opacity[30:] == 1.0)
  assert opacity[20] == pytest.approx(0.5)  # t = 4 s, half-way
  # Fully visible: x = 32 of 64 is half a turn, y = 16 / 64, size 16 * 2 /
  # 64, the marker at 90 degrees; the blue square at x = 0, y = 0.5.
  red_state = [1, -1, 0, 0.25, 0.5, 0, 1]
  blue_state = [1, 1, 0, 0.5, 0.5, 1, 0]
  np.testing.assert_allclose(g["red"][40], red_state, atol=1e-6)
  np.testing.assert_allclose(g["blue"][40], blue_state, atol=1e-6)
  np.testing.assert_allclose(g["square"][40], np.add(red_state, blue_state),
                             atol=1e-6)
  np.testing.assert_allclose(g["all"], g["square"], atol=1e-6)


def _motion_of(video, group):
  """The motion part of `scene_embeddings` for one group, unscaled.

  Returns:
    float [n, len(MOTION_FEATURES)].
  """
  emb = syn.scene_embeddings(video)
  motion = emb[:, syn.STATE_EMBEDDING_DIM:] / syn.MOTION_SCALE
  return motion.reshape(len(emb), len(syn.STATE_GROUPS), -1)[
      :, syn.STATE_GROUPS.index(group)]


def test_scene_embeddings_state_and_motion_by_hand():
  """The same scene: the state part is STATE_SCALE x the states; the motion
  part is MOTION_SCALE x the rates of change per second (central
  differences, one-sided at the ends)."""
  n = 50
  video = _two_squares(n)
  emb = syn.scene_embeddings(video)
  assert emb.shape == (n, syn.SCENE_EMBEDDING_DIM) and emb.dtype == np.float32
  assert syn.SCENE_EMBEDDING_DIM == len(syn.STATE_GROUPS) * (
      len(syn.STATE_FEATURES) + len(syn.MOTION_FEATURES))
  np.testing.assert_allclose(
      emb[:, :syn.STATE_EMBEDDING_DIM],
      syn.scene_state_embeddings(video) * syn.STATE_SCALE, atol=1e-6)
  assert not _motion_of(video, "blue").any()  # static: no motion
  red = _motion_of(video, "red")
  # Opacity rises 1 / 4 s while the square appears (frames 10..30), and
  # opacity * size * 2 / 64 with it: size = 16 * (0.3 + 0.7 * opacity).
  np.testing.assert_allclose(red[11:30, 0], 0.25, atol=1e-5)
  o = np.arange(11, 30) / 20 - 0.5  # opacity at frames 11..29
  np.testing.assert_allclose(red[11:30, 3],
                             (0.3 + 1.4 * o) * 0.25 * 0.5, atol=1e-5)
  np.testing.assert_allclose(red[11:30, 2], 0.25 * 0.25, atol=1e-5)  # y
  assert not red[:, [1, 4]].any()  # no horizontal motion, no spin
  assert not red[:9].any() and not red[31:].any()
  # One-sided at the ends: appearing from t = 0, frame 0 is (o1 - o0) * fps.
  ev2 = syn.Event("red", "square", syn.APPEAR, 0.0, 4.0, caption="c")
  red2 = _motion_of(dataclasses.replace(video, events=[ev2]), "red")
  assert red2[0, 0] == pytest.approx(0.25, abs=1e-5)


def test_scene_motion_tells_left_from_right_and_spins():
  """Moving at 8 px/s on a 64 px frame is 2 pi * 8 / 64 rad/s of the
  horizontal turn: negative for left, positive for right, also across the
  wrap-around (x = 60 moving right passes 64 -> 0); spinning at 90 deg/s is
  pi / 2 rad/s."""
  turn = 2 * math.pi * 8.0 / 64
  left = _motion_of(_scene_video(syn.MOVE_LEFT, rate=8.0, x=40.0),
                    "red")
  right = _motion_of(_scene_video(syn.MOVE_RIGHT, rate=8.0, x=60.0),
                     "red")
  np.testing.assert_allclose(left[11:30, 1], -turn, atol=1e-5)
  np.testing.assert_allclose(right[11:30, 1], turn, atol=1e-5)
  for m in (left, right):
    assert not m[:, [0, 2, 3, 4]].any()
    assert not m[:9].any() and not m[31:].any()
  spin = _motion_of(_scene_video(syn.SPIN, rate=90.0), "square")
  np.testing.assert_allclose(spin[11:30, 4], math.pi / 2, atol=1e-5)
  assert not spin[:, :4].any()


def test_spin_rotates_the_marker():
  f = _scene(syn.SPIN, rate=90.0, shape="circle", x=32.0, y=32.0)
  dark = np.all(f < 30, axis=-1)
  yy, xx = np.mgrid[0:64, 0:64]
  near = (xx - 32) ** 2 + (yy - 32) ** 2 < 8**2
  angles = []
  for d in dark:
    m = d & near
    angles.append(math.degrees(math.atan2((yy[m] - 32).mean(),
                                          (xx[m] - 32).mean())))
  angles = np.unwrap(np.radians(angles))
  turned = np.degrees(angles[30] - angles[10])
  assert turned == pytest.approx(360, abs=15)
  assert np.ptp(np.degrees(angles[:10])) < 1  # static before the event
  # The circle's area does not change: only the marker shows the spin.
  area = _area(f)
  assert np.ptp(area) < 0.1 * area.mean()


def test_distractor_drifts_slowly():
  f = _scene(None, drift=(2.0, 0.0, 12.0, 0.0), x=32.0)
  cx = _centroid_x(f)
  assert np.abs(np.diff(cx)).max() <= 1.01
  assert 1.0 <= np.ptp(cx) <= 5.0


def test_generated_videos_have_visible_objects_and_noise(tiny_videos):
  for v in tiny_videos["train"]:
    first = v.frames[0].astype(int)
    # Textured, noisy background (not flat) and saturated objects.
    assert first.std() > 5
    for o in v.objects:
      ev = v.events[o.event] if o.event is not None else None
      if ev is not None and ev.action == syn.APPEAR:
        continue
      assert _mask(v.frames[:1], o.colour).sum() > 20


# ---------------------------------------------------------------------------
# Records.
# ---------------------------------------------------------------------------
def test_records_of_every_task_validate_and_round_trip(tiny_videos, tmp_path):
  videos = tiny_videos["train"]
  for task in spec.TASKS:
    recs = [r for v in videos for r in syn.to_records(v, task)]
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
  [tal] = syn.to_records(v, spec.TAL)
  assert [s.label_index for s in tal.segments] == [e.label for e in v.events]
  assert [s.start_time for s in tal.segments] == [e.start_time
                                                  for e in v.events]
  [zs] = syn.to_records(v, spec.TAL, zero_shot=True)
  classes = syn.compositional_classes()
  assert [classes[s.label_index] for s in zs.segments] == [
      e.zero_shot_name for e in v.events]
  [mr] = syn.to_records(v, spec.MR)
  assert [s.label_string for s in mr.segments] == [e.caption for e in
                                                   v.events]
  [seg] = syn.to_records(v, spec.AS)
  assert [lab[0] if lab else -1 for lab in seg.frame_labels] == list(
      v.frame_labels)
  # JPEG bytes are records.encode_jpeg's, encoded once per video.
  assert tal.frames is mr.frames
  assert tal.frames[:2] == records.encode_jpeg(v.frames[:2])


def test_hd_records_and_saliency(tiny_videos, layouts):
  v = tiny_videos["val"][0]
  hd = syn.to_records(v, spec.HD, hd_max_queries=None)
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
  assert len(syn.to_records(v, spec.HD)) == 1  # default: one query (QVH)
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
    recs = syn.to_records(v, spec.CLS)
    assert len(recs) == len(v.events)
    for k, r in enumerate(recs):
      assert v.events[k].label in r.clip_labels
      assert 10 <= r.num_frames <= 50 or r.num_frames == v.num_frames
      assert list(r.clip_label_strings) == [syn.ACTIONS[i]
                                            for i in r.clip_labels]


# ---------------------------------------------------------------------------
# The benchmark on disk.
# ---------------------------------------------------------------------------
def test_write_benchmark_without_pixels(tmp_path):
  """render=False: embedding-only records of the same layouts, which the
  cached-embedding pipeline reads."""
  out = str(tmp_path / "emb")
  tasks = (spec.TAL, spec.MR, spec.AS)
  summary = syn.write_benchmark(out, TINY, tasks=tasks, num_shards=1,
                                zero_shot_records=False,
                                state_embeddings=True, render=False)
  assert summary["frames"] is False
  assert summary["embedding_dim"] == syn.SCENE_EMBEDDING_DIM
  layout = list(syn.generate_split("test", TINY, render=False))
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
        syn.scene_embeddings(layout[0], TINY), atol=1e-6)
  config = pipeline.InputConfig(
      task=spec.MR, num_frames=16, input_mode="embeddings",
      embedding_dim=syn.SCENE_EMBEDDING_DIM, num_captions_eval=3)
  batch = next(iter(pipeline.make_dataset(
      os.path.join(out, spec.MR, "test-*"), config, is_training=False,
      global_batch_size=2)))
  assert batch[spec.FRAME_EMBEDDINGS].shape == (
      2, 16, syn.SCENE_EMBEDDING_DIM)
  with pytest.raises(ValueError, match="render=False"):
    syn.write_benchmark(str(tmp_path / "bad"), TINY, render=False)


def test_write_benchmark_with_videos_and_annotations(tmp_path):
  out = str(tmp_path / "syn")
  summary = syn.write_benchmark(out, TINY, num_shards=2, write_videos=True)
  videos = {s: list(syn.generate_split(s, TINY, render=False))
            for s in syn.SPLITS}
  for task in spec.TASKS:
    for split in syn.SPLITS:
      paths = records.shard_paths(os.path.join(out, task, split), 2)
      assert all(os.path.exists(p) for p in paths)
      count = sum(1 for _ in tf.data.TFRecordDataset(paths))
      assert count == summary["num_records"][task][split]
  assert summary["num_records"][spec.TAL]["train"] == 4
  with open(os.path.join(out, "classes.txt")) as f:
    assert tuple(f.read().split("\n")[:-1]) == syn.ACTIONS
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
  root = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
  res = subprocess.run(
      [sys.executable, "-m", "tools.make_synthetic", f"--output_dir={out}",
       "--num_train=2", "--num_val=1", "--num_test=1",
       "--tasks=temporal_localization,moment_retrieval", "--num_shards=1"],
      cwd=root, env=env, capture_output=True, text=True, timeout=120)
  assert res.returncode == 0, res.stderr[-2000:]
  assert "background frames" in res.stdout
  assert sorted(os.listdir(out)) == [
      "classes.txt", "moment_retrieval", "summary.json",
      "temporal_localization", "temporal_localization_zero_shot",
      "zero_shot.json"]
