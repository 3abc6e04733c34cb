r"""Caches frozen image-tower frame embeddings (and text embeddings) in records.

  python tools/extract_features.py \
      --input='/data/syn/moment_retrieval/test-*.tfrecord' \
      --output_dir=/data/syn_emb/moment_retrieval \
      --gin_file=experiments/synthetic_mr \
      --gin_bindings="DATA_DIR='/data/syn'" --workdir=/tmp/w_mr \
      [--checkpoint=best] [--keep_frames=false] [--text_embeddings]
      [--beam_pipeline_options=direct_num_workers=2]

  python tools/extract_features.py --input='/data/anet/*.tfrecord' \
      --output_dir=/data/anet_emb --model_size=base_16 --frame_token=gap \
      --checkpoint=/ckpt/clip_b16.npz --batch_size=128

The towers: `--gin_file` (+ `--gin_bindings`), else `<workdir>/
operative_config.gin`, builds the training config's model (it must have an
image tower, INPUT_MODE='frames'); without gin, `--model_size` (+
`--num_frames`, `--frame_token`, `--image_size`) builds the towers alone.
Weights: with `--workdir`, its checkpoint (`--checkpoint` = latest, best or
a prefix); otherwise `--checkpoint` = a .npz of {variable path: array} (e.g.
a converted CLIP checkpoint) or an unloc_tf checkpoint prefix / directory.
What is written, the per-frame CLS slots (`--cls_slots`) and resuming:
`unloc_tf.features`.  Then train / evaluate with the cached mode, e.g.
  --gin_bindings="INPUT_MODE='embeddings'" --gin_bindings="EMBEDDING_DIM=768"
(the printed summary gives the dimensions).
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

from unloc_tf import features  # noqa: E402
from unloc_tf.launch import flags as launch_flags  # noqa: E402

FLAGS = flags.FLAGS


def _define_flags() -> None:
  flags.DEFINE_multi_string("input", None, "Glob(s) of input TFRecord"
                            " shards with JPEG frames.", required=True)
  flags.DEFINE_string("output_dir", None, "Where the output shards go.",
                      required=True)
  flags.DEFINE_string(
      "checkpoint", None, "With --workdir: latest (default), best or a"
      " checkpoint prefix. Without: a .npz of {variable path: array} or an"
      " unloc_tf checkpoint prefix / directory.")
  flags.DEFINE_enum("model_size", None, ["tiny", "base_16", "large_14"],
                    "Build the towers of this size (no gin config).")
  flags.DEFINE_integer("num_frames", 128, "--model_size: N0, rows of the"
                       " per-frame CLS table.")
  flags.DEFINE_enum("frame_token", "token", ["token", "gap"],
                    "--model_size: frame token of the image tower.")
  flags.DEFINE_integer("image_size", None, "--model_size: input side of the"
                       " image tower (default: the size's).")
  flags.DEFINE_integer("min_resize", None, "--model_size: short side before"
                       " the centre crop (default image_size * 256 / 224).")
  flags.DEFINE_integer("text_max_length", None, "--model_size: text length"
                       " L (default: the text tower's).")
  flags.DEFINE_integer("batch_size", 64, "Frames per forward pass.")
  flags.DEFINE_bool("keep_frames", True, "Keep the JPEGs (image/encoded).")
  flags.DEFINE_bool("text_embeddings", False, "Also write caption / query"
                    " embeddings (segment/label/embedding) and"
                    " class_name_embeddings.npy.")
  flags.DEFINE_string("class_names", None, "Class names to embed: a comma"
                      " list or a classes.txt file (default: the config's).")
  flags.DEFINE_enum("cls_slots", "auto", list(features.CLS_SLOT_MODES),
                    "CLS row of each frame (unloc_tf.features.embedders).")
  flags.DEFINE_string(
      "beam_pipeline_options", None,
      "Extract on Apache Beam (the beam extra), one input shard per task:"
      " Beam's pipeline flags as key=value,... without dashes, e.g."
      " 'direct_num_workers=2' (local processes) or 'runner=DataflowRunner,"
      "project=P,region=R,temp_location=gs://B/t,setup_file=./setup.py'"
      " (README: Dataset conversion on Apache Beam).  Same shards.")
  flags.DEFINE_bool("overwrite", False, "Recompute existing output shards.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def _towers() -> features.Towers:
  workdir = launch_flags.WORKDIR.value
  if FLAGS.model_size and not launch_flags.GIN_FILES.value:
    if workdir:
      raise app.UsageError("--model_size builds the towers alone: pass"
                           " --checkpoint, not --workdir")
    return features.towers_from_size(
        FLAGS.model_size, num_frames=FLAGS.num_frames,
        frame_token=FLAGS.frame_token, image_size=FLAGS.image_size,
        min_resize=FLAGS.min_resize, text_max_length=FLAGS.text_max_length,
        checkpoint=FLAGS.checkpoint)
  if not (launch_flags.GIN_FILES.value or workdir):
    raise app.UsageError("give --gin_file (or a --workdir with"
                         " operative_config.gin) or --model_size")
  experiment = launch_flags.load_experiment(use_workdir_config=True)
  if workdir:
    model, step = experiment.load_model(workdir, FLAGS.checkpoint or "latest")
    source = f"{workdir} ({FLAGS.checkpoint or 'latest'}, step {step})"
  else:
    model = experiment.build_model()
    source = features.load_tower_weights(model, FLAGS.checkpoint)
  return features.Towers.from_model(model, experiment.eval_config, source)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  options = dict(
      batch_size=FLAGS.batch_size, keep_frames=FLAGS.keep_frames,
      text_embeddings=FLAGS.text_embeddings,
      class_names=launch_flags.parse_class_names(FLAGS.class_names),
      cls_slots=FLAGS.cls_slots, overwrite=FLAGS.overwrite)
  if FLAGS.beam_pipeline_options is None:
    summary = features.extract(FLAGS.input, FLAGS.output_dir, _towers(),
                               progress=FLAGS.progress, **options)
  else:
    towers = _towers()
    from unloc_tf.features import beam_extraction  # noqa: PLC0415
    with cli.quiet_worker_processes():
      summary = beam_extraction.extract_with_beam(
          FLAGS.input, FLAGS.output_dir, towers,
          FLAGS.beam_pipeline_options, **options)
  print(f"wrote {len(summary['written'])} shard(s), skipped"
        f" {len(summary['skipped'])} existing, to {FLAGS.output_dir}")
  print(f"cached mode: --gin_bindings=\"INPUT_MODE='embeddings'\""
        f" --gin_bindings=\"EMBEDDING_DIM={summary['embedding_dim']}\"")
  if summary["text_embedding_dim"]:
    print(f"text embeddings: D = {summary['text_embedding_dim']}"
          " (segment/label/embedding"
          + (f", {summary['class_name_embeddings']}"
             if summary["class_name_embeddings"] else "") + ")")


def run():
  _define_flags()
  cli.run(main)


if __name__ == "__main__":
  run()
