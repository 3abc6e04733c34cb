r"""Evaluates a trained UnLoc with the official metrics.

  python tools/evaluate.py --gin_file=experiments/synthetic_mr \
      --gin_bindings="DATA_DIR='/tmp/unloc_main/data'" --workdir=/tmp/w \
      [--checkpoint=best]

Without --gin_file it reads <workdir>/operative_config.gin, the config
training wrote (--gin_bindings still apply on top).  Uses the training
config (its eval/ input pipeline and evaluator); writes
<workdir>/eval/metrics_<step>.json, the predictions in the benchmark's
official format and, for HD (or MR of an unlabeled split),
submission_<step>.jsonl in the QVHighlights format.  On an unlabeled split
(no ground truth: QVHighlights test, ActivityNet testing) no metric is
computed: the files are for the leaderboard.

Long videos: --chunking=auto|on evaluates them in windows of
--window_frames stored frames (default N0) overlapping by --window_overlap
(unloc_tf.data.chunks); the default, off, samples N0 frames over every whole
video as the paper does.
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

from unloc_tf.launch import flags as launch_flags  # noqa: E402

_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "latest, best, or a checkpoint path prefix.")
launch_flags.define_chunking_flags("off")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  workdir = launch_flags.required_workdir()
  experiment = launch_flags.load_experiment(use_workdir_config=True)
  result = experiment.evaluate(workdir, _CHECKPOINT.value,
                               chunking=launch_flags.chunking())
  print(json.dumps(result, indent=2))


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
