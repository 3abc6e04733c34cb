"""Segment maths in TensorFlow: token positions, decoding, temporal IoU.

Used by `unloc_tf.postprocess` in evaluation and inside exported SavedModels,
so everything is core TF ops, works in graph mode and with a dynamic batch.

Coordinates (reference_spec.md §3.1, §5.2):

* Token `j` of pyramid level `l` sits at level-0 position `t = j * 2**l` (the
  left token of its stride window) and its displacements are in units of the
  level stride `2**l`.
* Linspace sampling (TAL, MR, HD): token `t` shows stored frame
  `t * (n - 1) / (N0 - 1)`, so a prediction decodes to the stored-frame span
  `((t - d_s * 2**l) * (n - 1) / (N0 - 1), (t + d_e * 2**l) * (n - 1) /
  (N0 - 1))`.
* Window sampling (AS-style contiguous windows, the reference's `'random'`):
  token `t` shows stored frame `window_offset + t`, so the span is
  `(t - d_s * 2**l + offset, t + d_e * 2**l + offset)`.
* Either way the start is clamped to `>= 0`, the end to `<= n` and both are
  multiplied by `secs_per_timestep` (seconds).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np
import tensorflow as tf


def _level_lengths(level_lengths) -> Tuple[int, ...]:
  """Accepts a sequence of ints or anything with `.level_lengths`."""
  lengths = getattr(level_lengths, "level_lengths", level_lengths)
  lengths = tuple(int(n) for n in lengths)
  if not lengths or any(n <= 0 for n in lengths):
    raise ValueError(f"level_lengths must be positive ints, got {lengths}")
  for n in lengths:
    if lengths[0] % n:
      raise ValueError(
          f"level_lengths {lengths}: every level length must divide N0")
  return lengths


def _positions_np(level_lengths: Sequence[int]) -> np.ndarray:
  n0 = level_lengths[0]
  return np.concatenate([
      np.arange(n, dtype=np.float32) * np.float32(n0 // n)
      for n in level_lengths
  ])


def _strides_np(level_lengths: Sequence[int]) -> np.ndarray:
  n0 = level_lengths[0]
  return np.concatenate([
      np.full((n,), n0 // n, dtype=np.float32) for n in level_lengths
  ])


def token_positions(level_lengths) -> tf.Tensor:
  """Level-0 position of every pyramid token, levels concatenated.

  Args:
    level_lengths: `(N_0, N_1, ...)` tokens per level (e.g.
      `PyramidSpec.level_lengths`; a `PyramidSpec` is accepted too).  Level
      `l` has stride `N_0 // N_l` (= `2**l` for a `PyramidSpec`).

  Returns:
    float32 [T_tot]: level `l` contributes `0, s_l, 2 * s_l, ...`.
  """
  return tf.constant(_positions_np(_level_lengths(level_lengths)))


def token_strides(level_lengths) -> tf.Tensor:
  """Stride (in level-0 tokens) of every pyramid token.

  Args:
    level_lengths: as in `token_positions`.

  Returns:
    float32 [T_tot].
  """
  return tf.constant(_strides_np(_level_lengths(level_lengths)))


def _per_example(x, rank: int) -> tf.Tensor:
  """[B] -> float32 [B, 1, ..., 1] with `rank` dimensions."""
  x = tf.cast(x, tf.float32)
  return tf.reshape(x, tf.concat([[-1], tf.ones([rank - 1], tf.int32)], 0))


def decode_segments(
    displacements,
    level_lengths,
    total_frames,
    num_frames: int,
    secs_per_timestep,
    window_offset=None,
    token_axis: int = 1,
) -> tf.Tensor:
  """Decodes per-token start/end displacements to segments in seconds.

  Follows `get_segments_from_frame_predictions` of the reference
  (reference_spec.md §5.2), in the same float32 order of operations:
  linspace `((t - d_s * stride) * (n - 1)) / (N0 - 1)`, window
  `(t - d_s * stride) + offset`; then `max(start, 0)`, `min(end, n)` and
  `* secs_per_timestep`.  Masked tokens are not removed here (shapes stay
  static); the detection functions drop them.

  Args:
    displacements: float [B, ..., 2] (start, end) distances in units of the
      token's level stride, with the token axis (length T_tot) at
      `token_axis`: TAL/HD `[B, T_tot, C, 2]` (`token_axis=1`, the default),
      MR `[B, K, T_tot, 2]` (`token_axis=2`).
    level_lengths: tokens per level, `(N_0, N_1, ...)`, or a `PyramidSpec`.
      `(N0,)` means no pyramid (stride 1).
    total_frames: int/float [B], number of stored frames `n` of each video.
    num_frames: N0, the number of linspace-sampled level-0 tokens (static).
    secs_per_timestep: float [B] (or scalar), seconds per stored frame.
    window_offset: None for linspace sampling; int [B] (or scalar), the
      stored frame shown by level-0 token 0, for window sampling.
    token_axis: axis of `displacements` that indexes the tokens (>= 1).

  Returns:
    float32 [B, ..., 2] (same shape as `displacements`): (start, end) in
    seconds.
  """
  lengths = _level_lengths(level_lengths)
  d = tf.convert_to_tensor(displacements, tf.float32)
  rank = d.shape.rank
  if rank is None or rank < 3:
    raise ValueError(f"displacements must be [B, ..., 2], got {d.shape}")
  axis = token_axis % rank
  if axis == 0 or axis == rank - 1:
    raise ValueError(f"token_axis {token_axis} must index neither the batch"
                     f" nor the last (start/end) axis of {d.shape}")
  t_tot = sum(lengths)
  if d.shape[axis] is not None and d.shape[axis] != t_tot:
    raise ValueError(f"displacements axis {axis} has {d.shape[axis]} tokens,"
                     f" level_lengths {lengths} sum to {t_tot}")
  # Per-token constants broadcast to [1, ..., T_tot, ..., 1] (without the
  # trailing start/end axis, which is handled by unstacking).
  bshape = [1] * (rank - 1)
  bshape[axis] = t_tot
  pos = tf.reshape(tf.constant(_positions_np(lengths)), bshape)
  stride = tf.reshape(tf.constant(_strides_np(lengths)), bshape)
  d_start, d_end = tf.unstack(d, 2, axis=-1)
  start = pos + (-d_start * stride)
  end = pos + d_end * stride
  n = _per_example(total_frames, rank - 1)
  if window_offset is None:
    scale = tf.constant(float(num_frames - 1), tf.float32)
    start = start * (n - 1.0) / scale
    end = end * (n - 1.0) / scale
  else:
    offset = _per_example(window_offset, rank - 1)
    start = start + offset
    end = end + offset
  start = tf.maximum(start, 0.0)
  end = tf.minimum(end, n)
  secs = tf.cast(secs_per_timestep, tf.float32)
  if secs.shape.rank:
    secs = _per_example(secs, rank - 1)
  return tf.stack([start * secs, end * secs], axis=-1)


def temporal_iou(a, b) -> tf.Tensor:
  """Temporal IoU of segments, broadcasting over leading axes.

  `|a ∩ b| / (|a| + |b| - |a ∩ b|)`, the 1-D IoU that TF's NMS kernel
  computes for the boxes `[0, s, 1, e]`: a segment of zero or negative length
  has IoU 0 with everything (the ActivityNet evaluator instead gives NaN for
  two identical zero-length segments; see `unloc_tf.metrics`).

  Args:
    a: float [..., 2] (start, end).
    b: float [..., 2], broadcastable with `a`.

  Returns:
    float32 [...] in [0, 1].
  """
  a = tf.convert_to_tensor(a, tf.float32)
  b = tf.convert_to_tensor(b, tf.float32)
  len_a = a[..., 1] - a[..., 0]
  len_b = b[..., 1] - b[..., 0]
  inter = tf.maximum(
      tf.minimum(a[..., 1], b[..., 1]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
  union = len_a + len_b - inter
  valid = tf.logical_and(len_a > 0.0, len_b > 0.0)
  return tf.where(valid, tf.math.divide_no_nan(inter, union), 0.0)


def linspace_frame_indices(total_frames, num_frames: int) -> tf.Tensor:
  """Stored frame shown by each linspace token: `int32(linspace(0, n-1, N0))`.

  The same values as `unloc_tf.data.sampling.linspace_indices` (same TF
  linspace, truncation toward zero), batched.

  Args:
    total_frames: int [B], n >= 1.
    num_frames: N0.

  Returns:
    int32 [B, N0].
  """
  last = tf.cast(tf.reshape(total_frames, [-1]) - 1, tf.float32)
  return tf.cast(
      tf.linspace(tf.zeros_like(last), last, num_frames, axis=-1), tf.int32)


__all__ = [
    "decode_segments",
    "linspace_frame_indices",
    "temporal_iou",
    "token_positions",
    "token_strides",
]
