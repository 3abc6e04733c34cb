"""Frozen-tower feature caching: frames (and texts) → embeddings in records.

`Towers` (the frozen towers and their preprocessing), `FrameEmbedder` /
`TextEmbedder` (embeddings as the pipeline sees them) and `extract`
(shards in, shards with `image/embedding` out; resumable).
"""

from unloc_tf.features.embedders import (
    FrameEmbedder,
    TextEmbedder,
    frame_slots,
)
from unloc_tf.features.extract import (
    CLASS_NAME_EMBEDDINGS,
    CLS_SLOT_MODES,
    MANIFEST_NAME,
    count_records,
    extract,
    process_record,
)
from unloc_tf.features.towers import (
    Towers,
    load_tower_weights,
    towers_from_size,
)

__all__ = [
    "CLASS_NAME_EMBEDDINGS", "CLS_SLOT_MODES", "MANIFEST_NAME", "FrameEmbedder",
    "TextEmbedder", "Towers", "count_records", "extract",
    "frame_slots", "load_tower_weights", "process_record", "towers_from_size",
]
