"""What an input pipeline produces: `InputConfig` and the batch it implies.

`describe_batch` lists the shape and dtype of every batch key (the constants
of `unloc_tf.spec`, plus `BATCH_MASK` at evaluation) without reading data.
Gin binds the config as `pipeline.InputConfig` (re-exported by
`unloc_tf.data.pipeline`).
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import numpy as np

from unloc_tf import spec

# 1 for real rows, 0 for the padding of a final partial evaluation batch.
BATCH_MASK = "batch_mask"


@dataclasses.dataclass(frozen=True)
class InputConfig:
  """What one input pipeline produces.

  Attributes:
    task: one of `spec.TASKS`.
    num_frames: N0, tokens per example (linspace samples or AS window).
    pyramid: the feature pyramid the targets are built for (TAL/MR/HD);
      defaults to `PyramidSpec(num_frames)` (4 levels, the base ranges).
    input_mode: "frames" (JPEG → pixels) or "embeddings" (cached features).
    embedding_key: feature list holding the cached frame embeddings.
    embedding_dim: D of the cached frame embeddings.
    crop_size, min_resize: spatial size (short side resized to min_resize,
      then a crop_size square crop).
    jitter_scale, min_scale, max_scale: training scale jitter.
    rand_augment, rand_augment_layers, rand_augment_magnitude: training video
      RandAugment (one random transform per clip).
    rand_augment_impl: "reference" (the reference's 12 branches, stateless
      and seeded) or "keras" (`keras.layers.RandAugment`, one transform per
      clip; not reproducible from `seed`).
    random_flip: training horizontal flip.
    normalize: CLIP mean/std normalisation to float32 in the pipeline.  The
      default (False) yields uint8 frames and the model normalises them (the
      same arithmetic, `unloc_tf.data.augment.normalize`): a batch is 4x
      smaller, the host pipeline about twice as fast, and exported models
      take the same uint8 frames.
    secs_per_timestep: fallback when a record has no `clip/secs_per_timestep`
      (records written for the reference): 0.1 s at 10 fps.
    num_classes: C (TAL, AS, CLS); 1 for HD.
    class_names: class names for the text tower (TAL/AS/CLS).
    class_subset: original class indices kept, in order (zero-shot splits);
      segments of other classes are dropped and labels renumbered.
    prompts: prompt templates with '{}' (e.g. text.KINETICS_PROMPTS).
    prompt_index: evaluation prompt; -1 yields all prompts [P, C, L].
    class_name_embeddings: path of a .npy [C, P, D] of cached class-name
      text embeddings (replaces tokenised class names).
    text_mode: "tokens" (CLIP BPE ids + mask), "embeddings" (cached caption
      embeddings from `segment/label/embedding`, or class_name_embeddings)
      or "none" (video-only models).
    max_text_length: Lt, tokens per text item including BOS/EOS.
    keep_eos: truncate word pieces so EOS always survives (the reference
      cuts after adding EOS, losing it on long captions).
    text_mask_rule: "length" (1 on the tokenised sequence) or "nonzero"
      (the reference's `ids != 0`, which also masks CLIP's "!" piece, id 0);
      see `text.TextTokenizer`.
    text_embedding_dim: D of cached text embeddings.
    num_captions_train, num_captions_eval: K captions per video (MR).
    max_num_segments: S, segments kept per record (first S in file order).
    normalize_displacements_by_stride: divide level-l targets by 2^l.
    eval_windows: AS evaluation, "all" (every consecutive window: the paper's
      non-overlapping sliding window) or "center" (the reference's).
    use_frame_labels: AS labels from `frame/label/index` instead of segments.
    num_annotators, max_saliency_clips: HD saliency matrix [clips, A].
  """

  task: str
  num_frames: int = 128
  pyramid: Optional[spec.PyramidSpec] = None
  input_mode: str = "frames"
  embedding_key: str = spec.IMAGE_EMBEDDING
  embedding_dim: Optional[int] = None
  crop_size: int = 224
  min_resize: int = 256
  jitter_scale: bool = False
  min_scale: float = 0.9
  max_scale: float = 1.33
  rand_augment: bool = False
  rand_augment_layers: int = 3
  rand_augment_magnitude: int = 10
  rand_augment_impl: str = "reference"
  random_flip: bool = True
  normalize: bool = False
  secs_per_timestep: float = 0.1
  num_classes: int = 1
  class_names: Optional[Tuple[str, ...]] = None
  class_subset: Optional[Tuple[int, ...]] = None
  prompts: Optional[Tuple[str, ...]] = None
  prompt_index: int = 0
  class_name_embeddings: Optional[str] = None
  text_mode: str = "tokens"
  max_text_length: int = 16
  keep_eos: bool = False
  text_mask_rule: str = "length"
  text_embedding_dim: Optional[int] = None
  num_captions_train: int = 1
  num_captions_eval: int = 1
  max_num_segments: int = 24
  normalize_displacements_by_stride: bool = True
  eval_windows: str = "all"
  use_frame_labels: bool = False
  num_annotators: int = 3
  max_saliency_clips: int = 75

  def __post_init__(self):
    if self.task not in spec.TASKS:
      raise ValueError(f"task must be one of {spec.TASKS}, got {self.task!r}")
    if self.input_mode not in ("frames", "embeddings"):
      raise ValueError(f"input_mode must be 'frames' or 'embeddings', got"
                       f" {self.input_mode!r}")
    if self.input_mode == "embeddings" and not self.embedding_dim:
      raise ValueError("input_mode='embeddings' needs embedding_dim")
    if self.text_mode not in ("tokens", "embeddings", "none"):
      raise ValueError(f"text_mode must be tokens, embeddings or none, got"
                       f" {self.text_mode!r}")
    if self.rand_augment_impl not in ("reference", "keras"):
      raise ValueError(f"rand_augment_impl must be 'reference' or 'keras',"
                       f" got {self.rand_augment_impl!r}")
    if self.eval_windows not in ("all", "center"):
      raise ValueError(f"eval_windows must be 'all' or 'center', got"
                       f" {self.eval_windows!r}")
    if self.task == spec.HD and self.num_classes != 1:
      raise ValueError("highlight detection has num_classes=1")
    uses_class_text = self.task in (spec.TAL, spec.AS, spec.CLS)
    if uses_class_text and self.text_mode == "tokens" and not self.class_names:
      raise ValueError(f"task {self.task} with text_mode='tokens' needs"
                       " class_names")
    if (uses_class_text and self.text_mode == "embeddings"
        and not self.class_name_embeddings):
      raise ValueError(f"task {self.task} with text_mode='embeddings' needs"
                       " class_name_embeddings (.npy [C, P, D])")
    if self.task in (spec.MR, spec.HD) and self.text_mode == "embeddings" and (
        not self.text_embedding_dim):
      raise ValueError(f"{self.task} with cached caption embeddings needs"
                       " text_embedding_dim")
    if self.class_names is not None:
      expected = (len(self.class_subset) if self.class_subset is not None
                  else self.num_classes)
      if len(self.class_names) not in (self.num_classes, expected):
        raise ValueError(f"{len(self.class_names)} class names but"
                         f" num_classes={self.num_classes}")

  @property
  def num_output_classes(self) -> int:
    """C after `class_subset`."""
    if self.class_subset is not None:
      return len(self.class_subset)
    return self.num_classes

  @property
  def pyramid_spec(self) -> spec.PyramidSpec:
    return self.pyramid or spec.PyramidSpec(self.num_frames)

  def num_captions(self, is_training: bool) -> int:
    return self.num_captions_train if is_training else self.num_captions_eval


def describe_batch(config: InputConfig, is_training: bool,
                   batch_size: int) -> Dict[str, Tuple[Tuple[int, ...], str]]:
  """Shapes and dtypes of every key `pipeline.make_dataset` yields.

  Reads no records (only the `.npy` of `class_name_embeddings`, for D).

  Useful for documentation, `tf.TensorSpec`s of exported signatures and
  tests.
  """
  c = config
  b = batch_size
  n0 = c.num_frames
  out: Dict[str, Tuple[Tuple[int, ...], str]] = {}
  if c.input_mode == "frames":
    dtype = "float32" if c.normalize else "uint8"
    out[spec.FRAMES] = ((b, n0, c.crop_size, c.crop_size, 3), dtype)
  else:
    out[spec.FRAME_EMBEDDINGS] = ((b, n0, c.embedding_dim), "float32")
  out[spec.FRAME_MASK] = ((b, n0), "int32")
  out[spec.FRAME_INDICES] = ((b, n0), "int32")
  t_tot = c.pyramid_spec.total_tokens
  cl = c.num_output_classes
  if c.task in (spec.TAL, spec.AS, spec.CLS):
    ntext: Tuple[int, ...] = (cl,)
    if not is_training and c.prompt_index == -1:
      num_p = len(c.prompts) if c.prompts else 1
      ntext = (num_p, cl)
  elif c.task == spec.MR:
    ntext = (c.num_captions(is_training),)
  else:
    ntext = (1,)
  if c.text_mode == "tokens":
    out[spec.TEXT_IDS] = ((b, *ntext, c.max_text_length), "int32")
    out[spec.TEXT_MASK] = ((b, *ntext, c.max_text_length), "int32")
  elif c.text_mode == "embeddings":
    dim = c.text_embedding_dim
    if c.task != spec.MR and c.class_name_embeddings:
      dim = int(np.load(c.class_name_embeddings, mmap_mode="r").shape[-1])
    out[spec.TEXT_EMBEDDINGS] = ((b, *ntext, dim), "float32")
  if c.text_mode != "none" or c.task in (spec.MR, spec.HD):
    out[spec.TEXT_VALID] = ((b, *ntext), "int32")
  if c.task in (spec.MR, spec.HD):
    out[spec.TEXT_STRINGS] = ((b, *ntext), "string")
  if c.task in (spec.TAL, spec.HD):
    out[spec.LABELS] = ((b, t_tot, cl), "int32")
    out[spec.DISPLACEMENTS] = ((b, t_tot, cl, 2), "float32")
  elif c.task == spec.MR:
    k = c.num_captions(is_training)
    out[spec.LABELS] = ((b, k, t_tot), "int32")
    out[spec.DISPLACEMENTS] = ((b, k, t_tot, 2), "float32")
  elif c.task == spec.AS:
    out[spec.LABELS] = ((b, n0, cl), "int32")
    out[spec.WINDOW_OFFSET] = ((b,), "int32")
  else:
    out[spec.LABELS] = ((b, cl), "int32")
  if c.task != spec.CLS:
    s = (c.num_captions(is_training) if c.task == spec.MR
         else c.max_num_segments)
    out[spec.GT_START] = ((b, s), "float32")
    out[spec.GT_END] = ((b, s), "float32")
    out[spec.GT_LABEL] = ((b, s), "int32")
    out[spec.GT_VALID] = ((b, s), "int32")
  if c.task == spec.HD:
    out[spec.SALIENCY] = ((b, c.max_saliency_clips, c.num_annotators),
                          "float32")
    out[spec.SALIENCY_MASK] = ((b, c.max_saliency_clips), "int32")
  out[spec.VIDEO_ID] = ((b,), "string")
  out[spec.EXAMPLE_ID_KEY] = ((b,), "int64")
  out[spec.NUM_FRAMES_TOTAL] = ((b,), "int32")
  out[spec.BATCH_SECS_PER_TIMESTEP] = ((b,), "float32")
  out[spec.SOURCE_FILE] = ((b,), "string")
  out[spec.RECORD_INDEX] = ((b,), "int64")
  if not is_training:
    out[BATCH_MASK] = ((b,), "int32")
  return out

