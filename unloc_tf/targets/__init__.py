"""Training targets built in the input pipeline (pure TF, per example).

`localization`: relevancy labels and start/end displacements over the temporal
feature pyramid (TAL, HD, MR).  `segmentation`: action segmentation frame
labels and clip classification labels.
"""

from __future__ import annotations

from unloc_tf.targets.localization import (
  localization_targets,
  moment_retrieval_targets,
  to_token_coordinates,
  token_positions,
  token_strides,
  window_localization_targets,
)
from unloc_tf.targets.segmentation import (
  classification_labels,
  frame_labels_to_one_hot,
  segmentation_labels,
)

__all__ = [
  "classification_labels",
  "frame_labels_to_one_hot",
  "localization_targets",
  "moment_retrieval_targets",
  "segmentation_labels",
  "to_token_coordinates",
  "token_positions",
  "token_strides",
  "window_localization_targets",
]
