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
(`unloc_tf.convert.reference.to_reference`), given the same
`--gin_file` / `--gin_bindings` as the conversion.  Cached-embedding widths
(e.g. 768-d ViT-B/16 frame embeddings of a 512-wide UnLoc-B) are read from
the checkpoint, and reference → unloc_tf → reference gives the same tree
bit for bit.  `--list` only prints the reference tree's names and shapes.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf.convert import reference, reference_io  # noqa: E402
from unloc_tf.launch import flags as launch_flags  # noqa: E402

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if _LIST.value:
    if not _REFERENCE.value:
      raise app.UsageError("--list needs --reference_checkpoint")
    print(reference_io.describe_reference_checkpoint(_REFERENCE.value),
          end="")
    return
  workdir = launch_flags.WORKDIR.value
  if not workdir:
    raise app.UsageError("--workdir is required")
  if not _TO_REFERENCE.value and not _REFERENCE.value:
    raise app.UsageError("--reference_checkpoint is required")
  # Only the model is built: DATA_DIR may be any string.
  experiment = launch_flags.load_experiment()
  if _TO_REFERENCE.value:
    result = reference.to_reference(experiment.model_fn(), workdir,
                                    _TO_REFERENCE.value, _HEAD_NAME.value)
  else:
    try:
      result = reference.convert(
          _REFERENCE.value, experiment.model_fn(), workdir,
          output_npz=_OUTPUT_NPZ.value, head_name=_HEAD_NAME.value,
          ignore_regex=_IGNORE.value)
    except reference.ReferenceTreeMismatch as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    experiment.write_operative_config(workdir)
    result = {k: v for k, v in result.items() if k != "loaded"}
  print(json.dumps(result, indent=1))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
