"""The launch layer: the ONLY module that imports gin and absl.flags.

Flags say where and how to run (`--workdir`, `--strategy`, `--tpu`,
`--gin_file` (repeatable, found by name among the bundled configs),
`--gin_bindings`); gin says what to build.  The library never imports gin:
gin files use `from __gin__ import dynamic_registration` and bind the
constructor arguments of the public classes and functions directly
(style_anchors.md §5).  The entry points registered here are:

  run_train     wraps `unloc_tf.train.trainer.train` (workdir and strategy
                are flags, so binding them in gin is an error)
  run_evaluate  wraps `unloc_tf.train.evaluation.evaluate`
  run_export    wraps `unloc_tf.export.saved_model.export`

After building, the operative config is written to
`<workdir>/operative_config.gin`.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Sequence, Tuple

from absl import flags, logging

import gin
from unloc_tf import config_files

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

_DENYLIST = ("workdir", "strategy")


def resolve_gin_files(names: Sequence[str]) -> list[str]:
  """Names or paths → paths (bundled configs found by name)."""
  return [config_files.find(n) for n in names]


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
              finalize: bool = True) -> None:
  """Parses gin files (by name or path) then bindings; later ones win."""
  for path in config_files.search_paths():
    gin.add_config_file_search_path(path)
  gin.parse_config_files_and_bindings(
      resolve_gin_files(gin_files), list(gin_bindings),
      finalize_config=finalize)


def write_operative_config(workdir: str, name: str = "operative_config.gin"
                           ) -> str:
  """Writes the operative gin config (what actually ran) to the workdir."""
  os.makedirs(workdir, exist_ok=True)
  path = os.path.join(workdir, name)
  with open(path, "w") as f:
    f.write(gin.operative_config_str())
  return path


def entry_point(fn: Callable) -> Callable:
  """The gin-configured version of an entry function.

  The gin files bind it by its module path (dynamic registration, e.g.
  `trainer.train.total_steps = 100`); flag-owned arguments (`workdir`,
  `strategy`) may not be bound in gin.
  """
  bound = gin.get_bindings(fn)
  clash = sorted(set(bound) & set(_DENYLIST))
  if clash:
    raise ValueError(
        f"{clash} of {fn.__module__}.{fn.__name__} are set by flags"
        " (--workdir, --strategy), not by gin bindings")
  return gin.get_configurable(fn)


def run(entry: Callable, *, needs_strategy: bool = True,
        workdir: Optional[str] = None, parse: bool = True, **kwargs):
  """Parses the gin flags (unless done) and calls a gin-configured entry."""
  if parse:
    parse_gin(GIN_FILES.value, GIN_BINDINGS.value)
  workdir = workdir or WORKDIR.value
  if not workdir:
    raise flags.ValidationError("--workdir is required")
  logging.info("gin config:\n%s", gin.config_str())
  kwargs["workdir"] = workdir
  if needs_strategy:
    from unloc_tf.train import strategy as strategy_lib  # noqa: PLC0415
    kwargs["strategy"] = strategy_lib.make_strategy(STRATEGY.value, TPU.value)
  result = entry_point(entry)(**kwargs)
  write_operative_config(workdir)
  return result


def check_training_records() -> None:
  """Before training: the train records agree with the config (classes,
  fps, frame counts, labels); raises with a message naming what differs."""
  from unloc_tf.data import pipeline  # noqa: PLC0415
  from unloc_tf.train import health  # noqa: PLC0415

  with gin.config_scope("train"):
    bound = gin.get_bindings(pipeline.make_dataset)
  if "file_pattern" in bound and "config" in bound:
    health.check_records_against_config(bound["file_pattern"],
                                        bound["config"])


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
