"""Shared constants of unloc_tf: record feature keys, batch keys, task names.

Everything that two modules must agree on and that is not code lives here: the
`tf.SequenceExample` keys of the record contract (the reference's DMVR /
MediaSequence keys, so records written for the reference load unchanged), the
keys of the batch dictionaries that flow from `data/` to `tasks/`, and the
`PyramidSpec` that both the targets and the model use.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Sequence, Tuple

# ---------------------------------------------------------------------------
# Tasks.
# ---------------------------------------------------------------------------
TAL = "temporal_localization"  # closed-set and zero-shot action localization
MR = "moment_retrieval"
HD = "highlight_detection"
AS = "action_segmentation"
CLS = "classification"  # video-text classification (Kinetics-style)
TASKS = (TAL, MR, HD, AS, CLS)

# ---------------------------------------------------------------------------
# Record feature keys (tf.SequenceExample).  Reference: reference_spec.md §1.1.
# ---------------------------------------------------------------------------
# Feature lists (one entry per stored frame).
IMAGE_ENCODED = "image/encoded"  # bytes: one JPEG per stored frame
IMAGE_EMBEDDING = "image/embedding"  # float list: a precomputed frame embedding
FRAME_LABEL_INDEX = "frame/label/index"  # int64 list per frame; empty = background

# Context.
CLIP_FRAMES = "clip/frames"  # int64: number of stored frames n
MEDIA_ID = "clip/media_id"  # bytes: video id
EXAMPLE_ID = "example_id"  # int64: per-query id (Charades-STA in the reference)
SECS_PER_TIMESTEP = "clip/secs_per_timestep"  # float: 1 / fps of the stored frames
DURATION = "clip/duration"  # float: duration of the source video in seconds
SEGMENT_START_INDEX = "segment/start/index"  # int64 list, stored-frame index
SEGMENT_END_INDEX = "segment/end/index"  # int64 list, inclusive
SEGMENT_START_TIMESTAMP = "segment/start/timestamp"  # int64 list, microseconds
SEGMENT_END_TIMESTAMP = "segment/end/timestamp"  # int64 list, microseconds
SEGMENT_LABEL_INDEX = "segment/label/index"  # int64 list
SEGMENT_LABEL_STRING = "segment/label/string"  # bytes list (MR captions / HD query)
SEGMENT_LABEL_EMBEDDING = "segment/label/embedding"  # float list, [S * D] row-major
CLIP_LABEL_INDEX = "clip/label/index"  # int64 list (classification)
CLIP_LABEL_STRING = "clip/label/string"  # bytes list (classification)
SALIENCY_CLIP_INDEX = "saliency/clip_index"  # int64 list: rated clip ids
SALIENCY_SCORES = "saliency/scores"  # float list, [len(clip_index) * A] row-major
SALIENCY_NUM_ANNOTATORS = "saliency/num_annotators"  # int64: A
SALIENCY_SECS_PER_CLIP = "saliency/secs_per_clip"  # float: clip length (2 s in QVH)

MICROSECONDS = 1_000_000

# Padding values of the reference (reference_spec.md §1.1).
PAD_SEGMENT_INDEX = -1000
PAD_TIMESTAMP = -1
PAD_LABEL = -1

# ---------------------------------------------------------------------------
# Batch keys (the dict that data/pipeline.py yields and tasks/ consume).
# ---------------------------------------------------------------------------
FRAMES = "frames"  # [B, N0, H, W, 3] float32 (CLIP-normalised) or uint8
FRAME_EMBEDDINGS = "frame_embeddings"  # [B, N0, D] float32
FRAME_MASK = "frame_mask"  # [B, N0] int32, 1 = real frame
# Co-training: a batch of task t also holds the key TASK_MARKER_PREFIX + t
# ([B] int32 zeros; `task_marker`), which the multi-task model dispatches on.
TASK_MARKER_PREFIX = "task/"
FRAME_INDICES = "frame_indices"  # [B, N0] int32 stored-frame index of each token
TEXT_IDS = "text_ids"  # [B, Ntext, Lt] int32 (Ntext = C, K or 1)
TEXT_MASK = "text_mask"  # [B, Ntext, Lt] int32
TEXT_EMBEDDINGS = "text_embeddings"  # [B, Ntext, D] float32
TEXT_VALID = "text_valid"  # [B, Ntext] int32, 1 = a real caption / class
TEXT_STRINGS = "text_strings"  # [B, Ntext] string, MR/HD captions ("" = pad)
LABELS = "labels"  # TAL/HD [B,T_tot,C]; MR [B,K,T_tot]; AS [B,N0,C]; CLS [B,C]
DISPLACEMENTS = "displacements"  # TAL/HD [B,T_tot,C,2]; MR [B,K,T_tot,2]
NUM_FRAMES_TOTAL = "total_frames"  # [B] int32, n stored frames of the video
WINDOW_OFFSET = "window_offset"  # [B] int32, first stored frame of an AS window
BATCH_SECS_PER_TIMESTEP = "secs_per_timestep"  # [B] float32
VIDEO_ID = "media_id"  # [B] string
EXAMPLE_ID_KEY = "example_id"  # [B] int64
GT_START = "gt_start_time"  # [B, S] float32 seconds, padded with -1
GT_END = "gt_end_time"  # [B, S] float32 seconds, padded with -1
GT_LABEL = "gt_label"  # [B, S] int32, padded with -1
GT_VALID = "gt_valid"  # [B, S] int32
SALIENCY = "saliency"  # [B, max_clips, A] float32 (HD), 0 outside rated clips
SALIENCY_MASK = "saliency_mask"  # [B, max_clips] int32, 1 = clip inside video
SOURCE_FILE = "source_file"  # [B] string, the shard an example came from
RECORD_INDEX = "record_index"  # [B] int64, its index in that shard
# Chunked inference (data/chunks.py; long videos in windows): the example's
# frame axis (its total_frames, and an AS window_offset) starts at stored
# frame chunk_offset of a video of video_frames frames; chunk_last marks the
# last window of a record.
CHUNK_OFFSET = "chunk_offset"  # [B] int32
VIDEO_FRAMES = "video_frames"  # [B] int32
CHUNK_LAST = "chunk_last"  # [B] int32, 1 = the record's last window


@dataclasses.dataclass(frozen=True)
class PyramidSpec:
  """Temporal feature pyramid shared by the targets and the model.

  Level `l` has `num_frames // 2**l` tokens at stride `2**l` (in level-0 token
  units).  `regression_ranges[l] = (lo, hi)` is the range of the largest
  distance from a token to a segment boundary that level `l` is responsible
  for (`hi` exclusive; `math.inf` for the last level).

  Attributes:
    num_frames: N0, number of level-0 tokens.
    num_levels: number of pyramid levels L (1 = no pyramid).
    regression_ranges: L pairs (lo, hi) in level-0 token units.
    center_sampling_radius: radius r; level l uses r * 2**l.
  """

  num_frames: int
  num_levels: int = 4
  regression_ranges: Tuple[Tuple[float, float], ...] = (
      (0.0, 4.0),
      (4.0, 8.0),
      (8.0, 16.0),
      (16.0, math.inf),
  )
  center_sampling_radius: float = 3.0

  def __post_init__(self):
    if self.num_frames <= 0:
      raise ValueError(f"num_frames must be positive, got {self.num_frames}")
    if len(self.regression_ranges) != self.num_levels:
      raise ValueError(
          f"regression_ranges has {len(self.regression_ranges)} entries but"
          f" num_levels={self.num_levels}"
      )
    if self.num_frames % (2 ** (self.num_levels - 1)):
      raise ValueError(
          f"num_frames={self.num_frames} must be divisible by"
          f" 2**(num_levels-1)={2 ** (self.num_levels - 1)}"
      )

  @property
  def level_lengths(self) -> Tuple[int, ...]:
    """N_l for every level."""
    return tuple(self.num_frames // 2**l for l in range(self.num_levels))

  @property
  def strides(self) -> Tuple[int, ...]:
    return tuple(2**l for l in range(self.num_levels))

  @property
  def total_tokens(self) -> int:
    """T_tot = sum_l N_l."""
    return sum(self.level_lengths)


def default_regression_ranges(
    num_levels: int, bounds: Optional[Sequence[float]] = None
) -> Tuple[Tuple[float, float], ...]:
  """Regression ranges [0,4),[4,8),[8,16),... as in the reference configs.

  Args:
    num_levels: number of pyramid levels.
    bounds: the inner boundaries (num_levels - 1 values); defaults to
      4, 8, 16, 32, ... (the ActivityNet / Charades configs).
  """
  if bounds is None:
    bounds = [4.0 * 2**i for i in range(num_levels - 1)]
  if len(bounds) != num_levels - 1:
    raise ValueError(f"need {num_levels - 1} bounds, got {len(bounds)}")
  edges = [0.0, *[float(b) for b in bounds], math.inf]
  return tuple((edges[i], edges[i + 1]) for i in range(num_levels))


def task_marker(task: str) -> str:
  """The batch key that marks a co-training batch as task `task`'s."""
  return TASK_MARKER_PREFIX + task
