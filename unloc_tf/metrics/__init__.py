"""Dataset-level evaluation metrics, numpy only (no TensorFlow, no unloc_tf).

Each module gives the numbers of a benchmark's official evaluator
(design/metrics.md):

* `localization`: ActivityNet detection mAP@tIoU (TAL, zero-shot TAL).
* `retrieval`: Recall@K,IoU=m and mIoU (Charades-STA, ActivityNet Captions),
  with the VSLNet / UnLoc (>=) and 2D-TAN (>, NMS) conventions.
* `qvhighlights`: moment_detr's QVHighlights MR and HD metrics, same dict,
  same rounding.
* `segmentation`: COIN frame accuracy, frame mAP, MS-TCN edit and F1@k.
"""

from __future__ import annotations

from unloc_tf.metrics.localization import (
  DEFAULT_TIOU_THRESHOLDS,
  average_precision_detection,
  evaluate_detection,
  interpolated_average_precision,
  segment_iou,
)
from unloc_tf.metrics.qvhighlights import (
  MR_IOU_THRESHOLDS,
  evaluate_qvhighlights,
  get_ap,
  load_jsonl,
)
from unloc_tf.metrics.retrieval import recall_at_k, temporal_iou
from unloc_tf.metrics.segmentation import (
  edit_score,
  evaluate_segmentation,
  f1_at_overlaps,
  frame_accuracy,
  mean_average_precision,
)

__all__ = [
  "DEFAULT_TIOU_THRESHOLDS",
  "MR_IOU_THRESHOLDS",
  "average_precision_detection",
  "edit_score",
  "evaluate_detection",
  "evaluate_qvhighlights",
  "evaluate_segmentation",
  "f1_at_overlaps",
  "frame_accuracy",
  "get_ap",
  "interpolated_average_precision",
  "load_jsonl",
  "mean_average_precision",
  "recall_at_k",
  "segment_iou",
  "temporal_iou",
]
