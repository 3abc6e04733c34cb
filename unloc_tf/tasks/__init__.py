"""One keras.Model per task, on the `UnlocTask` base (tasks/base.py).

  ActionLocalizer      TAL (closed-set, zero-shot) and HD
  MomentRetriever      MR
  ActionSegmenter      AS
  VideoTextClassifier  Kinetics-style video-text classification (pre-training)

Each task owns its loss, its decoding (dense outputs → detections in
seconds) and its host-side results (`TaskResults`: official metrics and
prediction files); `results_for(task, settings)` gives the results of a task
by name (e.g. for the outputs of an exported SavedModel).
"""

from unloc_tf import spec
from unloc_tf.tasks.action_localizer import (
    ActionLocalizer,
    LocalizationResults,
    build_action_localizer,
)
from unloc_tf.tasks.action_segmenter import (
    ActionSegmenter,
    SegmentationResults,
    build_action_segmenter,
)
from unloc_tf.tasks.base import (
    DecodeSettings,
    MetricSettings,
    TaskResults,
    UnlocTask,
)
from unloc_tf.tasks.moment_retriever import (
    MomentRetriever,
    RetrievalResults,
    build_moment_retriever,
)
from unloc_tf.tasks.video_text_classifier import (
    ClassificationResults,
    VideoTextClassifier,
    build_video_text_classifier,
)


def results_for(task: str, settings: MetricSettings) -> TaskResults:
  """An empty `TaskResults` of a task named as in `spec.TASKS`."""
  if task in (spec.TAL, spec.HD):
    return LocalizationResults(settings, queries=task == spec.HD)
  results = {spec.MR: RetrievalResults, spec.AS: SegmentationResults,
             spec.CLS: ClassificationResults}
  if task not in results:
    raise ValueError(f"unknown task {task!r}; expected one of {spec.TASKS}")
  return results[task](settings)


__all__ = [
    "ActionLocalizer", "ActionSegmenter", "ClassificationResults",
    "DecodeSettings", "LocalizationResults", "MetricSettings",
    "MomentRetriever", "RetrievalResults", "SegmentationResults",
    "TaskResults", "UnlocTask", "VideoTextClassifier",
    "build_action_localizer", "build_action_segmenter",
    "build_moment_retriever", "build_video_text_classifier", "results_for",
]
