r"""Exports a trained UnLoc as a SavedModel for TF Serving.

  python tools/export_saved_model.py --gin_file=experiments/synthetic_tal \
      --gin_bindings="DATA_DIR='/tmp/syn'" --workdir=/tmp/w_tal \
      --export_dir=/tmp/serving/unloc_tal [--checkpoint=best]

Without --gin_file it reads <workdir>/operative_config.gin, the config
training wrote (--gin_bindings still apply on top).

Writes <export_dir>/<next integer version>/ (the layout TF Serving watches)
with the `serving_default` (numeric tensors) and, for text models,
`serving_text` (tf.string queries / class names) signatures, and in
assets.extra/ the operative gin config, export_info.json and TF Serving's
warm-up requests (tf_serving_warmup_requests).  Serve with:
  tensorflow_model_server --rest_api_port=8501 --model_name=unloc \
      --model_base_path=/tmp/serving/unloc_tal
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf.launch import flags as launch_flags  # noqa: E402

_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "Base directory of the versions.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "latest, best, or a checkpoint path prefix.")
_TEXT_SIGNATURE = flags.DEFINE_bool(
    "text_signature", True, "Add the tf.string signature (needs TF-Text in"
    " the serving binary, as stock TF Serving has).")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _EXPORT_DIR.value:
    raise app.UsageError("--export_dir is required")
  workdir = launch_flags.required_workdir()
  experiment = launch_flags.load_experiment(use_workdir_config=True)
  path, step = experiment.export(workdir, _EXPORT_DIR.value,
                                 _CHECKPOINT.value, _TEXT_SIGNATURE.value)
  print(f"exported step {step} to {path}")


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
