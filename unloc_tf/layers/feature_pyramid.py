"""Temporal feature pyramids on the fused video tokens (reference_spec.md §2.7).

Reference: `scenic/projects/unloc/video_text_fusion.py`
(`SimplePyramidEncoder`, `FeaturePyramidEncoder._build_top_down_path` /
`_apply_output_conv`) and `encoders.py::TransformerEncoder` (`encoder_norm`).

* "simple" (ViTDet): level 0 = depthwise Conv1D(k3, stride 1, SAME, bias) +
  LN; level l >= 1 = depthwise Conv1D(k3, stride 2, SAME) of the *previous
  level's output* + LN.  A stride-2 SAME convolution of an even-length input
  pads one zero at the end only, so output j of level 1 sees level-0 tokens
  2j..2j+2; chained, level-l output j sees level-0 inputs
  [2^l j - 1, 2^l j + 2^(l+1) - 1] (a half-stride shift to the right that the
  targets ignore, §3.1 — replicated on purpose).
* "fpn": the levels come from the fusion blocks; top-down cumulative sum with
  nearest x2 upsampling (l = L-1 .. 1: level[l-1] += up(level[l])), then per
  level depthwise Conv1D(k3, stride 1, SAME) + LN.
* "none": one LayerNorm (`encoder_norm`), a single level.

Parameter names follow §2.11: `output_conv_{l}` (Keras depthwise kernel
(3, D, 1); the Flax kernel is (3, 1, D)), `output_ln_{l}`, `encoder_norm`.
Convolution kernels use Flax's default lecun_normal with the Flax fan-in of a
depthwise kernel (kernel_size * 1 = 3), biases 0.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

_PACKAGE = "unloc_tf"
MODES = ("simple", "fpn", "none")
_KERNEL_SIZE = 3
# scipy.stats.truncnorm.std(a=-2, b=2): Flax / Keras truncated-normal fix-up.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def _depthwise_kernel_initializer():
  """Flax lecun_normal for a depthwise kernel: fan_in = kernel_size."""
  stddev = math.sqrt(1.0 / _KERNEL_SIZE) / _TRUNCATED_NORMAL_STD
  return keras.initializers.TruncatedNormal(stddev=stddev)


def nearest_upsample(x: tf.Tensor, length: int) -> tf.Tensor:
  """Nearest-neighbour resize along axis 1 (as `jax.image.resize` 'nearest').

  Output index i takes input index floor((i + 0.5) * n_in / length); for
  length = 2 * n_in this is i // 2 (every token repeated twice).

  Args:
    x: [B, n_in, D].
    length: output length (static).

  Returns:
    [B, length, D].
  """
  n_in = x.shape[1]
  if length == 2 * n_in:
    return tf.repeat(x, 2, axis=1)
  # Same float32 arithmetic order as jax: ((i + 0.5) * n_in) / length.
  offsets = (np.arange(length, dtype=np.float32) + np.float32(0.5)) * (
      np.float32(n_in)) / np.float32(length)
  index = np.minimum(np.floor(offsets).astype(np.int32), n_in - 1)
  return tf.gather(x, index, axis=1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FeaturePyramid(keras.layers.Layer):
  """Builds the pyramid levels of the fused video tokens.

  Args:
    mode: "simple" (ViTDet), "fpn" (top-down over block outputs) or "none"
      (final LayerNorm only; `num_levels` is ignored, one level).
    num_levels: L, the number of levels (simple / fpn).
    hidden_dim: D, the token width.
    layer_norm_epsilon: epsilon of the LayerNorms (Flax default 1e-6).
  """

  def __init__(self, mode: str = "simple", num_levels: int = 4,
               hidden_dim: int = 512, layer_norm_epsilon: float = 1e-6,
               **kwargs):
    super().__init__(**kwargs)
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if num_levels < 1:
      raise ValueError(f"num_levels must be >= 1, got {num_levels}")
    self.mode = mode
    self.num_levels = int(num_levels)
    self.hidden_dim = int(hidden_dim)
    self.layer_norm_epsilon = float(layer_norm_epsilon)
    self.output_convs = []
    self.output_lns = []
    self.encoder_norm = None
    if mode == "none":
      self.encoder_norm = keras.layers.LayerNormalization(
          epsilon=self.layer_norm_epsilon, name="encoder_norm")
    else:
      for l in range(self.num_levels):
        stride = 2 if (mode == "simple" and l > 0) else 1
        self.output_convs.append(keras.layers.DepthwiseConv1D(
            kernel_size=_KERNEL_SIZE, strides=stride, padding="same",
            use_bias=True,
            depthwise_initializer=_depthwise_kernel_initializer(),
            bias_initializer="zeros", name=f"output_conv_{l}"))
        self.output_lns.append(keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name=f"output_ln_{l}"))

  @property
  def output_levels(self) -> int:
    """Number of levels this layer returns (1 for "none")."""
    return 1 if self.mode == "none" else self.num_levels

  def build(self, input_shape):
    del input_shape  # The widths are known from the constructor.
    shape = (None, None, self.hidden_dim)
    sublayers = list(self.output_convs) + list(self.output_lns)
    if self.encoder_norm is not None:
      sublayers.append(self.encoder_norm)
    for layer in sublayers:
      if not layer.built:
        layer.build(shape)

  def _conv_ln(self, l: int, x: tf.Tensor) -> tf.Tensor:
    return self.output_lns[l](self.output_convs[l](x))

  def call(self, levels: Union[tf.Tensor, Sequence[tf.Tensor]],
           training=False) -> List[tf.Tensor]:
    """Applies the pyramid.

    Args:
      levels: simple / none: one tensor [B, N0, D]; fpn: a list of L tensors,
        level l of shape [B, N0 // 2**l, D] (top-down needs level l-1 to be
        the longer one).
      training: unused (no dropout); kept for a uniform signature.

    Returns:
      A list of tensors [B, N_l, D]: L levels with N_l = N0 // 2**l (simple:
      N0 must be divisible by 2**(L-1); fpn: the input lengths), or one
      tensor [B, N0, D] for "none".
    """
    del training
    if self.mode == "none":
      return [self.encoder_norm(levels)]
    if self.mode == "simple":
      x = levels
      n0 = x.shape[1]
      if n0 is None or n0 % (2 ** (self.num_levels - 1)):
        raise ValueError(
            f"simple pyramid needs a static N0 divisible by"
            f" 2**(num_levels-1)={2 ** (self.num_levels - 1)}, got {n0}")
      outputs = []
      for l in range(self.num_levels):
        x = self._conv_ln(l, x)
        outputs.append(x)
      return outputs
    # fpn
    xs = list(levels)
    if len(xs) != self.num_levels:
      raise ValueError(f"fpn pyramid expects {self.num_levels} levels, got"
                       f" {len(xs)}")
    for l in range(self.num_levels - 1, 0, -1):
      xs[l - 1] = xs[l - 1] + nearest_upsample(xs[l], xs[l - 1].shape[1])
    return [self._conv_ln(l, x) for l, x in enumerate(xs)]

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(mode=self.mode, num_levels=self.num_levels,
                  hidden_dim=self.hidden_dim,
                  layer_norm_epsilon=self.layer_norm_epsilon)
    return config
