r"""Runs a trained UnLoc on video files: scored segments (JSON) and timelines.

  python tools/predict.py --workdir=/tmp/w_mr --video=/data/cooking.mp4 \
      --query="a person cuts an onion" --query="someone washes the pan" \
      --output_dir=/tmp/pred
  python tools/predict.py --saved_model=/tmp/serving/unloc_tal \
      --videos_dir=/data/clips --class_names=classes.txt \
      --task=temporal_localization --output_dir=/tmp/pred

The model: `--workdir` (its checkpoint; the config is `--gin_file` +
`--gin_bindings`, else the operative_config.gin the training wrote) or
`--saved_model` (an exported version directory or its base path).  Every
video goes the evaluation path (`unloc_tf.predict`), so the detections
equal tools/evaluate.py on records built from the same file.  Writes, per
video, <output_dir>/<name>.json (scored segments in seconds, best first) and
<name>.png (a timeline of the --top_k best; needs matplotlib, else one line
says what to install and only the JSONs are written).

Each video is predicted and written on its own (`predict.predict_videos`):
one that cannot be decoded is reported ("FAILED: <video>: <reason>") and
skipped; a video whose outputs exist is skipped (rerun after a kill to
finish; --overwrite redoes them); outputs are written under a temporary
name and renamed.  The last line counts done / skipped / failed videos; the
exit status is 1 when any failed.

Long videos (--chunking, default auto): a video whose whole-video tokens
would be more than 2 s apart is cut into windows of --window_frames stored
frames (default N0) overlapping by --window_overlap (default 0.25), decoded
and run window by window (memory flat in the video's length), and the
windows' detections are merged in video time; --chunking=off samples N0
frames over every whole video, --chunking=on cuts every video longer than a
window.
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

from unloc_tf import predict  # noqa: E402
from unloc_tf.launch import flags as launch_flags  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_multi_string("video", [], "A video file (repeatable).")
  flags.DEFINE_string("videos_dir", None, "Every video file in this folder.")
  flags.DEFINE_enum("task", None, list(predict.TASKS), "The task (default:"
                    " the model's; must match it).")
  flags.DEFINE_multi_string("query", [], "MR / HD query (repeatable).")
  flags.DEFINE_string("class_names", None, "TAL / AS class names: a comma"
                      " list or a classes.txt file (default: the model's).")
  flags.DEFINE_string("checkpoint", "latest", "With --workdir: latest, best"
                      " or a checkpoint path prefix.")
  flags.DEFINE_string("saved_model", None, "An exported SavedModel (a"
                      " version directory or its base path).")
  flags.DEFINE_enum("signature", "serving_default", list(predict.SIGNATURES),
                    "SavedModel signature to call.")
  flags.DEFINE_float("fps", None, "Stored frames per second (default: the"
                     " model's records').")
  flags.DEFINE_integer("short_side", None, "Short side of the decoded frames"
                       " (default: the config's min_resize).")
  flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the frames.")
  flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default:"
                       " the config's).")
  flags.DEFINE_string("output_dir", None, "Where <video>.json and"
                      " <video>.png go.", required=True)
  flags.DEFINE_integer("top_k", 10, "Detections drawn in each PNG.")
  flags.DEFINE_float("coarse_secs", 2.0, "Warn when a model token covers"
                     " more seconds than this.")
  flags.DEFINE_bool("plot", True, "Write the timeline PNGs.")
  flags.DEFINE_bool("overwrite", False, "Predict videos whose outputs exist"
                    " too (default: skip them).")
  launch_flags.define_chunking_flags("auto")


def _check_model_flags() -> None:
  if bool(launch_flags.WORKDIR.value) == bool(FLAGS.saved_model):
    raise ValueError("give exactly one of --workdir and --saved_model")


def _predictor() -> predict.Predictor:
  """The model (made at the first video to predict)."""
  _check_model_flags()
  workdir = launch_flags.WORKDIR.value
  common = dict(gin_files=launch_flags.GIN_FILES.value,
                gin_bindings=launch_flags.GIN_BINDINGS.value, task=FLAGS.task,
                class_names=launch_flags.parse_class_names(FLAGS.class_names),
                batch_size=FLAGS.batch_size, chunking=launch_flags.chunking())
  if workdir:
    return predict.Predictor.from_workdir(workdir, checkpoint=FLAGS.checkpoint,
                                          **common)
  return predict.Predictor.from_saved_model(FLAGS.saved_model,
                                            signature=FLAGS.signature, **common)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  _check_model_flags()  # now: a rerun may need no model
  paths = predict.list_videos(FLAGS.video, FLAGS.videos_dir)
  summary = predict.predict_videos(
      _predictor, paths, FLAGS.output_dir, queries=FLAGS.query,
      fps=FLAGS.fps, short_side=FLAGS.short_side,
      jpeg_quality=FLAGS.jpeg_quality, coarse_secs=FLAGS.coarse_secs,
      top_k=FLAGS.top_k, plot=FLAGS.plot, overwrite=FLAGS.overwrite)
  print(f"predict.py: {summary.line()}", flush=True)
  if summary.failed:
    sys.exit(1)


def run():
  _define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
