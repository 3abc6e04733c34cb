"""Named model sizes (reference_spec.md §2.2, §2.3, §2.6, §2.9).

`tiny` is for tests and the synthetic benchmark; `base_16` is UnLoc-B
(ViT-B/16 image tower, CLIP-B text tower, fusion 512 wide, 8 heads, MLP
2048, 6 layers); `large_14` is UnLoc-L (ViT-L/14, CLIP-L text, fusion 768,
12 heads, MLP 3072, 6 layers).  Each entry gives the constructor arguments of
`CLIPImageEncoder`, `CLIPTextEncoder` and `VideoTextFusion`; the backbone
and task builders take one of these names.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

SIZES: Dict[str, Dict[str, Dict[str, Any]]] = {
    "tiny": {
        "image_encoder": dict(patch_size=16, hidden_dim=64, num_layers=2,
                              num_heads=2, intermediate_dim=128,
                              image_size=64),
        "text_encoder": dict(vocabulary_size=49408, hidden_dim=64,
                             num_layers=2, num_heads=2, intermediate_dim=128,
                             max_length=32),
        "fusion": dict(hidden_dim=64, num_layers=2, num_heads=4, mlp_dim=128),
    },
    "base_16": {
        "image_encoder": dict(patch_size=16, hidden_dim=768, num_layers=12,
                              num_heads=12, intermediate_dim=3072,
                              image_size=224),
        "text_encoder": dict(vocabulary_size=49408, hidden_dim=512,
                             num_layers=12, num_heads=8, intermediate_dim=2048,
                             max_length=77),
        "fusion": dict(hidden_dim=512, num_layers=6, num_heads=8,
                       mlp_dim=2048),
    },
    "large_14": {
        "image_encoder": dict(patch_size=14, hidden_dim=1024, num_layers=24,
                              num_heads=16, intermediate_dim=4096,
                              image_size=224),
        "text_encoder": dict(vocabulary_size=49408, hidden_dim=768,
                             num_layers=12, num_heads=12,
                             intermediate_dim=3072, max_length=77),
        "fusion": dict(hidden_dim=768, num_layers=6, num_heads=12,
                       mlp_dim=3072),
    },
}


def size_config(size: str) -> Dict[str, Dict[str, Any]]:
  """A copy of the named size's constructor arguments."""
  if size not in SIZES:
    raise ValueError(f"unknown model size {size!r}; expected one of"
                     f" {sorted(SIZES)}")
  return copy.deepcopy(SIZES[size])
