"""Tiny test videos (PyAV): frames that encode their index, bad files."""

from __future__ import annotations

from typing import Optional

import numpy as np

from unloc_tf.data import video

BITS = 8  # frame index bits, one vertical stripe each
STRIPE = 8  # px


def index_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
  """uint8 [n, height, width, 3]: stripe b (8 px wide) is white iff bit b of
  the frame index is set, black otherwise (survives h264 and resizing)."""
  if n > 2**BITS or width < BITS * STRIPE:
    raise ValueError("too many frames or too narrow")
  frames = np.zeros([n, height, width, 3], np.uint8)
  for k in range(n):
    for b in range(BITS):
      if (k >> b) & 1:
        frames[k, :, b * STRIPE:(b + 1) * STRIPE] = 255
  return frames


def read_index(frames: np.ndarray) -> np.ndarray:
  """Frame indices encoded by `index_frames` (frames at the source size)."""
  frames = np.asarray(frames)
  centre = frames[:, frames.shape[1] // 2, STRIPE // 2::STRIPE, :].mean(-1)
  bits = centre[:, :BITS] > 128
  return (bits * (1 << np.arange(BITS))).sum(-1)


def write_video(path: str, frames: np.ndarray, fps: float,
                container_format: Optional[str] = None,
                options: Optional[dict] = None) -> str:
  """h264 / yuv420p, one thread (`video.write_mp4`); returns `path`."""
  video.write_mp4(path, frames, fps, container_format, options)
  return path


def truncate(src: str, dst: str, fraction: float = 0.5) -> str:
  """Copies the first `fraction` of the bytes of `src` to `dst`."""
  with open(src, "rb") as f:
    data = f.read()
  with open(dst, "wb") as f:
    f.write(data[:int(len(data) * fraction)])
  return dst


def garbage(path: str, size: int = 4000, seed: int = 0) -> str:
  """A file of random bytes (a 'corrupt video')."""
  with open(path, "wb") as f:
    f.write(np.random.default_rng(seed).bytes(size))
  return path
