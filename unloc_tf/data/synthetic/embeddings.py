"""Scene embeddings: what a perfect frozen video encoder says about a frame.

Computed from a layout, no pixels needed: the stand-in for cached features
of a pretrained model (`writers.write_benchmark(state_embeddings=True)`
stores them as image/embedding for the cached-embedding input mode).
`scene_embeddings` = [state * `STATE_SCALE`, motion * `MOTION_SCALE`],
float32 [n, `SCENE_EMBEDDING_DIM`]; both parts sum per-object features over
`STATE_GROUPS`.
"""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np

from unloc_tf.data.synthetic import scene

STATE_FEATURES: Tuple[str, ...] = ("opacity", "cos_x", "sin_x", "y", "size",
                                   "cos_angle", "sin_angle")
# Groups of objects the state is summed over: every colour, every shape, all.
STATE_GROUPS: Tuple[str, ...] = scene.COLOURS + scene.SHAPES + ("all",)
STATE_EMBEDDING_DIM = len(STATE_GROUPS) * len(STATE_FEATURES)


def _group_sums(video: scene.SyntheticVideo, per_object, num_features: int
                ) -> np.ndarray:
  """Sums per-object features over every group of `STATE_GROUPS`.

  Args:
    video: the video.
    per_object: fn(obj) -> float [n, num_features].
    num_features: features per object.

  Returns:
    float32 [n, len(STATE_GROUPS) * num_features].
  """
  n = video.num_frames
  out = np.zeros([n, len(STATE_GROUPS), num_features], np.float32)
  for obj in video.objects:
    feats = per_object(obj)
    for group in (obj.colour, obj.shape, "all"):
      out[:, STATE_GROUPS.index(group)] += feats
  return out.reshape(n, -1)


def _frame_times(video: scene.SyntheticVideo) -> np.ndarray:
  return np.arange(video.num_frames, dtype=np.float64) / video.fps


def scene_state_embeddings(
    video: scene.SyntheticVideo,
    config: scene.SyntheticConfig = scene.SyntheticConfig()) -> np.ndarray:
  """What a perfect frozen image tower could say about each frame.

  Each object's `STATE_FEATURES` — opacity, horizontal position on the
  circle (objects moving off one side reappear on the other), vertical
  position and size relative to the frame, orientation, each multiplied by
  the opacity — summed over the objects of every colour, of every shape and
  of the whole frame (`STATE_GROUPS`).  Sums make an action look the same
  whatever object performs it, while the colour and shape groups keep what
  a caption refers to.  `scene_embeddings` (what the records store) adds
  their motion (`scene_motion_embeddings`).

  Returns:
    float32 [n, STATE_EMBEDDING_DIM].
  """
  s = float(config.frame_size)
  t = _frame_times(video)

  def state(obj):
    x, y, size, angle, opacity = scene.object_states(
        obj, video.events, t, config.frame_size, config)
    turn, rad = 2 * math.pi * x / s, np.deg2rad(angle)
    feats = np.stack([np.ones_like(t), np.cos(turn), np.sin(turn), y / s,
                      size / s * 2.0, np.cos(rad), np.sin(rad)], -1)
    return feats * np.broadcast_to(opacity, t.shape)[:, None]

  return _group_sums(video, state, len(STATE_FEATURES))


MOTION_FEATURES: Tuple[str, ...] = ("opacity", "x", "y", "size", "angle")
MOTION_EMBEDDING_DIM = len(STATE_GROUPS) * len(MOTION_FEATURES)


def scene_motion_embeddings(
    video: scene.SyntheticVideo,
    config: scene.SyntheticConfig = scene.SyntheticConfig()) -> np.ndarray:
  """What a perfect frozen motion (optical-flow) stream could say.

  Each object's rate of change per second of its `MOTION_FEATURES`: the
  opacity itself, and, weighted by the opacity, the horizontal position in
  turns of the circle (radians, unwrapped: signed, so left and right differ
  in sign wherever the object is), the vertical position and the size
  relative to the frame (as in the state) and the orientation (radians,
  unwrapped).  Rates are central differences over the neighbouring stored
  frames (one-sided at the ends), summed over `STATE_GROUPS` like the
  state.

  Returns:
    float32 [n, MOTION_EMBEDDING_DIM].
  """
  s = float(config.frame_size)
  t = _frame_times(video)

  def motion(obj):
    if t.shape[0] < 2:
      return np.zeros([t.shape[0], len(MOTION_FEATURES)])
    x, y, size, angle, opacity = scene.object_states(
        obj, video.events, t, config.frame_size, config)
    opacity = np.broadcast_to(opacity, t.shape).astype(np.float64)
    rate = lambda v: np.gradient(np.broadcast_to(v, t.shape), 1 / video.fps)
    turn = np.unwrap(2 * math.pi * np.asarray(x) / s)
    rad = np.unwrap(np.deg2rad(np.broadcast_to(angle, t.shape)))
    return np.stack([
        rate(opacity), opacity * rate(turn), rate(opacity * y / s),
        rate(opacity * size / s * 2.0), opacity * rate(rad)], -1)

  return _group_sums(video, motion, len(MOTION_FEATURES))


# Scales of the two parts of `scene_embeddings`: they give the state and
# its motion comparable norms on the default benchmark (unscaled, the
# static state is several times the motion and the LayerNorms nearly erase
# the motion).
STATE_SCALE = 0.25
MOTION_SCALE = 5.0
SCENE_EMBEDDING_DIM = STATE_EMBEDDING_DIM + MOTION_EMBEDDING_DIM


def scene_embeddings(video: scene.SyntheticVideo,
                     config: scene.SyntheticConfig = scene.SyntheticConfig()
                     ) -> np.ndarray:
  """What a perfect frozen two-stream video encoder could say about a frame.

  The stand-in for the cached features of a pretrained video model (CLIP
  image features in UnLoc; the two-stream I3D / TSP clip features that
  temporal localization methods cache), which this project may not
  download: appearance — `scene_state_embeddings` times `STATE_SCALE` — and
  short-term motion — `scene_motion_embeddings` times `MOTION_SCALE`.  The
  benchmark's actions are changes (moving, spinning, blinking...), which
  one frame's state does not show; the motion part makes each frame's
  evidence local, as appearance is for real actions, and is computed at
  the stored frame rate, so linspace sampling of long videos does not alias
  fast actions (blinking) away.  Nothing in it is specific to an action or
  a label.

  Returns:
    float32 [n, SCENE_EMBEDDING_DIM]: [state * STATE_SCALE,
    motion * MOTION_SCALE].
  """
  return np.concatenate(
      [scene_state_embeddings(video, config) * STATE_SCALE,
       scene_motion_embeddings(video, config) * MOTION_SCALE],
      -1).astype(np.float32)

