"""Temporal sampling of stored frames (reference_spec.md §1.2).

* Linspace (TAL, MR, HD, classification): `int32(linspace(0, n-1, N0))`, the
  same in training and evaluation, no jitter.  Videos shorter than N0 repeat
  frames; every token is real (mask all ones), as in the reference.
* Contiguous windows (AS): N0 consecutive frames starting at an offset; a
  window that runs past the end of the video loops back to its start (as DMVR
  does) and the looped frames are masked out.
"""

from __future__ import annotations

import tensorflow as tf


def linspace_indices(total_frames: tf.Tensor, num_samples: int) -> tf.Tensor:
  """Evenly spaced stored-frame indices, truncated toward zero.

  Args:
    total_frames: scalar int, n >= 1.
    num_samples: N0.

  Returns:
    int32 [N0] with values in [0, n-1].
  """
  last = tf.cast(total_frames - 1, tf.float32)
  idx = tf.cast(tf.linspace(0.0, last, num_samples), tf.int32)
  return tf.ensure_shape(idx, [num_samples])


def window_indices(
    total_frames: tf.Tensor, offset: tf.Tensor, window: int
) -> tuple[tf.Tensor, tf.Tensor]:
  """Indices and mask of a contiguous window of `window` frames.

  Args:
    total_frames: scalar int n.
    offset: scalar int, the first stored frame of the window.
    window: number of frames W.

  Returns:
    (indices int32 [W] in [0, n-1], mask int32 [W]) where mask[i] = 1 iff
    offset + i < n (frames past the end loop back and are masked).
  """
  n = tf.cast(total_frames, tf.int32)
  pos = tf.cast(offset, tf.int32) + tf.range(window, dtype=tf.int32)
  mask = tf.cast(pos < n, tf.int32)
  return tf.ensure_shape(pos % n, [window]), tf.ensure_shape(mask, [window])


def random_window_offset(
    total_frames: tf.Tensor, window: int, seed: tf.Tensor
) -> tf.Tensor:
  """Training offset, uniform in [0, max(1, n - W + 1)) (the reference's)."""
  n = tf.cast(total_frames, tf.int32)
  maxval = tf.maximum(1, n - window + 1)
  return tf.random.stateless_uniform(
      [], seed, minval=0, maxval=maxval, dtype=tf.int32
  )


def center_window_offset(total_frames: tf.Tensor, window: int) -> tf.Tensor:
  """The reference's evaluation offset: max(0, (n - W) // 2)."""
  n = tf.cast(total_frames, tf.int32)
  return tf.maximum(0, (n - window) // 2)


def num_sliding_windows(total_frames: tf.Tensor, window: int) -> tf.Tensor:
  """Number of non-overlapping windows that cover the video: ceil(n / W)."""
  n = tf.cast(total_frames, tf.int32)
  return (n + window - 1) // window
