"""Small clips and seeds for the augmentation tests."""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def coord_clip(t: int, h: int, w: int) -> np.ndarray:
  """uint8 [t, h, w, 3] with pixel (t, y, x) = (y, x, t); needs h, w <= 256."""
  tt, yy, xx = np.meshgrid(
      np.arange(t), np.arange(h), np.arange(w), indexing="ij"
  )
  return np.stack([yy, xx, tt], axis=-1).astype(np.uint8)


def same_frames_clip(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
  frame = np.random.RandomState(seed).randint(0, 256, (1, h, w, 3))
  return np.repeat(frame, t, axis=0).astype(np.uint8)


def clip_seed(a: int, b: int = 0) -> tf.Tensor:
  """A [2] int32 seed."""
  return tf.constant([a, b], tf.int32)


def assert_frames_identical(clip: np.ndarray) -> None:
  for t in range(1, clip.shape[0]):
    np.testing.assert_array_equal(clip[t], clip[0])
