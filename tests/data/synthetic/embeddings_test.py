"""Scene embeddings: the state and motion parts, checked by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tests.data.synthetic import helpers
from unloc_tf.data.synthetic import embeddings, scene

FPS = helpers.FPS


def _two_squares(n=50):
  """A red square appearing at (32, 16) from 2 s to 6 s and a static blue
  square at (0, 32): a 10 s layout of n frames."""
  ev = scene.Event("red", "square", scene.APPEAR, 2.0, 6.0, caption="c")
  red = scene.SceneObject("red", "square", 32.0, 16.0, 16.0, 90.0, event=0)
  blue = scene.SceneObject("blue", "square", 0.0, 32.0, 16.0, 0.0)
  return scene.SyntheticVideo("scene", None, FPS, 10.0, [ev],
                              scene.frame_labels_from_events([ev], n, FPS),
                              objects=[red, blue])


def test_scene_state_embeddings_by_hand():
  """Appearing red square at (32, 16) and a static blue square at (0, 32):
  the groups sum their objects' states; other groups are 0."""
  n = 50
  video = _two_squares(n)
  emb = embeddings.scene_state_embeddings(video)
  assert emb.shape == (n, embeddings.STATE_EMBEDDING_DIM)
  assert emb.dtype == np.float32
  g = {name: emb.reshape(n, len(embeddings.STATE_GROUPS), -1)[:, i]
       for i, name in enumerate(embeddings.STATE_GROUPS)}
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
  emb = embeddings.scene_embeddings(video)
  motion = emb[:, embeddings.STATE_EMBEDDING_DIM:] / embeddings.MOTION_SCALE
  return motion.reshape(len(emb), len(embeddings.STATE_GROUPS), -1)[
      :, embeddings.STATE_GROUPS.index(group)]


def test_scene_embeddings_state_and_motion_by_hand():
  """The same scene: the state part is STATE_SCALE x the states; the motion
  part is MOTION_SCALE x the rates of change per second (central
  differences, one-sided at the ends)."""
  n = 50
  video = _two_squares(n)
  emb = embeddings.scene_embeddings(video)
  assert emb.shape == (n, embeddings.SCENE_EMBEDDING_DIM)
  assert emb.dtype == np.float32
  assert embeddings.SCENE_EMBEDDING_DIM == len(embeddings.STATE_GROUPS) * (
      len(embeddings.STATE_FEATURES) + len(embeddings.MOTION_FEATURES))
  np.testing.assert_allclose(
      emb[:, :embeddings.STATE_EMBEDDING_DIM],
      embeddings.scene_state_embeddings(video) * embeddings.STATE_SCALE,
      atol=1e-6)
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
  ev2 = scene.Event("red", "square", scene.APPEAR, 0.0, 4.0, caption="c")
  red2 = _motion_of(dataclasses.replace(video, events=[ev2]), "red")
  assert red2[0, 0] == pytest.approx(0.25, abs=1e-5)


def test_scene_motion_tells_left_from_right_and_spins():
  """Moving at 8 px/s on a 64 px frame is 2 pi * 8 / 64 rad/s of the
  horizontal turn: negative for left, positive for right, also across the
  wrap-around (x = 60 moving right passes 64 -> 0); spinning at 90 deg/s is
  pi / 2 rad/s."""
  turn = 2 * math.pi * 8.0 / 64
  left = _motion_of(helpers.scene_video(scene.MOVE_LEFT, rate=8.0, x=40.0),
                    "red")
  right = _motion_of(helpers.scene_video(scene.MOVE_RIGHT, rate=8.0, x=60.0),
                     "red")
  np.testing.assert_allclose(left[11:30, 1], -turn, atol=1e-5)
  np.testing.assert_allclose(right[11:30, 1], turn, atol=1e-5)
  for m in (left, right):
    assert not m[:, [0, 2, 3, 4]].any()
    assert not m[:9].any() and not m[31:].any()
  spin = _motion_of(helpers.scene_video(scene.SPIN, rate=90.0), "square")
  np.testing.assert_allclose(spin[11:30, 4], math.pi / 2, atol=1e-5)
  assert not spin[:, :4].any()


