"""Shared by the synthetic benchmark tests: configs, videos, one-object
scenes."""

from __future__ import annotations

from unloc_tf.data.synthetic import render, scene

TINY = scene.SyntheticConfig(num_train=4, num_val=2, num_test=2,
                             min_duration=8.0, max_duration=14.0)
FPS = scene.SyntheticConfig().fps


def default_layouts():
  """Layouts (no pixels) of a default-sized benchmark, per split."""
  cfg = scene.SyntheticConfig()
  return {s: list(render.generate_split(s, cfg, render=False))
          for s in scene.SPLITS}


def tiny_videos():
  """The rendered videos of `TINY`, per split."""
  return {s: list(render.generate_split(s, TINY)) for s in scene.SPLITS}


def scene_video(action, rate=0.0, start=2.0, end=6.0, x=32.0, y=32.0,
                colour="red", shape="square", size=16.0, angle=0.0,
                drift=None, duration=10.0):
  """One object doing `action` from `start` to `end` (or drifting)."""
  ev = scene.Event(colour, shape, action, start, end, caption="c")
  obj = scene.SceneObject(colour, shape, x, y, size, angle,
                          event=None if drift else 0, rate=rate,
                          drift=drift or (0.0, 0.0, 1.0, 0.0))
  n = int(round(duration * FPS))
  events = [] if drift else [ev]
  return scene.SyntheticVideo(
      "scene", None, FPS, duration, events,
      scene.frame_labels_from_events(events, n, FPS), objects=[obj], seed=3,
      background=(40.0, 40.0, 40.0))
