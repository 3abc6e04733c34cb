"""Rendering: the pixels of a scene layout, and their JPEG bytes.

`render_frames` draws a `scene.SyntheticVideo` layout deterministically in
its seed (`default_rng([seed, 1])`): a static low-frequency textured
background, the objects (distractors first, under the event objects), then
per-frame grey noise.  Every shape carries a dark marker dot, so a rotation
is visible on every shape (also the circle).  `generate_video` /
`generate_split` sample and render in one go.
"""

from __future__ import annotations

import math
from typing import Dict, Iterator, List, Optional, Tuple

import numpy as np

from unloc_tf.data import records
from unloc_tf.data.synthetic import scene

# Colour of every `scene.COLOURS` name, and of the marker dot.
COLOUR_RGB: Dict[str, Tuple[int, int, int]] = {
    "red": (235, 45, 45),
    "green": (40, 205, 70),
    "blue": (60, 100, 250),
    "yellow": (245, 225, 40),
    "white": (245, 245, 245),
    "purple": (180, 70, 230),
}
MARKER_RGB = (10, 10, 10)

_MASK_CACHE: Dict[Tuple[str, float, int], Tuple[np.ndarray, np.ndarray,
                                                int]] = {}
_SIZE_STEP = 0.5  # px quantisation of the cached masks
_ANGLE_STEP = 6  # degrees
_SUPERSAMPLE = 3
_MASK_CACHE_LIMIT = 20000
_NOISE_BANK = 8


def _shape_masks(shape: str, size: float, angle: int
                 ) -> Tuple[np.ndarray, np.ndarray, int]:
  """Anti-aliased alpha of the body and of the marker dot.

  Returns:
    (body float32 [b, b], marker float32 [b, b], half) where b = 2 half + 1
    and the centre of the shape is the centre of pixel (half, half).
  """
  key = (shape, size, angle)
  hit = _MASK_CACHE.get(key)
  if hit is not None:
    return hit
  half = int(math.ceil(0.6 * size)) + 1
  b = 2 * half + 1
  ss = _SUPERSAMPLE
  u = (np.arange(b * ss, dtype=np.float32) + 0.5) / ss - half - 0.5
  xx, yy = np.meshgrid(u, u)
  th = math.radians(angle)
  c, s = math.cos(th), math.sin(th)
  xr = c * xx + s * yy  # coordinates in the object's frame
  yr = -s * xx + c * yy
  r = size / 2.0
  if shape == "circle":
    body = xr**2 + yr**2 <= r**2
  elif shape == "square":
    a = 0.85 * r
    body = (np.abs(xr) <= a) & (np.abs(yr) <= a)
  elif shape == "triangle":
    big = 1.1 * r  # circumradius; vertex along +x
    body = np.ones_like(xr, bool)
    for deg in (60.0, 180.0, 300.0):
      t = math.radians(deg)
      body &= xr * math.cos(t) + yr * math.sin(t) <= big / 2
  elif shape == "cross":
    w = 0.34 * r
    body = ((np.abs(xr) <= r) & (np.abs(yr) <= w)) | (
        (np.abs(yr) <= r) & (np.abs(xr) <= w))
  else:
    raise ValueError(f"unknown shape {shape!r}")
  marker = (xr - 0.5 * r)**2 + yr**2 <= (0.26 * r)**2
  marker &= body

  def pool(m):
    return m.reshape(b, ss, b, ss).mean(axis=(1, 3), dtype=np.float32)

  out = (pool(body), pool(marker), half)
  if len(_MASK_CACHE) >= _MASK_CACHE_LIMIT:
    _MASK_CACHE.clear()
  _MASK_CACHE[key] = out
  return out


def _layer(shape: str, size: float, angle: int, colour: str,
           opacity: float) -> Tuple[np.ndarray, np.ndarray, int]:
  """Premultiplied layer of one object state.

  Blending body (colour) then marker (dark) with alphas a, m is
  `out = keep * frame + add` with keep = (1 - a)(1 - m) and
  add = a (1 - m) colour + m marker.

  Returns:
    (keep float32 [b, b, 1], add float32 [b, b, 3], half).
  """
  body, marker, half = _shape_masks(shape, size, angle)
  a = body[..., None] * np.float32(opacity)
  m = marker[..., None] * np.float32(opacity)
  keep = (1.0 - a) * (1.0 - m)
  add = (a * (1.0 - m) * np.asarray(COLOUR_RGB[colour], np.float32)
         + m * np.asarray(MARKER_RGB, np.float32))
  return keep, add, half


def _blend(frame: np.ndarray, keep: np.ndarray, add: np.ndarray, half: int,
           cx: int, cy: int) -> None:
  """Composites a premultiplied layer into frame (float32 [H, W, 3])."""
  h, w = frame.shape[:2]
  b = keep.shape[0]
  x0, y0 = cx - half, cy - half
  if x0 >= 0 and y0 >= 0 and x0 + b <= w and y0 + b <= h:
    region = frame[y0:y0 + b, x0:x0 + b]
    region *= keep
    region += add
    return
  fx0, fy0 = max(x0, 0), max(y0, 0)
  fx1, fy1 = min(x0 + b, w), min(y0 + b, h)
  if fx0 >= fx1 or fy0 >= fy1:
    return
  sl = (slice(fy0 - y0, fy1 - y0), slice(fx0 - x0, fx1 - x0))
  region = frame[fy0:fy1, fx0:fx1]
  region *= keep[sl]
  region += add[sl]


def _background(video: scene.SyntheticVideo, rng: np.random.Generator,
                config: scene.SyntheticConfig) -> np.ndarray:
  """Static textured background, float32 [H, W, 3]."""
  s = config.frame_size
  yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
  base = np.asarray(video.background or (45.0, 45.0, 45.0), np.float32)
  img = np.broadcast_to(base, (s, s, 3)).copy()
  for _ in range(3):
    freq = rng.uniform(0.08, 0.35)
    theta = rng.uniform(0, math.pi)
    phase = rng.uniform(0, 2 * math.pi)
    wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)
    tint = rng.uniform(0.6, 1.0, size=3).astype(np.float32)
    img += (config.texture_amplitude / 3) * wave[..., None] * tint
  return img


def render_frames(video: scene.SyntheticVideo,
                  config: scene.SyntheticConfig = scene.SyntheticConfig()
                  ) -> np.ndarray:
  """Renders the frames of a layout (deterministic in `video.seed`).

  Object states are quantised (size to 0.5 px, angle to 6 degrees, position
  to whole pixels); a frame whose quantised scene equals an earlier frame's
  reuses its composite (the per-frame noise is added afterwards).

  Returns:
    uint8 [n, H, W, 3].
  """
  rng = np.random.default_rng([video.seed, 1])
  s = config.frame_size
  n = video.num_frames
  t = np.arange(n, dtype=np.float64) / video.fps
  background = _background(video, rng, config)
  tracks = []
  for obj in video.objects:
    x, y, size, angle, opacity = scene.object_states(obj, video.events, t,
                                                     s, config)
    qsize = np.maximum(np.round(size / _SIZE_STEP) * _SIZE_STEP, 1.0)
    qangle = (np.round(angle / _ANGLE_STEP).astype(np.int64) * _ANGLE_STEP
              ) % 360
    wraps = obj.event is not None and video.events[obj.event].action in (
        scene.MOVE_LEFT, scene.MOVE_RIGHT)
    tracks.append((
        obj, wraps,
        list(zip(qsize.tolist(), qangle.tolist(),
                 np.round(x).astype(np.int64).tolist(),
                 np.round(y).astype(np.int64).tolist(),
                 np.round(opacity, 3).tolist()))))
  layers: Dict[tuple, Tuple[np.ndarray, np.ndarray, int]] = {}
  seen: Dict[tuple, int] = {}
  a = int(config.noise_amplitude)
  frames = np.empty([n, s, s, 3], np.uint8)
  canvas = np.empty([s, s, 3], np.float32)
  for i in range(n):
    states = tuple(track[i] for _, _, track in tracks)
    j = seen.get(states)
    if j is not None:
      frames[i] = frames[j]
      continue
    seen[states] = i
    canvas[:] = background
    for k, (obj, wraps, _) in enumerate(tracks):
      qs, qa, cx, cy, op = states[k]
      if op <= 0.0:
        continue
      key = (k, qs, qa, op)
      layer = layers.get(key)
      if layer is None:
        layer = layers[key] = _layer(obj.shape, qs, qa, obj.colour, op)
      keep, add, half = layer
      _blend(canvas, keep, add, half, cx, cy)
      if wraps:
        if cx - half < 0:
          _blend(canvas, keep, add, half, cx + s, cy)
        if cx + half >= s:
          _blend(canvas, keep, add, half, cx - s, cy)
    # Round, and keep a margin so the noise below cannot wrap around.
    canvas += 0.5
    np.clip(canvas, a, 255 - a, out=canvas)
    frames[i] = canvas
  if a > 0:
    # Per-frame grey noise, uniform in [-a, a]: a bank of noise images,
    # each frame takes a random one, randomly shifted.
    bank = rng.integers(0, 2 * a + 1, size=[_NOISE_BANK, 2 * s, 2 * s, 1],
                        dtype=np.uint8)
    pick = rng.integers(_NOISE_BANK, size=n)
    dy, dx = rng.integers(s, size=n), rng.integers(s, size=n)
    for i in range(n):
      frames[i] += bank[pick[i], dy[i]:dy[i] + s, dx[i]:dx[i] + s]
    frames -= np.uint8(a)
  return frames


def generate_video(video_id: str, seed: int,
                   config: scene.SyntheticConfig = scene.SyntheticConfig(),
                   split: Optional[str] = None,
                   index: int = 0) -> scene.SyntheticVideo:
  """Samples and renders one video (see `scene.sample_layout` for the args)."""
  video = scene.sample_layout(video_id, seed, config, split=split, index=index)
  video.frames = render_frames(video, config)
  return video


def generate_split(split: str,
                   config: scene.SyntheticConfig = scene.SyntheticConfig(),
                   render: bool = True) -> Iterator[scene.SyntheticVideo]:
  """The videos of a split, deterministic per (config.seed, split).

  Args:
    split: "train", "val" or "test" (disjoint derived seeds).
    config: the benchmark config.
    render: False yields layouts only (`frames=None`), much faster.
  """
  for video in scene.sample_split(split, config):
    if render:
      video.frames = render_frames(video, config)
    yield video


def encode_frames(video: scene.SyntheticVideo,
                  quality: int = 90) -> List[bytes]:
  """JPEG bytes of the frames (`records.encode_jpeg`), cached on the video."""
  if video._jpeg is not None and video._jpeg[0] == quality:
    return video._jpeg[1]
  if video.frames is None:
    raise ValueError(f"video {video.video_id} has no frames (a layout)")
  jpeg = records.encode_jpeg(video.frames, quality=quality)
  video._jpeg = (quality, jpeg)
  return jpeg
