"""The record builder on Apache Beam: the same shards, any runner.

`convert_with_beam(opts, beam_options)` writes exactly what
`builder.convert(opts)` writes (byte-identical shards, the same parts,
class lists and report), with the videos decoded by a Beam pipeline instead
of local processes, so a dataset of hundreds of thousands of videos is
converted by Dataflow, Flink or Spark workers (`unloc_tf.data.beam` for the
options).  The driver plans (`builder.plan`: reads the annotations, lists
the videos, resumes finished shards); the pipeline

  shard ids --ReadPlan--> (shard, index, video item) --Reshuffle-->
  --ConvertVideo--> (shard, (index, counts)) --GroupByKey--> --WriteShard-->

decodes each video with `video_records.convert_video` (the multiprocess
path's code) into a per-video TFRecord file under
`<output_dir>/<split>.beam/`, then concatenates a shard's video files in
index order (TFRecord files are framed record by record, so the
concatenation is the file one writer makes) and publishes it with its part,
as the multiprocess path does.  A bad video is a report entry, never a
failed pipeline.  A preempted run loses nothing finished: a rerun skips the
published shards and the videos whose file exists.  Paths may be URLs
(gs://...): every file goes through `tf.io.gfile`.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from typing import Dict, Iterable, Iterator, Tuple

import tensorflow as tf

from unloc_tf.data import beam as beam_lib
from unloc_tf.datasets import builder, common
from unloc_tf.datasets.video_records import Params, convert_video

# Bytes per read when concatenating video files into a shard.
_CHUNK = 16 << 20


def _work_dir(opts: builder.Options) -> str:
  return os.path.join(opts.output_dir, opts.split + ".beam")


def _shard_dir(work_dir: str, k: int, key: str) -> str:
  """Per-shard work folder; the fingerprint in its name keeps a changed
  shard from reusing another conversion's videos."""
  return os.path.join(work_dir, f"{k:05d}-{key[:16]}")


def _read(path: str) -> bytes:
  with tf.io.gfile.GFile(path, "rb") as f:
    return f.read()


def _read_plan(k: int, shard_dir: str
               ) -> Iterator[Tuple[int, int, common.VideoItem]]:
  """(shard, index, item) of every video of shard k."""
  items = pickle.loads(_read(os.path.join(shard_dir, "items.pkl")))
  for j, item in enumerate(items):
    yield k, j, item


def _convert_one(element: Tuple[int, int, common.VideoItem], params: Params,
                 shard_dirs: Dict[int, str]) -> Tuple[int, Tuple[int, dict]]:
  """Decodes one video into `<shard dir>/<index>.tfrecord` (+ its counts in
  `<index>.json`); an existing pair (an earlier, preempted run) is reused."""
  k, j, item = element
  base = os.path.join(shard_dirs[k], f"{j:07d}")
  if tf.io.gfile.exists(base + ".json") and tf.io.gfile.exists(
      base + ".tfrecord"):
    return k, (j, json.loads(_read(base + ".json")))
  res = convert_video(item, params)
  with tf.io.TFRecordWriter(base + ".tfrecord.incomplete") as writer:
    for data in res.serialized:
      writer.write(data)
  tf.io.gfile.rename(base + ".tfrecord.incomplete", base + ".tfrecord",
                     overwrite=True)
  counts = builder.video_counts(res)
  builder.atomic_write(base + ".json", json.dumps(counts).encode())
  return k, (j, counts)


def _write_shard(element: Tuple[int, Iterable[Tuple[int, dict]]],
                 targets: Dict[int, dict]) -> int:
  """Concatenates shard k's video files in index order and publishes it."""
  k, videos = element
  target = targets[k]
  videos = sorted(videos, key=lambda v: v[0])
  if [j for j, _ in videos] != list(range(target["part"]["videos"])):
    raise RuntimeError(f"shard {k}: got videos {[j for j, _ in videos]},"
                       f" expected {target['part']['videos']}")
  part = json.loads(json.dumps(target["part"]))  # a copy
  tmp = target["path"] + ".incomplete"
  with tf.io.gfile.GFile(tmp, "wb") as out:
    out.write(b"")  # creates the file, even for a shard without records
    for j, counts in videos:
      with tf.io.gfile.GFile(os.path.join(target["dir"], f"{j:07d}.tfrecord"),
                             "rb") as f:
        while chunk := f.read(_CHUNK):
          out.write(chunk)
      builder.add_counts(part, counts)
  builder.commit_shard(target["part_path"], target["path"], part, tmp)
  tf.io.gfile.rmtree(target["dir"])
  return k


def convert_with_beam(opts: builder.Options, beam_options: str = "") -> dict:
  """`builder.convert(opts)` with the videos decoded by a Beam pipeline.

  Args:
    opts: the conversion (its `num_workers` and `progress` are not used:
      the runner decides the parallelism and shows the progress).
    beam_options: `--beam_pipeline_options` (`unloc_tf.data.beam`).

  Returns:
    The report (as `builder.convert`).

  Raises:
    ImportError: Apache Beam is not installed (with what to install).
    ValueError / FileNotFoundError / formats.FormatError: as
      `builder.convert`, before the pipeline starts.
  """
  beam = beam_lib.import_beam()
  args = beam_lib.pipeline_args(beam_options)
  conv = builder.plan(opts)
  skipped = opts.num_shards - len(conv.todo)
  work_dir = _work_dir(opts)
  for k in [k for k in conv.todo if not conv.shard_items[k]]:
    # More shards than videos: nothing reaches the pipeline for these.
    with tf.io.TFRecordWriter(conv.paths[k] + ".incomplete"):
      pass
    conv.commit(k, conv.new_part(k), conv.paths[k] + ".incomplete")
  todo = conv.todo
  shard_dirs = {k: _shard_dir(work_dir, k, conv.keys[k]) for k in todo}
  if tf.io.gfile.isdir(work_dir):  # left by a run with other inputs
    current = {os.path.basename(d) for d in shard_dirs.values()}
    for entry in tf.io.gfile.listdir(work_dir):
      entry = entry.rstrip("/")
      if entry[:5].isdigit() and int(entry[:5]) in shard_dirs and (
          entry not in current):
        tf.io.gfile.rmtree(os.path.join(work_dir, entry))
  targets = {}
  for k in todo:
    tf.io.gfile.makedirs(shard_dirs[k])
    builder.atomic_write(os.path.join(shard_dirs[k], "items.pkl"),
                  pickle.dumps(conv.shard_items[k]))
    targets[k] = {"path": conv.paths[k], "part_path": conv.part_paths[k],
                  "dir": shard_dirs[k], "part": conv.new_part(k)}
  if todo:
    logging.info("beam: converting %d videos into %d shard(s) (%s)",
                 sum(len(conv.shard_items[k]) for k in todo), len(todo),
                 " ".join(args))
    with beam_lib.make_pipeline(beam_options) as p:
      _ = (p
           | "Shards" >> beam.Create([(k, shard_dirs[k]) for k in todo])
           | "ReadPlan" >> beam.FlatMapTuple(_read_plan)
           | "Distribute" >> beam.Reshuffle()
           | "ConvertVideo" >> beam.Map(_convert_one, conv.params,
                                        shard_dirs)
           | "ByShard" >> beam.GroupByKey()
           | "WriteShard" >> beam.Map(_write_shard, targets))
    conv.reload_parts(todo)
  if tf.io.gfile.exists(work_dir) and not tf.io.gfile.listdir(work_dir):
    tf.io.gfile.rmtree(work_dir)
  return conv.report(skipped)
