"""Merging the windows of a long video (chunked inference, `data.chunks`).

Each window is decoded by the task's own `decode` (or a SavedModel's
signature) as a video of its own; `WindowMerger` turns those per-window
detections into the video's, in the video's seconds, before the task's
`TaskResults` see them:

* TAL / HD: every window's detections, shifted by the window's start
  (`chunk_offset * secs_per_timestep`), are pooled and go through the same
  Soft-NMS as decoding (`ops.nms.soft_nms_1d` with the evaluator's
  `DecodeSettings`: sigma, score threshold, `max_detections` per video,
  class-agnostic or per class).  Detections of one action seen by two
  overlapping windows suppress each other; an action longer than the
  overlap that crosses a window boundary stays as the parts the windows
  see.  The windows' scores were already decayed by Soft-NMS inside each
  window, so detections that overlap within a window are decayed again.
* MR: the same, per caption.
* HD saliency (per 2 s clip): each window's clip scores are spread over its
  stored frames, averaged over the windows that cover a frame, and a video
  clip takes the maximum over its frames (the `max` of
  `postprocess.highlight_saliency`).
* AS: the windows' rows go on with their offsets in the video;
  `SegmentationResults` averages the logits of frames that overlapping
  windows share.

A video in whole-video mode (one window starting at frame 0 that spans the
video) passes unchanged, so it gives exactly the unchunked detections.
Batches without `spec.CHUNK_OFFSET` pass unchanged.
"""

from __future__ import annotations

import collections
import math
from typing import Dict, List, Sequence, Tuple

import numpy as np

from unloc_tf import spec
from unloc_tf.ops import nms as nms_lib
from unloc_tf.tasks import base

Host = Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]
_CHUNK_KEYS = (spec.CHUNK_OFFSET, spec.VIDEO_FRAMES, spec.CHUNK_LAST)
# The model's inputs and targets: results never read them, and a video's
# windows wait for its last one without them (memory flat in its length).
_MODEL_KEYS = (spec.FRAMES, spec.FRAME_EMBEDDINGS, spec.TEXT_IDS,
               spec.TEXT_MASK, spec.TEXT_EMBEDDINGS, spec.DISPLACEMENTS)


def _row(values: Dict[str, np.ndarray], i: int, drop=()
         ) -> Dict[str, np.ndarray]:
  return {k: v[i:i + 1] for k, v in values.items() if k not in drop}


def merge_segments(segments: np.ndarray, scores: np.ndarray,
                   classes: np.ndarray, settings: base.DecodeSettings
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, int]:
  """Soft-NMS over pooled detections (seconds), padded to M.

  Args:
    segments: float [N, 2] (start, end) in the video's seconds.
    scores: float [N].
    classes: int [N] (all 0 for MR / HD).
    settings: `max_detections` (M), `score_threshold`, `soft_nms_sigma`,
      `per_class`.

  Returns:
    (segments float32 [M, 2], scores float32 [M], classes int32 [M] with -1
    padding, the number of detections).
  """
  classes = np.asarray(classes, np.int32).reshape(-1)
  sel_seg, sel_scores, idx, num = nms_lib.soft_nms_1d(
      np.asarray(segments, np.float32).reshape(-1, 2),
      np.asarray(scores, np.float32).reshape(-1),
      max_detections=settings.max_detections,
      score_threshold=settings.score_threshold,
      soft_nms_sigma=settings.soft_nms_sigma,
      groups=classes if settings.per_class else None)
  idx = idx.numpy()
  sel_classes = np.where(idx >= 0, classes[np.maximum(idx, 0)] if len(
      classes) else -1, -1).astype(np.int32)
  return (sel_seg.numpy(), sel_scores.numpy(), sel_classes, int(num))


def merge_saliency(windows: Sequence[Tuple[int, int, np.ndarray]],
                   video_frames: int, secs_per_timestep: float,
                   secs_per_clip: float) -> np.ndarray:
  """Per-clip saliency of a video from its windows' per-clip saliency.

  Args:
    windows: (first stored frame, stored frames, saliency per clip of the
      window [clips]) of each window; clip j of a window covers its seconds
      [j, j + 1) * secs_per_clip.
    video_frames: n.
    secs_per_timestep: seconds per stored frame.
    secs_per_clip: clip length (2.0 in QVHighlights).

  Returns:
    float32 [ceil(n * secs_per_timestep / secs_per_clip)]: each frame takes
    its window clip's score averaged over the windows covering it; a video
    clip the maximum over its frames (0 for a clip with no frame).
  """
  n = int(video_frames)
  sums = np.zeros(n, np.float64)
  counts = np.zeros(n, np.int64)
  for offset, frames, sal in windows:
    sal = np.asarray(sal, np.float64).reshape(-1)
    local = np.arange(frames) * secs_per_timestep
    clip = np.floor(local / secs_per_clip + 1e-4).astype(np.int64)
    ok = (clip < len(sal)) & (offset + np.arange(frames) < n)
    pos = offset + np.arange(frames)[ok]
    np.add.at(sums, pos, sal[clip[ok]])
    np.add.at(counts, pos, 1)
  per_frame = np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)
  num_clips = max(1, math.ceil(n * secs_per_timestep / secs_per_clip - 1e-6))
  clip = np.floor(np.arange(n) * secs_per_timestep / secs_per_clip
                  + 1e-4).astype(np.int64)
  out = np.full(num_clips, -np.inf)
  ok = clip < num_clips
  np.maximum.at(out, clip[ok], per_frame[ok])
  return np.where(np.isfinite(out), out, 0.0).astype(np.float32)


class WindowMerger:
  """Per-window rows → per-video rows (see the module docstring).

  `add` takes one host batch (numpy, the pipeline's keys) and the numpy
  detections of the task's `decode` for it, and returns the (batch,
  detections) pairs ready for `TaskResults.add` (and the evaluator's
  submission): a video's merged row once its last window (`chunk_last`) is
  in; `flush` returns what is left.  A merged row is the first window's
  row (ground truth, ids, texts; not the model's inputs and targets) with
  `total_frames` = the video's stored frames and the chunk keys removed.
  Until then only the windows' detections and offsets are kept.

  Args:
    task: the task (`spec.TASKS`).
    settings: the decoding settings of the per-window detections (the
      Soft-NMS of the merge, HD's clip length).
  """

  def __init__(self, task: str, settings: base.DecodeSettings):
    self.task = task
    self.settings = settings
    self._windows: Dict[str, List[Host]] = collections.OrderedDict()

  def add(self, batch: Dict[str, np.ndarray],
          detections: Dict[str, np.ndarray]) -> List[Host]:
    if spec.CHUNK_OFFSET not in batch:
      return [(batch, detections)]
    out = []
    for i in base.real_rows(batch):
      dets = _row(detections, i)
      if self.task == spec.AS:
        out.append(self._segmentation_row(_row(batch, i), dets))
        continue
      key = base.video_key(batch, i)
      windows = self._windows.setdefault(key, [])
      if windows:  # the first window's row stands for the video
        row = {k: batch[k][i:i + 1] for k in (
            spec.CHUNK_OFFSET, spec.VIDEO_FRAMES, spec.NUM_FRAMES_TOTAL)}
      else:
        row = _row(batch, i, _MODEL_KEYS + (spec.LABELS,))
      windows.append((row, dets))
      if batch[spec.CHUNK_LAST][i]:
        out.append(self._merge(self._windows.pop(key)))
    return out

  def flush(self) -> List[Host]:
    """The videos whose last window never came (a cut dataset)."""
    out = [self._merge(rows) for rows in self._windows.values()]
    self._windows.clear()
    return out

  # -------------------------------------------------------------------------
  @staticmethod
  def _video_row(row: Dict[str, np.ndarray], video_frames: int
                 ) -> Dict[str, np.ndarray]:
    out = {k: v for k, v in row.items() if k not in _CHUNK_KEYS}
    out[spec.NUM_FRAMES_TOTAL] = np.asarray([video_frames], np.int32)
    return out

  def _segmentation_row(self, row, dets) -> Host:
    offset = int(row[spec.CHUNK_OFFSET][0])
    out = self._video_row(row, int(row[spec.VIDEO_FRAMES][0]))
    out[spec.WINDOW_OFFSET] = row[spec.WINDOW_OFFSET] + offset
    return out, dets

  def _merge(self, windows: List[Host]) -> Host:
    first, first_dets = windows[0]
    video_frames = int(windows[-1][0][spec.VIDEO_FRAMES][0])
    whole = (len(windows) == 1 and int(first[spec.CHUNK_OFFSET][0]) == 0
             and int(first[spec.NUM_FRAMES_TOTAL][0]) == video_frames)
    if whole:
      return self._video_row(first, video_frames), first_dets
    spt = float(first[spec.BATCH_SECS_PER_TIMESTEP][0])
    shifts = [int(row[spec.CHUNK_OFFSET][0]) * spt for row, _ in windows]
    if self.task == spec.MR:
      dets = self._merge_retrieval(windows, shifts)
    else:
      dets = self._merge_localization(windows, shifts)
    if self.task == spec.HD and "saliency" in first_dets:
      dets["saliency"] = merge_saliency(
          [(int(row[spec.CHUNK_OFFSET][0]), int(row[spec.NUM_FRAMES_TOTAL][0]),
            d["saliency"][0]) for row, d in windows],
          video_frames, spt, self.settings.secs_per_clip)[None]
    return self._video_row(first, video_frames), dets

  def _merge_localization(self, windows, shifts) -> Dict[str, np.ndarray]:
    segs, scores, classes = [], [], []
    for (_, d), shift in zip(windows, shifts):
      n = int(d["num_detections"][0])
      segs.append(d["segments"][0, :n].astype(np.float64) + shift)
      scores.append(d["scores"][0, :n])
      classes.append(d["classes"][0, :n])
    seg, score, cls, num = merge_segments(
        np.concatenate(segs), np.concatenate(scores),
        np.concatenate(classes), self.settings)
    return {"segments": seg[None], "scores": score[None],
            "classes": cls[None], "num_detections": np.asarray([num],
                                                                np.int32)}

  def _merge_retrieval(self, windows, shifts) -> Dict[str, np.ndarray]:
    captions = windows[0][1]["num_detections"].shape[1]
    m = self.settings.max_detections
    out_seg = np.zeros((1, captions, m, 2), np.float32)
    out_scores = np.zeros((1, captions, m), np.float32)
    out_num = np.zeros((1, captions), np.int32)
    for k in range(captions):
      segs, scores = [], []
      for (_, d), shift in zip(windows, shifts):
        n = int(d["num_detections"][0, k])
        segs.append(d["segments"][0, k, :n].astype(np.float64) + shift)
        scores.append(d["scores"][0, k, :n])
      seg, score, _, num = merge_segments(
          np.concatenate(segs), np.concatenate(scores),
          np.zeros(sum(len(s) for s in scores), np.int32),
          self.settings)
      out_seg[0, k], out_scores[0, k], out_num[0, k] = seg, score, num
    return {"segments": out_seg, "scores": out_scores,
            "num_detections": out_num}
