"""unloc_tf.data.video: the sampling rule, resizing, containers, bad files."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import tensorflow as tf

pytest.importorskip("av")  # An optional dependency.

from tests.data import video_helpers as vh  # noqa: E402
from unloc_tf.data import video as video_io  # noqa: E402

SRC_FPS = 25.0
SRC_FRAMES = 60  # 2.4 s


@pytest.fixture(scope="module")
def index_video(tmp_path_factory):
  """A 25 fps, 64x48, 2.4 s mp4 whose frame k shows the bits of k."""
  path = str(tmp_path_factory.mktemp("videos") / "index25.mp4")
  return vh.write_video(path, vh.index_frames(SRC_FRAMES), SRC_FPS)


def _expected(fps, src_fps=SRC_FPS, src_frames=SRC_FRAMES):
  """The module's rule: n = floor(duration * fps); stored frame i shows the
  last source frame k with k / src_fps <= i / fps + 0.5 / src_fps."""
  n = max(1, math.floor(src_frames / src_fps * fps + 1e-6))
  return [min(src_frames - 1, math.floor(i * src_fps / fps + 0.5 + 1e-9))
          for i in range(n)]


@pytest.mark.parametrize("fps", [10.0, 2.0, 25.0, 7.5, 50.0])
def test_sampling_rule(index_video, fps):
  d = video_io.decode_video(index_video, fps, short_side=0)
  assert d.fps == fps and d.source_fps == SRC_FPS
  assert d.duration == pytest.approx(SRC_FRAMES / SRC_FPS)
  assert d.frames.dtype == np.uint8 and d.frames.shape[1:] == (48, 64, 3)
  np.testing.assert_array_equal(vh.read_index(d.frames), _expected(fps))


def test_sampling_rule_spelled_out(index_video):
  # 25 fps -> 10 fps: t_i = 0.1 i, source frames every 0.04 s, tolerance
  # 0.02 s: i=1 (0.1 s) ties between frames 2 (0.08) and 3 (0.12) -> 3.
  d = video_io.decode_video(index_video, 10.0, short_side=0)
  assert list(vh.read_index(d.frames)[:6]) == [0, 3, 5, 8, 10, 13]
  assert len(d.frames) == 24
  # 25 fps -> 2 fps: t = 0, 0.5, 1.0, 1.5, 2.0 s; n = floor(2.4 * 2) = 4.
  d = video_io.decode_video(index_video, 2.0, short_side=0)
  assert list(vh.read_index(d.frames)) == [0, 13, 25, 38]


def test_upsampling_repeats_frames(tmp_path):
  path = vh.write_video(str(tmp_path / "v5.mp4"), vh.index_frames(10), 5.0)
  d = video_io.decode_video(path, 10.0, short_side=0)
  # Source frame k at 0.2 k s, tolerance 0.1 s: t = 0.1 -> frame 1 (a tie).
  assert list(vh.read_index(d.frames)) == [0, 1, 1, 2, 2, 3, 3, 4, 4, 5,
                                           5, 6, 6, 7, 7, 8, 8, 9, 9, 9]


@pytest.mark.parametrize("name,fmt,stream_duration", [
    ("v.mkv", "matroska", False),  # duration from the container
    ("v.h264", "h264", False),  # raw stream: no pts, no duration
    ("v.mp4", None, True),
])
def test_containers_and_duration_fallback(tmp_path, name, fmt,
                                          stream_duration):
  path = vh.write_video(str(tmp_path / name), vh.index_frames(SRC_FRAMES),
                        SRC_FPS, container_format=fmt)
  reader = video_io.VideoReader(path, 10.0, short_side=0)
  assert (reader.duration is not None) == (stream_duration or fmt ==
                                           "matroska")
  frames = np.stack(list(reader))
  assert reader.duration == pytest.approx(2.4)
  np.testing.assert_array_equal(vh.read_index(frames), _expected(10.0))


@pytest.mark.parametrize("height,width,short,expected", [
    (48, 64, 32, (32, 43)),  # 64 * 32 / 48 = 42.7 -> 43
    (64, 48, 32, (43, 32)),  # portrait
    (48, 64, 96, (96, 128)),  # upscaling too
    (48, 64, 0, (48, 64)),  # 0 keeps the source size
])
def test_resize_short_side(tmp_path, height, width, short, expected):
  frames = np.zeros([5, height, width, 3], np.uint8)
  frames[:, :, : width // 2] = 200  # left half bright
  path = vh.write_video(str(tmp_path / "r.mp4"), frames, 5.0)
  d = video_io.decode_video(path, 5.0, short_side=short)
  assert d.frames.shape == (5, *expected, 3)
  w = expected[1]
  assert d.frames[:, :, : w // 2 - 2].mean() > 180
  assert d.frames[:, :, w // 2 + 2:].mean() < 30
  again = video_io.decode_video(path, 5.0, short_side=short)
  np.testing.assert_array_equal(d.frames, again.frames)  # deterministic


def test_max_frames(index_video):
  d = video_io.decode_video(index_video, 10.0, short_side=0, max_frames=7)
  np.testing.assert_array_equal(vh.read_index(d.frames), _expected(10)[:7])
  assert d.duration == pytest.approx(2.4)


def test_frames_to_jpeg_round_trip(index_video):
  d = video_io.decode_video(index_video, 2.0, short_side=32)
  jpegs = video_io.frames_to_jpeg(d.frames, quality=95)
  assert len(jpegs) == len(d.frames)
  back = np.stack([tf.io.decode_jpeg(j).numpy() for j in jpegs])
  assert back.shape == d.frames.shape
  assert np.abs(back.astype(int) - d.frames).mean() < 3


@pytest.mark.parametrize("kind,reason", [
    ("missing", "missing"),
    ("empty", "open"),
    ("garbage", "open"),
    ("truncated_mp4", "open"),  # moov atom (at the end) cut off
    ("truncated_faststart", "decode"),  # index at the front, data cut
    ("truncated_mkv", "truncated"),  # frames end before the duration
    ("directory", "open"),
])
def test_bad_files_raise_video_decode_error(tmp_path, index_video, kind,
                                            reason):
  path = str(tmp_path / f"{kind}.mp4")
  if kind == "empty":
    open(path, "wb").close()
  elif kind == "garbage":
    vh.garbage(path)
  elif kind == "truncated_mp4":
    vh.truncate(index_video, path)
  elif kind == "truncated_faststart":
    full = vh.write_video(str(tmp_path / "fs.mp4"),
                          vh.index_frames(SRC_FRAMES), SRC_FPS,
                          options={"movflags": "faststart"})
    vh.truncate(full, path)
  elif kind == "truncated_mkv":
    full = vh.write_video(str(tmp_path / "full.mkv"),
                          vh.index_frames(SRC_FRAMES), SRC_FPS,
                          container_format="matroska")
    path = vh.truncate(full, str(tmp_path / "cut.mkv"), 0.4)
  elif kind == "directory":
    os.makedirs(path)
  with pytest.raises(video_io.VideoDecodeError) as e:
    video_io.decode_video(path, 10.0)
  assert e.value.reason == reason
  assert e.value.path == path and str(e.value).startswith(path)
  assert isinstance(e.value, ValueError)
