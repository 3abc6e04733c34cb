"""unloc_tf.data.chunks: window placement, the "auto" rule, errors, the
stream of windows (frames held at once) and the window examples."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import chunks, pipeline, records


def _plan(mode="on", window=8, overlap=0.25, n0=4, task=spec.TAL, fps=10.0,
          **kw):
  return chunks.Chunking(mode=mode, window_frames=window, overlap=overlap,
                         **kw).plan(task, n0, fps)


@pytest.mark.parametrize("mode,window,overlap", [
    ("on", 8, 0.25), ("on", 8, 0.0), ("on", 5, 0.9), ("auto", 8, 0.5)])
def test_windows_cover_the_video_the_same_way_everywhere(mode, window,
                                                         overlap):
  """Python plan, the graph's plan and the stream give the same windows:
  full windows every `stride` frames, one more ending at the video's end."""
  plan = _plan(mode, window, overlap, auto_secs_per_token=0.5)
  assert plan.stride == window - round(overlap * window)
  for n in range(1, 45):
    got = list(chunks.stream(range(n), plan))
    offsets, lengths = plan.record_windows(tf.constant(n))
    if not plan.chunked(n):
      assert [(w.offset, w.frames, w.last) for w in got] == [
          (0, list(range(n)), True)]
      assert (offsets.numpy().tolist(), lengths.numpy().tolist()) == ([0],
                                                                      [n])
      continue
    want = plan.offsets(n)
    assert want[-1] == n - window and all(
        b - a <= plan.stride for a, b in zip(want, want[1:]))
    assert [w.offset for w in got] == want == offsets.numpy().tolist()
    assert set(lengths.numpy().tolist()) == {window}
    for w in got:
      assert w.frames == list(range(w.offset, w.offset + window))
    assert [w.last for w in got] == [False] * (len(got) - 1) + [True]
    assert got[-1].video_frames == n


def test_the_auto_rule():
  """"auto" chunks a video iff its whole-video tokens would be more than
  auto_secs_per_token apart: (n - 1) / (N0 - 1) / fps > 2 s."""
  plan = chunks.Chunking().plan(spec.TAL, 128, 10.0)  # ActivityNet
  assert (plan.window, plan.stride, plan.auto_frames) == (128, 96, 2541)
  assert not plan.chunked(2541) and plan.chunked(2542)  # 254.1 s
  assert plan.secs_per_token(2541, 10.0) == pytest.approx(2.0)
  assert plan.secs_per_token(72000, 10.0) == pytest.approx(0.1)  # 2 hours
  assert plan.num_windows(72000) == 750
  qvh = chunks.Chunking().plan(spec.HD, 144, 1.0)
  assert qvh.auto_frames == 287 and not qvh.chunked(150)
  assert not chunks.Chunking("off").plan(spec.TAL, 128, 10.0).chunked(10**6)
  on = chunks.Chunking("on").plan(spec.TAL, 128, 10.0)
  assert not on.chunked(128) and on.chunked(129)
  seg = chunks.Chunking("on").plan(spec.AS, 16, 2.0)  # AS: N0 windows
  assert seg.offsets(41) == [0, 12, 24, 25]
  assert seg.describe(41) == "4 windows of 16 frames (overlap 4)"
  assert chunks.Chunking("off").plan(spec.AS, 16, 2.0).num_windows(41) == 3


def test_bad_windows_are_errors_naming_the_cause():
  with pytest.raises(ValueError, match="window_frames=64 is shorter than the"
                     " model's N0=128 frames"):
    chunks.Chunking(window_frames=64).plan(spec.TAL, 128, 10.0)
  with pytest.raises(ValueError, match="window_overlap_frames=128 >= the"
                     " window of 128 frames: the overlap must be shorter"):
    chunks.Chunking(overlap_frames=128).plan(spec.TAL, 128, 10.0)
  with pytest.raises(ValueError, match=r"window_overlap=1.0 must be in \[0,"
                     r" 1\)"):
    chunks.Chunking(overlap=1.0)
  with pytest.raises(ValueError, match="action segmentation scores every"):
    chunks.Chunking(window_frames=32).plan(spec.AS, 16, 2.0)
  with pytest.raises(ValueError, match="chunking must be one of"):
    chunks.Chunking(mode="yes")
  plan = chunks.Chunking(window_frames=200, overlap_frames=50).plan(
      spec.MR, 128, 10.0)
  assert (plan.window, plan.stride) == (200, 150)


class _Frame:
  """A decoded frame that counts how many are alive."""

  alive = 0
  peak = 0

  def __init__(self):
    _Frame.alive += 1
    _Frame.peak = max(_Frame.peak, _Frame.alive)

  def __del__(self):
    _Frame.alive -= 1


def test_the_stream_holds_two_windows_of_frames_at_most():
  """Memory flat in the video's length: a 2,000-frame video in windows of
  16 keeps at most 2 windows of frames alive, and each window comes out
  as soon as the frame after it is read (counted frames, not RSS)."""
  plan = _plan("on", window=16, overlap=0.25)
  read = []

  def decoder(n):
    for i in range(n):
      read.append(i)
      yield _Frame()

  _Frame.alive = _Frame.peak = 0
  offsets = []
  for w in chunks.stream(decoder(2000), plan):
    assert len(read) <= w.offset + 2 * plan.window + 1  # streamed
    assert len(w.frames) == 16
    offsets.append(w.offset)
    del w
  assert offsets == plan.offsets(2000) and len(offsets) == 167
  assert _Frame.peak <= 2 * plan.window + 1
  # "auto" holds the frames it reads until it knows the video is long.
  auto = _plan("auto", window=16, overlap=0.25, n0=16, fps=5.0)
  assert auto.auto_frames == 151
  _Frame.alive = _Frame.peak = 0
  for w in chunks.stream(decoder(2000), auto):
    del w
  assert _Frame.peak <= auto.auto_frames + 1


def _embedding_records(tmp_path, lengths, spt=0.5):
  """Records whose frame embedding i is [i, i, i, i] (the stored frame)."""
  recs = []
  for v, n in enumerate(lengths):
    recs.append(records.VideoRecord(
        media_id=f"v{v}", secs_per_timestep=spt,
        embeddings=np.repeat(np.arange(n, dtype=np.float32)[:, None], 4, 1),
        segments=[records.Segment(n // 3, n // 2, 0)]))
  return fixtures.write(tmp_path, "emb", recs, task=spec.TAL)


def _config(**kw):
  return pipeline.InputConfig(
      task=spec.TAL, num_frames=8, input_mode="embeddings", embedding_dim=4,
      text_mode="none", secs_per_timestep=0.5,
      pyramid=spec.PyramidSpec(8, 2, ((0, 4), (4, float("inf")))), **kw)


def test_window_examples_of_records(tmp_path):
  """Off: the evaluation pipeline's examples (plus the chunk keys); on:
  one example per window with the window's frames, total_frames = the
  window and the ground truth in the video's seconds."""
  shards = _embedding_records(tmp_path, [5, 30])
  config = _config()
  want = list(pipeline.make_dataset(shards, config, is_training=False,
                                    global_batch_size=4))
  got = list(chunks.make_dataset(shards, config, chunks.Chunking("off"),
                                 global_batch_size=4).as_numpy_iterator())
  assert len(want) == len(got) == 1
  for key, value in want[0].items():
    np.testing.assert_array_equal(got[0][key], value, err_msg=key)
  assert got[0][spec.CHUNK_LAST].tolist() == [1, 1, 0, 0]

  batches = list(chunks.make_dataset(shards, config, chunks.Chunking(
      "on", window_frames=10, overlap_frames=2),
                                     global_batch_size=3).as_numpy_iterator())
  rows = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
  real = rows["batch_mask"] == 1
  rows = {k: v[real] for k, v in rows.items()}
  # v0 (5 frames): whole; v1 (30 frames): windows at 0, 8, 16, 20.
  assert rows[spec.VIDEO_ID].tolist() == [b"v0"] + [b"v1"] * 4
  assert rows[spec.CHUNK_OFFSET].tolist() == [0, 0, 8, 16, 20]
  assert rows[spec.NUM_FRAMES_TOTAL].tolist() == [5, 10, 10, 10, 10]
  assert rows[spec.VIDEO_FRAMES].tolist() == [5, 30, 30, 30, 30]
  assert rows[spec.CHUNK_LAST].tolist() == [1, 0, 0, 0, 1]
  lin = np.linspace(0, 9, 8).astype(np.int32)
  for r, offset in zip(range(1, 5), [0, 8, 16, 20]):
    np.testing.assert_array_equal(rows[spec.FRAME_EMBEDDINGS][r, :, 0],
                                  offset + lin)
    np.testing.assert_array_equal(rows[spec.FRAME_INDICES][r], offset + lin)
    assert rows[spec.GT_START][r, 0] == 10 * 0.5  # the video's seconds
