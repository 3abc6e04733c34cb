"""A built-in synthetic benchmark: seeded, procedurally rendered videos.

Coloured shapes on a textured background perform eight actions; one
generator yields the records of every task (TAL, zero-shot TAL, MR, AS, HD,
CLS), deterministic in the config and its seed.

* `scene`: vocabulary, `SyntheticConfig`, the data classes and the sampling
  of each video's layout (events, objects, captions, labels, saliency).
* `render`: the pixels of a layout (`render_frames`, `generate_split`).
* `embeddings`: per-frame scene embeddings, the cached-feature stand-in.
* `writers`: records, statistics, official-format annotations and
  `write_benchmark`, which writes the whole benchmark.
"""

from __future__ import annotations

from unloc_tf.data.synthetic.embeddings import (
  SCENE_EMBEDDING_DIM,
  scene_embeddings,
)
from unloc_tf.data.synthetic.render import generate_split
from unloc_tf.data.synthetic.scene import ACTIONS, SPLITS, SyntheticConfig
from unloc_tf.data.synthetic.writers import format_summary, write_benchmark

__all__ = [
  "ACTIONS",
  "SCENE_EMBEDDING_DIM",
  "SPLITS",
  "SyntheticConfig",
  "format_summary",
  "generate_split",
  "scene_embeddings",
  "write_benchmark",
]
