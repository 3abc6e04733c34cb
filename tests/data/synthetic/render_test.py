"""Rendering: determinism, and the event's object really does the action."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tests.data.synthetic import helpers
from unloc_tf.data.synthetic import render, scene

TINY = helpers.TINY


@pytest.fixture(scope="module")
def tiny_videos():
  return helpers.tiny_videos()


# ---------------------------------------------------------------------------
# Determinism.
# ---------------------------------------------------------------------------
def test_same_seed_same_video_different_seed_different():
  a = render.generate_video("v", 7, TINY)
  b = render.generate_video("v", 7, TINY)
  c = render.generate_video("v", 8, TINY)
  assert a.frames.dtype == np.uint8 and a.frames.ndim == 4
  assert a.frames.shape[1:] == (64, 64, 3)
  np.testing.assert_array_equal(a.frames, b.frames)
  assert a.events == b.events
  np.testing.assert_array_equal(a.frame_labels, b.frame_labels)
  assert (a.frames.shape != c.frames.shape
          or np.abs(a.frames.astype(int) - c.frames).mean() > 5)
  assert a.events != c.events


def test_splits_deterministic_and_disjoint(tiny_videos):
  again = list(render.generate_split("train", TINY))
  for x, y in zip(again, tiny_videos["train"]):
    assert x.video_id == y.video_id and x.events == y.events
    np.testing.assert_array_equal(x.frames, y.frames)
  ids = [v.video_id for s in scene.SPLITS for v in tiny_videos[s]]
  assert len(ids) == len(set(ids)) == 8
  train0, test0 = tiny_videos["train"][0], tiny_videos["test"][0]
  assert train0.events != test0.events
  # Another master seed gives other videos.
  other = next(render.generate_split("train",
                                     dataclasses.replace(TINY, seed=1)))
  assert other.events != train0.events


def test_layout_is_what_gets_rendered(tiny_videos):
  for v in tiny_videos["val"]:
    lay = scene.sample_layout(v.video_id, v.seed, TINY, split="val", index=int(
        v.video_id[-5:]))
    assert lay.frames is None
    assert lay.events == v.events and lay.objects == v.objects
    np.testing.assert_array_equal(lay.frame_labels, v.frame_labels)
    assert v.frames.shape[0] == v.num_frames == round(v.duration * v.fps)


# ---------------------------------------------------------------------------
# Pixels: the event's object really does the action.
# ---------------------------------------------------------------------------
def _scene(action, **kwargs):
  """The frames of `helpers.scene_video`."""
  return render.render_frames(helpers.scene_video(action, **kwargs),
                              scene.SyntheticConfig())


def _mask(frames, colour):
  diff = np.abs(frames.astype(int) - np.array(render.COLOUR_RGB[colour]))
  return diff.max(-1) < 40


def _area(frames, colour="red"):
  return _mask(frames, colour).sum(axis=(1, 2))


def _centroid_x(frames, colour="red"):
  m = _mask(frames, colour)
  xs = np.arange(frames.shape[2])
  return (m.sum(1) * xs).sum(1) / np.maximum(m.sum((1, 2)), 1)


def test_move_left_and_right_shift_the_centroid():
  f = _scene(scene.MOVE_LEFT, rate=8.0, x=52.0)  # 32 px over 4 s
  cx = _centroid_x(f)
  assert np.ptp(cx[:10]) < 0.5 and np.ptp(cx[31:]) < 0.5  # static outside
  assert cx[30] - cx[10] == pytest.approx(-32, abs=1.5)
  assert np.all(np.diff(cx[10:31]) < 0)
  f = _scene(scene.MOVE_RIGHT, rate=8.0, x=12.0)
  cx = _centroid_x(f)
  assert cx[30] - cx[10] == pytest.approx(32, abs=1.5)


def test_grow_and_shrink_change_the_area():
  base = _area(_scene(scene.GROW, rate=4.0))[:10].mean()
  area = _area(_scene(scene.GROW, rate=4.0))
  assert area[29] > 1.8 * base  # ~1.5^2 at the end of the ramp
  assert base <= area[10] < area[20] < area[29]
  assert abs(area[35] - base) < 0.1 * base  # back to the base size
  area = _area(_scene(scene.SHRINK, rate=4.0))
  assert area[29] < 0.4 * base
  assert base >= area[10] > area[20] > area[29]


def test_appear_disappear_and_blink():
  area = _area(_scene(scene.APPEAR))
  assert area[:10].max() == 0 and area[31:].min() > 120
  area = _area(_scene(scene.DISAPPEAR))
  assert area[:10].min() > 120 and area[31:].max() == 0
  area = _area(_scene(scene.BLINK, rate=1.2))
  assert area[:10].min() > 120 and area[31:].min() > 120
  during = area[10:31]
  assert (during == 0).sum() >= 6 and (during > 120).sum() >= 6


def test_spin_rotates_the_marker():
  f = _scene(scene.SPIN, rate=90.0, shape="circle", x=32.0, y=32.0)
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
      if ev is not None and ev.action == scene.APPEAR:
        continue
      assert _mask(v.frames[:1], o.colour).sum() > 20


