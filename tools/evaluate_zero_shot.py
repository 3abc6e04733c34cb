r"""Zero-shot TAL evaluation over class splits: mean ± std (paper Table 6).

Usage:
  python tools/evaluate_zero_shot.py --ground_truth=GT.json \
      --splits=/tmp/anet_zero_shot_75_25.json \
      --predictions=/preds/split_{split}.json --output=/tmp/zs_metrics.json

--predictions is a pattern with `{split}` replaced by the split index; each
file is an ActivityNet results JSON of the model trained on that split's
seen classes.  Prints mean ± std of mAP@0.5, @0.75, @0.95 and the average
mAP over the splits (on each split's unseen classes).
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

from unloc_tf.datasets import activitynet  # noqa: E402
from unloc_tf.metrics import formats, zero_shot  # noqa: E402


def _define_flags() -> None:
  flags.DEFINE_string("ground_truth", None, "ActivityNet GT (any layout).",
                      required=True)
  flags.DEFINE_string("subset", None, "GT subset (e.g. validation).")
  flags.DEFINE_string("splits", None, "JSON of make_zero_shot_splits.py.",
                      required=True)
  flags.DEFINE_string("predictions", None,
                      "Results JSON pattern with {split}.", required=True)
  flags.DEFINE_string("output", None, "Where to write the metrics JSON.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  gt, _ = activitynet.read_activitynet(f.ground_truth, subset=f.subset)
  with open(f.splits) as fh:
    splits = json.load(fh)["splits"]
  preds = [formats.read_activitynet_results(f.predictions.format(split=i))
           for i in range(len(splits))]
  result = zero_shot.evaluate_splits(gt, preds, splits)
  summary = zero_shot.format_mean_std(result["aggregate"], scale=100.0)
  for key in ("mAP@0.50", "mAP@0.75", "mAP@0.95", "average_mAP"):
    print(f"{key:>12}: {summary[key]}")
  if f.output:
    with open(f.output, "w") as fh:
      json.dump(result, fh, indent=2)


def run():
  _define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
