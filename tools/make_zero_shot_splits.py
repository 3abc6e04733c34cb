r"""Writes the zero-shot TAL class splits (seen / unseen) as JSON.

The paper's Table 6 protocol (after EffPrompt and STALE): train on 75% (or
50%) of the ActivityNet classes, test on the rest, over 10 random splits;
report mean ± std (`unloc_tf.metrics.zero_shot.aggregate`).

Usage (from the repo root; --class_list is a text file with one class per
line, or an ActivityNet JSON whose annotation labels are the classes):
  python tools/make_zero_shot_splits.py \
      --class_list=../shared/data/activitynet1.3/sample_detection_prediction.json \
      --seen_fraction=0.75 --num_splits=10 --seed=0 \
      --output=/tmp/anet_zero_shot_75_25.json

Output: {"class_names": [...], "seen_fraction", "num_splits", "seed",
"class_list": <path>, "splits": [{"split", "seen", "unseen", "seen_indices",
"unseen_indices"}]}; indices refer to "class_names".
"""

from __future__ import annotations

import json
import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  # Run as a script (python tools/make_zero_shot_splits.py): import the
  # repo's unloc_tf without installing it.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf.datasets import common  # noqa: E402
from unloc_tf.metrics import zero_shot  # noqa: E402


def _define_flags() -> None:
  """Defines the flags.

  Called by `run`, not at import, so importing this module defines no flags
  that could clash with another absl program's (e.g. make_synthetic's
  --seed).
  """
  flags.DEFINE_string("class_list", None,
                      "Text file (one class per line) or ActivityNet JSON.",
                      required=True)
  flags.DEFINE_float("seen_fraction", 0.75,
                     "Fraction of the classes that are seen (trained on).")
  flags.DEFINE_integer("num_splits", 10, "Number of random splits.")
  flags.DEFINE_integer("seed", 0, "Random seed.")
  flags.DEFINE_string("output", None, "Output JSON file.", required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    names = common.read_class_list(f.class_list)
    splits = zero_shot.make_splits(names, seen_fraction=f.seen_fraction,
                                   num_splits=f.num_splits, seed=f.seed)
  except (ValueError, OSError) as e:
    raise app.UsageError(str(e)) from e
  out = {
      "class_names": names,
      "seen_fraction": f.seen_fraction,
      "num_splits": f.num_splits,
      "seed": f.seed,
      "class_list": f.class_list,
      "splits": splits,
  }
  parent = os.path.dirname(os.path.abspath(f.output))
  os.makedirs(parent, exist_ok=True)
  with open(f.output, "w", encoding="utf-8") as fh:
    json.dump(out, fh, indent=1)
  print(f"{len(names)} classes, {len(splits)} splits of"
        f" {len(splits[0]['seen'])} seen / {len(splits[0]['unseen'])} unseen")
  print(zero_shot.split_summary(splits))
  print(f"written to {f.output}")


def run():
  """Console-script entry point."""
  _define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
