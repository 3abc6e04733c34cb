r"""Timeline plots of predictions against ground truth (the paper's Figure 3).

One PNG per video (TAL / AS) or per query (MR, HD): GT segments on top, the
--top_k best predictions below, coloured by score; QVHighlights adds a
saliency panel.  The library is `unloc_tf.visualize` (needs matplotlib, the
`[viz]` extra).

Inputs (official formats, detected from the content):
  --predictions  an ActivityNet results JSON (with --ground_truth an
                 ActivityNet GT or COIN.json), a QVHighlights submission
                 jsonl (with a QVHighlights jsonl GT) or our candidates jsonl
                 (GT in the file; --ground_truth, ActivityNet Captions JSON
                 or Charades-STA txt with --charades_csv, only gives the
                 durations).

Usage (from the repo root; or the installed `unloc-visualize`):
  python tools/visualize.py \
      --ground_truth=../shared/data/activitynet1.3/sample_detection_prediction.json \
      --predictions=/tmp/run/activitynet_results.json \
      --output_dir=/tmp/run/plots --top_k=5 --max_plots=20
  python tools/visualize.py \
      --ground_truth=../shared/data/qvhighlights/highlight_val_release.jsonl \
      --predictions=../shared/data/qvhighlights/sample_val_preds.jsonl \
      --output_dir=/tmp/qvh_plots --video_ids=NUsG9BgSes0_210.0_360.0
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  # Run as a script (python tools/visualize.py): import the repo's unloc_tf
  # without installing it.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

# plot_timeline: tools/predict.py's `visualize.plot_timeline`, until it
# imports unloc_tf.visualize.
from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf.visualize import (  # noqa: E402, F401
  load_items,
  plot_timeline,
  write_plots,
)


def _define_flags() -> None:
  """Defines the flags (called by `run`, not at import: importing this
  module defines no flags that could clash with another absl program's)."""
  flags.DEFINE_string("ground_truth", None,
                      "GT file: ActivityNet JSON (official / results layout /"
                      " BSN), COIN.json, QVHighlights jsonl, ActivityNet"
                      " Captions JSON or Charades-STA txt.")
  flags.DEFINE_string("predictions", None,
                      "ActivityNet results JSON, QVHighlights submission"
                      " jsonl or candidates jsonl.", required=True)
  flags.DEFINE_string("output_dir", None, "Where the PNGs go.",
                      required=True)
  flags.DEFINE_list("video_ids", None, "Only these videos (comma-separated).")
  flags.DEFINE_integer("top_k", 5, "Predicted segments per plot.")
  flags.DEFINE_integer("max_plots", 50, "At most this many PNGs (0 = all).")
  flags.DEFINE_string("charades_csv", None,
                      "Charades_v1_*.csv (video lengths) for a Charades-STA"
                      " --ground_truth.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  if f.top_k < 1:
    raise app.UsageError(f"--top_k must be >= 1, got {f.top_k}")
  items = load_items(f.ground_truth, f.predictions, f.charades_csv)
  paths = write_plots(items, f.output_dir, top_k=f.top_k,
                      video_ids=f.video_ids, max_plots=f.max_plots)
  if f.video_ids and not paths:
    raise app.UsageError(f"none of --video_ids={f.video_ids} is in the"
                         " inputs")
  print(f"wrote {len(paths)} plot(s) of {len(items)} item(s) to"
        f" {f.output_dir}")


def run():
  """Console-script entry point."""
  _define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
