"""Feature extraction on Apache Beam: `extract` with one shard per worker.

`extract_with_beam(...)` writes what `extract.extract(...)` writes (the same
output shards, byte for byte, the manifest and the class-name embeddings)
with the input shards distributed over a Beam pipeline's workers
(`unloc_tf.data.beam` for the options).  The driver plans
(`extract.prepare`: the manifest, the class-name embeddings, the shards
whose output exists) and writes the frozen towers once
(`Towers.save`, `<output_dir>/.towers/`); each worker loads them once
(`Towers.load`, in `DoFn.setup`) and runs `extract.extract_shard` on the
shards it is given.  Paths may be URLs (gs://...).
"""

from __future__ import annotations

import json
import os
from typing import Iterator, Optional, Sequence

import tensorflow as tf

from unloc_tf.data import beam as beam_lib
from unloc_tf.features.extract import (
  extract_shard,
  output_path,
  prepare,
  warn_inexact,
)
from unloc_tf.features.towers import Towers

# Importing this module needs Beam (ImportError: what to install).
beam = beam_lib.import_beam()

TOWERS_DIR = ".towers"


def extract_with_beam(input_patterns: Sequence[str], output_dir: str,
                      towers: Towers, beam_options: str = "", *,
                      batch_size: int = 64, keep_frames: bool = True,
                      text_embeddings: bool = False,
                      class_names: Optional[Sequence[str]] = None,
                      cls_slots: str = "auto",
                      overwrite: bool = False) -> dict:
  """`extract.extract(...)` on a Beam pipeline (its arguments, and
  `beam_options`: `--beam_pipeline_options`); returns the same summary.

  Raises:
    ValueError: as `extract.extract`, before the pipeline for bad input
      patterns; a bad record fails the pipeline with the shard and record.
  """
  beam_lib.pipeline_args(beam_options)  # bad options: before any work
  plan = prepare(
      input_patterns, output_dir, towers, batch_size=batch_size,
      keep_frames=keep_frames, text_embeddings=text_embeddings,
      class_names=class_names, cls_slots=cls_slots, overwrite=overwrite)
  inexact = 0
  if plan.todo:
    towers_dir = os.path.join(output_dir, TOWERS_DIR)
    towers.save(towers_dir)
    counts_dir = os.path.join(towers_dir, "inexact")
    tf.io.gfile.makedirs(counts_dir)
    fn = _ExtractShards(towers_dir, output_dir, plan.slot_mode, batch_size,
                        keep_frames, text_embeddings, counts_dir)
    with beam_lib.make_pipeline(beam_options) as p:
      _ = (p
           | "Shards" >> beam.Create(plan.todo)
           | "Distribute" >> beam.Reshuffle()
           | "Extract" >> beam.ParDo(fn))
    for path in plan.todo:
      with tf.io.gfile.GFile(os.path.join(
          counts_dir, os.path.basename(path) + ".json")) as f:
        inexact += json.load(f)["inexact"]
    tf.io.gfile.rmtree(towers_dir)
  warn_inexact(inexact, towers.num_frames)
  summary = dict(plan.summary)
  summary.update(
      written=[output_path(p, output_dir) for p in plan.todo],
      skipped=plan.skipped, inexact_records=inexact)
  return summary


class _ExtractShards(beam.DoFn):
  """Loads the towers once per worker and extracts the shards it is given."""

  def __init__(self, towers_dir: str, output_dir: str,
               slot_mode: Optional[str], batch_size: int, keep_frames: bool,
               text_embeddings: bool, counts_dir: str):
    super().__init__()
    self.towers_dir = towers_dir
    self.output_dir = output_dir
    self.slot_mode = slot_mode
    self.batch_size = batch_size
    self.keep_frames = keep_frames
    self.text_embeddings = text_embeddings
    self.counts_dir = counts_dir
    self._towers = None

  def setup(self) -> None:
    self._towers = Towers.load(self.towers_dir)

  def process(self, path: str) -> Iterator[str]:
    inexact = extract_shard(
        path, self.output_dir, self._towers, self.slot_mode,
        batch_size=self.batch_size, keep_frames=self.keep_frames,
        text_embeddings=self.text_embeddings)
    with tf.io.gfile.GFile(os.path.join(
        self.counts_dir, os.path.basename(path) + ".json"), "w") as f:
      json.dump({"inexact": inexact}, f)
    yield output_path(path, self.output_dir)
