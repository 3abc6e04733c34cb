"""Feature extraction on Apache Beam's local runner: the shards `extract`
writes, with the towers saved by the driver and loaded by the worker
(`DoFn.setup`); the multi-process runner is run by the conversion test."""

import json
import os

import numpy as np
import pytest

from unloc_tf import features as ef
from unloc_tf import spec
from unloc_tf.data import pipeline, synthetic

pytest.importorskip("apache_beam")  # the beam extra (dev has it)

from unloc_tf.features import beam_extraction  # noqa: E402

NUM_FRAMES = 8


def _towers():
  towers = ef.towers_from_size("tiny", num_frames=NUM_FRAMES, image_size=32,
                               min_resize=32, text_max_length=16)
  # Distinct CLS rows (a trained model's): linspace slots.
  table = towers.image_encoder.class_embedding
  rng = np.random.default_rng(0)
  table.assign(rng.normal(size=table.shape).astype(np.float32))
  return towers


def test_towers_round_trip(tmp_path):
  towers = _towers()
  towers.save(str(tmp_path))
  loaded = ef.Towers.load(str(tmp_path))
  frames = np.random.default_rng(1).uniform(
      0, 255, (1, NUM_FRAMES, 32, 32, 3)).astype(np.float32)
  np.testing.assert_array_equal(np.asarray(towers.image_encoder(frames)),
                                np.asarray(loaded.image_encoder(frames)))
  ids = np.arange(32, dtype=np.int32).reshape(2, 16)
  np.testing.assert_array_equal(np.asarray(towers.text_encoder(ids)),
                                np.asarray(loaded.text_encoder(ids)))
  for name in ("crop_size", "min_resize", "num_frames", "text_max_length",
               "text_pooling", "source"):
    assert getattr(loaded, name) == getattr(towers, name)


def test_beam_writes_the_shards_of_extract(tmp_path):
  data = str(tmp_path / "syn")
  synthetic.write_benchmark(
      data, synthetic.SyntheticConfig(num_train=1, num_val=1, num_test=3,
                                      min_duration=4, max_duration=6,
                                      frame_size=32),
      tasks=(spec.MR,), num_shards=3, zero_shot_records=False)
  files = [pipeline.split_pattern(data, "test", spec.MR)]
  towers = _towers()
  kwargs = dict(batch_size=4, text_embeddings=True)
  ref = ef.extract(files, str(tmp_path / "ref"), towers, progress=False,
                   **kwargs)
  out = str(tmp_path / "beam")
  got = beam_extraction.extract_with_beam(files, out, towers,
                                          "", **kwargs)
  assert sorted(map(os.path.basename, got["written"])) == sorted(
      map(os.path.basename, ref["written"]))
  assert len(got["written"]) == 3
  for path in ref["written"]:
    with open(path, "rb") as a, open(os.path.join(
        out, os.path.basename(path)), "rb") as b:
      assert a.read() == b.read(), path
  assert got["inexact_records"] == ref["inexact_records"]
  assert got["cls_slots"] == ref["cls_slots"] == "linspace"
  with open(os.path.join(out, ef.MANIFEST_NAME)) as f:
    manifest = json.load(f)
  assert manifest["embedding_dim"] == got["embedding_dim"]
  assert sorted(os.listdir(out)) == sorted(
      [ef.MANIFEST_NAME] + [os.path.basename(p) for p in ref["written"]])

  # Resume: existing outputs are skipped, a lost one is rewritten the same.
  os.remove(got["written"][0])
  again = beam_extraction.extract_with_beam(files, out, towers, "", **kwargs)
  assert again["written"] == got["written"][:1]
  assert len(again["skipped"]) == 2
  with open(ref["written"][0], "rb") as a, open(got["written"][0], "rb") as b:
    assert a.read() == b.read()
