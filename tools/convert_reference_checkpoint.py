r"""Converts a Scenic (Flax) UnLoc checkpoint into unloc_tf weights.

  python tools/convert_reference_checkpoint.py \
      --gin_file=experiments/activitynet_tal_base_16 \
      --gin_bindings="DATA_DIR='/unused'" \
      --reference_checkpoint=/ckpts/unloc_anet_b16/checkpoint_14000 \
      --workdir=/tmp/w_converted [--output_npz=/tmp/anet_b16.weights.npz]

The gin experiment says which model to build (task, size, pyramid, heads,
text mode, ...: the same files as tools/train.py); the reference checkpoint
must be the same architecture.  `--reference_checkpoint` is a flat .npz of
"/"-joined reference names, a Flax msgpack file (`flax.serialization.
to_bytes`, Scenic's `checkpoint_<step>`), a directory of such files (the
largest step is read) or an orbax checkpoint directory (needs
orbax-checkpoint installed).  The parameter tree is found at the top level
or under `params/`, `optimizer/target/` or `target/`.

The conversion is all or nothing: a checkpoint whose names do not map
completely onto the model (reference names without a model variable, model
variables without a reference value, shape mismatches) is refused with the
full lists, and nothing is written.  `--ignore_regex` drops reference names
on purpose (e.g. the heads of other tasks).

Output, in `--workdir`: `checkpoints/ckpt-0` (model weights with the
variable-path index), which `tools/export_saved_model.py --workdir=...`
and `tools/evaluate.py --workdir=...` restore as "latest", and which a
training run uses with
`--gin_bindings="trainer.train.init_checkpoint='<workdir>/checkpoints'"`
(in another workdir); `operative_config.gin`; `conversion.json` (what was
loaded).  `--output_npz` also writes {variable.path: array}
(`unloc_tf.train.checkpoints.load_weights_npz`).

The inverse: `--to_reference=out.npz|out.msgpack` restores the model from
`--workdir`'s latest checkpoint and writes the reference-named tree
(`reference_params.export_reference_tree`).  `--list` only prints the
reference tree's names and shapes.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  from tools import reference_params  # noqa: E402
else:
  from . import reference_params  # noqa: E402

import tensorflow as tf  # noqa: E402

import gin  # noqa: E402
from unloc_tf import launch  # noqa: E402
from unloc_tf.train import checkpoints, trainer  # noqa: E402

_REFERENCE = flags.DEFINE_string(
    "reference_checkpoint", None, "Reference parameters: .npz, Flax msgpack"
    " file, directory of checkpoint_<step> files, or orbax directory.")
_OUTPUT_NPZ = flags.DEFINE_string(
    "output_npz", None, "Also write the converted weights as a flat .npz of"
    " Keras variable paths.")
_HEAD_NAME = flags.DEFINE_string(
    "head_name", None, "Reference head subtree to read (default"
    " '<task>_head' of the gin model's task).")
_IGNORE = flags.DEFINE_string(
    "ignore_regex", None, "Reference names matching this regex are dropped"
    " before matching.")
_TO_REFERENCE = flags.DEFINE_string(
    "to_reference", None, "Inverse direction: write the reference-named"
    " tree of the model restored from --workdir to this .npz / msgpack.")
_LIST = flags.DEFINE_bool(
    "list", False, "Print the reference tree's names and shapes and exit.")


def build_model(reference_shapes=None):
  """The gin-configured task model (trainer.train.model_fn), built.

  Only the model function's bindings are evaluated (not the datasets' or
  the evaluator's), so no data is needed: `DATA_DIR` may be any string.
  """
  try:
    ref = gin.query_parameter("trainer.train.model_fn")
  except ValueError as e:
    raise ValueError("the gin config binds no trainer.train.model_fn: pass"
                     " an experiment with --gin_file") from e
  if isinstance(ref, gin.config.ConfigurableReference) and not ref.evaluate:
    model_fn = ref.scoped_configurable_fn
  else:
    model_fn = gin.get_bindings(trainer.train)["model_fn"]
  model = model_fn()
  return reference_params.build_task_model(model, reference_shapes)


def convert(reference_checkpoint: str, workdir: str,
            output_npz: str | None = None, head_name: str | None = None,
            ignore_regex: str | None = None) -> dict:
  """Reads, maps and writes; returns the conversion report.

  Raises:
    reference_params.ReferenceTreeMismatch: the checkpoint does not map
      completely onto the gin model (nothing is written).
    FileExistsError: `workdir` already has checkpoints.
  """
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if tf.train.latest_checkpoint(ckpt_dir):
    raise FileExistsError(
        f"{ckpt_dir} already holds a checkpoint; convert into an empty"
        " --workdir")
  tree = reference_params.read_reference_tree(reference_checkpoint)
  shapes = {k: v.shape for k, v in tree.items()}
  model = build_model(shapes)
  report = reference_params.import_reference_tree(
      model, tree, head_name=head_name, ignore_regex=ignore_regex,
      source=reference_checkpoint)
  saver = checkpoints.Checkpointer(ckpt_dir, model)
  prefix = saver.save(0)
  if output_npz:
    checkpoints.save_weights_npz(model, output_npz)
  launch.write_operative_config(workdir)
  summary = {
      "reference_checkpoint": os.path.abspath(reference_checkpoint),
      "task": reference_params.task_of(model),
      "model": model.name,
      "checkpoint": prefix,
      "output_npz": output_npz,
      "num_parameters": int(sum(v.size for v in tree.values())),
      **report,
  }
  with open(os.path.join(workdir, "conversion.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def to_reference(workdir: str, output: str,
                 head_name: str | None = None) -> dict:
  """Writes the reference-named tree of the model in `workdir`."""
  model = build_model()
  report = checkpoints.restore_partial(
      model, os.path.join(workdir, "checkpoints"), adapt_shapes=False)
  if report["missing"] or report["unused"]:
    raise ValueError(
        f"{workdir}/checkpoints does not match the gin model: missing"
        f" {report['missing']}, unused {report['unused']}")
  tree = reference_params.export_reference_tree(model, head_name)
  reference_params.write_reference_tree(output, tree)
  return {"output": output, "num_names": len(tree)}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _LIST.value:
    if not _REFERENCE.value:
      raise app.UsageError("--list needs --reference_checkpoint")
    tree = reference_params.read_reference_tree(_REFERENCE.value)
    print(reference_params.describe_tree(tree), end="")
    return
  workdir = launch.WORKDIR.value
  if not workdir:
    raise app.UsageError("--workdir is required")
  launch.parse_gin(launch.GIN_FILES.value, launch.GIN_BINDINGS.value)
  if _TO_REFERENCE.value:
    result = to_reference(workdir, _TO_REFERENCE.value, _HEAD_NAME.value)
  else:
    if not _REFERENCE.value:
      raise app.UsageError("--reference_checkpoint is required")
    try:
      result = convert(_REFERENCE.value, workdir, _OUTPUT_NPZ.value,
                       _HEAD_NAME.value, _IGNORE.value)
    except reference_params.ReferenceTreeMismatch as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    result = {k: v for k, v in result.items() if k != "loaded"}
  print(json.dumps(result, indent=1))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
