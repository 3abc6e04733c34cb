"""The flags every tool shares: where and how to run, and which experiment.

Flags say where and how (`--workdir`, `--strategy`, `--tpu`); gin says what
(`--gin_file`, repeatable, found by name among the bundled configs, then
`--gin_bindings`).  Only the tools import this module: importing
`unloc_tf.launch` from a library or a notebook defines no flags.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Optional, Tuple

from absl import flags

if TYPE_CHECKING:  # imported when loading: flags stay light
  from unloc_tf.launch import experiment as experiment_lib

WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, summaries"
                              " and results go.")
STRATEGY = flags.DEFINE_enum(
    "strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy (multi_worker reads TF_CONFIG).")
TPU = flags.DEFINE_string("tpu", None, "TPU name or address (--strategy=tpu).")
GIN_FILES = flags.DEFINE_multi_string(
    "gin_file", [], "Gin files, applied in order; a bundled config can be"
    " named relative to gin/ (e.g. experiments/synthetic_mr).")
GIN_BINDINGS = flags.DEFINE_multi_string(
    "gin_bindings", [], "Gin bindings applied after the files, e.g."
    " \"TRAIN_STEPS = 100\".")


def load_experiment(use_workdir_config: bool = False,
                    class_names=None) -> experiment_lib.Experiment:
  """The experiment of `--gin_file` + `--gin_bindings` (with
  `use_workdir_config`, `<workdir>/operative_config.gin` when no
  `--gin_file` is given)."""
  from unloc_tf.launch import experiment as experiment_lib  # noqa: PLC0415

  files = GIN_FILES.value
  if use_workdir_config:
    files = experiment_lib.workdir_gin_files(files, WORKDIR.value)
  return experiment_lib.load_experiment(files, GIN_BINDINGS.value,
                                        class_names=class_names)


def required_workdir() -> str:
  if not WORKDIR.value:
    raise flags.ValidationError("--workdir is required")
  return WORKDIR.value


def make_strategy():
  """The `tf.distribute` strategy of `--strategy` / `--tpu`."""
  from unloc_tf.train import strategy as strategy_lib  # noqa: PLC0415

  return strategy_lib.make_strategy(STRATEGY.value, TPU.value)


def define_chunking_flags(default: str) -> None:
  """Defines --chunking, --window_frames, --window_overlap and
  --window_overlap_frames (the tools that run a model on long videos)."""
  flags.DEFINE_enum(
      "chunking", default, ["auto", "on", "off"],
      "Long videos in windows of stored frames (unloc_tf.data.chunks): 'auto'"
      " cuts a video whose whole-video tokens would be more than 2 s apart,"
      " 'on' every video longer than a window, 'off' none (whole-video"
      " linspace sampling, the paper's protocol).")
  flags.DEFINE_integer("window_frames", None, "Stored frames per window"
                       " (default: the model's N0; at least N0).")
  flags.DEFINE_float("window_overlap", 0.25, "Overlap of consecutive windows,"
                     " a fraction of the window in [0, 1).")
  flags.DEFINE_integer("window_overlap_frames", None, "The overlap in stored"
                       " frames (< the window); overrides --window_overlap.")


def chunking():
  """The `data.chunks.Chunking` of the flags of `define_chunking_flags`."""
  from unloc_tf.data import chunks  # noqa: PLC0415

  f = flags.FLAGS
  return chunks.Chunking(mode=f.chunking, window_frames=f.window_frames,
                         overlap=f.window_overlap,
                         overlap_frames=f.window_overlap_frames)


def parse_class_names(value: Optional[str]) -> Optional[Tuple[str, ...]]:
  """A `--class_names` flag: a classes.txt file (one per line) or a comma
  list; None when empty."""
  from unloc_tf.data import pipeline  # noqa: PLC0415

  if not value:
    return None
  if os.path.isfile(value):
    return pipeline.read_class_names(value)
  names = tuple(n.strip() for n in value.split(",") if n.strip())
  if not names:
    raise ValueError(f"--class_names={value!r} names no class")
  return names
