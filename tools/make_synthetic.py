r"""Writes the built-in synthetic benchmark (records of every task).

Usage (from the repo root; or the installed `unloc-make-synthetic`):
  python tools/make_synthetic.py --output_dir=/tmp/synthetic
  python -m tools.make_synthetic --output_dir=/tmp/syn_small --num_train=16 \
      --num_val=4 --num_test=4 --tasks=temporal_localization,moment_retrieval \
      --write_videos

Layout of the output (see `unloc_tf.data.synthetic.write_benchmark`):
  <output_dir>/<task>/<split>-0000i-of-0000N.tfrecord, classes.txt,
  zero_shot.json, summary.json; with --write_videos also videos/<vid>.mp4
  and annotations/ in the ActivityNet 1.3, ActivityNet Captions,
  Charades-STA, QVHighlights and COIN formats.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from absl import app, flags

if __package__ in (None, ""):
  # Run as a script (python tools/make_synthetic.py): import the repo's
  # unloc_tf without installing it.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf import spec  # noqa: E402
from unloc_tf.data import synthetic  # noqa: E402

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Output directory.",
                                  required=True)
_NUM_TRAIN = flags.DEFINE_integer("num_train", 240, "Train videos.")
_NUM_VAL = flags.DEFINE_integer("num_val", 40, "Validation videos.")
_NUM_TEST = flags.DEFINE_integer("num_test", 40, "Test videos.")
_SEED = flags.DEFINE_integer("seed", 0, "Master seed.")
_TASKS = flags.DEFINE_list("tasks", list(spec.TASKS),
                           f"Tasks to write, from {list(spec.TASKS)}.")
_NUM_SHARDS = flags.DEFINE_integer("num_shards", 2, "Shards per task/split.")
_WRITE_VIDEOS = flags.DEFINE_bool(
    "write_videos", False,
    "Also write mp4 videos and official-format annotation files.")
_STATE_EMBEDDINGS = flags.DEFINE_bool(
    "state_embeddings", False,
    "Also store each frame's scene embedding (synthetic.scene_embeddings:"
    " object states and their motion; image/embedding), for the"
    " cached-embedding input mode.")
_RENDER = flags.DEFINE_bool(
    "render", True,
    "Render pixels. --norender writes embedding-only records (needs"
    " --state_embeddings; far faster).")
_HD_MAX_QUERIES = flags.DEFINE_integer(
    "hd_max_queries", 1, "HD queries per video (0 = one per event).")


class _Progress:
  """A progress bar (tqdm when installed, else a carriage-return line)."""

  def __init__(self):
    try:
      import tqdm  # pylint: disable=g-import-not-at-top
      self._tqdm = tqdm.tqdm
    except ImportError:
      self._tqdm = None
    self._bars = {}
    self._t0 = time.perf_counter()

  def __call__(self, split: str, done: int, total: int) -> None:
    if self._tqdm is not None:
      bar = self._bars.get(split)
      if bar is None:
        bar = self._bars[split] = self._tqdm(total=total, desc=split,
                                             unit="video")
      bar.update(done - bar.n)
      if done == total:
        bar.close()
      return
    sys.stderr.write(f"\r{split}: {done}/{total} videos"
                     f" ({time.perf_counter() - self._t0:.1f} s)")
    if done == total:
      sys.stderr.write("\n")
    sys.stderr.flush()


def main(argv):
  del argv
  for task in _TASKS.value:
    if task not in spec.TASKS:
      raise app.UsageError(f"unknown task {task!r}; choose from {spec.TASKS}")
  config = dataclasses.replace(
      synthetic.SyntheticConfig(), num_train=_NUM_TRAIN.value,
      num_val=_NUM_VAL.value, num_test=_NUM_TEST.value, seed=_SEED.value,
      hd_max_queries=_HD_MAX_QUERIES.value or None)
  summary = synthetic.write_benchmark(
      _OUTPUT_DIR.value, config, tasks=tuple(_TASKS.value),
      num_shards=_NUM_SHARDS.value, write_videos=_WRITE_VIDEOS.value,
      progress=_Progress(), state_embeddings=_STATE_EMBEDDINGS.value,
      render=_RENDER.value)
  print(synthetic.format_summary(summary))
  print(f"written to {_OUTPUT_DIR.value}")


def run():
  """Console-script entry point."""
  cli.run(main)


if __name__ == "__main__":
  run()
