r"""Converts public annotation files + a folder of videos into TFRecord shards.

One `tf.SequenceExample` per example (the record contract of
`unloc_tf.data.schema`: JPEG frames at a fixed rate, segments as stored-frame
indices and microsecond timestamps).  The library is `unloc_tf.datasets`
(its modules' docstrings have the detailed rules).

Formats (--format; the task and the default --fps of each):
  activitynet           ActivityNet 1.3 JSON (official, results layout, or
                        BSN's with --video_info for --subset) ->
                        temporal_localization, one record per video; 10 fps.
  activitynet_captions  ActivityNet Captions JSON -> moment_retrieval, one
                        record per video; 10 fps.
  charades_sta          Charades-STA txt (--charades_csv for the lengths) ->
                        moment_retrieval, one record per video with all its
                        queries (--per_query: one per query, the
                        reference's layout); 10 fps.
  qvhighlights          QVHighlights jsonl -> highlight_detection (or
                        --task=moment_retrieval), one record per query; a
                        file without labels (highlight_test_release.jsonl)
                        gives records without targets (the query only), for
                        the leaderboard submission; 1 fps.
  coin                  COIN.json -> action_segmentation (per-frame labels),
                        one record per video; 2 fps.
  kinetics              Kinetics csv -> classification, one record per clip
                        (`<id>_<start:06d>_<end:06d>.<ext>`, or `<id>.<ext>`
                        cut to the clip); 10 fps.

Videos: `<videos_dir>/**/<id>.<ext>` (also `v_<id>`), decoded and resized
down to short side --short_side by `unloc_tf.data.video`; a smaller video is
stored at its source size, never upscaled (reported:
stored_at_source_size; --upscale resizes it up as before).

Output (`<output_dir>`): `<split>-0000i-of-0000N.tfrecord` (N =
--num_shards); classes.txt / classes.json (TAL / AS / CLS: --class_list,
else the sorted labels of the whole annotation file); `<split>.report.json`
(everything converted and every problem); `<split>.parts/` (per-shard
fingerprints, to resume).  A one-line summary is printed.

Determinism and resume: shards are a pure function of the annotations and N
(byte-identical whatever --num_workers, and on Apache Beam with
--beam_pipeline_options); a restarted command skips the finished shards.  Other inputs or options on an existing output are an error
(--overwrite rewrites every shard).

Report reasons (nothing is dropped silently): missing_video,
undecodable_video, duration_mismatch, segment_clipped,
segment_outside_video, segment_zero_length, segment_reversed, unknown_class,
empty_caption, no_segments, no_label, clip_clipped, clip_outside_video,
duplicate_annotation, stored_at_source_size.

Usage (from the repo root; or the installed `unloc-build-records`):
  python tools/build_records.py --format=activitynet \
      --annotations=activity_net.v1-3.min.json --subset=validation \
      --videos_dir=/data/anet/videos --output_dir=/data/anet/records \
      --split=val --num_shards=64 --num_workers=8
  python tools/build_records.py --format=activitynet ... \
      --beam_pipeline_options=direct_num_workers=2
  python tools/build_records.py --format=qvhighlights \
      --annotations=highlight_val_release.jsonl --videos_dir=/data/qvh \
      --output_dir=/data/qvh/records --split=val
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  # Run as a script (python tools/build_records.py): import the repo's
  # unloc_tf without installing it.
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

from unloc_tf.launch import cli  # noqa: E402

cli.import_tensorflow_quietly()

from unloc_tf import spec  # noqa: E402
from unloc_tf.datasets.builder import (  # noqa: E402
  FORMATS,
  Options,
  convert,
  summary_line,
)


def _define_flags() -> None:
  """Defines the flags (called by `run`, not at import: importing the module
  defines no flags that could clash with another program's)."""
  fps_help = "; ".join(f"{f.name} {f.fps:g} ({f.fps_source})"
                       for f in FORMATS.values())
  flags.DEFINE_enum("format", None, sorted(FORMATS),
                    "Annotation format (see the module docstring).",
                    required=True)
  flags.DEFINE_string("annotations", None, "The annotation file.",
                      required=True)
  flags.DEFINE_string("videos_dir", None,
                      "Folder searched recursively for <id>.<ext> (also"
                      " v_<id>; Kinetics <id>_<start>_<end>).", required=True)
  flags.DEFINE_string("output_dir", None, "Where the shards go.",
                      required=True)
  flags.DEFINE_string("split", "train",
                      "Output name: <split>-0000i-of-0000N.tfrecord.")
  flags.DEFINE_string("subset", None,
                      "Keep only this subset: ActivityNet / COIN 'subset'"
                      " (training, validation, testing), Kinetics 'split'"
                      " column.  Default: every entry of the file.")
  flags.DEFINE_enum("task", None, [spec.HD, spec.MR],
                    "qvhighlights only: highlight_detection (default) or"
                    " moment_retrieval.")
  flags.DEFINE_float("fps", None,
                     "Stored frames per second.  Defaults: " + fps_help + ".")
  flags.DEFINE_integer("short_side", 256,
                       "Short side of the stored frames in pixels (the"
                       " reference's min_resize; 0 = source size).  Smaller"
                       " videos are stored at their source size (never"
                       " upscaled) unless --upscale.")
  flags.DEFINE_bool("upscale", False,
                    "Also resize videos smaller than --short_side up to it.")
  flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality (1-100).")
  flags.DEFINE_integer("num_shards", 8, "Output shards N.")
  flags.DEFINE_integer("num_workers", 1,
                       "Decoding processes (1 = in this process).")
  flags.DEFINE_string("class_list", None,
                      "Fixed class list (text, one name per line; or JSON:"
                      " a list, {name: index} or an ActivityNet GT);"
                      " default: the sorted labels of the annotation file.")
  flags.DEFINE_string("charades_csv", None,
                      "charades_sta: Charades_v1_*.csv (annotated lengths,"
                      " compared with the decoded durations).")
  flags.DEFINE_bool("per_query", False,
                    "charades_sta: one record per query (example_id = its"
                    " index in the txt; the reference's layout) instead of"
                    " one per video with all its queries.")
  flags.DEFINE_string("video_info", None,
                      "activitynet, BSN layout: video_info_new.csv (needed"
                      " for --subset).")
  flags.DEFINE_float("duration_tolerance", 1.0,
                     "Report annotated vs decoded durations that differ by"
                     " more than this many seconds.")
  flags.DEFINE_string(
      "beam_pipeline_options", None,
      "Convert on Apache Beam (the beam extra) instead of local processes:"
      " Beam's pipeline flags as key=value,... without dashes, e.g."
      " 'direct_num_workers=2' (local processes) or"
      " 'runner=DataflowRunner,project=P,region=R,temp_location=gs://B/t,"
      "setup_file=./setup.py' (README: Dataset conversion on Apache Beam)."
      "  Same shards, byte for byte.")
  flags.DEFINE_bool("overwrite", False,
                    "Rewrite every shard instead of resuming.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  opts = Options(
      format=f.format, annotations=f.annotations, videos_dir=f.videos_dir,
      output_dir=f.output_dir, split=f.split, subset=f.subset, task=f.task,
      fps=f.fps, short_side=f.short_side, upscale=f.upscale,
      jpeg_quality=f.jpeg_quality, per_query=f.per_query,
      num_shards=f.num_shards, num_workers=f.num_workers,
      class_list=f.class_list, charades_csv=f.charades_csv,
      video_info=f.video_info, duration_tolerance=f.duration_tolerance,
      overwrite=f.overwrite, progress=f.progress)
  try:
    opts.check()
  except (ValueError, FileNotFoundError) as e:
    raise app.UsageError(str(e)) from e
  if f.beam_pipeline_options is None:
    print(summary_line(convert(opts)))
    return
  if f.num_workers > 1:
    raise app.UsageError("--num_workers is for the multiprocess path; on"
                         " Beam the runner sets the parallelism (e.g."
                         " direct_num_workers=2 in --beam_pipeline_options)")
  from unloc_tf.datasets import beam_conversion  # noqa: PLC0415 (optional)
  with cli.quiet_worker_processes():
    report = beam_conversion.convert_with_beam(opts, f.beam_pipeline_options)
  print(summary_line(report))


def run():
  """Console-script entry point."""
  _define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
