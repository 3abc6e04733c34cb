"""The UnLoc backbone (`UnlocBackbone`, built by `build_backbone` from a
`BackboneConfig`) and the named sizes (`variants.SIZES`)."""

from unloc_tf.models.unloc_backbone import (
    BackboneConfig,
    UnlocBackbone,
    build_backbone,
)
from unloc_tf.models.variants import SIZES, size_config

__all__ = ["SIZES", "BackboneConfig", "UnlocBackbone", "build_backbone",
           "size_config"]
