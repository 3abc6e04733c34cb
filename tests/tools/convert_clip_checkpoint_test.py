"""tools/convert_clip_checkpoint.py end to end: the binary converts the tiny
CLIP fixture, refuses a malicious .pt, and a task model restored from its
output embeds like transformers.  The library is tested in tests/convert/.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests import fixtures
from tests.convert.clip_helpers import (
  FIXTURE,
  HF,
  MARKER,
  ROOT,
  TOL,
  transformers_outputs,
)
from unloc_tf import spec
from unloc_tf.convert import clip, clip_checkpoint
from unloc_tf.layers import clip_image_encoder
from unloc_tf.models import variants
from unloc_tf.tasks import action_localizer
from unloc_tf.train import checkpoints


@pytest.fixture(scope="module")
def ref():
  return transformers_outputs()


def _np(x):
  return keras.ops.convert_to_numpy(x)


def _task_model(monkeypatch, num_frames=4, text_len=12):
  """A TAL model of the fixture's tower sizes (a size named for the test)."""
  ckpt = clip_checkpoint.load_clip_checkpoint(HF)
  arch, _ = clip_checkpoint.infer_architecture(ckpt)
  monkeypatch.setitem(variants.SIZES, "clip_tiny_fixture", {
      "image_encoder": arch.image_encoder_kwargs(),
      "text_encoder": arch.text_encoder_kwargs(),
      "fusion": dict(hidden_dim=16, num_layers=1, num_heads=2, mlp_dim=32),
  })
  pyr = spec.PyramidSpec(num_frames, num_levels=2,
                         regression_ranges=((0, 2), (2, math.inf)))
  model = fixtures.build_task(
      action_localizer.build_action_localizer, "clip_tiny_fixture",
      pyramid_spec=pyr, num_conv_layers=1,
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
    clip.convert(HF, str(out))
