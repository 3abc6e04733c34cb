"""Truncated and corrupted TFRecord shards: every error names the shard and
the record (TensorFlow's own `DataLossError` names neither)."""

import os
import re

import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from tests.data import shard_damage
from unloc_tf import features as ef
from unloc_tf import spec
from unloc_tf.data import pipeline, records
from unloc_tf.train import health

Seg = records.Segment
N0 = 4
PYR = spec.PyramidSpec(N0, num_levels=1, regression_ranges=((0, np.inf),))


def _config(**kw):
  base = dict(task=spec.TAL, num_frames=N0, pyramid=PYR, crop_size=16,
              min_resize=20, max_num_segments=2, secs_per_timestep=0.5,
              num_classes=3, class_names=("a", "b", "c"))
  base.update(kw)
  return pipeline.InputConfig(**base)


def _shards(tmp_path, num_records=6, num_shards=2):
  recs = [fixtures.video_record(f"v{i}", n=6, segments=[Seg(1, 3, i % 3)])
          for i in range(num_records)]
  return fixtures.write(tmp_path, "d", recs, num_shards=num_shards)


def _damage(path, how):
  """Damages a shard; returns the index of the first bad record."""
  if how == "truncated":
    return shard_damage.truncate(path)
  return shard_damage.corrupt(path, record=1)


def _names(path, index):
  return re.escape(f"{path}: record {index}: damaged TFRecord shard")


def test_count_and_check_intact_shards(tmp_path):
  paths = _shards(tmp_path)
  assert [records.count_records(p) for p in paths] == [3, 3]
  assert [records.check_shard(p) for p in paths] == [3, 3]
  assert records.find_damaged_shard(paths) is None


def test_count_records_finds_truncation_without_reading_data(tmp_path):
  paths = _shards(tmp_path)
  bad = _damage(paths[1], "truncated")
  with pytest.raises(records.DamagedShardError,
                     match=_names(paths[1], bad) + r" \(truncated: the"
                     r" record at byte \d+ needs \d+ bytes of data"):
    records.count_records(paths[1])
  # Cut inside the header of record 2 (5 of its 12 header bytes left).
  offset, _ = shard_damage.record_spans(paths[0])[2]
  with open(paths[0], "r+b") as f:
    f.truncate(offset + 5)
  with pytest.raises(records.DamagedShardError,
                     match=_names(paths[0], 2) + ".*less than a record"
                     " header"):
    records.count_records(paths[0])


def test_check_shard_finds_a_flipped_byte(tmp_path):
  paths = _shards(tmp_path)
  bad = _damage(paths[0], "corrupted")
  assert records.count_records(paths[0]) == 3  # headers are intact
  with pytest.raises(records.DamagedShardError,
                     match=_names(paths[0], bad) + r" \(corrupted record at"
                     r" \d+\).*copy it again or rebuild it"):
    records.check_shard(paths[0])
  found = records.find_damaged_shard(paths)
  assert (found.path, found.record_index) == (paths[0], bad)
  assert isinstance(found, tf.errors.DataLossError)


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
@pytest.mark.parametrize("is_training", [True, False])
def test_pipeline_error_names_the_shard(tmp_path, how, is_training):
  paths = _shards(tmp_path)
  bad = _damage(paths[1], how)
  ds = pipeline.make_dataset(str(tmp_path / "d-*"), _config(),
                             is_training=is_training, global_batch_size=2)
  assert pipeline.source_files(ds) == tuple(paths)
  # Without the context manager: TensorFlow's message, no file name.
  with pytest.raises(tf.errors.DataLossError) as raw:
    for _ in ds.take(6):
      pass
  assert paths[1] not in str(raw.value)
  with pytest.raises(records.DamagedShardError, match=_names(paths[1], bad)):
    with pipeline.naming_damaged_shards(pipeline.source_files(ds)):
      for _ in ds.take(6):
        pass


def test_transient_error_says_the_shards_read_cleanly(tmp_path):
  paths = _shards(tmp_path)
  error = tf.errors.DataLossError(None, None, "corrupted record at 12")
  with pytest.raises(tf.errors.DataLossError,
                     match="corrupted record at 12 while reading 2 shard.*"
                     "every one of them reads to its end now"):
    with pipeline.naming_damaged_shards(paths):
      raise error


def test_preflight_check_finds_a_truncated_shard(tmp_path):
  paths = _shards(tmp_path)
  health.check_records_against_config(str(tmp_path / "d-*"), _config())
  bad = _damage(paths[1], "truncated")
  with pytest.raises(records.DamagedShardError, match=_names(paths[1], bad)):
    health.check_records_against_config(str(tmp_path / "d-*"), _config())


def test_resume_counts_records_and_names_a_truncated_shard(tmp_path):
  """skip_batches reads the record counts from the headers first."""
  paths = _shards(tmp_path)
  bad = _damage(paths[0], "truncated")
  with pytest.raises(records.DamagedShardError, match=_names(paths[0], bad)):
    pipeline.make_dataset(str(tmp_path / "d-*"), _config(),
                          is_training=True, global_batch_size=2,
                          skip_batches=4)


@pytest.fixture(scope="module")
def towers():
  return ef.towers_from_size("tiny", num_frames=N0, image_size=16,
                             min_resize=16)


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_feature_extraction_names_the_shard(tmp_path, towers, how):
  paths = _shards(tmp_path)
  bad = _damage(paths[1], how)
  with pytest.raises(records.DamagedShardError, match=_names(paths[1], bad)):
    ef.extract([str(tmp_path / "d-*")], str(tmp_path / "out"), towers,
               batch_size=8, progress=False)
  # A truncated shard is found by the record count before any work; a
  # corrupted one when it is read: the intact shard before it was written.
  # The damaged one left no final output.
  out = [os.path.exists(str(tmp_path / "out" / os.path.basename(p)))
         for p in paths]
  assert out == [how == "corrupted", False]
