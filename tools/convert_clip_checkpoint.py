r"""Converts a pretrained CLIP checkpoint into unloc_tf initial weights.

  python tools/convert_clip_checkpoint.py \
      --source=/ckpts/clip-vit-base-patch16 --output_dir=/ckpts/clip_b16_unloc
  python tools/convert_clip_checkpoint.py --source=/ckpts/ViT-B-16.pt \
      --model_size=base_16 --output_dir=/ckpts/clip_b16_unloc

`--source` is a Hugging Face `CLIPModel` directory (`model.safetensors` or
`pytorch_model.bin` + `config.json` [+ `vocab.json`, `merges.txt`]) or an
OpenAI / OpenCLIP `.pt` (a torch.save state dict, zip or legacy, or one of
OpenAI's TorchScript files).  Nothing is downloaded and torch is not needed;
a `.pt` naming any global but torch's tensor-rebuild functions is refused
before anything runs.  Heads come from config.json, `--model_size`
(base_16, large_14) or `--vision_heads`/`--text_heads`, else width / 64.
All or nothing: unmapped or missing names refuse the conversion, listed
(`--ignore_regex` drops names on purpose).  See `unloc_tf.convert.clip`.

Output, in `--output_dir`:
  checkpoints/ckpt-0*  train from it with
      --gin_bindings="trainer.train.init_checkpoint='<output_dir>/checkpoints'"
      (restore_partial: copies the towers and projections by variable path,
      fits the CLS table / positions / text length to the trained model, and
      leaves fusion and heads at their initialisation);
  clip_weights.npz  {variable path: array}, for
      `unloc_tf.train.checkpoints.load_weights_npz`;
  conversion.json  what was read and written;
  vocab.json, merges.txt, ...  copied from a Hugging Face directory (an
      OpenAI .pt has none: OpenAI's models use the CLIP vocabulary that
      unloc_tf ships and TextTokenizer uses by default).
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

from unloc_tf.convert import clip, clip_checkpoint, torch_pickle  # noqa: E402

_SOURCE = flags.DEFINE_string(
    "source", None, "Hugging Face CLIP directory (or its .safetensors/.bin),"
    " or an OpenAI/OpenCLIP .pt file.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where the converted weights go.", required=True)
_MODEL_SIZE = flags.DEFINE_string(
    "model_size", None, "unloc_tf model size the checkpoint must match"
    " (tiny, base_16, large_14); gives the heads of a .pt.")
_NUM_FRAMES = flags.DEFINE_integer(
    "num_frames", 128, "Rows of the per-frame CLS table (restore_partial"
    " resizes it to the trained model's anyway).")
_FRAME_TOKEN = flags.DEFINE_enum(
    "frame_token", "token", ["token", "gap"], "Frame token of the image"
    " tower ('gap' drops the CLS embedding and position row).")
_IMAGE_SIZE = flags.DEFINE_integer(
    "image_size", None, "Frame size (default: the checkpoint's); the"
    " position embedding is interpolated.")
_TEXT_MAX_LENGTH = flags.DEFINE_integer(
    "text_max_length", None, "Text positions (default: the checkpoint's);"
    " longer tables are truncated.")
_VISION_HEADS = flags.DEFINE_integer(
    "vision_heads", None, "Image tower attention heads (default: config.json,"
    " --model_size, or width / 64).")
_TEXT_HEADS = flags.DEFINE_integer(
    "text_heads", None, "Text tower attention heads (default: config.json,"
    " --model_size, or width / 64).")
_PROJECTIONS = flags.DEFINE_bool(
    "projections", True, "Write CLIP's projections as video_projection /"
    " text_projection.")
_IGNORE = flags.DEFINE_string(
    "ignore_regex", None, "Checkpoint names matching this regex are dropped"
    " before matching (else any unknown name refuses the conversion).")
_OVERWRITE = flags.DEFINE_bool(
    "overwrite", False, "Replace an existing conversion in --output_dir.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  try:
    summary = clip.convert(
        _SOURCE.value, _OUTPUT_DIR.value, model_size=_MODEL_SIZE.value,
        num_frames=_NUM_FRAMES.value, frame_token=_FRAME_TOKEN.value,
        image_size=_IMAGE_SIZE.value, text_max_length=_TEXT_MAX_LENGTH.value,
        vision_heads=_VISION_HEADS.value, text_heads=_TEXT_HEADS.value,
        projections=_PROJECTIONS.value, ignore_regex=_IGNORE.value,
        overwrite=_OVERWRITE.value)
  except (torch_pickle.UnsafePickleError, torch_pickle.TorchFileError,
          clip_checkpoint.CheckpointMismatchError, FileExistsError,
          FileNotFoundError, ValueError) as e:
    print(f"convert_clip_checkpoint: {e}", file=sys.stderr)
    return 1
  arch = summary["architecture"]
  print(f"read {summary['weights_file']} ({summary['file_format']},"
        f" {summary['layout']} names): vision {arch['vision_layers']}x"
        f"{arch['vision_width']} patch {arch['patch_size']}, text "
        f"{arch['text_layers']}x{arch['text_width']}, projection "
        f"{arch['projection_dim']}"
        + (f" (= model size {summary['matching_model_size']})"
           if summary["matching_model_size"] else ""))
  for note in summary["notes"]:
    print(f"note: {note}")
  print(f"tokenizer: {summary['tokenizer']['note']}")
  if "warning" in summary["tokenizer"]:
    print(f"warning: {summary['tokenizer']['warning']}")
  print(f"wrote {summary['num_variables']} variables to "
        f"{summary['checkpoint']} and {summary['npz']}")
  print("train from it with --gin_bindings=\"trainer.train.init_checkpoint="
        f"'{os.path.dirname(summary['checkpoint'])}'\"")
  print(json.dumps(summary["target"]))
  return 0


def run():
  cli.run(main)


if __name__ == "__main__":
  run()
