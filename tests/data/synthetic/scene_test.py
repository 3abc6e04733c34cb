"""Scene sampling: objects, captions, frame labels, zero-shot held-out set."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tests.data.synthetic import helpers
from unloc_tf.data.synthetic import scene


@pytest.fixture(scope="module")
def layouts():
  """Layouts (no pixels) of a default-sized benchmark, per split."""
  return helpers.default_layouts()


# ---------------------------------------------------------------------------
# Objects and captions of the default benchmark (layouts only).
# ---------------------------------------------------------------------------
def test_objects_sizes_and_distractor_speed(layouts):
  cfg = scene.SyntheticConfig()
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
  cfg = scene.SyntheticConfig()
  held = scene.held_out_combinations(cfg)
  assert len(held) == cfg.num_held_out
  names = {scene.compositional_name(s, a) for s, a in held}
  train = {e.zero_shot_name for v in layouts["train"] for e in v.events}
  test = {e.zero_shot_name for v in layouts["test"] for e in v.events}
  assert not names & train
  assert names <= test
  train_shapes = {e.shape for v in layouts["train"] for e in v.events}
  train_actions = {e.action for v in layouts["train"] for e in v.events}
  assert {s for s, _ in held} <= train_shapes
  assert {a for _, a in held} <= train_actions
  assert scene.held_out_combinations(dataclasses.replace(cfg, seed=5)) != held


