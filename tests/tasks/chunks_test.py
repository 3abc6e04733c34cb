"""unloc_tf.tasks.chunks: windows of a long video merged in video time.

The planted-segment test runs the evaluator on cached-embedding records of a
200 s video with a fake model that sees only its window (each frame's
embedding says whether it shows the planted action), so it checks the
window placement, the mapping to video seconds and the merge exactly."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import postprocess, spec
from unloc_tf.data import chunks, pipeline, records
from unloc_tf.tasks import action_localizer, base, moment_retriever
from unloc_tf.tasks import chunks as chunks_lib
from unloc_tf.tasks.action_segmenter import SegmentationResults
from unloc_tf.train import evaluation

N0, SPT, FRAMES = 16, 0.5, 400
# Stored frames (inclusive): inside the window starting at 96; across the
# end of the window 216..231 (it lies whole in the window 228..243).
PLANTED = ((100, 105), (229, 233))


class _PlantedLocalizer:
  """A fake TAL model: its frame embeddings' channel 1 flags the tokens that
  show a planted action (`fixtures.planted_outputs`); decoding and results
  are the real ones."""

  task = spec.TAL

  def forward(self, inputs):
    logits, disp = tf.numpy_function(
        fixtures.planted_outputs, [inputs[spec.FRAME_EMBEDDINGS][..., 1] > 0.5],
        (tf.float32, tf.float32))
    return {"logits": tf.ensure_shape(logits, [None, N0, 1]),
            "displacements": tf.ensure_shape(disp, [None, N0, 1, 2]),
            "token_mask": tf.ones_like(inputs[spec.FRAME_MASK])}

  def decode(self, outputs, batch, settings):
    return postprocess.localization_detections(
        outputs["logits"], outputs["displacements"], outputs["token_mask"],
        batch[spec.NUM_FRAMES_TOTAL], batch[spec.BATCH_SECS_PER_TIMESTEP],
        pyramid_level_lengths=(N0,), max_detections=settings.max_detections,
        score_threshold=settings.score_threshold,
        soft_nms_sigma=settings.soft_nms_sigma)

  def new_results(self, settings):
    return action_localizer.LocalizationResults(settings)


def _sigmoid(x):
  return 1 / (1 + np.exp(-x))


def test_a_planted_segment_is_found_inside_and_across_windows(tmp_path):
  emb = np.zeros((FRAMES, 4), np.float32)
  emb[:, 0] = np.arange(FRAMES)
  for s, e in PLANTED:
    emb[s:e + 1, 1] = 1.0
  shard = fixtures.write(tmp_path, "long", [records.VideoRecord(
      media_id="long", secs_per_timestep=SPT, embeddings=emb,
      segments=[records.Segment(s, e, 0) for s, e in PLANTED])],
                         task=spec.TAL)
  config = pipeline.InputConfig(
      task=spec.TAL, num_frames=N0, input_mode="embeddings", embedding_dim=4,
      text_mode="none", secs_per_timestep=SPT, class_names=("act",),
      pyramid=spec.PyramidSpec(N0, 1, ((0, float("inf")),)))
  evaluator = evaluation.Evaluator(spec.TAL, class_names=("act",))
  windows = chunks.Chunking("on", overlap_frames=4)
  offsets = windows.plan(spec.TAL, N0, 1 / SPT).offsets(FRAMES)
  assert (offsets[8], offsets[18], len(offsets)) == (96, 216, 33)
  metrics = evaluator(_PlantedLocalizer(), chunks.make_dataset(
      shard, config, windows, global_batch_size=8))
  [dets] = evaluator.last_results.results.values()
  # The planted frames a..b are the seconds [a, b + 1] * SPT; the top score
  # is never decayed; the part the window 216..231 sees is (IoU 3/5).
  assert [d["segment"] for d in dets[:2]] == [[50.0, 53.0], [114.5, 117.0]]
  np.testing.assert_allclose([d["score"] for d in dets[:2]],
                             _sigmoid(np.array([1.0, 0.5])), rtol=1e-6)
  cut = [d for d in dets if d["segment"] == [114.5, 116.0]]
  assert cut and cut[0]["score"] < dets[1]["score"] / 2
  assert metrics["mAP@0.5"] == 1.0
  # Whole-video mode: 16 tokens over 400 frames miss the actions.
  with pytest.warns(UserWarning, match="no predictions"):
    coarse = evaluator(_PlantedLocalizer(), chunks.make_dataset(
        shard, config, chunks.Chunking("off"), global_batch_size=8))
  assert coarse["mAP@0.5"] < 1.0


def _rows(**values):
  """A host batch of the given per-row values (numpy)."""
  out = {k: np.asarray(v) for k, v in values.items()}
  n = len(out[spec.VIDEO_ID])
  out.setdefault("batch_mask", np.ones(n, np.int32))
  out.setdefault(spec.EXAMPLE_ID_KEY, np.full(n, -1))
  out.setdefault(spec.BATCH_SECS_PER_TIMESTEP, np.full(n, SPT, np.float32))
  return out


def test_a_whole_video_passes_unchanged():
  merger = chunks_lib.WindowMerger(spec.TAL, base.DecodeSettings())
  batch = _rows(media_id=[b"a"], total_frames=[7], chunk_offset=[0],
                video_frames=[7], chunk_last=[1])
  dets = {"segments": np.array([[[1.0, 2.0], [1.2, 2.1]]], np.float32),
          "scores": np.array([[0.9, 0.8]], np.float32),
          "classes": np.array([[0, 0]], np.int32),
          "num_detections": np.array([2], np.int32)}
  [(row, out)] = merger.add(batch, dets)
  assert out is not None and all(
      np.array_equal(out[k], dets[k]) for k in dets)  # no second Soft-NMS
  assert spec.CHUNK_OFFSET not in row and row[spec.NUM_FRAMES_TOTAL] == [7]
  plain = {spec.VIDEO_ID: np.array([b"a"])}
  assert merger.add(plain, dets) == [(plain, dets)]


def test_moment_retrieval_windows_merge_per_caption():
  """Two windows (frames 0..9 and 6..15) of one record with 2 captions:
  each caption's detections are shifted to video seconds and Soft-NMSed
  together; the same moment seen by both windows is decayed once."""
  settings = base.DecodeSettings(max_detections=3)
  merger = chunks_lib.WindowMerger(spec.MR, settings)
  batch = _rows(media_id=[b"v", b"v"], example_id=[0, 0],
                total_frames=[10, 10], chunk_offset=[0, 6],
                video_frames=[16, 16], chunk_last=[0, 1],
                text_valid=[[1, 1], [1, 1]])
  segs = np.zeros((2, 2, 3, 2), np.float32)
  scores = np.zeros((2, 2, 3), np.float32)
  segs[0, 0, 0], scores[0, 0, 0] = (3.5, 4.5), 0.9  # window 1: 3.5-4.5 s
  segs[1, 0, 0], scores[1, 0, 0] = (0.5, 1.5), 0.8  # window 2: same, 0.8
  segs[1, 1, 0], scores[1, 1, 0] = (1.0, 2.0), 0.7  # caption 1: 4.0-5.0 s
  num = np.array([[1, 0], [1, 1]], np.int32)
  [(row, out)] = merger.add(batch, {"segments": segs, "scores": scores,
                                    "num_detections": num})
  assert row[spec.NUM_FRAMES_TOTAL].tolist() == [16]
  assert out["num_detections"].tolist() == [[2, 1]]
  np.testing.assert_allclose(out["segments"][0, 0, :2],
                             [[3.5, 4.5], [3.5, 4.5]])
  np.testing.assert_allclose(out["scores"][0, 0, :2],
                             [0.9, 0.8 * np.exp(-0.5 / 0.3)], rtol=1e-5)
  np.testing.assert_allclose(out["segments"][0, 1, 0], [4.0, 5.0])
  results = moment_retriever.RetrievalResults(base.MetricSettings())
  results.add(row | {spec.GT_START: np.zeros((1, 2)),
                     spec.GT_END: np.ones((1, 2)),
                     spec.TEXT_STRINGS: np.array([[b"q0", b"q1"]])}, out)
  assert [r["query"] for r in results.rows] == ["q0", "q1"]


def test_highlight_saliency_is_averaged_over_overlapping_frames():
  """Windows of 4 frames at 1 fps (2 s clips) starting at frames 0 and 2 of
  a 6-frame video: frames 2 and 3 average both windows; a video clip is the
  max over its frames."""
  out = chunks_lib.merge_saliency(
      [(0, 4, np.array([0.2, 0.6, 0.0])), (2, 4, np.array([0.4, 1.0, 0.0]))],
      video_frames=6, secs_per_timestep=1.0, secs_per_clip=2.0)
  # frames: 0.2, 0.2, (0.6+0.4)/2, (0.6+0.4)/2, 1.0, 1.0
  np.testing.assert_allclose(out, [0.2, 0.5, 1.0])
  merger = chunks_lib.WindowMerger(spec.HD, base.DecodeSettings(
      secs_per_clip=2.0))
  batch = _rows(media_id=[b"h", b"h"], example_id=[0, 0],
                total_frames=[4, 4], chunk_offset=[0, 2], video_frames=[6, 6],
                chunk_last=[0, 1], secs_per_timestep=[1.0, 1.0])
  dets = {"segments": np.zeros((2, 1, 2), np.float32),
          "scores": np.zeros((2, 1), np.float32),
          "classes": np.full((2, 1), -1, np.int32),
          "num_detections": np.zeros(2, np.int32),
          "saliency": np.array([[0.2, 0.6, 0.0], [0.4, 1.0, 0.0]],
                               np.float32)}
  [(_, merged)] = merger.add(batch, dets)
  np.testing.assert_allclose(merged["saliency"], [[0.2, 0.5, 1.0]])
  assert merged["num_detections"].tolist() == [0]


def test_action_segmentation_averages_overlapping_frames():
  """AS rows keep their windows, moved to the video's frames; the results
  average the logits of frames two windows share."""
  merger = chunks_lib.WindowMerger(spec.AS, base.DecodeSettings())
  logits = np.array([[[1.0], [1.0], [3.0], [3.0]],
                     [[-1.0], [-1.0], [5.0], [5.0]]], np.float32)
  batch = _rows(media_id=[b"s", b"s"], total_frames=[4, 4],
                window_offset=[0, 0], chunk_offset=[0, 2],
                video_frames=[6, 6], chunk_last=[0, 1],
                frame_mask=np.ones((2, 4), np.int32),
                labels=np.zeros((2, 4, 1), np.int32))
  results = SegmentationResults(base.MetricSettings(class_names=("x",)))
  for host in merger.add(batch, {"logits": logits,
                                 "frame_classes": np.zeros((2, 4))}):
    results.add(*host)
  video, _, spt = results.video_logits("s")
  np.testing.assert_allclose(video[:, 0], [1, 1, 1, 1, 5, 5])
  assert spt == pytest.approx(SPT)
