"""InputConfig checks and the batch it describes (describe_batch)."""

import numpy as np
import pytest

from unloc_tf import spec
from unloc_tf.data import input_config

CLASSES = ("jump", "run", "swim")


def test_config_errors():
  with pytest.raises(ValueError, match="needs class_names"):
    input_config.InputConfig(task=spec.TAL, num_classes=3)
  with pytest.raises(ValueError, match="embedding_dim"):
    input_config.InputConfig(task=spec.MR, input_mode="embeddings")
  with pytest.raises(ValueError, match="task must be one of"):
    input_config.InputConfig(task="detection")
  with pytest.raises(ValueError, match="eval_windows must be"):
    input_config.InputConfig(task=spec.MR, eval_windows="middle")
  with pytest.raises(ValueError, match="3 class names but num_classes=2"):
    input_config.InputConfig(task=spec.TAL, num_classes=2,
                             class_names=CLASSES)


def test_derived_properties():
  cfg = input_config.InputConfig(task=spec.TAL, num_frames=8, num_classes=3,
                                 class_names=CLASSES, class_subset=(0, 2),
                                 num_captions_train=1, num_captions_eval=4)
  assert cfg.num_output_classes == 2
  assert cfg.pyramid_spec == spec.PyramidSpec(8)
  assert (cfg.num_captions(True), cfg.num_captions(False)) == (1, 4)


def test_describe_batch(tmp_path):
  tal = input_config.InputConfig(
      task=spec.TAL, num_frames=8, num_classes=3, class_names=CLASSES,
      prompts=("a {}.", "the {}."), prompt_index=-1, crop_size=16,
      max_text_length=5)
  train = input_config.describe_batch(tal, True, 2)
  evaluation = input_config.describe_batch(tal, False, 2)
  assert input_config.BATCH_MASK not in train
  assert evaluation.pop(input_config.BATCH_MASK) == ((2,), "int32")
  assert train[spec.FRAMES] == ((2, 8, 16, 16, 3), "uint8")
  assert train[spec.TEXT_IDS] == ((2, 3, 5), "int32")
  assert evaluation[spec.TEXT_IDS] == ((2, 2, 3, 5), "int32")  # [P, C, L]
  np.save(tmp_path / "emb.npy", np.zeros((3, 2, 7), np.float32))
  cached = input_config.InputConfig(
      task=spec.AS, num_frames=8, num_classes=3, input_mode="embeddings",
      embedding_dim=6, text_mode="embeddings",
      class_name_embeddings=str(tmp_path / "emb.npy"))
  out = input_config.describe_batch(cached, True, 1)
  assert out[spec.FRAME_EMBEDDINGS] == ((1, 8, 6), "float32")
  assert out[spec.TEXT_EMBEDDINGS] == ((1, 3, 7), "float32")
  assert out[spec.LABELS] == ((1, 8, 3), "int32")
