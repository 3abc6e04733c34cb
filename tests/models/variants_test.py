"""Tests of unloc_tf.models.variants: the named model sizes (paper widths)."""

from __future__ import annotations

import pytest

from unloc_tf.layers import clip_image_encoder, clip_text_encoder, fusion
from unloc_tf.models import variants

PARTS = {
    "image_encoder": clip_image_encoder.CLIPImageEncoder,
    "text_encoder": clip_text_encoder.CLIPTextEncoder,
    "fusion": fusion.VideoTextFusion,
}
# The paper's widths (reference_spec.md §2.2, §2.3, §2.6): CLIP ViT-B/16 and
# ViT-L/14 towers, fusion 512 / 768 wide.
PAPER = {
    "base_16": {
        "image_encoder": dict(patch_size=16, hidden_dim=768, num_layers=12,
                              num_heads=12, intermediate_dim=3072,
                              image_size=224),
        "text_encoder": dict(vocabulary_size=49408, hidden_dim=512,
                             num_layers=12, num_heads=8, intermediate_dim=2048,
                             max_length=77),
        "fusion": dict(hidden_dim=512, num_heads=8, mlp_dim=2048,
                       num_layers=6),
    },
    "large_14": {
        "image_encoder": dict(patch_size=14, hidden_dim=1024, num_layers=24,
                              num_heads=16, intermediate_dim=4096,
                              image_size=224),
        "text_encoder": dict(vocabulary_size=49408, hidden_dim=768,
                             num_layers=12, num_heads=12,
                             intermediate_dim=3072, max_length=77),
        "fusion": dict(hidden_dim=768, num_heads=12, mlp_dim=3072,
                       num_layers=6),
    },
}


def test_sizes():
  assert set(variants.SIZES) == {"tiny", "base_16", "large_14"}


@pytest.mark.parametrize("size", sorted(variants.SIZES))
def test_every_size_configures_the_three_sub_layers(size):
  cfg = variants.size_config(size)
  assert set(cfg) == set(PARTS)
  for part, cls in PARTS.items():
    layer = cls(**cfg[part])  # Accepted by the constructor (not built).
    for key, value in cfg[part].items():
      assert getattr(layer, key) == value, (size, part, key)


@pytest.mark.parametrize("size", sorted(PAPER))
def test_paper_widths(size):
  cfg = variants.size_config(size)
  for part, want in PAPER[size].items():
    for key, value in want.items():
      assert cfg[part][key] == value, (size, part, key)


def test_size_config_returns_a_copy():
  cfg = variants.size_config("base_16")
  cfg["fusion"]["hidden_dim"] = 1
  cfg["image_encoder"].clear()
  assert variants.SIZES["base_16"]["fusion"]["hidden_dim"] == 512
  assert variants.size_config("base_16")["image_encoder"]["patch_size"] == 16


def test_unknown_size_lists_the_sizes():
  with pytest.raises(ValueError, match="unknown model size 'huge'") as err:
    variants.size_config("huge")
  for size in variants.SIZES:
    assert repr(size) in str(err.value)
