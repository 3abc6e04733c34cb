r"""Trains UnLoc: flags say where and how, gin says what.

  python tools/train.py --gin_file=experiments/synthetic_mr \
      --gin_bindings="DATA_DIR='/tmp/unloc_main/data'" --workdir=/tmp/w

A job killed at any moment and started again with the same command resumes
from its last checkpoint.  The operative config is written to
<workdir>/operative_config.gin.
"""

from __future__ import annotations

import os
import sys

from absl import app

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf.launch import flags as launch_flags  # noqa: E402


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  workdir = launch_flags.required_workdir()
  experiment = launch_flags.load_experiment()
  experiment.check_training_records()
  experiment.train(workdir, launch_flags.make_strategy())


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
