"""Tests of unloc_tf.layers.heads (reference_spec.md §2.8, §2.10, §2.11).

Sizes are tiny (D = 8). Expected values come from hand-written numpy
forwards or from calling the head's own sub-blocks on one level by hand.
"""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from tests import test_case
from unloc_tf.layers import heads

D = 8
LEVELS = (4, 2, 1)
T_TOT = sum(LEVELS)


@pytest.fixture(autouse=True)
def _seed():
  keras.utils.set_random_seed(1234)


def _rand(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def _head(**kw):
  args = dict(level_lengths=LEVELS, hidden_dim=D, num_conv_layers=2)
  args.update(kw)
  return heads.LocalizationHead(**args)


def _randomize(layer, seed=7):
  """Gives every weight a random value (LN gamma/beta and biases too)."""
  rng = np.random.default_rng(seed)
  for v in layer.weights:
    v.assign(rng.normal(scale=0.5, size=v.shape).astype(np.float32))


def _levels(x, axis=2):
  return np.split(x, np.cumsum(LEVELS)[:-1], axis=axis)


def _normalize(z, name):
  if name == "relu":
    return np.maximum(z, 0.0)
  if name == "sigmoid":
    return 1.0 / (1.0 + np.exp(-z))
  return np.clip(z, 0.0, 1.0)


# ---------------------------------------------------------------------------
# ConvBlock.
# ---------------------------------------------------------------------------
def _np_layer_norm(x, gamma, beta, eps):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _np_conv_same(x, kernel, bias):
  """x [N, T, Din], kernel [k, Din, Dout]; SAME = TF/XLA split of padding."""
  k = kernel.shape[0]
  left = (k - 1) // 2
  xp = np.pad(x, [(0, 0), (left, k - 1 - left), (0, 0)])
  t = x.shape[1]
  out = sum(xp[:, j : j + t] @ kernel[j] for j in range(k))
  return out + bias


def _np_conv_block(block, x):
  lead = x.shape[:-2]
  y = x.reshape((-1,) + x.shape[-2:]).astype(np.float64)
  for ln, conv in zip(block.layer_norms, block.convs):
    y = _np_layer_norm(y, ln.gamma.numpy(), ln.beta.numpy(), 1e-6)
    y = np.maximum(
      _np_conv_same(y, conv.kernel.numpy(), conv.bias.numpy()), 0.0
    )
  proj = block.output_projection
  y = y @ proj.kernel.numpy() + proj.bias.numpy()
  return y.reshape(lead + y.shape[-2:])


@pytest.mark.parametrize("kernel_size", [3, 4])
def test_conv_block_matches_numpy_forward(kernel_size):
  block = heads.ConvBlock(
    3,
    num_conv_layers=2,
    hidden_dim=6,
    kernel_size=kernel_size,
    init_proj_bias=0.7,
  )
  x = _rand(2, 3, 5, 4)  # Two leading axes, T = 5, D_in = 4.
  block.build(x.shape)
  # Initial values: LN (1, 0), conv bias 0, projection bias exactly 0.7.
  for ln, conv in zip(block.layer_norms, block.convs):
    np.testing.assert_array_equal(ln.gamma.numpy(), 1.0)
    np.testing.assert_array_equal(ln.beta.numpy(), 0.0)
    np.testing.assert_array_equal(conv.bias.numpy(), 0.0)
    assert conv.kernel.shape == (kernel_size, conv.kernel.shape[1], 6)
    assert ln.epsilon == 1e-6
  np.testing.assert_array_equal(
    block.output_projection.bias.numpy(), np.float32(0.7)
  )
  assert block.output_projection.kernel.shape == (6, 3)
  _randomize(block)
  out = block(x).numpy()
  assert out.shape == (2, 3, 5, 3)
  np.testing.assert_allclose(out, _np_conv_block(block, x), atol=1e-5)


def test_conv_block_layer_norm_epsilon_matters():
  """A zero-variance row is normalised with eps=1e-6, not Keras' 1e-3."""
  block = heads.ConvBlock(2, num_conv_layers=1, hidden_dim=4)
  x = np.zeros((1, 3, 4), np.float32)
  x[0, 1] = [0.0, 0.0, 0.0, 0.002]  # variance 7.5e-7, comparable to eps.
  block.build(x.shape)
  _randomize(block)
  np.testing.assert_allclose(
    block(x).numpy(), _np_conv_block(block, x), atol=1e-5
  )
  block_1e3 = heads.ConvBlock(
    2, num_conv_layers=1, hidden_dim=4, layer_norm_epsilon=1e-3
  )
  block_1e3.build(x.shape)
  block_1e3.set_weights(block.get_weights())
  assert not np.allclose(block_1e3(x).numpy(), block(x).numpy(), atol=1e-3)


def test_conv_block_folds_leading_axes():
  block = heads.ConvBlock(2, num_conv_layers=2, hidden_dim=5)
  x = _rand(2, 3, 4, 6, 5)
  out = block(x).numpy()
  assert out.shape == (2, 3, 4, 6, 2)
  np.testing.assert_allclose(out[1, 2], block(x[1, 2]).numpy(), atol=1e-6)


def test_conv_block_initializer_distributions():
  """Flax defaults: lecun_normal conv kernels, glorot normal projection."""
  block = heads.ConvBlock(256, num_conv_layers=1, hidden_dim=256)
  block.build((1, 4, 256))
  conv = block.convs[0]
  proj = block.output_projection
  assert isinstance(conv.kernel_initializer, keras.initializers.LecunNormal)
  assert isinstance(proj.kernel_initializer, keras.initializers.GlorotNormal)
  conv_std = math.sqrt(1.0 / (3 * 256))  # fan_in = k * D_in
  proj_std = math.sqrt(2.0 / (256 + 256))  # fan_avg
  for w, std in (
    (conv.kernel.numpy(), conv_std),
    (proj.kernel.numpy(), proj_std),
  ):
    assert abs(w.std() / std - 1.0) < 0.03
    # Truncated at two standard deviations of the untruncated normal.
    assert np.abs(w).max() <= 2.0 * std / 0.87962566103423978 + 1e-6


# ---------------------------------------------------------------------------
# LocalizationHead variants: the shared layer checks (shapes, XLA, config,
# .keras file, one training step; tests/test_case.py).
# ---------------------------------------------------------------------------
# Non-default values for the config round trip of one variant.
_CONFIG_VALUES = dict(
  kernel_size=5,
  classification_bias=-5.0,
  regression_bias=1.0,
  layer_norm_epsilon=1e-5,
)
VARIANTS = [
  dict(scoring="early", weight_sharing=True, per_class=True, num_outputs=1),
  dict(scoring="early", weight_sharing=False, per_class=True, num_outputs=1),
  dict(scoring="early", weight_sharing=True, per_class=False, num_outputs=1),
  dict(scoring="early", weight_sharing=False, per_class=False, num_outputs=1),
  dict(scoring="early", weight_sharing=True, per_class=True, num_outputs=3),
  dict(scoring="early", weight_sharing=False, per_class=False, num_outputs=3),
  dict(scoring="late", weight_sharing=True, per_class=True, num_outputs=1),
  dict(scoring="late", weight_sharing=False, per_class=False, num_outputs=1),
]
_LATE_SHARED = 6  # Gets the _CONFIG_VALUES.
# A .keras round trip for one early and one late variant (the others differ
# only in which sub-layers exist, which the config check covers).
_SAVED = (0, _LATE_SHARED)


def _variant(v):
  kwargs = dict(
    level_lengths=LEVELS,
    hidden_dim=D,
    num_conv_layers=2,
    scoring=v["scoring"],
    weight_sharing=v["weight_sharing"],
    output_per_class_displacements=v["per_class"],
    num_outputs=v["num_outputs"],
    distance_normalizer="sigmoid",
  )
  b, nt = 2, 3
  if v["scoring"] == "late":
    args = (_rand(b, 1, T_TOT, D), _rand(nt, D, seed=1))
    expected = (b, nt, T_TOT)
  elif v["num_outputs"] > 1:
    args = (_rand(b, 1, T_TOT, D),)
    expected = (b, v["num_outputs"], T_TOT)
  else:
    args = (_rand(b, nt, T_TOT, D),)
    expected = (b, nt, T_TOT)
  return kwargs, args, expected


def _id(v):
  return "-".join(f"{k}={val}" for k, val in v.items())


@pytest.mark.parametrize("index", range(len(VARIANTS)),
                         ids=[_id(v) for v in VARIANTS])
def test_localization_head_layer_checks(index, tmp_path):
  kwargs, args, expected = _variant(VARIANTS[index])
  if index == _LATE_SHARED:
    kwargs.update(_CONFIG_VALUES)
  _, (logits, distances) = test_case.run_layer_test(
    heads.LocalizationHead,
    kwargs,
    args,
    expected_output_shape=(expected, expected + (2,)),
    run_saving=index in _SAVED,
    tmp_path=tmp_path,
  )
  assert np.all(distances.numpy() > 0.0)  # sigmoid


def test_conv_block_layer_checks(tmp_path):
  test_case.run_layer_test(
    heads.ConvBlock,
    dict(
      output_dim=3,
      num_conv_layers=2,
      hidden_dim=6,
      kernel_size=5,
      init_proj_bias=0.3,
      layer_norm_epsilon=1e-5,
    ),
    _rand(2, 3, 7, D),
    expected_output_shape=(2, 3, 7, 3),
    tmp_path=tmp_path,
  )


def test_segmentation_head_layer_checks(tmp_path):
  test_case.run_layer_test(
    heads.SegmentationHead,
    dict(init_bias=-2.0),
    _rand(2, 3, 5, D),
    expected_output_shape=(2, 5, 3),
    tmp_path=tmp_path,
  )


# ---------------------------------------------------------------------------
# Levels are convolved separately.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("weight_sharing", [True, False])
def test_levels_are_convolved_separately(weight_sharing):
  head = _head(
    level_lengths=(4, 2),
    weight_sharing=weight_sharing,
    distance_normalizer="sigmoid",
  )
  x = _rand(1, 2, 6, D)
  x2 = x.copy()
  # Last token of level 0 (not a constant shift: LayerNorm would remove it).
  x2[:, :, 3] += 3.0 * _rand(D, seed=5)
  (l1, d1), (l2, d2) = head(x), head(x2)
  # Level 1 (tokens 4, 5) is untouched; level 0 changed.
  np.testing.assert_array_equal(l1.numpy()[..., 4:], l2.numpy()[..., 4:])
  np.testing.assert_array_equal(d1.numpy()[..., 4:, :], d2.numpy()[..., 4:, :])
  assert not np.allclose(l1.numpy()[..., 3], l2.numpy()[..., 3])
  assert not np.allclose(d1.numpy()[..., 3, :], d2.numpy()[..., 3, :])
  # Control: the same block run over the unsplit sequence does leak.
  block = head.classification_heads[0]
  assert not np.allclose(
    block(x).numpy()[..., 4, :], block(x2).numpy()[..., 4, :]
  )


# ---------------------------------------------------------------------------
# Shared vs per-level heads.
# ---------------------------------------------------------------------------
def _block_variable_count(num_conv_layers):
  return 4 * num_conv_layers + 2  # (gamma, beta, kernel, bias) * M + Dense.


def test_shared_head_variables():
  head = _head(weight_sharing=True)
  head.build((2, 3, T_TOT, D))
  names = {v.path.split("/", 1)[1] for v in head.weights}
  assert len(head.weights) == 2 * _block_variable_count(2) + 2 * len(LEVELS)
  for level in range(len(LEVELS)):
    assert f"scale_{level}" in names and f"shift_{level}" in names
  assert "ClassificationHead/ln1/gamma" in names
  assert "ClassificationHead/conv0/kernel" in names
  assert "RegressionHead/output_projection/bias" in names
  for level in range(len(LEVELS)):
    np.testing.assert_array_equal(head.scales[level].numpy(), [1.0])
    np.testing.assert_array_equal(head.shifts[level].numpy(), [0.0])


def test_per_level_head_variables():
  head = _head(weight_sharing=False)
  head.build((2, 3, T_TOT, D))
  num_levels = len(LEVELS)
  assert len(head.weights) == 2 * num_levels * _block_variable_count(2)
  assert len({id(v) for v in head.weights}) == len(head.weights)
  blocks = {v.path.split("/")[1] for v in head.weights}
  assert blocks == (
    {f"ClassificationHead_{l}" for l in range(num_levels)}
    | {f"RegressionHead_{l}" for l in range(num_levels)}
  )
  assert not any("scale" in v.path or "shift" in v.path for v in head.weights)


def test_shared_head_levels_differ_only_by_scale_and_shift():
  head = _head(weight_sharing=True, distance_normalizer="relu")
  x = _rand(2, 3, T_TOT, D)
  head(x)
  _randomize(head)
  scales = [2.0, 0.5, -1.0]
  shifts = [-0.5, 1.0, 0.25]
  for level in range(len(LEVELS)):
    head.scales[level].assign([scales[level]])
    head.shifts[level].assign([shifts[level]])
  logits, distances = head(x)
  logits, distances = _levels(logits.numpy()), _levels(distances.numpy())
  cls, reg = head.classification_heads[0], head.regression_heads[0]
  for level, xl in enumerate(_levels(x)):
    np.testing.assert_allclose(
      logits[level], cls(xl).numpy()[..., 0], atol=1e-5
    )
    raw = reg(xl).numpy()
    np.testing.assert_allclose(
      distances[level],
      np.maximum(raw * scales[level] + shifts[level], 0.0),
      atol=1e-5,
    )


@pytest.mark.parametrize("weight_sharing", [True, False])
def test_identical_levels_identical_outputs_only_when_shared(weight_sharing):
  head = _head(
    level_lengths=(3, 3),
    weight_sharing=weight_sharing,
    distance_normalizer="sigmoid",
  )
  x0 = _rand(1, 2, 3, D)
  x = np.concatenate([x0, x0], axis=2)
  logits, distances = (t.numpy() for t in head(x))
  same = np.allclose(
    logits[..., :3], logits[..., 3:], atol=1e-6
  ) and np.allclose(distances[..., :3, :], distances[..., 3:, :], atol=1e-6)
  assert same == weight_sharing
  if weight_sharing:  # A per-level scale changes distances, not logits.
    head.scales[1].assign([3.0])
    logits2, distances2 = (t.numpy() for t in head(x))
    np.testing.assert_allclose(logits2[..., 3:], logits[..., 3:], atol=1e-6)
    assert not np.allclose(distances2[..., 3:, :], distances[..., 3:, :])


# ---------------------------------------------------------------------------
# Distance normalizers, biases.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("normalizer", ["relu", "sigmoid", "relu_clip"])
def test_distance_normalizers(normalizer):
  head = _head(
    level_lengths=(4,), distance_normalizer=normalizer, regression_bias=0.0
  )
  x = _rand(2, 2, 4, D)
  head(x)
  head.scales[0].assign([10.0])
  head.shifts[0].assign([0.3])
  z = head.regression_heads[0](x).numpy() * 10.0 + 0.3
  assert (z > 1.0).any() and (z < 0.0).any()  # Both clip regions are hit.
  _, distances = head(x)
  np.testing.assert_allclose(
    distances.numpy(), _normalize(z, normalizer), rtol=1e-5, atol=1e-5
  )
  if normalizer == "relu_clip":
    assert distances.numpy().max() == 1.0
  if normalizer == "relu":
    assert distances.numpy().max() > 1.0


def test_projection_biases_initialised():
  head = _head(
    weight_sharing=False,
    classification_bias=-5.0,
    regression_bias=2.0,
    num_conv_layers=1,
  )
  x = _rand(1, 2, T_TOT, D)
  head(x)
  for cls, reg in zip(head.classification_heads, head.regression_heads):
    np.testing.assert_array_equal(cls.output_projection.bias.numpy(), [-5.0])
    np.testing.assert_array_equal(
      reg.output_projection.bias.numpy(), [2.0, 2.0]
    )
    # Zero kernel => outputs equal the bias exactly.
    cls.output_projection.kernel.assign(
      np.zeros(cls.output_projection.kernel.shape, np.float32)
    )
    reg.output_projection.kernel.assign(
      np.zeros(reg.output_projection.kernel.shape, np.float32)
    )
  logits, distances = head(x)
  np.testing.assert_array_equal(logits.numpy(), -5.0)
  np.testing.assert_array_equal(distances.numpy(), 2.0)


# ---------------------------------------------------------------------------
# output_per_class_displacements.
# ---------------------------------------------------------------------------
def test_displacements_from_text_average():
  head = _head(
    output_per_class_displacements=False, distance_normalizer="sigmoid"
  )
  x = _rand(2, 3, T_TOT, D)
  head(x)
  _randomize(head)
  for level in range(len(LEVELS)):
    head.scales[level].assign([1.0])
    head.shifts[level].assign([0.0])
  logits, distances = (t.numpy() for t in head(x))
  assert distances.shape == (2, 3, T_TOT, 2)
  for j in range(1, 3):
    np.testing.assert_array_equal(distances[:, j], distances[:, 0])
  assert not np.allclose(logits[:, 1], logits[:, 0])  # Logits per text.
  mean = x.mean(axis=1, keepdims=True)
  reg = head.regression_heads[0]
  expected = np.concatenate(
    [_normalize(reg(m).numpy(), "sigmoid") for m in _levels(mean)], axis=2
  )
  np.testing.assert_allclose(distances[:, :1], expected, atol=1e-5)


def test_displacements_per_text_item():
  head = _head(
    output_per_class_displacements=True, distance_normalizer="sigmoid"
  )
  _, distances = head(_rand(2, 3, T_TOT, D))
  assert not np.allclose(distances.numpy()[:, 1], distances.numpy()[:, 0])


# ---------------------------------------------------------------------------
# Video-only variant.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("per_class", [True, False])
def test_video_only_layout(per_class):
  c = 3
  head = _head(
    num_outputs=c,
    weight_sharing=False,
    output_per_class_displacements=per_class,
    distance_normalizer="sigmoid",
  )
  x = _rand(2, 1, T_TOT, D)
  logits, distances = (t.numpy() for t in head(x))
  assert logits.shape == (2, c, T_TOT)
  assert distances.shape == (2, c, T_TOT, 2)
  cls = np.concatenate(
    [
      head.classification_heads[l](xl).numpy()
      for l, xl in enumerate(_levels(x))
    ],
    axis=2,
  )[:, 0]  # [B, T, C]
  reg = np.concatenate(
    [
      _normalize(head.regression_heads[l](xl).numpy(), "sigmoid")
      for l, xl in enumerate(_levels(x))
    ],
    axis=2,
  )[:, 0]  # [B, T, 2P]
  assert reg.shape[-1] == (2 * c if per_class else 2)
  for k in range(c):
    np.testing.assert_allclose(logits[:, k], cls[..., k], atol=1e-6)
    pair = reg[..., 2 * k : 2 * k + 2] if per_class else reg
    np.testing.assert_allclose(distances[:, k], pair, atol=1e-6)


# ---------------------------------------------------------------------------
# Late scoring.
# ---------------------------------------------------------------------------
def _np_unit(x):
  return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("text_rank", [2, 3])
def test_late_scoring_is_scaled_cosine(text_rank):
  head = _head(
    scoring="late", classification_bias=-1.5, distance_normalizer="sigmoid"
  )
  x = _rand(2, 1, T_TOT, D)
  text = _rand(4, D, seed=3) if text_rank == 2 else _rand(2, 4, D, seed=3)
  head(x, text)
  np.testing.assert_allclose(
    head.logit_scale.numpy(), [math.log(1 / 0.07)], rtol=1e-7
  )
  np.testing.assert_array_equal(head.logit_bias.numpy(), [-1.5])
  assert not head.classification_heads
  assert not any("ClassificationHead" in v.path for v in head.weights)
  head.logit_scale.assign([math.log(5.0)])
  logits, distances = (t.numpy() for t in head(x, text))
  t = np.broadcast_to(_np_unit(text), (2, 4, D))
  cosine = np.einsum("btd,bnd->bnt", _np_unit(x[:, 0]), t)
  np.testing.assert_allclose(logits, 5.0 * cosine - 1.5, atol=1e-5)
  assert distances.shape == (2, 4, T_TOT, 2)
  reg = head.regression_heads[0]
  expected = np.concatenate(
    [_normalize(reg(xl).numpy(), "sigmoid") for xl in _levels(x)], axis=2
  )
  for j in range(4):
    np.testing.assert_allclose(distances[:, j], expected[:, 0], atol=1e-6)


def test_late_scoring_needs_text():
  head = _head(scoring="late")
  with pytest.raises(ValueError, match="text_embeddings"):
    head(_rand(1, 1, T_TOT, D))


# ---------------------------------------------------------------------------
# SegmentationHead.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("init_bias", [-6.6, 0.5])
def test_segmentation_head(init_bias):
  head = heads.SegmentationHead(init_bias=init_bias)
  x = _rand(2, 5, 7, D)  # [B, C, T, D]
  out = head(x).numpy()
  assert out.shape == (2, 7, 5)
  proj = head.output_projection
  assert proj.name == "output_projection"
  np.testing.assert_array_equal(proj.bias.numpy(), [np.float32(init_bias)])
  assert isinstance(proj.kernel_initializer, keras.initializers.GlorotUniform)
  assert np.abs(proj.kernel.numpy()).max() <= math.sqrt(6.0 / (D + 1))
  expected = (x @ proj.kernel.numpy())[..., 0] + init_bias  # [B, C, T]
  np.testing.assert_allclose(out, expected.transpose(0, 2, 1), atol=1e-5)


def test_segmentation_head_default_bias_is_coin_prior():
  assert heads.SegmentationHead().init_bias == -6.6


# ---------------------------------------------------------------------------
# Argument validation.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize(
  "kwargs,match",
  [
    (dict(distance_normalizer="softplus"), "distance_normalizer"),
    (dict(scoring="middle"), "scoring"),
    (dict(scoring="late", num_outputs=3), "num_outputs"),
    (dict(num_outputs=0), "num_outputs"),
    (dict(level_lengths=()), "level_lengths"),
  ],
)
def test_invalid_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    _head(**kwargs)


def test_wrong_token_shapes():
  with pytest.raises(ValueError, match="level_lengths"):
    _head()(_rand(1, 2, T_TOT + 1, D))
  with pytest.raises(ValueError, match=r"\[B, 1, T_tot, D\]"):
    _head(num_outputs=3)(_rand(1, 2, T_TOT, D))
