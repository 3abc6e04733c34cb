"""unloc_tf/convert/reference.py: reference names ⇄ model variables.

Round trips (model → reference-named tree → .npz / Flax msgpack → fresh
model, same outputs) for every task and the main variants; the names and
layouts against reference_spec.md §2.11 and the reference's own arithmetic
(patch Dense, depthwise Conv, DenseGeneral attention); refusals.  The CLI is
tested in tests/tools/convert_reference_checkpoint_test.py.
"""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.convert import reference, reference_io
from unloc_tf.layers import heads as heads_lib
from unloc_tf.models import unloc_backbone
from unloc_tf.tasks import (
  action_localizer,
  action_segmenter,
  moment_retriever,
  video_text_classifier,
)

N0, B, L, C, K, S = 8, 2, 6, 3, 2, 32
PYR = spec.PyramidSpec(N0, num_levels=2, regression_ranges=((0, 2),
                                                            (2, np.inf)))
SMALL = dict(image_size=S, text_max_length=L)


def _tal(**kw):
  args = dict(pyramid_spec=PYR, num_conv_layers=2, **SMALL)
  args.update(kw)
  return fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", **args)


def _video_only_one_pair():
  """Video-only head with one displacement pair for all classes."""
  backbone = unloc_backbone.build_backbone(
      unloc_backbone.BackboneConfig(text_input="none", **SMALL),
      num_frames=N0, num_levels=2)
  head = heads_lib.LocalizationHead(
      PYR.level_lengths, hidden_dim=backbone.embed_dim, num_conv_layers=1,
      num_outputs=C, output_per_class_displacements=False,
      name="temporal_localization_head")
  return action_localizer.ActionLocalizer(backbone, head)


# name: (builder, task, frame input, text input, file format / wrapper)
CASES = {
    "tal_simple_shared_tokens": (lambda: _tal(), spec.TAL, "frames",
                                 "tokens", "msgpack:params"),
    "tal_fpn_per_level_embeddings": (
        lambda: _tal(input_mode="embeddings", text_input="embeddings",
                     pyramid="fpn", fpn_layer_indices=(0, 1),
                     weight_sharing=False),
        spec.TAL, "embeddings", "embeddings", "npz"),
    "tal_late_fusion_gap": (lambda: _tal(fusion="late", frame_token="gap"),
                            spec.TAL, "frames", "tokens", "npz:params"),
    "tal_video_only_per_class": (
        lambda: _tal(fusion="video_only", num_classes=C, num_conv_layers=1),
        spec.TAL, "frames", "none", "msgpack:optimizer/target"),
    "tal_video_only_one_pair": (_video_only_one_pair, spec.TAL, "frames",
                                "none", "npz"),
    "hd_learned_position": (
        lambda: _tal(task=spec.HD, frame_token="gap", fusion_overrides=dict(
            position_embedding="learned", max_length=N0 + 1)),
        spec.HD, "frames", "tokens", "msgpack"),
    "mr_fpn_all_tokens_per_level": (
        lambda: fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=PYR,
      num_conv_layers=1, text_mode="all_tokens",
            pyramid="fpn", fpn_layer_indices=(0, 1), **SMALL),
        spec.MR, "frames", "tokens", "npz"),
    "as_transformer": (
        lambda: fixtures.build_task(
      action_segmenter.build_action_segmenter, "tiny", num_frames=N0,
      frame_token="gap", **SMALL),
        spec.AS, "frames", "tokens", "msgpack:params"),
    "classification": (
        lambda: fixtures.build_task(
      video_text_classifier.build_video_text_classifier, "tiny", num_frames=N0,
      **SMALL),
        spec.CLS, "frames", "tokens", "npz"),
}


def _ids(n, seed):
  rng = np.random.default_rng(seed)
  ids = np.zeros((n, L), np.int32)
  for i in range(n):
    m = 2 + i % (L - 2)
    ids[i, 1:m] = rng.integers(1, 400, m - 1)
    ids[i, 0], ids[i, m] = 49406, 49407
  return ids


def _batch(task, frames="frames", text="tokens"):
  rng = np.random.default_rng(0)
  x = {spec.FRAME_MASK: np.ones((B, N0), np.int32)}
  if frames == "frames":
    x[spec.FRAMES] = rng.integers(0, 255, (B, N0, S, S, 3)).astype(np.uint8)
  else:
    x[spec.FRAME_EMBEDDINGS] = rng.normal(size=(B, N0, 12)).astype(
        np.float32)
  nt = {spec.HD: 1, spec.MR: K}.get(task, C)
  if text == "tokens":
    if task in (spec.HD, spec.MR):
      ids = _ids(B * nt, 1).reshape(B, nt, L)
    else:
      ids = np.stack([_ids(nt, 1)] * B)
    x[spec.TEXT_IDS] = ids
    x[spec.TEXT_MASK] = (ids > 0).astype(np.int32)
  elif text == "embeddings":
    x[spec.TEXT_EMBEDDINGS] = np.stack(
        [rng.normal(size=(nt, 10)).astype(np.float32)] * B)
  x[spec.TEXT_VALID] = np.ones((B, nt), np.int32)
  return {k: tf.constant(v) for k, v in x.items()}


def _build(case, seed):
  builder, task, frames, text, _ = CASES[case]
  keras.utils.set_random_seed(seed)
  model = builder()
  batch = _batch(task, frames, text)
  # Sub-layers build on this first eager call; skipping Keras' symbolic
  # build pass of the whole model halves the test time (same variables).
  model.built = True
  model(batch)
  # Perturb every weight so that biases, LayerNorms and scale/shift count.
  rng = np.random.default_rng(seed)
  for v in model.variables:
    v.assign(v.numpy() + rng.normal(0, 0.05, v.shape).astype(np.float32))
  return model, batch


@functools.lru_cache(maxsize=None)
def _source(case):
  """(model, batch, outputs, exported tree) of a case; never modified."""
  model, batch = _build(case, seed=1)
  return (model, batch, _outputs(model, batch),
          reference.export_reference_tree(model))


def _outputs(model, batch):
  out = model(batch, training=False)
  return {k: np.asarray(v) for k, v in out.items()
          if np.asarray(v).dtype.kind == "f"}


def _write(tree, fmt, tmp_path):
  kind, _, wrapper = fmt.partition(":")
  path = str(tmp_path / f"reference.{kind}")
  return reference_io.write_reference_tree(path, tree, wrapper=wrapper or None)


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip(case, tmp_path):
  _, batch, expected, tree = _source(case)
  path = _write(tree, CASES[case][4], tmp_path)
  read = reference_io.read_reference_tree(path)
  assert sorted(read) == sorted(tree)
  for name, value in tree.items():
    np.testing.assert_array_equal(read[name], value, err_msg=name)
  fresh, _ = _build(case, seed=2)
  before = _outputs(fresh, batch)
  assert any(np.abs(before[k] - expected[k]).max() > 1e-3 for k in expected)
  report = reference.import_reference_tree(fresh, read, source=path)
  assert report["synthesized"] == [] and len(report["loaded"]) == len(tree)
  after = _outputs(fresh, batch)
  for k in expected:
    np.testing.assert_allclose(after[k], expected[k], atol=1e-6, rtol=0,
                               err_msg=k)


def _spec_names(blocks_image=2, blocks_text=2, blocks_fusion=2, levels=2,
                conv_layers=2):
  """Reference names of the TAL-B-like tiny model, from §2.11's patterns."""
  names = ["video_encoder/conv1/kernel", "video_encoder/class_embedding",
           "video_encoder/VisionTransformer/positional_embedding",
           "video_projection/kernel",
           "text_encoder/token_embedding/embedding",
           "text_encoder/positional_embedding", "text_projection/kernel"]
  ln = lambda p: [f"{p}/scale", f"{p}/bias"]
  dense = lambda p: [f"{p}/kernel", f"{p}/bias"]

  def resblock(p):
    out = ln(f"{p}/ln_1") + ln(f"{p}/ln_2")
    for q in ("query", "key", "value", "out"):
      out += dense(f"{p}/attn/{q}")
    return out + dense(f"{p}/mlp/c_fc") + dense(f"{p}/mlp/c_proj")

  vit = "video_encoder/VisionTransformer"
  names += ln(f"{vit}/ln_pre") + ln(f"{vit}/ln_post")
  for i in range(blocks_image):
    names += resblock(f"{vit}/transformer/resblocks.{i}")
  for i in range(blocks_text):
    names += resblock(f"text_encoder/transformer/resblocks.{i}")
  names += ln("text_encoder/ln_final")
  enc = "video_text_fusion/video_text_encoder"
  for i in range(blocks_fusion):
    p = f"{enc}/encoderblock_{i}"
    names += ln(f"{p}/LayerNorm_0") + ln(f"{p}/LayerNorm_1")
    for q in ("query", "key", "value", "out"):
      names += dense(f"{p}/MultiHeadAttention_0/{q}")
    names += dense(f"{p}/MlpBlock_0/Dense_0") + dense(f"{p}/MlpBlock_0/Dense_1")
  for l in range(levels):
    names += dense(f"{enc}/output_conv_{l}") + ln(f"{enc}/output_ln_{l}")
  head = "temporal_localization_head"
  for block in ("ClassificationHead", "RegressionHead"):
    for i in range(conv_layers):
      names += ln(f"{head}/{block}/ln{i}") + dense(f"{head}/{block}/conv{i}")
    names += dense(f"{head}/{block}/output_projection")
  for l in range(levels):
    names += [f"{head}/scale_{l}", f"{head}/shift_{l}"]
  return names


def test_names_and_layouts_follow_reference_spec():
  tree = _source("tal_simple_shared_tokens")[3]
  expected = _spec_names()
  assert len(expected) == len(set(expected))
  assert sorted(tree) == sorted(expected)
  d, dv, heads_f, heads_v = 64, 64, 4, 2
  vit = "video_encoder/VisionTransformer/transformer/resblocks.0/attn"
  enc = "video_text_fusion/video_text_encoder"
  shapes = {
      "video_encoder/conv1/kernel": (16 * 16 * 3, dv),
      "video_encoder/class_embedding": (N0, dv),
      "video_encoder/VisionTransformer/positional_embedding": (1 + 4, dv),
      "text_encoder/positional_embedding": (L, 64),
      f"{vit}/query/kernel": (dv, heads_v, dv // heads_v),
      f"{vit}/query/bias": (heads_v, dv // heads_v),
      f"{vit}/out/kernel": (heads_v, dv // heads_v, dv),
      f"{enc}/encoderblock_0/MultiHeadAttention_0/value/kernel": (
          d, heads_f, d // heads_f),
      f"{enc}/encoderblock_0/MultiHeadAttention_0/out/kernel": (
          heads_f, d // heads_f, d),
      f"{enc}/output_conv_1/kernel": (3, 1, d),
      "temporal_localization_head/RegressionHead/conv0/kernel": (3, d, d),
      "temporal_localization_head/scale_1": (1,),
  }
  for name, shape in shapes.items():
    assert tree[name].shape == shape, name
  # The other variants' distinguishing names (§2.7, §2.8, §2.11).
  enc_names = {
      "tal_fpn_per_level_embeddings": {
          "temporal_localization_head/ClassificationHead_1/conv0/kernel": (
              3, d, d),
          "temporal_localization_head/RegressionHead_0/output_projection/"
          "kernel": (d, 2),
          "text_projection/kernel": (10, d),
          "video_projection/kernel": (12, d)},
      "hd_learned_position": {
          "highlight_detection_head/scale_0": (1,),
          f"{enc}/posembed_input/pos_embedding": (1, N0 + 1, d),
          "video_encoder/VisionTransformer/positional_embedding": (4, dv)},
      "mr_fpn_all_tokens_per_level": {
          "moment_retrieval_head/RegressionHead_1/ln0/scale": (d,)},
      "as_transformer": {
          f"{enc}/encoder_norm/scale": (d,),
          "action_segmentation_head/output_projection/kernel": (d, 1)},
      "tal_video_only_per_class": {
          "temporal_localization_head/ClassificationHead/output_projection/"
          "kernel": (d, C),
          "temporal_localization_head/RegressionHead/output_projection/"
          "bias": (2 * C,)},
  }
  for case, names in enc_names.items():
    other = _source(case)[3]
    for name, shape in names.items():
      assert other[name].shape == shape, (case, name)
  assert not any(k.startswith("video_encoder") for k in
                 _source("tal_fpn_per_level_embeddings")[3])
  assert not any("scale_" in k or "class_embedding" in k or "output_conv"
                 in k for k in _source("as_transformer")[3])


def test_layouts_compute_what_the_reference_computes():
  """The exported weights, used with the reference's (Flax) arithmetic,
  give the Keras layers' outputs: patch Dense, depthwise Conv, attention."""
  model, _, _, tree = _source("tal_simple_shared_tokens")
  rng = np.random.default_rng(3)
  # conv1: Dense on '(m p)(n q) c -> (m n)(p q c)' patches.
  img = rng.normal(size=(1, S, S, 3)).astype(np.float32)
  keras_out = np.asarray(
      model.backbone.image_encoder.patch_embedding(img)).reshape(4, -1)
  patches = img[0].reshape(2, 16, 2, 16, 3).transpose(0, 2, 1, 3, 4)
  ref_out = patches.reshape(4, -1) @ tree["video_encoder/conv1/kernel"]
  np.testing.assert_allclose(keras_out, ref_out, atol=1e-4)
  # output_conv_0: Flax Conv(features=D, kernel 3, groups=D), SAME.
  enc = "video_text_fusion/video_text_encoder"
  x = rng.normal(size=(1, N0, 64)).astype(np.float32)
  conv = model.backbone.fusion.feature_pyramid.output_convs[0]
  kern, bias = tree[f"{enc}/output_conv_0/kernel"], tree[
      f"{enc}/output_conv_0/bias"]
  xp = np.pad(x[0], ((1, 1), (0, 0)))
  ref = sum(xp[k:k + N0] * kern[k, 0] for k in range(3)) + bias
  np.testing.assert_allclose(np.asarray(conv(x))[0], ref, atol=1e-5)
  # ClassificationHead/conv0: Flax Conv(D, [3]) (k, in, out), SAME.
  head = "temporal_localization_head/ClassificationHead"
  kern, bias = tree[f"{head}/conv0/kernel"], tree[f"{head}/conv0/bias"]
  conv = model.head.classification_heads[0].convs[0]
  ref = sum(xp[k:k + N0] @ kern[k] for k in range(3)) + bias
  np.testing.assert_allclose(np.asarray(conv(x))[0], ref, atol=1e-4)
  # MultiHeadDotProductAttention with DenseGeneral kernels.
  p = f"{enc}/encoderblock_0/MultiHeadAttention_0"
  w = {q: (tree[f"{p}/{q}/kernel"], tree[f"{p}/{q}/bias"])
       for q in ("query", "key", "value", "out")}
  proj = lambda q: np.einsum("td,dhk->thk", x[0], w[q][0]) + w[q][1]
  qh, kh, vh = proj("query"), proj("key"), proj("value")
  logits = np.einsum("qhk,shk->hqs", qh / np.sqrt(qh.shape[-1]), kh)
  att = np.exp(logits - logits.max(-1, keepdims=True))
  att /= att.sum(-1, keepdims=True)
  ctx = np.einsum("hqs,shk->qhk", att, vh)
  ref = np.einsum("qhk,hkd->qd", ctx, w["out"][0]) + w["out"][1]
  mha = model.backbone.fusion.blocks[0].attention
  np.testing.assert_allclose(np.asarray(mha(x, x))[0], ref, atol=1e-5)


def test_incomplete_tree_is_refused_with_both_names():
  fresh, _, _, tree = _source("tal_simple_shared_tokens")
  before = fresh.backbone.video_projection.kernel.numpy().copy()
  broken = {k: v + 1.0 for k, v in tree.items()}  # Other values.
  del broken["text_projection/kernel"]
  broken["video_encoder/VisionTransformer/proj/kernel"] = np.zeros((64, 8))
  with pytest.raises(reference.ReferenceTreeMismatch) as err:
    reference.import_reference_tree(fresh, broken, source="broken.npz")
  msg = str(err.value)
  assert "broken.npz" in msg
  assert "text_projection/kernel" in msg
  assert "video_encoder/VisionTransformer/proj/kernel" in msg
  assert err.value.unmatched == [
      ("video_encoder/VisionTransformer/proj/kernel", (64, 8))]
  assert [m[0] for m in err.value.missing] == ["text_projection/kernel"]
  # Nothing was assigned.
  np.testing.assert_array_equal(
      fresh.backbone.video_projection.kernel.numpy(), before)
  # An explicit ignore_regex drops the extra name; the missing one stays.
  with pytest.raises(reference.ReferenceTreeMismatch, match="text_projection"):
    reference.import_reference_tree(fresh, broken, ignore_regex=r"/proj/")


def test_shape_mismatch_names_both_shapes():
  model, _, _, tree = _source("tal_simple_shared_tokens")
  tree = dict(tree, **{"video_projection/kernel": np.zeros((63, 64),
                                                           np.float32)})
  with pytest.raises(reference.ReferenceTreeMismatch) as err:
    reference.import_reference_tree(model, tree)
  msg = str(err.value)
  assert "video_projection/kernel" in msg
  assert "(63, 64)" in msg and "(64, 64)" in msg


def test_missing_text_projection_of_embedding_configs_is_the_identity():
  """TAL-L / COIN-L feed 768-d text embeddings with no projection."""
  def build(seed):
    keras.utils.set_random_seed(seed)
    m = _tal(input_mode="embeddings", text_input="embeddings")
    batch = _batch(spec.TAL, "embeddings", "none")
    batch[spec.TEXT_EMBEDDINGS] = tf.random.stateless_normal((B, C, 64),
                                                             (0, 1))
    m.built = True  # As in _build.
    m(batch)
    return m, batch

  model, batch = build(1)
  model.backbone.text_projection.kernel.assign(np.eye(64, dtype=np.float32))
  tree = reference.export_reference_tree(model)
  del tree["text_projection/kernel"]
  fresh, _ = build(2)
  report = reference.import_reference_tree(fresh, tree)
  assert report["synthesized"] == ["text_projection/kernel"]
  np.testing.assert_allclose(_outputs(fresh, batch)["logits"],
                             _outputs(model, batch)["logits"], atol=1e-6)


def test_underscore_resblock_names_are_accepted():
  model, _, _, tree = _source("as_transformer")
  renamed = {k.replace("resblocks.", "resblocks_"): v for k, v in tree.items()}
  assert renamed != tree
  report = reference.import_reference_tree(model, renamed)
  assert sorted(report["loaded"]) == sorted(tree)


def test_convert_refuses_a_broken_tree_and_writes_nothing(tmp_path):
  tree = dict(_source("tal_simple_shared_tokens")[3])
  del tree["video_projection/kernel"]
  tree["extra/kernel"] = np.zeros((2, 2), np.float32)
  bad = reference_io.write_reference_tree(str(tmp_path / "bad.npz"), tree)
  model = CASES["tal_simple_shared_tokens"][0]()  # unbuilt: convert builds it
  with pytest.raises(reference.ReferenceTreeMismatch) as err:
    reference.convert(bad, model, str(tmp_path / "w"))
  msg = str(err.value)
  assert "bad.npz" in msg and "extra/kernel" in msg
  assert "video_projection/kernel" in msg
  assert not (tmp_path / "w").exists()
