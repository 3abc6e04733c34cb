"""The public datasets: annotation readers, planners and the record builder.

One module per annotation format (`builder.FORMATS`: the task of its records
and the default stored fps):

  activitynet           ActivityNet 1.3 JSON (official, results layout, BSN)
                        -> temporal_localization, one record per video; 10.
  activitynet_captions  ActivityNet Captions JSON -> moment_retrieval, one
                        record per video; 10.
  charades_sta          Charades-STA txt (+ Charades csv) ->
                        moment_retrieval, one record per video with all its
                        queries (per_query: one per query); 10.
  qvhighlights          QVHighlights jsonl -> highlight_detection (or
                        moment_retrieval), one record per query (the test
                        release: queries without targets); 1.
  coin                  COIN.json -> action_segmentation, one record per
                        video; 2 (the paper; the reference config uses 10).
  kinetics              Kinetics csv -> classification, one record per clip;
                        10.

Each holds its format's readers (`read_*`, validated: `FormatError` names
the file, the line or record and the field) and its planner (`plan_*`:
annotations -> `common.VideoItem`s).  `common` has the plan, the report
reasons, `read_class_list` and the video lookup; `builder.convert(Options)`
decodes the videos and writes the shards (`video_records.convert_video`
per video); `beam_conversion.convert_with_beam` writes the same shards on an
Apache Beam runner (the optional `beam` extra).

The readers import no TensorFlow; the builder names (`Options`, `convert`,
...) are loaded from `builder` (which does) on first use.
"""

from __future__ import annotations

from unloc_tf.datasets.activitynet import (
  ACTIVITYNET_SUBSETS,
  activitynet_class_names,
  plan_activitynet,
  read_activitynet,
)
from unloc_tf.datasets.activitynet_captions import (
  PREPROCESS_2D_TAN,
  plan_activitynet_captions,
  read_activitynet_captions,
)
from unloc_tf.datasets.charades_sta import (
  plan_charades_sta,
  read_charades_lengths,
  read_charades_sta,
)
from unloc_tf.datasets.coin import coin_segments, plan_coin, read_coin
from unloc_tf.datasets.common import (
  CLIP_CLIPPED,
  CLIP_OUTSIDE,
  DUPLICATE,
  DURATION_MISMATCH,
  EMPTY_CAPTION,
  MISSING_VIDEO,
  NO_LABEL,
  NO_SEGMENTS,
  REASONS,
  SEGMENT_CLIPPED,
  SEGMENT_OUTSIDE,
  SEGMENT_REVERSED,
  SEGMENT_ZERO,
  SOURCE_SIZE_KEPT,
  UNDECODABLE_VIDEO,
  UNKNOWN_CLASS,
  RecordPlan,
  SegmentPlan,
  VideoItem,
  index_videos,
  locate_videos,
  read_class_list,
)
from unloc_tf.datasets.kinetics import (
  kinetics_clip_id,
  plan_kinetics,
  read_kinetics_csv,
)
from unloc_tf.datasets.qvhighlights import plan_qvhighlights, read_qvhighlights

# Loaded from `builder` on first access (it imports TensorFlow).
_BUILDER_NAMES = ("FORMATS", "PLANNERS", "Format", "Options", "Params",
                  "VideoResult", "convert", "convert_video", "summary_line")


def __getattr__(name: str):
  if name in _BUILDER_NAMES:
    from unloc_tf.datasets import builder  # noqa: PLC0415

    return getattr(builder, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
  "ACTIVITYNET_SUBSETS",
  "CLIP_CLIPPED",
  "CLIP_OUTSIDE",
  "DUPLICATE",
  "DURATION_MISMATCH",
  "EMPTY_CAPTION",
  "MISSING_VIDEO",
  "NO_LABEL",
  "NO_SEGMENTS",
  "PREPROCESS_2D_TAN",
  "REASONS",
  "SEGMENT_CLIPPED",
  "SEGMENT_OUTSIDE",
  "SEGMENT_REVERSED",
  "SEGMENT_ZERO",
  "SOURCE_SIZE_KEPT",
  "UNDECODABLE_VIDEO",
  "UNKNOWN_CLASS",
  "RecordPlan",
  "SegmentPlan",
  "VideoItem",
  "activitynet_class_names",
  "coin_segments",
  "index_videos",
  "kinetics_clip_id",
  "locate_videos",
  "plan_activitynet",
  "plan_activitynet_captions",
  "plan_charades_sta",
  "plan_coin",
  "plan_kinetics",
  "plan_qvhighlights",
  "read_activitynet",
  "read_activitynet_captions",
  "read_charades_lengths",
  "read_charades_sta",
  "read_class_list",
  "read_coin",
  "read_kinetics_csv",
  "read_qvhighlights",
  *_BUILDER_NAMES,
]
