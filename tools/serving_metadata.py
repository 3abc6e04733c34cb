r"""Prints what TF Serving's GetModelMetadata returns for an export.

  python tools/serving_metadata.py --saved_model=/tmp/serving/unloc \
      [--model_name=unloc]

--saved_model is a version directory (<base>/<version>/) or a model base
path (its newest version, as a server with the default version policy
serves).  Prints the JSON body of
`GET /v1/models/<model_name>/versions/<version>/metadata`: every
signature's inputs and outputs with their tensor names, dtypes and declared
shapes (-1 = any size).  Fails, naming the field, when the export's
assets.extra/export_info.json disagrees with saved_model.pb.
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

from unloc_tf.export import serving_metadata  # noqa: E402

_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "A version directory or a model base path.")
_MODEL_NAME = flags.DEFINE_string(
    "model_name", "unloc", "The server's --model_name.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _SAVED_MODEL.value:
    raise app.UsageError("--saved_model is required")
  metadata = serving_metadata.model_metadata(_SAVED_MODEL.value,
                                             model_name=_MODEL_NAME.value)
  print(json.dumps(metadata, indent=1))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
