r"""Exports a trained UnLoc as a SavedModel for TF Serving.

  python tools/export_saved_model.py --gin_file=experiments/synthetic_tal \
      --gin_bindings="DATA_DIR='/tmp/syn'" --workdir=/tmp/w_tal \
      --export_dir=/tmp/serving/unloc_tal [--checkpoint=best]

Writes <export_dir>/<next integer version>/ (the layout TF Serving watches)
with the `serving_default` (numeric tensors) and, for text models,
`serving_text` (tf.string queries / class names) signatures, and the
operative gin config in assets.extra/.  Serve with:
  tensorflow_model_server --rest_api_port=8501 --model_name=unloc \
      --model_base_path=/tmp/serving/unloc_tal
"""

from __future__ import annotations

import os
import sys

from absl import app, flags

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

import gin  # noqa: E402
from unloc_tf import launch  # noqa: E402
from unloc_tf.data import pipeline  # noqa: E402
from unloc_tf.export import saved_model  # noqa: E402
from unloc_tf.train import (
  evaluation,  # noqa: E402
  trainer,  # noqa: E402
)

_EXPORT_DIR = flags.DEFINE_string("export_dir", None,
                                  "Base directory of the versions.")
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", "latest", "latest, best, or a checkpoint path prefix.")
_TEXT_SIGNATURE = flags.DEFINE_bool(
    "text_signature", True, "Add the tf.string signature (needs TF-Text in"
    " the serving binary, as stock TF Serving has).")


def export_from_workdir(workdir: str, export_dir: str,
                        checkpoint: str = "latest",
                        text_signature: bool = True) -> str:
  """Builds the gin-configured model, restores it, exports it."""
  bound = gin.get_bindings(trainer.train)
  model = bound["model_fn"]()
  with gin.config_scope("eval"):
    data = gin.get_bindings(pipeline.make_dataset)
  config = data["config"]
  dataset = bound["eval_data_fn"]()
  batch = next(iter(dataset))
  model({k: v for k, v in batch.items() if v.dtype.name != "string"})
  step = evaluation.restore_model(model, workdir, checkpoint)
  # The prompts evaluation uses: all of them (averaged) or the chosen one.
  prompts = config.prompts
  if prompts and config.prompt_index >= 0:
    prompts = (prompts[config.prompt_index],)
  path = saved_model.export(
      model=model, export_dir=export_dir, task=config.task,
      num_frames=config.num_frames, input_mode=config.input_mode,
      image_size=config.crop_size, embedding_dim=config.embedding_dim,
      text_max_length=config.max_text_length,
      class_names=config.class_names, keep_eos=config.keep_eos,
      prompts=prompts if config.task in ("temporal_localization",
                                         "action_segmentation") else None,
      operative_config=gin.operative_config_str() or gin.config_str(),
      text_signature=text_signature and config.task != "classification")
  print(f"exported step {step} to {path}")
  return path


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  if not _EXPORT_DIR.value:
    raise app.UsageError("--export_dir is required")
  launch.parse_gin(launch.GIN_FILES.value, launch.GIN_BINDINGS.value)
  export_from_workdir(launch.WORKDIR.value, _EXPORT_DIR.value,
                      _CHECKPOINT.value, _TEXT_SIGNATURE.value)


def run():
  app.run(main)


if __name__ == "__main__":
  run()
