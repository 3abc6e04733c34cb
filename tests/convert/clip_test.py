"""unloc_tf/convert/clip.py: CLIP checkpoints -> our towers, checked against
the transformers outputs of the tiny fixture (tests/convert/clip_helpers.py).
"""

from __future__ import annotations

import json
import os
import shutil

import keras
import numpy as np
import pytest

from tests.convert.clip_helpers import (
  FIXTURE,
  HF,
  PT_HEADS,
  TOL,
  transformers_outputs,
  write_safetensors,
)
from unloc_tf.convert import clip, clip_checkpoint, safetensors
from unloc_tf.data import text
from unloc_tf.layers import clip_image_encoder
from unloc_tf.ops import pooling


@pytest.fixture(scope="module")
def ref():
  return transformers_outputs()


def _np(x):
  return keras.ops.convert_to_numpy(x)


def _towers(source, **heads):
  """Our towers (normalize_input=False) filled from `source` in memory."""
  ckpt = clip_checkpoint.load_clip_checkpoint(source)
  arch, _ = clip_checkpoint.infer_architecture(ckpt, **heads)
  weights, logit_scale = clip.map_to_unloc(ckpt, arch)
  towers = clip.build_towers(
      arch, num_frames=2, projection_dim=arch.projection_dim,
      text_max_length=12, normalize_input=False)
  adapted = clip.assign_weights(towers, weights)
  return towers, arch, adapted, logit_scale


def _errors(towers, ref):
  """Max |ours - transformers| of image and text embeddings and states."""
  frames = ref["pixel_values"].transpose(0, 2, 3, 1)[None]  # [1, T=2, ...]
  pooled = _np(towers.image_encoder(frames))[0]
  image = _np(towers.video_projection(pooled))
  ids, mask = ref["input_ids"], ref["attention_mask"]
  states = _np(towers.text_encoder(ids))
  text = _np(pooling.pool_text(towers.text_projection(states), ids, mask,
                               mode="eos"))
  real = mask[..., None].astype(bool)
  return {
      "image_pooled": np.abs(pooled - ref["image_pooled"]).max(),
      "image_embeds": np.abs(image - ref["image_embeds"]).max(),
      "text_states": np.abs(np.where(real, states - ref["text_states"],
                                     0)).max(),
      "text_embeds": np.abs(text - ref["text_embeds"]).max(),
  }


def test_safetensors_matches_transformers(ref):
  towers, arch, adapted, logit_scale = _towers(HF)
  assert (arch.vision_width, arch.vision_layers, arch.vision_heads,
          arch.vision_mlp, arch.patch_size, arch.image_size) == (
              32, 2, 4, 64, 8, 32)
  assert (arch.text_width, arch.text_layers, arch.text_heads, arch.text_mlp,
          arch.vocabulary_size, arch.text_length, arch.projection_dim) == (
              24, 3, 3, 48, 64, 16, 16)
  # CLS vector tiled to the 2-row table, 16 text positions truncated to 12.
  assert adapted == ["image_encoder/class_embedding",
                     "text_encoder/position_embedding"]
  assert logit_scale == pytest.approx(float(ref["logit_scale"]))
  errors = _errors(towers, ref)
  print("safetensors max |diff|:", errors)
  assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("name,file_format", [
    ("openai_state_dict.pt", "torch zip"),          # float16
    ("openai_state_dict_legacy.pt", "torch legacy"),  # bfloat16
    ("openai_jit.pt", "torchscript"),               # float16, attn_mask
])
def test_pt_matches_transformers(ref, name, file_format):
  path = os.path.join(FIXTURE, name)
  ckpt = clip_checkpoint.load_clip_checkpoint(path)
  assert (ckpt.layout, ckpt.file_format) == ("openai", file_format)
  towers, _, _, logit_scale = _towers(path, **PT_HEADS)
  assert logit_scale == pytest.approx(float(ref["logit_scale"]))
  errors = _errors(towers, ref)
  print(f"{name} max |diff|:", errors)
  assert max(errors.values()) < TOL, errors


def test_tokenizer_report(tmp_path):
  ckpt = clip_checkpoint.load_clip_checkpoint(HF)
  arch, _ = clip_checkpoint.infer_architecture(ckpt)
  report = clip.tokenizer_report(ckpt, arch)
  assert report["files"] == ["vocab.json", "merges.txt"]
  assert report["same_as_shipped"] is False
  # vocab.json/merges.txt in the Hugging Face form of the shipped OpenAI
  # vocabulary are recognised as such.
  vocab, merges = text._read_vocabulary(text.vocabulary_path())
  (tmp_path / "vocab.json").write_text(json.dumps(vocab))
  (tmp_path / "merges.txt").write_text(
      "#version: 0.2\n" + "".join(m + "\n" for m in merges))
  ckpt.tokenizer_files = [str(tmp_path / "vocab.json"),
                          str(tmp_path / "merges.txt")]
  assert clip.tokenizer_report(ckpt, arch)["same_as_shipped"] is True
  pt = clip_checkpoint.load_clip_checkpoint(
      os.path.join(FIXTURE, "openai_state_dict.pt"))
  report = clip.tokenizer_report(pt, arch)
  assert report["files"] == [] and "no tokenizer files" in report["note"]


def test_incomplete_checkpoint_lists_missing_and_unmatched(tmp_path):
  tensors = safetensors.read_safetensors(os.path.join(HF,
                                                      "model.safetensors"))
  gone = "text_model.encoder.layers.1.mlp.fc2.bias"
  extra = "vision_model.head.weight"
  del tensors[gone]
  tensors[extra] = np.zeros((2, 2), np.float32)
  hf = tmp_path / "hf"
  hf.mkdir()
  write_safetensors(hf / "model.safetensors", tensors)
  shutil.copyfile(os.path.join(HF, "config.json"), hf / "config.json")
  with pytest.raises(clip_checkpoint.CheckpointMismatchError) as e:
    clip.convert(str(hf), str(tmp_path / "out"))
  assert e.value.missing == [gone]
  assert e.value.unmatched == [extra]
  assert gone in str(e.value) and extra in str(e.value)
  assert "nothing was converted" in str(e.value)
  assert not (tmp_path / "out").exists()
  # --ignore_regex drops the extra name; the missing one still refuses.
  ckpt = clip_checkpoint.load_clip_checkpoint(str(hf))
  arch, _ = clip_checkpoint.infer_architecture(ckpt)
  with pytest.raises(clip_checkpoint.CheckpointMismatchError) as e:
    clip.map_to_unloc(ckpt, arch, ignore_regex=r"^vision_model\.head")
  assert (e.value.unmatched, e.value.missing) == ([], [gone])
  # The same for OpenAI names (one q/k/v tensor gone).
  ckpt = clip_checkpoint.load_clip_checkpoint(
      os.path.join(FIXTURE, "openai_state_dict.pt"))
  arch, _ = clip_checkpoint.infer_architecture(ckpt, **PT_HEADS)
  del ckpt.tensors["visual.transformer.resblocks.1.attn.in_proj_weight"]
  with pytest.raises(clip_checkpoint.CheckpointMismatchError,
                     match="resblocks.1.attn.in_proj_weight") as e:
    clip.map_to_unloc(ckpt, arch)
  assert e.value.missing == [
      "visual.transformer.resblocks.1.attn.in_proj_weight"]


def test_gelu_config_refused(tmp_path):
  hf = tmp_path / "hf"
  shutil.copytree(HF, hf)
  config = json.loads((hf / "config.json").read_text())
  config["vision_config"]["hidden_act"] = "gelu"
  (hf / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="vision_config.hidden_act is 'gelu'"):
    clip.convert(str(hf), str(tmp_path / "out"))


def test_image_size_and_gap_adaptations():
  ckpt = clip_checkpoint.load_clip_checkpoint(HF)
  arch, _ = clip_checkpoint.infer_architecture(ckpt)
  weights, _ = clip.map_to_unloc(ckpt, arch)
  towers = clip.build_towers(arch, num_frames=3, frame_token="gap",
                             image_size=48, projection_dim=16)
  adapted = clip.assign_weights(towers, weights)
  pos = _np(towers.image_encoder.position_embedding)
  assert pos.shape == (36, 32)  # 6x6 grid, no CLS row
  assert "image_encoder/position_embedding" in adapted
  src = weights["image_encoder/position_embedding"]
  np.testing.assert_allclose(
      pos, clip_image_encoder.adapt_position_embedding(src, 36, has_cls=False),
      rtol=0, atol=1e-7)
  np.testing.assert_allclose(pos[0], src[1], atol=1e-7)  # corners kept
