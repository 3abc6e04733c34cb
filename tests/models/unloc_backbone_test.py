"""Tests of unloc_tf.models.unloc_backbone (reference_spec.md §2.1-§2.7).

The backbone is built from explicitly constructed tiny sub-layers (not
`build_backbone`): image tower 16x16 frames, 8x8 patches, width Dv = 16;
text tower vocabulary 64 (BOS 62, EOS 63), width Dt = 12, L = 6; fusion
width D = 8, 2 blocks, simple pyramid with 2 levels (T_tot = 4 + 2).
"""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import test_case
from unloc_tf.layers import clip_image_encoder, clip_text_encoder, fusion
from unloc_tf.models import unloc_backbone
from unloc_tf.models.unloc_backbone import UnlocBackbone

B, N0, S, DV = 2, 4, 16, 16
DT, L, D = 12, 6, 8
T_TOT = N0 + N0 // 2
BOS, EOS = 62, 63
# Three text items, right padded with 0; EOS (the largest id) at 3, 5, 2.
IDS = np.array([
    [BOS, 5, 17, EOS, 0, 0],
    [BOS, 1, 2, 3, 4, EOS],
    [BOS, 40, EOS, 0, 0, 0],
], np.int32)
MASK = (IDS > 0).astype(np.int32)
EOS_POS = [3, 5, 2]
NT = len(IDS)


def _image_encoder(**kw):
  return clip_image_encoder.CLIPImageEncoder(
      **dict(dict(patch_size=8, hidden_dim=DV, num_layers=1, num_heads=2,
                  intermediate_dim=32, image_size=S, num_frames=N0,
                  name="image_encoder"), **kw))


def _text_encoder():
  return clip_text_encoder.CLIPTextEncoder(
      vocabulary_size=64, hidden_dim=DT, num_layers=1, num_heads=2,
      intermediate_dim=24, max_length=L, name="text_encoder")


def _fusion(text_mode="pooled"):
  return fusion.VideoTextFusion(
      hidden_dim=D, num_layers=2, num_heads=2, mlp_dim=16,
      text_mode=text_mode, pyramid="simple", num_levels=2,
      name="video_text_fusion")


def _backbone(text_mode="pooled", image=True, text=True, **kw):
  return UnlocBackbone(
      _fusion(text_mode), image_encoder=_image_encoder() if image else None,
      text_encoder=_text_encoder() if text else None, name="backbone", **kw)


def _frames(seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (B, N0, S, S, 3)).astype(np.uint8)


def _video_mask():
  mask = np.ones((B, N0), np.int32)
  mask[1, 3:] = 0
  return mask


def _rand(*shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


@keras.saving.register_keras_serializable(package="unloc_tf_tests")
class BackbonePath(keras.layers.Layer):
  """The path a task model takes: encode_video -> text_features -> fuse.

  Wraps the backbone so the shared layer checks (XLA, config, .keras file,
  training step) cover the text tower and the fusion too, not only `call`.
  """

  def __init__(self, backbone, **kwargs):
    super().__init__(**kwargs)
    self.backbone = unloc_backbone.maybe_deserialize(backbone)

  def build(self, *shapes):
    del shapes  # The backbone's sub-layers build on the first call.
    self.built = True

  def call(self, frames, video_mask, ids, mask, training=False):
    video = self.backbone.encode_video({"frames": frames}, training=training)
    text, text_mask, _ = self.backbone.text_features(ids, mask, None,
                                                     training=training)
    return self.backbone.fuse(video, video_mask, text, text_mask,
                              training=training)

  def get_config(self):
    config = super().get_config()
    config["backbone"] = keras.saving.serialize_keras_object(self.backbone)
    return config




# ---------------------------------------------------------------------------
# The shared layer checks.
# ---------------------------------------------------------------------------
def test_call_layer_checks_frozen_image_tower(tmp_path):
  """`call` = encode_video; the frozen tower gets no gradient, the
  projection does."""
  test_case.run_layer_test(
      UnlocBackbone,
      dict(fusion=_fusion(), image_encoder=_image_encoder(),
           text_encoder=_text_encoder(), freeze_image_encoder=True,
           freeze_text_encoder=True, text_pooling="gap",
           project_text_embeddings=False, name="backbone"),
      ({"frames": _frames()},), expected_output_shape=(B, N0, D),
      untrained_weights=("image_encoder/",), tmp_path=tmp_path)


def test_call_layer_checks_cached_embeddings(tmp_path):
  test_case.run_layer_test(
      UnlocBackbone, dict(fusion=_fusion(), name="backbone"),
      ({"frame_embeddings": _rand(B, N0, DV)},),
      expected_output_shape=(B, N0, D), tmp_path=tmp_path)


@pytest.mark.parametrize("text_mode,freeze_text", [
    ("pooled", True), ("all_tokens", False)])
def test_full_path_layer_checks(text_mode, freeze_text, tmp_path):
  """Towers, projections, fusion: the text tower is frozen or trains."""
  backbone = _backbone(text_mode, freeze_text_encoder=freeze_text)
  want = (B, NT, T_TOT)
  test_case.run_layer_test(
      BackbonePath, dict(backbone=backbone),
      (_frames(), _video_mask(), IDS, MASK),
      expected_output_shape={"tokens": want + (D,), "mask": want,
                             "text": (B, NT, D)},
      untrained_weights=("text_encoder/",) if freeze_text else (),
      run_saving=text_mode == "pooled", tmp_path=tmp_path)


def test_from_config_keeps_weight_paths():
  """Learning-rate multipliers and .npz checkpoints find variables by path,
  so a clone (or a reloaded model) must have the original paths."""
  backbone = _backbone()
  backbone({"frames": _frames()})
  clone = UnlocBackbone.from_config(backbone.get_config())
  clone({"frames": _frames()})
  assert [w.path for w in clone.weights] == [w.path for w in backbone.weights]


# ---------------------------------------------------------------------------
# encode_video.
# ---------------------------------------------------------------------------
def test_encode_video_from_frames_and_from_cached_embeddings():
  backbone = _backbone()
  frames = _frames()
  from_frames = backbone.encode_video({"frames": frames}).numpy()
  assert from_frames.shape == (B, N0, D)
  # Cached embeddings are the tower's output: the same tokens.
  cached = backbone.image_encoder(frames)
  assert cached.shape == (B, N0, DV)
  from_cache = backbone.encode_video({"frame_embeddings": cached}).numpy()
  np.testing.assert_allclose(from_cache, from_frames, atol=1e-6)
  # A bias-free projection of the tower output.
  kernel = backbone.video_projection.kernel.numpy()
  assert backbone.video_projection.bias is None
  np.testing.assert_allclose(from_frames, cached.numpy() @ kernel, atol=1e-5)
  # Frames win when both are given and there is a tower.
  other = _rand(B, N0, DV, seed=3)
  np.testing.assert_array_equal(
      backbone.encode_video({"frames": frames,
                             "frame_embeddings": other}).numpy(),
      from_frames)


def test_encode_video_without_image_tower():
  backbone = _backbone(image=False)
  emb = _rand(B, N0, DV)
  out = backbone.encode_video({"frames": _frames(), "frame_embeddings": emb})
  assert out.shape == (B, N0, D)  # The embeddings are used.
  with pytest.raises(ValueError, match="'frame_embeddings'"):
    backbone.encode_video({"frames": _frames()})


# ---------------------------------------------------------------------------
# Text: pooling, text_features, freezing.
# ---------------------------------------------------------------------------
def test_text_pooling_picks_the_right_states():
  """eos: the state at the largest id; token: position 0; gap: the mean over
  the mask; all from the projected token states."""
  text = _text_encoder()
  for mode in ("eos", "token", "gap"):
    backbone = UnlocBackbone(_fusion(), text_encoder=text, text_pooling=mode)
    tokens, pooled = backbone.encode_text(IDS, MASK)
    tokens, pooled = tokens.numpy(), pooled.numpy()
    assert tokens.shape == (NT, L, D) and pooled.shape == (NT, D)
    if mode == "eos":
      want = tokens[np.arange(NT), EOS_POS]
    elif mode == "token":
      want = tokens[:, 0]
    else:
      lengths = MASK.sum(1)
      want = np.stack([tokens[n, :lengths[n]].mean(0) for n in range(NT)])
    np.testing.assert_allclose(pooled, want, atol=1e-6, err_msg=mode)
  # Padding states are zeroed by the mask before the projection.
  np.testing.assert_array_equal(tokens[MASK == 0], 0.0)
  with pytest.raises(ValueError, match="text_pooling"):
    UnlocBackbone(_fusion(), text_pooling="max")


def test_text_features_pooled_mode():
  backbone = _backbone("pooled")
  text, text_mask, pooled = backbone.text_features(IDS, MASK, None)
  assert text.shape == (NT, D) and text_mask is None
  _, want = backbone.encode_text(IDS, MASK)
  np.testing.assert_array_equal(text.numpy(), want.numpy())
  np.testing.assert_array_equal(pooled.numpy(), want.numpy())


def test_text_features_all_tokens_mode():
  backbone = _backbone("all_tokens")
  text, text_mask, pooled = backbone.text_features(IDS, MASK, None)
  assert text.shape == (NT, L, D) and pooled.shape == (NT, D)
  np.testing.assert_array_equal(np.asarray(text_mask), MASK)
  np.testing.assert_allclose(
      pooled.numpy(), text.numpy()[np.arange(NT), EOS_POS], atol=1e-6)


@pytest.mark.parametrize("text_mode", [
    "pooled",
    "all_tokens",
])
def test_text_features_from_cached_embeddings(text_mode):
  backbone = _backbone(text_mode, text=False)
  emb = _rand(NT, DT, seed=4)
  text, text_mask, pooled = backbone.text_features(None, None, emb)
  kernel = backbone.text_projection.kernel.numpy()
  assert kernel.shape == (DT, D)
  np.testing.assert_allclose(pooled.numpy(), emb @ kernel, atol=1e-5)
  if text_mode == "pooled":
    assert text_mask is None
    np.testing.assert_array_equal(text.numpy(), pooled.numpy())
  else:  # One always-valid text token per item.
    assert text.shape == (NT, 1, D)
    assert text_mask.dtype == tf.int32
    np.testing.assert_array_equal(text_mask.numpy(), np.ones((NT, 1)))
    np.testing.assert_array_equal(text.numpy()[:, 0], pooled.numpy())
  with pytest.raises(ValueError, match="no text encoder"):
    backbone.encode_text(IDS, MASK)


def test_unprojected_text_embeddings_pass_through():
  backbone = _backbone(text=False, project_text_embeddings=False)
  emb = _rand(NT, D, seed=5)
  text, _, pooled = backbone.text_features(None, None, emb)
  np.testing.assert_array_equal(text.numpy(), emb)
  np.testing.assert_array_equal(pooled.numpy(), emb)
  assert not backbone.text_projection.built


@pytest.mark.parametrize("tower", ["image", "text"])
@pytest.mark.parametrize("freeze", [True, False])
def test_freezing_stops_gradients_at_the_tower_output(tower, freeze):
  backbone = _backbone(**{f"freeze_{tower}_encoder": freeze})
  with tf.GradientTape() as tape:
    if tower == "image":
      out = backbone.encode_video({"frames": _frames()}, training=True)
      encoder, projection = backbone.image_encoder, backbone.video_projection
    else:
      out, _ = backbone.encode_text(IDS, MASK, training=True)
      encoder, projection = backbone.text_encoder, backbone.text_projection
    loss = tf.reduce_sum(out * _rand(*out.shape, seed=6))
  grads = tape.gradient(
      loss, encoder.trainable_variables + projection.trainable_variables)
  n = len(encoder.trainable_variables)
  assert n > 0
  if freeze:
    assert all(g is None for g in grads[:n])
  else:
    assert all(g is not None for g in grads[:n])
  (g_proj,) = grads[n:]
  assert np.abs(g_proj.numpy()).max() > 0  # The projection still trains.


# ---------------------------------------------------------------------------
# fuse.
# ---------------------------------------------------------------------------
def test_fuse_returns_the_fusion_dict():
  backbone = _backbone()
  video = backbone.encode_video({"frames": _frames()})
  text, text_mask, _ = backbone.text_features(IDS, MASK, None)
  vmask = _video_mask()
  out = backbone.fuse(video, vmask, text, text_mask)
  assert set(out) == {"tokens", "mask", "text"}
  assert out["tokens"].shape == (B, NT, T_TOT, D)
  assert out["mask"].shape == (B, NT, T_TOT) and out["mask"].dtype == tf.int32
  assert out["text"].shape == (B, NT, D)
  # Level masks: level 0 is the video mask; a level-1 token is valid when
  # the first frame of its window is.
  np.testing.assert_array_equal(out["mask"].numpy()[1, 0],
                                [1, 1, 1, 0, 1, 1])
  want = backbone.fusion(video, vmask, text=text)
  for key in out:
    np.testing.assert_array_equal(out[key].numpy(), want[key].numpy())
  # Paired: video b with text item b.
  paired = backbone.fuse(video, vmask, text[:B], pairing="paired")
  assert paired["tokens"].shape == (B, 1, T_TOT, D)


def test_fuse_video_only_ignores_text():
  backbone = _backbone("none", text=False)
  video = backbone.encode_video({"frames": _frames()})
  vmask = _video_mask()
  out = backbone.fuse(video, vmask, text=_rand(NT, D))
  assert out["tokens"].shape == (B, 1, T_TOT, D)
  np.testing.assert_array_equal(out["text"].numpy(), 0.0)
  want = backbone.fusion(video, vmask)
  np.testing.assert_array_equal(out["tokens"].numpy(), want["tokens"].numpy())


def test_properties_follow_the_fusion():
  backbone = _backbone("all_tokens")
  assert backbone.embed_dim == D
  assert backbone.text_mode == "all_tokens"
