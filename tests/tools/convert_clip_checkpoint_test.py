"""tools/convert_clip_checkpoint.py: CLIP checkpoints -> our towers.

The fixture (tests/fixtures/clip_tiny/, made once by its make_fixture.py
with torch + transformers, which the tests never import) is a tiny random
Hugging Face CLIPModel, the same weights as OpenAI-named .pt files (torch
zip float16, legacy bfloat16, TorchScript float16), a malicious .pt and the
transformers outputs for fixed inputs.
"""

from __future__ import annotations

import io
import json
import math
import os
import pickletools
import shutil
import struct
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest

from tools import clip_weights, torch_pickle
from unloc_tf import spec
from unloc_tf.data import text
from unloc_tf.layers import clip_image_encoder
from unloc_tf.models import variants
from unloc_tf.ops import pooling
from unloc_tf.tasks import action_localizer
from unloc_tf.train import checkpoints

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "clip_tiny")
HF = os.path.join(FIXTURE, "hf")
PT_HEADS = dict(vision_heads=4, text_heads=3)  # not recorded in a .pt
TOL = 1e-5
MARKER = "unloc_pickle_pwned"


@pytest.fixture(scope="module")
def ref():
  with np.load(os.path.join(FIXTURE, "reference.npz")) as f:
    return dict(f)


def _np(x):
  return keras.ops.convert_to_numpy(x)


def _towers(source, **heads):
  """Our towers (normalize_input=False) filled from `source` in memory."""
  ckpt = clip_weights.load_clip_checkpoint(source)
  arch, _ = clip_weights.infer_architecture(ckpt, **heads)
  weights, logit_scale = clip_weights.map_to_unloc(ckpt, arch)
  towers = clip_weights.build_towers(
      arch, num_frames=2, projection_dim=arch.projection_dim,
      text_max_length=12, normalize_input=False)
  adapted = clip_weights.assign_weights(towers, weights)
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
  ckpt = clip_weights.load_clip_checkpoint(path)
  assert (ckpt.layout, ckpt.file_format) == ("openai", file_format)
  towers, _, _, logit_scale = _towers(path, **PT_HEADS)
  assert logit_scale == pytest.approx(float(ref["logit_scale"]))
  errors = _errors(towers, ref)
  print(f"{name} max |diff|:", errors)
  assert max(errors.values()) < TOL, errors


def test_pt_heads_are_required_when_not_inferable():
  ckpt = clip_weights.load_clip_checkpoint(
      os.path.join(FIXTURE, "openai_state_dict.pt"))
  with pytest.raises(ValueError, match="vision attention heads.*"
                     "--vision_heads"):
    clip_weights.infer_architecture(ckpt)


def _unicode(text):
  data = text.encode()
  return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _write_malicious_legacy(path):
  # Hand-written protocol-0 pickle: builtins.eval("open(MARKER, 'w')").
  body = b"cbuiltins\neval\n(V" + f"open('{MARKER}', 'w')".encode() + b"\ntR."
  path.write_bytes(body)
  return body


def _write_malicious_script(path):
  # A TorchScript-shaped zip (code/ present, so __torch__ classes are
  # allowed as inert records) whose module state smuggles builtins.exec.
  body = (b"\x80\x02c__torch__\nCLIP\n)\x81}(" + _unicode("visual")
          + b"cbuiltins\nexec\n" + _unicode(f"open('{MARKER}', 'w')")
          + b"\x85Rub.")
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("m/data.pkl", body)
    z.writestr("m/code/__torch__.py", "")
    z.writestr("m/constants.pkl", b"\x80\x02).")
  return body


@pytest.mark.parametrize("kind,global_name", [
    ("fixture_zip", "posix.system"),
    ("legacy_eval", "builtins.eval"),
    ("torchscript_exec", "builtins.exec"),
])
def test_malicious_pickle_refused(tmp_path, monkeypatch, kind, global_name):
  monkeypatch.chdir(tmp_path)  # the payloads write into the cwd
  path = tmp_path / "evil.pt"
  if kind == "fixture_zip":
    shutil.copyfile(os.path.join(FIXTURE, "malicious.pt"), path)
    with zipfile.ZipFile(path) as z:
      body = z.read("malicious/data.pkl")
  elif kind == "legacy_eval":
    body = _write_malicious_legacy(path)
  else:
    body = _write_malicious_script(path)
  # A well-formed pickle that plain pickle.load would run (disassembled
  # here, never loaded).
  listing = io.StringIO()
  pickletools.dis(body, out=listing)
  assert global_name.replace(".", " ") in listing.getvalue()
  with pytest.raises(torch_pickle.UnsafePickleError) as e:
    clip_weights.convert(str(path), str(tmp_path / "out"), **PT_HEADS)
  assert e.value.global_name == global_name
  assert f"'{global_name}'" in str(e.value) and "evil.pt" in str(e.value)
  assert not (tmp_path / MARKER).exists()
  assert not (tmp_path / "out").exists()


def test_model_size_must_match():
  ckpt = clip_weights.load_clip_checkpoint(HF)
  with pytest.raises(ValueError, match=r"--model_size=tiny:\n"
                     r"  image_encoder.patch_size: checkpoint 8, tiny 16"):
    clip_weights.infer_architecture(ckpt, model_size="tiny")


def test_tokenizer_report(tmp_path):
  ckpt = clip_weights.load_clip_checkpoint(HF)
  arch, _ = clip_weights.infer_architecture(ckpt)
  report = clip_weights.tokenizer_report(ckpt, arch)
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
  assert clip_weights.tokenizer_report(ckpt, arch)["same_as_shipped"] is True
  pt = clip_weights.load_clip_checkpoint(
      os.path.join(FIXTURE, "openai_state_dict.pt"))
  report = clip_weights.tokenizer_report(pt, arch)
  assert report["files"] == [] and "no tokenizer files" in report["note"]


def _write_safetensors(path, tensors, dtype="F32"):
  """A minimal safetensors writer (F32, F16 or BF16)."""
  header, chunks, offset = {}, [], 0
  for name, array in tensors.items():
    array = np.asarray(array, np.float32)
    if dtype == "BF16":
      raw = (array.view(np.uint32) >> 16).astype("<u2").tobytes()
    else:
      raw = array.astype({"F32": "<f4", "F16": "<f2"}[dtype]).tobytes()
    header[name] = {"dtype": dtype, "shape": list(array.shape),
                    "data_offsets": [offset, offset + len(raw)]}
    chunks.append(raw)
    offset += len(raw)
  head = json.dumps(header).encode()
  head += b" " * (-len(head) % 8)
  with open(path, "wb") as f:
    f.write(len(head).to_bytes(8, "little") + head + b"".join(chunks))


@pytest.mark.parametrize("dtype", ["F32", "F16", "BF16"])
def test_read_safetensors_dtypes(tmp_path, dtype):
  # Values exactly representable in every dtype.
  x = np.array([[0.5, -2.0, 1.5], [0.0, 3.25, -0.125]], np.float32)
  _write_safetensors(tmp_path / "t.safetensors", {"a": x, "b": x[0]}, dtype)
  out = clip_weights.read_safetensors(str(tmp_path / "t.safetensors"))
  assert out["a"].dtype == np.float32
  np.testing.assert_array_equal(out["a"], x)
  np.testing.assert_array_equal(out["b"], x[0])


def test_read_safetensors_rejects_bad_offsets(tmp_path):
  path = tmp_path / "t.safetensors"
  _write_safetensors(path, {"a": np.ones(4)})
  data = bytearray(path.read_bytes())
  path.write_bytes(bytes(data).replace(b"[0, 16]", b"[0, 64]"))
  with pytest.raises(ValueError, match=r"t.safetensors: tensor 'a'"):
    clip_weights.read_safetensors(str(path))


def test_incomplete_checkpoint_lists_missing_and_unmatched(tmp_path):
  tensors = clip_weights.read_safetensors(os.path.join(HF,
                                                       "model.safetensors"))
  gone = "text_model.encoder.layers.1.mlp.fc2.bias"
  extra = "vision_model.head.weight"
  del tensors[gone]
  tensors[extra] = np.zeros((2, 2), np.float32)
  hf = tmp_path / "hf"
  hf.mkdir()
  _write_safetensors(hf / "model.safetensors", tensors)
  shutil.copyfile(os.path.join(HF, "config.json"), hf / "config.json")
  with pytest.raises(clip_weights.CheckpointMismatchError) as e:
    clip_weights.convert(str(hf), str(tmp_path / "out"))
  assert e.value.missing == [gone]
  assert e.value.unmatched == [extra]
  assert gone in str(e.value) and extra in str(e.value)
  assert "nothing was converted" in str(e.value)
  assert not (tmp_path / "out").exists()
  # --ignore_regex drops the extra name; the missing one still refuses.
  ckpt = clip_weights.load_clip_checkpoint(str(hf))
  arch, _ = clip_weights.infer_architecture(ckpt)
  with pytest.raises(clip_weights.CheckpointMismatchError) as e:
    clip_weights.map_to_unloc(ckpt, arch, ignore_regex=r"^vision_model\.head")
  assert (e.value.unmatched, e.value.missing) == ([], [gone])
  # The same for OpenAI names (one q/k/v tensor gone).
  ckpt = clip_weights.load_clip_checkpoint(
      os.path.join(FIXTURE, "openai_state_dict.pt"))
  arch, _ = clip_weights.infer_architecture(ckpt, **PT_HEADS)
  del ckpt.tensors["visual.transformer.resblocks.1.attn.in_proj_weight"]
  with pytest.raises(clip_weights.CheckpointMismatchError,
                     match="resblocks.1.attn.in_proj_weight") as e:
    clip_weights.map_to_unloc(ckpt, arch)
  assert e.value.missing == [
      "visual.transformer.resblocks.1.attn.in_proj_weight"]


def test_gelu_config_refused(tmp_path):
  hf = tmp_path / "hf"
  shutil.copytree(HF, hf)
  config = json.loads((hf / "config.json").read_text())
  config["vision_config"]["hidden_act"] = "gelu"
  (hf / "config.json").write_text(json.dumps(config))
  with pytest.raises(ValueError, match="vision_config.hidden_act is 'gelu'"):
    clip_weights.convert(str(hf), str(tmp_path / "out"))


def test_image_size_and_gap_adaptations():
  ckpt = clip_weights.load_clip_checkpoint(HF)
  arch, _ = clip_weights.infer_architecture(ckpt)
  weights, _ = clip_weights.map_to_unloc(ckpt, arch)
  towers = clip_weights.build_towers(arch, num_frames=3, frame_token="gap",
                                     image_size=48, projection_dim=16)
  adapted = clip_weights.assign_weights(towers, weights)
  pos = _np(towers.image_encoder.position_embedding)
  assert pos.shape == (36, 32)  # 6x6 grid, no CLS row
  assert "image_encoder/position_embedding" in adapted
  src = weights["image_encoder/position_embedding"]
  np.testing.assert_allclose(
      pos, clip_image_encoder.adapt_position_embedding(src, 36, has_cls=False),
      rtol=0, atol=1e-7)
  np.testing.assert_allclose(pos[0], src[1], atol=1e-7)  # corners kept


def _task_model(monkeypatch, num_frames=4, text_len=12):
  """A TAL model of the fixture's tower sizes (a size named for the test)."""
  ckpt = clip_weights.load_clip_checkpoint(HF)
  arch, _ = clip_weights.infer_architecture(ckpt)
  monkeypatch.setitem(variants.SIZES, "clip_tiny_fixture", {
      "image_encoder": arch.image_encoder_kwargs(),
      "text_encoder": arch.text_encoder_kwargs(),
      "fusion": dict(hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32),
  })
  pyr = spec.PyramidSpec(num_frames, num_levels=2,
                         regression_ranges=((0, 2), (2, math.inf)))
  model = action_localizer.build_action_localizer(
      "clip_tiny_fixture", pyramid_spec=pyr, num_conv_layers=1,
      text_max_length=text_len)
  ids = np.zeros((1, 2, text_len), np.int32)
  ids[..., :2] = (62, 63)
  model({spec.FRAMES: np.zeros((1, num_frames, 32, 32, 3), np.uint8),
         spec.FRAME_MASK: np.ones((1, num_frames), np.int32),
         spec.TEXT_IDS: ids, spec.TEXT_MASK: (ids > 0).astype(np.int32),
         spec.TEXT_VALID: np.ones((1, 2), np.int32)})
  return model


def test_cli_end_to_end_loads_into_a_task_model(ref, tmp_path, monkeypatch):
  out = tmp_path / "clip_unloc"
  env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3",
             CUDA_VISIBLE_DEVICES="")
  script = os.path.join(ROOT, "tools", "convert_clip_checkpoint.py")
  proc = subprocess.Popen(
      [sys.executable, script, f"--source={HF}", f"--output_dir={out}"],
      env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True)
  # Refusal through the CLI: exit 1, the global named, nothing written.
  evil = subprocess.run(
      [sys.executable, script,
       f"--source={os.path.join(FIXTURE, 'malicious.pt')}",
       f"--output_dir={tmp_path / 'evil'}"],
      env=env, cwd=str(tmp_path), capture_output=True, text=True,
      timeout=120)
  assert evil.returncode == 1, evil.stderr[-2000:]
  assert "posix.system" in evil.stderr
  assert not (tmp_path / MARKER).exists()
  assert not (tmp_path / "evil").exists()

  model = _task_model(monkeypatch)  # built while the converter runs
  stdout, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, stderr[-3000:]
  assert "trainer.train.init_checkpoint" in stdout
  for name in ("conversion.json", "clip_weights.npz", "vocab.json",
               "merges.txt", "checkpoints/checkpoint"):
    assert (out / name).exists(), name
  summary = json.loads((out / "conversion.json").read_text())
  assert summary["file_format"] == "safetensors"
  assert summary["target"] == {"num_frames": 128, "frame_token": "token",
                               "image_size": 32, "text_max_length": 16,
                               "projection_dim": 16}
  assert summary["tokenizer"]["same_as_shipped"] is False

  # The training init path (trainer.train(init_checkpoint=...)).
  report = checkpoints.restore_partial(model, str(out / "checkpoints"))
  assert not report["unused"]
  tower_paths = {p for p in checkpoints.variables_by_path(model)
                 if p.startswith(("image_encoder/", "text_encoder/",
                                  "video_projection/", "text_projection/"))}
  assert set(report["loaded"]) | set(report["adapted"]) == tower_paths
  # 128-row CLS table -> 4 frames, 16 text positions -> 12.
  assert sorted(report["adapted"]) == ["image_encoder/class_embedding",
                                       "text_encoder/position_embedding"]
  assert all(not p.startswith(tuple(tower_paths)) for p in report["missing"])

  # The task model now embeds like transformers (frames on the 0..255
  # scale, normalised inside the tower).
  mean = np.array(clip_image_encoder.CLIP_MEAN, np.float32)
  std = np.array(clip_image_encoder.CLIP_STD, np.float32)
  pixels = (ref["pixel_values"].transpose(0, 2, 3, 1) * std + mean) * 255.0
  frames = np.stack([pixels[0], pixels[1], pixels[0], pixels[1]])[None]
  video = _np(model.backbone.encode_video({spec.FRAMES: frames}))[0]
  image_err = np.abs(video - np.tile(ref["image_embeds"], (2, 1))).max()
  _, pooled = model.backbone.encode_text(ref["input_ids"],
                                         ref["attention_mask"])
  text_err = np.abs(_np(pooled) - ref["text_embeds"]).max()
  print("task model max |diff|: image", image_err, "text", text_err)
  assert image_err < TOL and text_err < TOL

  # The .npz loads the same way (load_weights_npz).
  report = checkpoints.load_weights_npz(model, str(out / "clip_weights.npz"))
  assert not report["unused"]
  assert set(report["loaded"]) | set(report["adapted"]) == tower_paths

  # A second run refuses to overwrite.
  with pytest.raises(FileExistsError, match="--overwrite"):
    clip_weights.convert(HF, str(out))
