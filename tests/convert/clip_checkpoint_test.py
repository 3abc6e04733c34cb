"""unloc_tf/convert/clip_checkpoint.py: sizes and heads of a checkpoint."""

from __future__ import annotations

import os

import pytest

from tests.convert.clip_helpers import FIXTURE, HF
from unloc_tf.convert import clip_checkpoint


def test_pt_heads_are_required_when_not_inferable():
  ckpt = clip_checkpoint.load_clip_checkpoint(
      os.path.join(FIXTURE, "openai_state_dict.pt"))
  with pytest.raises(ValueError, match="vision attention heads.*"
                     "--vision_heads"):
    clip_checkpoint.infer_architecture(ckpt)


def test_model_size_must_match():
  ckpt = clip_checkpoint.load_clip_checkpoint(HF)
  with pytest.raises(ValueError, match=r"--model_size=tiny:\n"
                     r"  image_encoder.patch_size: checkpoint 8, tiny 16"):
    clip_checkpoint.infer_architecture(ckpt, model_size="tiny")
