"""Fixed position embeddings (reference_spec.md §2.6).

The fusion transformer adds one fixed sinusoid table over the whole
concatenated `[video; text]` sequence before its first block.  The table is
the one of the reference (`scenic.model_lib.layers.attention_layers
.sinusoidal_init`, used by `Add1DPositionEmbedding(posemb_init=None)`):
sin and cos are *interleaved* along the channels, not concatenated.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


def sinusoid_position_embedding_np(length: int, dim: int,
                                   max_timescale: float = 1e4) -> np.ndarray:
  """The sinusoid table as a numpy array; see `sinusoid_position_embedding`."""
  if length < 0 or dim < 1:
    raise ValueError(f"need length >= 0 and dim >= 1, got {length}, {dim}")
  # Same arithmetic as the reference: float64 angles, stored as float32.
  position = np.arange(length)[:, None]
  div_term = np.exp(np.arange(0, dim, 2) * -(np.log(max_timescale) / dim))
  table = np.zeros((length, dim), dtype=np.float32)
  table[:, 0::2] = np.sin(position * div_term)
  table[:, 1::2] = np.cos(position * div_term[: dim // 2])
  return table


def sinusoid_position_embedding(length: int, dim: int,
                                max_timescale: float = 1e4) -> tf.Tensor:
  """Fixed sin/cos position table, interleaved as the reference.

  For position `p` (0-based) and channel pair `i = 0 .. ceil(dim/2) - 1`, with
  `w_i = max_timescale ** (-2i / dim)` (computed as
  `exp(2i * -(log(max_timescale) / dim))` in float64):

    table[p, 2i]     = sin(p * w_i)     (even channels)
    table[p, 2i + 1] = cos(p * w_i)     (odd channels)

  so row 0 is `[0, 1, 0, 1, ...]`.  For an odd `dim` the last channel is a
  sin (the reference itself fails on odd widths; every config is even).

  Args:
    length: number of positions (Python int, static).
    dim: number of channels (Python int, static).
    max_timescale: the 1e4 of "Attention is all you need".

  Returns:
    float32 constant of shape [length, dim].
  """
  return tf.constant(
      sinusoid_position_embedding_np(length, dim, max_timescale), tf.float32)
