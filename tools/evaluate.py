r"""Evaluates a trained UnLoc with the official metrics.

  python tools/evaluate.py --gin_file=experiments/synthetic_mr \
      --gin_bindings="DATA_DIR='/tmp/unloc_main/data'" --workdir=/tmp/w \
      [--checkpoint=best]

Uses the same gin files as training (the eval/ input pipeline and the
evaluator); writes <workdir>/eval/metrics_<step>.json and the predictions in
the benchmark's official format.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

import gin  # noqa: E402
from unloc_tf import launch  # noqa: E402
from unloc_tf.train import (
  evaluation,  # noqa: E402
  trainer,  # noqa: E402
)

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "latest, best, or a checkpoint path prefix.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  launch.parse_gin(launch.GIN_FILES.value, launch.GIN_BINDINGS.value)
  bound = gin.get_bindings(trainer.train)
  result = evaluation.evaluate(
      workdir=launch.WORKDIR.value, model_fn=bound["model_fn"],
      eval_data_fn=bound["eval_data_fn"], evaluator=bound["evaluator"],
      checkpoint=_CHECKPOINT.value)
  print(json.dumps(result, indent=2))


def run():
  app.run(main)


if __name__ == "__main__":
  run()
