"""Record contract: write → parse → the same tensors, for every task."""

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import spec
from unloc_tf.data import records, schema

Seg = records.Segment


def _parse_one(path, **kwargs):
  raw = next(iter(tf.data.TFRecordDataset(path)))
  return schema.parse(raw, **kwargs)


def test_tal_round_trip(tmp_path):
  rec = fixtures.video_record(
      "vid_a", n=12, spt=0.25,
      segments=[Seg(1, 4, label_index=3), Seg(6, 11, label_index=0,
                                               start_time=1.4, end_time=2.9)],
      duration=3.1)
  [path] = fixtures.write(tmp_path, "tal", [rec], task=spec.TAL)
  p = _parse_one(path)
  assert p[spec.CLIP_FRAMES].numpy() == 12
  assert p[spec.MEDIA_ID].numpy() == b"vid_a"
  assert p[spec.SECS_PER_TIMESTEP].numpy() == pytest.approx(0.25)
  assert p[spec.DURATION].numpy() == pytest.approx(3.1)
  assert list(p[spec.IMAGE_ENCODED].numpy()) == list(rec.frames)
  np.testing.assert_array_equal(p[spec.SEGMENT_START_INDEX], [1, 6])
  np.testing.assert_array_equal(p[spec.SEGMENT_END_INDEX], [4, 11])
  np.testing.assert_array_equal(p[spec.SEGMENT_LABEL_INDEX], [3, 0])
  # Default times are index * secs_per_timestep; explicit ones are kept.
  np.testing.assert_array_equal(p[spec.SEGMENT_START_TIMESTAMP],
                                [250_000, 1_400_000])
  np.testing.assert_array_equal(p[spec.SEGMENT_END_TIMESTAMP],
                                [1_000_000, 2_900_000])
  decoded = tf.io.decode_jpeg(p[spec.IMAGE_ENCODED][3]).numpy()
  # JPEG is lossy; quality 90 on smooth frames stays close.
  assert np.abs(decoded.astype(int) - fixtures.frames(12)[3]).mean() < 4


def test_mr_hd_round_trip(tmp_path):
  mr = fixtures.video_record(
      "v", n=10, segments=[Seg(0, 3, label_string="a dog runs"),
                           Seg(2, 9, label_string="ünïcode caption")],
      example_id=77)
  sal = records.Saliency([2, 3], np.array([[1, 2, 3], [4, 0, 2]]), 2.0)
  hd = fixtures.video_record(
      "h", n=10, segments=[Seg(1, 5, 0, "q"), Seg(7, 9, 0, "q")],
      saliency=sal)
  [p_mr] = fixtures.write(tmp_path, "mr", [mr], task=spec.MR)
  [p_hd] = fixtures.write(tmp_path, "hd", [hd], task=spec.HD)
  a = _parse_one(p_mr)
  assert [s.decode() for s in a[spec.SEGMENT_LABEL_STRING].numpy()] == [
      "a dog runs", "ünïcode caption"]
  assert a[spec.EXAMPLE_ID].numpy() == 77
  b = _parse_one(p_hd)
  np.testing.assert_array_equal(b[spec.SALIENCY_CLIP_INDEX], [2, 3])
  np.testing.assert_array_equal(b[spec.SALIENCY_SCORES], [1, 2, 3, 4, 0, 2])
  assert b[spec.SALIENCY_NUM_ANNOTATORS].numpy() == 3
  assert b[spec.SALIENCY_SECS_PER_CLIP].numpy() == 2.0


def test_as_cls_embeddings_round_trip(tmp_path):
  labels = [[], [1], [1, 2], [], [0]]
  rec = fixtures.video_record(
      "as", n=5, segments=[Seg(1, 2, 1)], embeddings_dim=4,
      frame_labels=labels, clip_labels=[1, 2],
      clip_label_strings=["x", "y"],
      segment_embeddings=np.ones((1, 3), np.float32))
  [path] = fixtures.write(tmp_path, "as", [rec], task=spec.AS)
  p = _parse_one(path, embedding_key=spec.IMAGE_EMBEDDING, embedding_dim=4,
                 with_frame_labels=True)
  np.testing.assert_array_equal(p[spec.IMAGE_EMBEDDING], rec.embeddings)
  assert p[spec.FRAME_LABEL_INDEX].to_list() == labels
  np.testing.assert_array_equal(p[spec.CLIP_LABEL_INDEX], [1, 2])
  np.testing.assert_array_equal(p[spec.SEGMENT_LABEL_EMBEDDING], [1, 1, 1])
  assert records.to_sequence_example(rec, spec.CLS) is not None


def test_shards_round_robin_and_no_partial_files(tmp_path):
  recs = [fixtures.video_record(f"v{i}", n=3) for i in range(5)]
  paths = fixtures.write(tmp_path, "sub/train", recs, num_shards=2)
  assert [p.rsplit("/", 1)[1] for p in paths] == [
      "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
  counts = [sum(1 for _ in tf.data.TFRecordDataset(p)) for p in paths]
  assert counts == [3, 2]
  assert not list((tmp_path / "sub").glob("*.incomplete"))


@pytest.mark.parametrize(
    "segments,task,field,text",
    [
        ([Seg(5, 2, 0)], spec.TAL, spec.SEGMENT_END_INDEX, "reversed"),
        ([Seg(0, 20, 0)], spec.TAL, spec.SEGMENT_END_INDEX, "outside"),
        ([Seg(-1, 3, 0)], spec.TAL, spec.SEGMENT_START_INDEX, "outside"),
        ([Seg(3, 3, 0)], spec.TAL, spec.SEGMENT_END_TIMESTAMP, "zero"),
        ([Seg(1, 3, -1)], spec.TAL, spec.SEGMENT_LABEL_INDEX, "no class"),
        ([Seg(1, 3)], spec.MR, spec.SEGMENT_LABEL_STRING, "no caption"),
        ([Seg(1, 3, 0, "a"), Seg(4, 5, 0, "b")], spec.HD,
         spec.SEGMENT_LABEL_STRING, "one non-empty query"),
    ])
def test_writer_rejects_bad_records(segments, task, field, text):
  rec = fixtures.video_record("bad_vid", n=10, segments=segments)
  with pytest.raises(records.RecordError) as err:
    records.to_sequence_example(rec, task)
  assert "bad_vid" in str(err.value)
  assert field in str(err.value)
  assert text in str(err.value)


def test_writer_rejects_empty_video():
  rec = records.VideoRecord("empty", 0.1, frames=[])
  with pytest.raises(records.RecordError, match="clip/frames.*no frames"):
    records.to_sequence_example(rec)


def test_reference_style_record_parses_with_defaults(tmp_path):
  """A record as the reference's DMVR writer makes it (no fps, no id)."""
  jpegs = records.encode_jpeg(fixtures.frames(4))
  ex = fixtures.raw_example(4, jpegs, start=[1], end=[2], label=[5],
                            start_us=[100_000], end_us=[200_000])
  path = fixtures.write_raw(tmp_path, "ref", [ex])
  p = _parse_one(path)
  assert p[spec.SECS_PER_TIMESTEP].numpy() == -1.0
  assert p[spec.MEDIA_ID].numpy() == b""
  assert p[spec.EXAMPLE_ID].numpy() == -1
  assert p[spec.CLIP_FRAMES].numpy() == 4
