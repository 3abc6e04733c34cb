"""One experiment loader: gin files + bindings → what to build, train, evaluate
and export.

    exp = launch.load_experiment(["experiments/synthetic_mr"],
                                 ["DATA_DIR='/data/syn'"])
    exp.train(workdir="/tmp/w", strategy="default")
    exp.evaluate(workdir="/tmp/w", checkpoint="best")
    exp.export(workdir="/tmp/w", export_dir="/tmp/serving/mr")

The gin files bind the library's constructor arguments directly (dynamic
registration, style_anchors.md §5): `trainer.train.model_fn` (the task
builder), the `train/` and `eval/` scoped `pipeline.make_dataset` and
`pipeline.InputConfig`, `trainer.train.evaluator` and the optimiser.  This
module is the only one that reads them; tools and the `Predictor` go through
an `Experiment` and never import gin.  Gin's configuration is process-global,
so loading an experiment replaces the previous one.

Precision: `trainer.train.precision` (the PRECISION macro of
gin/runs/train.gin; unknown names are refused when the experiment loads) is
the Keras dtype policy of every model the experiment builds -- for training
(the trainer applies it), evaluation, export and prediction
(`model_fn`, `build_model`) -- set only while the model is built
(`unloc_tf.train.precision.policy_scope`), never process-wide.
"""

from __future__ import annotations

import dataclasses
import functools
import logging as std_logging
import os
import re
from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
from absl import logging

import gin
from unloc_tf.data import chunks, pipeline
from unloc_tf.launch import bindings, config_files
from unloc_tf.tasks import base
from unloc_tf.train import evaluation, health, trainer
from unloc_tf.train import precision as precision_lib

_FLAG_OWNED = ("workdir", "strategy")
_RECORD_WRITERS = ("tools/make_synthetic.py (the synthetic benchmark) or"
                   " tools/build_records.py (a public dataset)")
_REQUIRED_HINTS = {
    "DATA_DIR": " with the directory of records (tools/make_synthetic.py or"
                " tools/build_records.py write them)",
}
OPERATIVE_CONFIG = "operative_config.gin"


class _GinIncludeProbes(std_logging.Filter):
  """Drops the records of gin's resource reader ("system_path_file_exists"
  INFO, "Path not found" ERROR): gin probes an include (e.g.
  'runs/train.gin') as a package resource before the search paths, which
  then find it; a missing file still fails the parse."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    return not record.pathname.endswith(
        os.path.join("gin", "resource_reader.py"))


def parse_gin(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
              finalize: bool = True) -> None:
  """Parses gin files (by name or path) then bindings; later ones win."""
  for path in config_files.search_paths():
    gin.add_config_file_search_path(path)
  quiet = _GinIncludeProbes()
  root = std_logging.getLogger()
  root.addFilter(quiet)
  try:
    gin.parse_config_files_and_bindings(
        [config_files.find(n) for n in gin_files], list(gin_bindings),
        finalize_config=finalize)
  finally:
    root.removeFilter(quiet)


def class_name_bindings(class_names: Sequence[str]) -> list[str]:
  """Bindings that replace an experiment's class list (TAL / AS), so a
  text-conditioned model runs on any names and the training data directory
  need not exist.  NUM_CLASSES stays: a video-only head is built from it."""
  names = tuple(str(c) for c in class_names)
  return [f"CLASS_NAMES = {names!r}",
          f"eval/pipeline.InputConfig.num_classes = {len(names)}",
          "eval/pipeline.InputConfig.class_subset = None",
          "evaluation.Evaluator.class_subset = None"]


def _bound(binding: str) -> bool:
  try:
    gin.query_parameter(binding)
  except ValueError:
    return False
  return True


def _resolve(binding: str) -> Any:
  """The value bound to e.g. "trainer.train.model_fn", None when unbound; a
  reference is resolved (`@f` → f with its bindings, `@f()` → its result)."""
  if not _bound(binding):
    return None
  value = gin.query_parameter(binding)
  if isinstance(value, gin.config.ConfigurableReference):
    fn = value.scoped_configurable_fn
    return fn() if value.evaluate else fn
  return value


class Experiment:
  """A parsed gin experiment (see the module docstring).

  Args:
    gin_files: names (e.g. "experiments/synthetic_mr") or paths.
    gin_bindings: bindings applied after the files.
    class_names: replace the class list (TAL / AS; `class_name_bindings`).
  """

  def __init__(self, gin_files: Sequence[str],
               gin_bindings: Sequence[str] = (),
               class_names: Optional[Sequence[str]] = None):
    self.gin_files = list(gin_files)
    self.gin_bindings = list(gin_bindings)
    user_macros = bindings.macros_set(self.gin_bindings)
    if class_names:
      self.gin_bindings += class_name_bindings(class_names)
    gin.clear_config()
    parse_gin(self.gin_files, self.gin_bindings, finalize=False)
    bindings.check_macros_used(user_macros)
    try:
      gin.finalize()
    except ValueError as e:
      name = bindings.required_macro(e)
      if name is None:
        raise
      what = _REQUIRED_HINTS.get(name, "")
      raise ValueError(
          f"{', '.join(self.gin_files)} needs {name}: add"
          f" --gin_bindings=\"{name} = ...\"{what} (the experiment's"
          " header lists what it requires)") from None
    for name in _FLAG_OWNED:
      if _bound(f"trainer.train.{name}"):
        raise ValueError(f"trainer.train.{name} is set by a flag"
                         f" (--{name}), not by a gin binding")
    if not _bound("trainer.train.model_fn"):
      raise ValueError(f"{self.gin_files} bind no trainer.train.model_fn:"
                       " give an experiment (e.g. experiments/synthetic_tal)")
    try:
      precision_lib.check_precision(self.precision)
    except ValueError as e:
      raise ValueError(f"{e} (the gin macro PRECISION, bound to"
                       " trainer.train.precision)") from None

  # -- what the experiment builds (resolved on demand: a job that needs no
  # -- data, e.g. building the model, reads none) ----------------------------
  @property
  def task(self) -> str:
    return self.eval_config.task

  @property
  def precision(self) -> str:
    """The experiment's precision (`trainer.train.precision`, the PRECISION
    macro; "float32" when unbound): the dtype policy of every model it
    builds, for training, evaluation, export and prediction."""
    value = _resolve("trainer.train.precision")
    return precision_lib.FLOAT32 if value is None else value

  @functools.cached_property
  def train_config(self) -> pipeline.InputConfig:
    """The training pipeline's `InputConfig`."""
    with gin.config_scope("train"):
      return gin.get_configurable(pipeline.InputConfig)()

  @functools.cached_property
  def eval_config(self) -> pipeline.InputConfig:
    """The evaluation pipeline's `InputConfig`."""
    with gin.config_scope("eval"):
      return gin.get_configurable(pipeline.InputConfig)()

  @property
  def eval_batch_size(self) -> int:
    return int(_resolve("eval/pipeline.make_dataset.global_batch_size") or 1)

  @property
  def evaluator(self) -> evaluation.Evaluator:
    """The experiment's evaluator (official metrics, decoding settings)."""
    return (_resolve("trainer.train.evaluator")
            or evaluation.Evaluator(self.task))

  def model_fn(self):
    """A new, unbuilt task model (the experiment's `model_fn`), constructed
    under the experiment's precision (its layers keep that dtype policy)."""
    with precision_lib.policy_scope(self.precision):
      return _resolve("trainer.train.model_fn")()

  def build_model(self):
    """A new task model, built for the evaluation batches (no weights
    loaded; variables created by a symbolic trace, nothing computed), in
    the experiment's precision."""
    with precision_lib.policy_scope(self.precision):
      model = self.model_fn()
      config = self.eval_config
      if config.prompt_index == -1:  # one prompt's shapes build the model
        config = dataclasses.replace(config, prompt_index=0)
      shapes = {k: shape for k, (shape, dtype) in
                pipeline.describe_batch(config, False, 1).items()
                if dtype != "string"}
      model.build(shapes)
    return model

  def eval_dataset(self, chunking: Optional[chunks.Chunking] = None):
    """The evaluation dataset (`eval/pipeline.make_dataset`); with
    `chunking` (not "off"), its records cut into windows
    (`data.chunks.make_dataset`, same batch size)."""
    if chunking is None or chunking.mode == "off":
      return _resolve("trainer.train.eval_data_fn")()
    return chunks.make_dataset(
        _resolve("eval/pipeline.make_dataset.file_pattern"),
        self.eval_config, chunking, global_batch_size=self.eval_batch_size)

  def load_model(self, workdir: str, checkpoint: str = "latest"):
    """(built model with a checkpoint of `workdir` restored, its step)."""
    evaluation.checkpoint_path(workdir, checkpoint)  # fails before building
    model = self.build_model()
    step = evaluation.restore_model(model, workdir, checkpoint)
    return model, step

  # -- the jobs ----------------------------------------------------------------
  def check_records_exist(self, split: str) -> None:
    """Raises FileNotFoundError saying what to do when the `split` ("train"
    or "eval") pipeline's records are missing: a DATA_DIR that does not
    exist and one without matching shards get different messages."""
    pattern = _resolve(f"{split}/pipeline.make_dataset.file_pattern")
    patterns = [pattern] if isinstance(pattern, str) else list(pattern or ())
    for p in patterns:
      if tf.io.gfile.glob(p):
        continue
      directory = _existing_prefix(p)
      if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(
            f"the {split} records' directory {directory} does not exist:"
            f" write records there with {_RECORD_WRITERS}, or point DATA_DIR"
            " at them")
      present = sorted(tf.io.gfile.listdir(directory))
      listing = ", ".join(present[:5]) + (" ..." if len(present) > 5 else "")
      raise FileNotFoundError(
          f"no {split} records match {p} ({directory} holds"
          f" {len(present)} entries{': ' + listing if present else ''}):"
          f" write them with {_RECORD_WRITERS}, or check DATA_DIR and the"
          " split's name")

  def check_training_records(self) -> None:
    """Raises, naming the shard and field, when the training records are
    missing or disagree with the config (classes, fps, frame counts,
    labels)."""
    self.check_records_exist("train")
    with gin.config_scope("train"):
      bound = gin.get_bindings(pipeline.make_dataset)
    if "file_pattern" in bound and "config" in bound:
      health.check_records_against_config(bound["file_pattern"],
                                          bound["config"])

  def train(self, workdir: str, strategy=None) -> Dict[str, Any]:
    """`trainer.train` with the experiment's bindings; writes the operative
    config to the workdir."""
    logging.info("gin config:\n%s", gin.config_str())
    result = gin.get_configurable(trainer.train)(workdir=workdir,
                                                 strategy=strategy)
    self.write_operative_config(workdir)
    return result

  def evaluate(self, workdir: str, checkpoint: str = "latest",
               chunking: Optional[chunks.Chunking] = None
               ) -> Dict[str, Any]:
    """Official metrics of a checkpoint (`evaluation.evaluate`); a missing
    checkpoint or missing records fail before the model is built.  With
    `chunking`, long videos are evaluated in windows (`data.chunks`)."""
    evaluation.checkpoint_path(workdir, checkpoint)  # fails before building
    if chunking is not None:  # so does a bad window
      c = self.eval_config
      chunking.plan(c.task, c.num_frames, 1.0 / c.secs_per_timestep)
    self.check_records_exist("eval")
    return evaluation.evaluate(
        workdir=workdir, model_fn=self.build_model,
        eval_data_fn=lambda: self.eval_dataset(chunking),
        evaluator=self.evaluator, checkpoint=checkpoint)

  def export(self, workdir: str, export_dir: str, checkpoint: str = "latest",
             text_signature: bool = True) -> tuple[str, int]:
    """Exports a checkpoint as `<export_dir>/<version>/` with the
    evaluation's inputs, prompts and decoding; (path, step)."""
    from unloc_tf.export import saved_model  # noqa: PLC0415

    model, step = self.load_model(workdir, checkpoint)
    config = self.eval_config
    # The prompts evaluation uses: all of them (averaged) or the chosen one.
    prompts = config.prompts
    if prompts and config.prompt_index >= 0:
      prompts = (prompts[config.prompt_index],)
    path = saved_model.export(
        model=model, export_dir=export_dir, task=config.task,
        num_frames=config.num_frames, input_mode=config.input_mode,
        image_size=config.crop_size, embedding_dim=config.embedding_dim,
        text_max_length=config.max_text_length,
        class_names=config.class_names, keep_eos=config.keep_eos,
        text_mask_rule=config.text_mask_rule,
        prompts=prompts if model.text_kind == base.CLASS_NAMES else None,
        settings=self.evaluator.decode_settings,
        operative_config=self.operative_config(),
        text_signature=text_signature and model.text_kind is not None)
    return path, step

  # -- the config itself -------------------------------------------------------
  def operative_config(self) -> str:
    """The operative config (what ran so far), else the whole config."""
    return gin.operative_config_str() or gin.config_str()

  def write_operative_config(self, workdir: str) -> str:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, OPERATIVE_CONFIG)
    with open(path, "w") as f:
      f.write(gin.operative_config_str())
    return path


def _existing_prefix(pattern: str) -> str:
  """The directory part of a glob pattern before its first wildcard."""
  head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
  return os.path.dirname(head) or "."


def load_experiment(gin_files: Sequence[str], gin_bindings: Sequence[str] = (),
                    class_names: Optional[Sequence[str]] = None
                    ) -> Experiment:
  """Parses an experiment (see `Experiment`)."""
  return Experiment(gin_files, gin_bindings, class_names=class_names)


def workdir_gin_files(gin_files: Sequence[str], workdir: Optional[str]
                      ) -> list[str]:
  """The gin files given, else the workdir's operative config (written by
  training), else a clear error."""
  if gin_files:
    return list(gin_files)
  if workdir:
    path = os.path.join(workdir, OPERATIVE_CONFIG)
    if os.path.isfile(path):
      return [path]
    raise FileNotFoundError(f"{workdir} has no {OPERATIVE_CONFIG}: pass"
                            " --gin_file (+ --gin_bindings) of its config")
  raise ValueError("give --gin_file, or a --workdir with"
                   f" {OPERATIVE_CONFIG}")
