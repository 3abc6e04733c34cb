"""The frozen towers of a model and where their weights come from.

`Towers` holds a built image tower (and text tower) with the evaluation
preprocessing it expects; make it from a task model (`Towers.from_model`,
e.g. one restored from a training workdir) or from a named size and a
checkpoint (`towers_from_size`, e.g. a converted CLIP checkpoint).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Optional, Tuple

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from unloc_tf.data import pipeline
from unloc_tf.layers import clip_image_encoder
from unloc_tf.models import unloc_backbone
from unloc_tf.train import checkpoints


@dataclasses.dataclass
class Towers:
  """The frozen towers and the preprocessing they expect.

  Attributes:
    image_encoder: the `CLIPImageEncoder` (built, weights loaded).
    text_encoder: the `CLIPTextEncoder`, or None (no text tower).
    text_pooling: the backbone's text pooling ("eos", "token", "gap").
    crop_size: side of the frames the tower takes.
    min_resize: short side the pipeline resizes to before the crop.
    num_frames: N0 of the sampling the cache is made for.
    task: the config's task, or None (`--model_size` mode).
    text_max_length: L of the tokenised texts.
    keep_eos: tokenizer truncation rule (`TextTokenizer`).
    text_mask_rule: tokenizer mask rule (`TextTokenizer`).
    class_names: the config's class names, or None.
    prompts: the config's prompt templates, or None.
    source: where the weights came from (for the manifest).
  """

  image_encoder: clip_image_encoder.CLIPImageEncoder
  text_encoder: Optional[keras.layers.Layer]
  text_pooling: str
  crop_size: int
  min_resize: int
  num_frames: int
  task: Optional[str] = None
  text_max_length: int = 16
  keep_eos: bool = False
  text_mask_rule: str = "length"
  class_names: Optional[Tuple[str, ...]] = None
  prompts: Optional[Tuple[str, ...]] = None
  source: str = "random initialisation"
  # Traced embedders, reused by later `extract` calls with the same towers.
  cache: dict = dataclasses.field(default_factory=dict, repr=False,
                                  compare=False)

  @classmethod
  def from_model(cls, model, config: pipeline.InputConfig,
                 source: str = "random initialisation") -> "Towers":
    """The towers of a built task model (with an image tower) and the
    evaluation preprocessing of its input config."""
    bb = model.backbone
    if bb.image_encoder is None:
      raise ValueError(
          "the model takes cached embeddings (input_mode="
          f"{config.input_mode!r}): extract features with the frames config"
          " of the same model (INPUT_MODE='frames')")
    return cls(
        image_encoder=bb.image_encoder, text_encoder=bb.text_encoder,
        text_pooling=bb.text_pooling, crop_size=config.crop_size,
        min_resize=config.min_resize, num_frames=config.num_frames,
        task=config.task, text_max_length=config.max_text_length,
        keep_eos=config.keep_eos, text_mask_rule=config.text_mask_rule,
        class_names=config.class_names,
        prompts=config.prompts, source=source)


  def save(self, directory: str) -> None:
    """Writes the towers to `directory` (local or a `tf.io.gfile` URL):
    `towers.json` (the layers' configs and the preprocessing) and
    `towers.weights.npz` (their weights, in `layer.weights` order), so that
    another process (a Beam worker) rebuilds them with `Towers.load`."""
    info = {name: getattr(self, name) for name in _SCALARS}
    info["image_encoder"] = keras.saving.serialize_keras_object(
        self.image_encoder)
    info["text_encoder"] = (
        keras.saving.serialize_keras_object(self.text_encoder)
        if self.text_encoder is not None else None)
    arrays = {f"image/{i:04d}": np.asarray(w)
              for i, w in enumerate(self.image_encoder.get_weights())}
    if self.text_encoder is not None:
      arrays.update({f"text/{i:04d}": np.asarray(w)
                     for i, w in enumerate(self.text_encoder.get_weights())})
    buffer = io.BytesIO()  # zipfile seeks, which GFile("wb") cannot
    np.savez(buffer, **arrays)
    tf.io.gfile.makedirs(directory)
    with tf.io.gfile.GFile(os.path.join(directory, TOWERS_WEIGHTS),
                           "wb") as f:
      f.write(buffer.getvalue())
    with tf.io.gfile.GFile(os.path.join(directory, TOWERS_JSON), "w") as f:
      json.dump(info, f, indent=1)

  @classmethod
  def load(cls, directory: str) -> "Towers":
    """The towers written by `save`, with the same weights."""
    with tf.io.gfile.GFile(os.path.join(directory, TOWERS_JSON)) as f:
      info = json.load(f)
    with tf.io.gfile.GFile(os.path.join(directory, TOWERS_WEIGHTS),
                           "rb") as f:
      arrays = dict(np.load(io.BytesIO(f.read())))
    fields = {name: info[name] for name in _SCALARS}
    for name in ("class_names", "prompts"):
      if fields[name] is not None:
        fields[name] = tuple(fields[name])
    # Deserialising builds the layers (their build configs).
    image = keras.saving.deserialize_keras_object(info["image_encoder"])
    text = None
    if info["text_encoder"] is not None:
      text = keras.saving.deserialize_keras_object(info["text_encoder"])
    image.set_weights([arrays[k] for k in sorted(arrays)
                       if k.startswith("image/")])
    if text is not None:
      text.set_weights([arrays[k] for k in sorted(arrays)
                        if k.startswith("text/")])
    return cls(image_encoder=image, text_encoder=text, **fields)


# The fields `Towers.save` writes besides the layers.
_SCALARS = ("text_pooling", "crop_size", "min_resize", "num_frames", "task",
            "text_max_length", "keep_eos", "text_mask_rule", "class_names",
            "prompts", "source")
TOWERS_JSON = "towers.json"
TOWERS_WEIGHTS = "towers.weights.npz"


def load_tower_weights(model, checkpoint: Optional[str]) -> str:
  """Loads tower weights into a built model from a .npz of {variable path:
  array} (e.g. a converted CLIP checkpoint) or an unloc_tf checkpoint
  prefix / directory, by variable path with the shape adaptations of
  reference_spec.md §7.3; None keeps the random initialisation (warned).

  Returns:
    A description of the source.

  Raises:
    ValueError: when the checkpoint has no weights for the image tower.
  """
  if not checkpoint:
    logging.warning("no --workdir or --checkpoint: the towers keep their"
                    " RANDOM initialisation")
    return "random initialisation"
  if checkpoint.endswith(".npz"):
    report = checkpoints.load_weights_npz(model, checkpoint)
  else:
    report = checkpoints.restore_partial(model, checkpoint)
  missing = [p for p in report["missing"]
             if p.startswith(("image_encoder/", "text_encoder/"))]
  if any(p.startswith("image_encoder/") for p in missing):
    raise ValueError(
        f"{checkpoint}: no weights for the image tower variables"
        f" {missing[:6]}{' ...' if len(missing) > 6 else ''}: is it a"
        " checkpoint of this model size?")
  if missing:
    logging.warning("%s: text tower variables not in the checkpoint (kept"
                    " at their initial values): %s", checkpoint, missing)
  logging.info("loaded %d variables (%d adapted) from %s",
               len(report["loaded"]), len(report["adapted"]), checkpoint)
  return checkpoint


def towers_from_size(size: str, *, num_frames: int = 128,
                     frame_token: str = "token",
                     image_size: Optional[int] = None,
                     min_resize: Optional[int] = None,
                     text_max_length: Optional[int] = None,
                     checkpoint: Optional[str] = None) -> Towers:
  """Towers of a named size (`models.variants`), weights from `checkpoint`.

  Args:
    size: "tiny", "base_16" or "large_14".
    num_frames: N0 (rows of the per-frame CLS table).
    frame_token: "token" or "gap".
    image_size: the tower's input side (default: the size's).
    min_resize: short side before the crop (default:
      round(image_size * 256 / 224), the reference's 256 for 224).
    text_max_length: L (default: the text tower's max_length).
    checkpoint: .npz or unloc_tf checkpoint; None = random (warned).
  """
  backbone = unloc_backbone.build_backbone(
      unloc_backbone.BackboneConfig(
          size, frame_token=frame_token, image_size=image_size,
          text_max_length=text_max_length, pyramid="none"),
      num_frames=num_frames, num_levels=1)
  image, text = backbone.image_encoder, backbone.text_encoder
  s = image.image_size
  # Under one outer scope the variable paths relative to it are those of a
  # task model ("image_encoder/...", "text_encoder/..."), as checkpoints and
  # .npz files name them.
  with keras.name_scope("towers"):
    image.build((None, num_frames, s, s, 3))
    text.build((None, text.max_length))
  source = load_tower_weights(backbone, checkpoint)
  return Towers(
      image_encoder=image, text_encoder=text,
      text_pooling=backbone.text_pooling, crop_size=s,
      min_resize=int(min_resize or round(s * 256 / 224)),
      num_frames=num_frames, text_max_length=text_max_length or text.max_length,
      source=source)
