"""tf.data input pipelines for every task (reference_spec.md §1 and §3).

    shards ─ interleave (sharded by tf.distribute.InputContext) ─ parse
      ─ check (errors name file, record, field) ─ select segments / captions
      ─ sample frames (linspace or windows) ─ decode JPEG + augment, or gather
        cached embeddings ─ text (CLIP BPE in the graph, or cached embeddings)
      ─ targets (labels + displacements per pyramid level) ─ batch ─ prefetch

Every element has fully static shapes (padding + masks), so the same batches
feed XLA and TPUs.  The batch keys are the constants of `unloc_tf.spec`;
`describe_batch` lists them per task.  Evaluation batches are padded to the
full batch size and carry `batch_mask`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import augment, sampling, schema
from unloc_tf.data import text as text_lib
from unloc_tf.targets import localization as loc_targets
from unloc_tf.targets import segmentation as seg_targets

BATCH_MASK = "batch_mask"
_LINSPACE_TASKS = (spec.TAL, spec.MR, spec.HD, spec.CLS)


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


# ---------------------------------------------------------------------------
# Small graph helpers.
# ---------------------------------------------------------------------------
def _pad_or_trim(x: tf.Tensor, size: int, value) -> tf.Tensor:
  """First `size` entries of a 1-D (or N-D, along axis 0) tensor, padded."""
  x = x[:size]
  pad = size - tf.shape(x)[0]
  paddings = [[0, pad]] + [[0, 0]] * (len(x.shape) - 1)
  out = tf.pad(x, paddings, constant_values=value)
  return tf.ensure_shape(out, [size] + x.shape[1:].as_list())


def _host_class_text(config: InputConfig):
  """Tokenised class names [C, P, L] (or cached embeddings [C, P, D])."""
  if config.text_mode == "none" or config.task not in (
      spec.TAL, spec.AS, spec.CLS):
    return None
  if config.text_mode == "embeddings":
    emb = np.load(config.class_name_embeddings).astype(np.float32)
    if emb.ndim == 2:
      emb = emb[:, None, :]
    if emb.ndim != 3 or emb.shape[0] != config.num_classes:
      raise ValueError(
          f"{config.class_name_embeddings}: expected [C={config.num_classes},"
          f" P, D] class-name embeddings, got shape {emb.shape}")
    if config.class_subset is not None:
      emb = emb[list(config.class_subset)]
    return tf.constant(emb)
  names = list(config.class_names)
  if config.class_subset is not None and len(names) == config.num_classes:
    names = [names[i] for i in config.class_subset]
  ids, mask = text_lib.tokenize_class_names(
      names, config.max_text_length, prompts=config.prompts,
      keep_eos=config.keep_eos)
  return tf.constant(ids, tf.int32), tf.constant(mask, tf.int32)


def _select_prompts(table: tf.Tensor, config: InputConfig, is_training: bool,
                    seed: tf.Tensor) -> tf.Tensor:
  """[C, P, ...] → [C, ...] (train: a random prompt per class; eval: fixed).

  With `prompt_index == -1` at evaluation it returns [P, C, ...].
  """
  num_c, num_p = table.shape[0], table.shape[1]
  if is_training:
    p = tf.random.stateless_uniform([num_c], seed, 0, num_p, dtype=tf.int32)
    return tf.gather(table, p, axis=1, batch_dims=1)
  if config.prompt_index == -1:
    return tf.transpose(table, [1, 0] + list(range(2, len(table.shape))))
  if not 0 <= config.prompt_index < num_p:
    raise ValueError(f"prompt_index {config.prompt_index} outside [0, {num_p})")
  return table[:, config.prompt_index]


# ---------------------------------------------------------------------------
# Per-example processing.
# ---------------------------------------------------------------------------
class _Processor:
  """Turns one parsed record into one (or, AS eval, several) examples."""

  def __init__(self, config: InputConfig, is_training: bool,
               validate: bool):
    self.config = config
    self.is_training = is_training
    self.validate = validate
    self.class_text = _host_class_text(config)
    self.tokenizer = None
    if config.text_mode == "tokens" and config.task in (spec.MR, spec.HD):
      self.tokenizer = text_lib.TextTokenizer(
          config.max_text_length, keep_eos=config.keep_eos)
    self.label_table = None
    if config.class_subset is not None:
      keys = tf.constant(list(config.class_subset), tf.int64)
      values = tf.range(len(config.class_subset), dtype=tf.int64)
      self.label_table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

  # -- parsing ---------------------------------------------------------------
  def parse(self, source_file, record_index, serialized):
    c = self.config
    frames = c.input_mode == "frames"
    emb_key = c.embedding_key if c.input_mode == "embeddings" else None
    parsed = schema.parse(
        serialized, with_frames=frames, embedding_key=emb_key,
        embedding_dim=c.embedding_dim,
        with_frame_labels=c.use_frame_labels)
    if self.validate:
      parsed = schema.validate(
          parsed, source_file, record_index, task=c.task,
          num_classes=c.num_classes, with_frames=frames,
          embedding_key=emb_key)
    parsed[spec.SOURCE_FILE] = source_file
    parsed[spec.RECORD_INDEX] = record_index
    return parsed

  # -- segments ---------------------------------------------------------------
  def _segments(self, p, seed) -> Dict[str, tf.Tensor]:
    """Selected, padded segments: indices, labels, times (seconds)."""
    c = self.config
    start = p[spec.SEGMENT_START_INDEX]
    end = p[spec.SEGMENT_END_INDEX]
    num = tf.shape(start)[0]
    label = p[spec.SEGMENT_LABEL_INDEX]
    if c.task in (spec.MR, spec.HD):
      label = tf.zeros([num], tf.int64)
    spt = self._secs_per_timestep(p)
    ts, te = p[spec.SEGMENT_START_TIMESTAMP], p[spec.SEGMENT_END_TIMESTAMP]
    has_ts = tf.logical_and(tf.equal(tf.shape(ts)[0], num),
                            tf.equal(tf.shape(te)[0], num))
    t_start = tf.cond(
        has_ts, lambda: tf.cast(ts, tf.float32) / spec.MICROSECONDS,
        lambda: tf.cast(start, tf.float32) * spt)
    t_end = tf.cond(
        has_ts, lambda: tf.cast(te, tf.float32) / spec.MICROSECONDS,
        lambda: tf.cast(end, tf.float32) * spt)
    seg = {"start": start, "end": end, "label": label, "t_start": t_start,
           "t_end": t_end}
    if c.task == spec.MR:
      seg["caption"] = p[spec.SEGMENT_LABEL_STRING]
      if c.text_mode == "embeddings":
        seg["embedding"] = tf.reshape(
            p[spec.SEGMENT_LABEL_EMBEDDING], [-1, c.text_embedding_dim])
      if self.is_training:
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(num), seed)
        seg = {k: tf.gather(v, perm) for k, v in seg.items()}
      size = c.num_captions(self.is_training)
    else:
      size = c.max_num_segments
      if self.label_table is not None:
        new = self.label_table.lookup(seg["label"])
        keep = new >= 0
        seg["label"] = new
        seg = {k: tf.boolean_mask(v, keep) for k, v in seg.items()}
    valid = tf.ones_like(seg["start"], tf.int32)
    out = {
        "start": _pad_or_trim(seg["start"], size, spec.PAD_SEGMENT_INDEX),
        "end": _pad_or_trim(seg["end"], size, spec.PAD_SEGMENT_INDEX),
        "label": _pad_or_trim(seg["label"], size, spec.PAD_LABEL),
        "t_start": _pad_or_trim(seg["t_start"], size, -1.0),
        "t_end": _pad_or_trim(seg["t_end"], size, -1.0),
        "valid": _pad_or_trim(valid, size, 0),
    }
    if "caption" in seg:
      out["caption"] = _pad_or_trim(seg["caption"], size, "")
    if "embedding" in seg:
      out["embedding"] = _pad_or_trim(seg["embedding"], size, 0.0)
    return out

  def _secs_per_timestep(self, p):
    spt = p[spec.SECS_PER_TIMESTEP]
    return tf.where(spt > 0, spt, tf.constant(self.config.secs_per_timestep))

  # -- visual input ------------------------------------------------------------
  def _visual(self, p, indices, seed) -> Dict[str, tf.Tensor]:
    c = self.config
    if c.input_mode == "embeddings":
      emb = tf.gather(p[c.embedding_key], indices)
      return {spec.FRAME_EMBEDDINGS: tf.ensure_shape(
          emb, [c.num_frames, c.embedding_dim])}
    jpegs = tf.gather(p[spec.IMAGE_ENCODED], indices)
    if self.validate:
      jpegs = schema.check_jpeg(jpegs, p[spec.SOURCE_FILE],
                                p[spec.RECORD_INDEX], indices)
    aug = dict(rand_augment=c.rand_augment, num_layers=c.rand_augment_layers,
               magnitude=c.rand_augment_magnitude, flip=c.random_flip,
               normalize_output=c.normalize,
               rand_augment_impl=c.rand_augment_impl)

    def decode_all():
      frames = tf.map_fn(
          lambda b: tf.io.decode_jpeg(b, channels=3), jpegs,
          fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
          parallel_iterations=16)
      return augment.preprocess_clip(
          frames, is_training=self.is_training, seed=seed,
          crop_size=c.crop_size, min_resize=c.min_resize,
          jitter_scale=c.jitter_scale, min_scale=c.min_scale,
          max_scale=c.max_scale, **aug)

    if c.jitter_scale:
      frames = decode_all()
    else:
      # Stored frames usually already have the target short side: then only
      # the crop is decoded (same pixels as decode + crop, ~1.5x faster).
      shape = tf.io.extract_jpeg_shape(jpegs[0])
      height, width = shape[0], shape[1]

      def decode_crop():
        off_y, off_x = augment.crop_offsets(
            height, width, c.crop_size, is_training=self.is_training,
            seed=seed)
        window = tf.stack([off_y, off_x, c.crop_size, c.crop_size])
        frames = tf.map_fn(
            lambda b: tf.io.decode_and_crop_jpeg(b, window, channels=3),
            jpegs,
            fn_output_signature=tf.TensorSpec(
                [c.crop_size, c.crop_size, 3], tf.uint8),
            parallel_iterations=16)
        return augment.finish_cropped_clip(
            frames, is_training=self.is_training, seed=seed, **aug)

      at_size = tf.logical_and(
          tf.equal(tf.minimum(height, width), c.min_resize),
          c.min_resize >= c.crop_size)
      frames = tf.cond(at_size, decode_crop, decode_all)
    return {spec.FRAMES: tf.ensure_shape(
        frames, [c.num_frames, c.crop_size, c.crop_size, 3])}

  # -- text --------------------------------------------------------------------
  def _class_text(self, seed) -> Dict[str, tf.Tensor]:
    c = self.config
    if self.class_text is None:
      return {}
    if c.text_mode == "embeddings":
      emb = _select_prompts(self.class_text, c, self.is_training, seed)
      valid = tf.ones(emb.shape[:-1], tf.int32)
      return {spec.TEXT_EMBEDDINGS: emb, spec.TEXT_VALID: valid}
    ids, mask = self.class_text
    ids_mask = _select_prompts(tf.stack([ids, mask], -1), c,
                               self.is_training, seed)
    return {
        spec.TEXT_IDS: ids_mask[..., 0],
        spec.TEXT_MASK: ids_mask[..., 1],
        spec.TEXT_VALID: tf.ones(ids_mask.shape[:-2], tf.int32),
    }

  def _caption_text(self, captions, valid, seg) -> Dict[str, tf.Tensor]:
    c = self.config
    out = {spec.TEXT_VALID: valid, spec.TEXT_STRINGS: captions}
    if c.text_mode == "tokens":
      ids, mask = self.tokenizer(captions)
      out[spec.TEXT_IDS] = ids
      out[spec.TEXT_MASK] = mask
    elif c.text_mode == "embeddings":
      out[spec.TEXT_EMBEDDINGS] = seg["embedding"]
    return out

  # -- examples ----------------------------------------------------------------
  def linspace_example(self, p, seed) -> Dict[str, tf.Tensor]:
    """TAL, MR, HD and classification: one example per record."""
    c = self.config
    s_seg, s_vis, s_txt = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    n = tf.cast(p[spec.CLIP_FRAMES], tf.int32)
    indices = sampling.linspace_indices(n, c.num_frames)
    out = self._visual(p, indices, s_vis)
    out[spec.FRAME_MASK] = tf.ones([c.num_frames], tf.int32)
    out[spec.FRAME_INDICES] = indices
    if c.task == spec.CLS:
      labels = p[spec.CLIP_LABEL_INDEX]
      if self.label_table is not None:
        labels = self.label_table.lookup(labels)
      out[spec.LABELS] = seg_targets.classification_labels(
          labels, c.num_output_classes)
      out.update(self._class_text(s_txt))
      out.update(self._metadata(p))
      return out
    seg = self._segments(p, s_seg)
    pyr = c.pyramid_spec
    if c.task == spec.MR:
      labels, disp = loc_targets.moment_retrieval_targets(
          seg["start"], seg["end"], seg["valid"], n, pyr,
          normalize_by_stride=c.normalize_displacements_by_stride)
      out.update(self._caption_text(seg["caption"], seg["valid"], seg))
    else:
      labels, disp = loc_targets.localization_targets(
          seg["start"], seg["end"], seg["label"], n, c.num_output_classes,
          pyr, normalize_by_stride=c.normalize_displacements_by_stride)
      if c.task == spec.HD:
        query = _pad_or_trim(p[spec.SEGMENT_LABEL_STRING], 1, "")
        cached = None
        if c.text_mode == "embeddings":  # the query's cached embedding
          cached = {"embedding": _pad_or_trim(tf.reshape(
              p[spec.SEGMENT_LABEL_EMBEDDING], [-1, c.text_embedding_dim]),
                                               1, 0.0)}
        out.update(self._caption_text(query, tf.ones([1], tf.int32), cached))
        out.update(self._saliency(p))
      else:
        out.update(self._class_text(s_txt))
    out[spec.LABELS] = labels
    out[spec.DISPLACEMENTS] = disp
    out.update(self._ground_truth(seg))
    out.update(self._metadata(p))
    return out

  def window_example(self, p, offset, seed) -> Dict[str, tf.Tensor]:
    """AS: one contiguous window of N0 frames starting at `offset`."""
    c = self.config
    s_vis, s_txt = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    n = tf.cast(p[spec.CLIP_FRAMES], tf.int32)
    indices, mask = sampling.window_indices(n, offset, c.num_frames)
    out = self._visual(p, indices, s_vis)
    out[spec.FRAME_MASK] = mask
    out[spec.FRAME_INDICES] = indices
    if c.use_frame_labels:
      frame_labels = p[spec.FRAME_LABEL_INDEX]
      if self.label_table is not None:
        frame_labels = tf.ragged.map_flat_values(
            self.label_table.lookup, frame_labels)
      labels = seg_targets.frame_labels_to_one_hot(
          frame_labels, offset, c.num_frames, c.num_output_classes)
      seg = self._segments(p, seed)
    else:
      seg = self._segments(p, seed)
      labels = seg_targets.segmentation_labels(
          seg["start"], seg["end"], seg["label"], offset, c.num_frames,
          c.num_output_classes)
    out[spec.LABELS] = labels * mask[:, None]
    out[spec.WINDOW_OFFSET] = tf.cast(offset, tf.int32)
    out.update(self._class_text(s_txt))
    out.update(self._ground_truth(seg))
    out.update(self._metadata(p))
    return out

  def _ground_truth(self, seg) -> Dict[str, tf.Tensor]:
    return {
        spec.GT_START: seg["t_start"],
        spec.GT_END: seg["t_end"],
        spec.GT_LABEL: tf.cast(seg["label"], tf.int32),
        spec.GT_VALID: seg["valid"],
    }

  def _saliency(self, p) -> Dict[str, tf.Tensor]:
    c = self.config
    num_a = c.num_annotators
    clip_index = p[spec.SALIENCY_CLIP_INDEX]
    scores = tf.reshape(p[spec.SALIENCY_SCORES], [-1, num_a])
    keep = tf.logical_and(clip_index >= 0, clip_index < c.max_saliency_clips)
    clip_index = tf.boolean_mask(clip_index, keep)
    scores = tf.boolean_mask(scores, keep)
    dense = tf.scatter_nd(clip_index[:, None], scores,
                          [c.max_saliency_clips, num_a])
    duration = p[spec.DURATION]
    spt = self._secs_per_timestep(p)
    duration = tf.where(duration > 0, duration,
                        tf.cast(p[spec.CLIP_FRAMES], tf.float32) * spt)
    num_clips = tf.cast(duration / p[spec.SALIENCY_SECS_PER_CLIP], tf.int32)
    mask = tf.cast(tf.range(c.max_saliency_clips) < num_clips, tf.int32)
    return {spec.SALIENCY: dense, spec.SALIENCY_MASK: mask}

  def _metadata(self, p) -> Dict[str, tf.Tensor]:
    return {
        spec.VIDEO_ID: p[spec.MEDIA_ID],
        spec.EXAMPLE_ID_KEY: p[spec.EXAMPLE_ID],
        spec.NUM_FRAMES_TOTAL: tf.cast(p[spec.CLIP_FRAMES], tf.int32),
        spec.BATCH_SECS_PER_TIMESTEP: self._secs_per_timestep(p),
        spec.SOURCE_FILE: p[spec.SOURCE_FILE],
        spec.RECORD_INDEX: p[spec.RECORD_INDEX],
    }


# ---------------------------------------------------------------------------
# Datasets.
# ---------------------------------------------------------------------------
def list_files(file_pattern: str | Sequence[str]) -> list[str]:
  """Sorted shard paths matching one or several glob patterns."""
  patterns = [file_pattern] if isinstance(file_pattern, str) else file_pattern
  files = []
  for pattern in patterns:
    matched = sorted(tf.io.gfile.glob(pattern))
    if not matched:
      raise FileNotFoundError(f"no files match {pattern!r}")
    files.extend(matched)
  return files


def _records(files: list[str], is_training: bool, seed: int,
             cycle_length: int, input_context) -> tf.data.Dataset:
  """(source_file, record_index, serialized) from the shards of this host."""
  ds = tf.data.Dataset.from_tensor_slices(files)
  if input_context is not None and input_context.num_input_pipelines > 1:
    if len(files) < input_context.num_input_pipelines:
      raise ValueError(
          f"{len(files)} shards for {input_context.num_input_pipelines} input"
          " pipelines: write at least one shard per pipeline")
    ds = ds.shard(input_context.num_input_pipelines,
                  input_context.input_pipeline_id)
  if is_training:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)

  def read(path):
    return tf.data.TFRecordDataset(path).enumerate().map(
        lambda i, r: (path, i, r))

  return ds.interleave(read, cycle_length=min(cycle_length, len(files)),
                       block_length=1,
                       num_parallel_calls=tf.data.AUTOTUNE,
                       deterministic=True)


def _pad_batch(batch: Dict[str, tf.Tensor], batch_size: int):
  """Pads a final partial batch to `batch_size` rows; adds `batch_mask`."""
  real = tf.shape(next(iter(batch.values())))[0]

  def pad(value):
    paddings = [[0, batch_size - real]] + [[0, 0]] * (len(value.shape) - 1)
    fill = "" if value.dtype == tf.string else 0
    # Full batches (all but the last) are passed through without a copy.
    out = tf.cond(real < batch_size,
                  lambda: tf.pad(value, paddings, constant_values=fill),
                  lambda: value)
    return tf.ensure_shape(out, [batch_size] + value.shape[1:].as_list())

  out = {key: pad(value) for key, value in batch.items()}
  out[BATCH_MASK] = tf.cast(tf.range(batch_size) < real, tf.int32)
  return out


def make_dataset(
    file_pattern: str | Sequence[str],
    config: InputConfig,
    *,
    is_training: bool,
    global_batch_size: int,
    input_context: Optional[tf.distribute.InputContext] = None,
    seed: int = 0,
    deterministic: bool = False,
    shuffle_buffer: int = 256,
    cycle_length: int = 8,
    repeat: Optional[bool] = None,
    validate: bool = True,
    num_parallel_calls: Optional[int] = None,
    prefetch: Optional[int] = None,
) -> tf.data.Dataset:
  """The input pipeline of one task.

  Args:
    file_pattern: glob(s) of TFRecord shards of `tf.SequenceExample`s.
    config: what to produce (`InputConfig`).
    is_training: training (shuffle, repeat, random augmentation, random
      prompts / captions / windows, drop remainder) or evaluation (one pass,
      deterministic, final batch padded with `batch_mask`).
    global_batch_size: batch size over all replicas; with `input_context`
      each pipeline yields its per-replica share.
    input_context: from `strategy.distribute_datasets_from_function`; shards
      the files by input pipeline.
    seed: seeds shuffling and every random augmentation.
    deterministic: a fixed element order (and, with `seed`, identical
      batches on every run); otherwise tf.data may reorder for speed.
    shuffle_buffer: records in the training shuffle buffer.
    cycle_length: shards read concurrently.
    repeat: repeat forever (default: is_training).
    validate: check every record and sampled JPEG (errors name file, record
      and field).  Costs ~1%; keep it on.
    num_parallel_calls: parallel example processing (default AUTOTUNE).
    prefetch: batches to prefetch (default AUTOTUNE).

  Returns:
    A `tf.data.Dataset` of dicts keyed by `unloc_tf.spec` batch keys, with
    fully static shapes.
  """
  files = list_files(file_pattern)
  batch_size = global_batch_size
  if input_context is not None:
    batch_size = input_context.get_per_replica_batch_size(global_batch_size)
  repeat = is_training if repeat is None else repeat
  parallel = num_parallel_calls or tf.data.AUTOTUNE
  proc = _Processor(config, is_training, validate)

  ds = _records(files, is_training, seed, cycle_length, input_context)
  if is_training and shuffle_buffer > 1:
    ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  # A per-element counter makes the augmentation seeds independent of the
  # order in which parallel workers run.
  ds = ds.enumerate()

  def element_seed(counter):
    return tf.stack([tf.constant(seed, tf.int64), counter])

  if config.task == spec.AS:
    def to_windows(counter, rec):
      s = element_seed(counter)
      p = proc.parse(*rec)
      n = tf.cast(p[spec.CLIP_FRAMES], tf.int32)
      if is_training:
        offsets = sampling.random_window_offset(n, config.num_frames,
                                                s)[None]
      elif config.eval_windows == "center":
        offsets = sampling.center_window_offset(n, config.num_frames)[None]
      else:
        num = sampling.num_sliding_windows(n, config.num_frames)
        offsets = tf.range(num) * config.num_frames
      return offsets, s, p

    ds = ds.map(to_windows, num_parallel_calls=parallel,
                deterministic=deterministic or not is_training)
    ds = ds.flat_map(
        lambda offsets, s, p: tf.data.Dataset.from_tensor_slices(
            (offsets, tf.range(tf.shape(offsets)[0], dtype=tf.int64))).map(
                lambda o, w: (o, tf.random.experimental.stateless_fold_in(
                    s, w), p)))
    ds = ds.map(lambda o, s, p: proc.window_example(p, o, s),
                num_parallel_calls=parallel,
                deterministic=deterministic or not is_training)
  else:
    def example(counter, rec):
      return proc.linspace_example(proc.parse(*rec), element_seed(counter))

    ds = ds.map(example, num_parallel_calls=parallel,
                deterministic=deterministic or not is_training)

  if is_training:
    ds = ds.batch(batch_size, drop_remainder=True)
  else:
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.map(lambda b: _pad_batch(b, batch_size))
  ds = ds.prefetch(prefetch or tf.data.AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = deterministic or not is_training
  options.experimental_optimization.map_parallelization = True
  # The in-graph CLIP tokenizer memoises BPE results in a mutable hash table
  # (external state).  It is only a cache — outputs do not depend on it — so
  # checkpointing the iterator (exact resume) may ignore it.
  options.experimental_external_state_policy = (
      tf.data.experimental.ExternalStatePolicy.IGNORE)
  if input_context is not None:
    # Files are sharded by hand above.
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.OFF)
  return ds.with_options(options)


def describe_batch(config: InputConfig, is_training: bool,
                   batch_size: int) -> Dict[str, Tuple[Tuple[int, ...], str]]:
  """Shapes and dtypes of every key `make_dataset` yields, without data.

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


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Training steps in one pass over `num_examples` examples."""
  return max(1, math.floor(num_examples / global_batch_size))


def split_pattern(data_dir: str, split: str, subdir: str = "",
                  suffix: str = "-*.tfrecord") -> str:
  """`<data_dir>/<subdir>/<split>-*.tfrecord` (the synthetic and converter
  layout), so configs name a data folder and a split."""
  import os  # noqa: PLC0415
  return os.path.join(data_dir, subdir, split + suffix)


def read_class_names(path: str = "", data_dir: str = "",
                     file_name: str = "classes.txt") -> Tuple[str, ...]:
  """Class names, one per line (blank lines skipped), from `path` or from
  `<data_dir>/<file_name>` (written next to the shards by the converters
  and the synthetic benchmark)."""
  import os  # noqa: PLC0415
  path = path or os.path.join(data_dir, file_name)
  with tf.io.gfile.GFile(path) as f:
    names = tuple(line.strip() for line in f if line.strip())
  if not names:
    raise ValueError(f"{path}: no class names")
  return names


def read_zero_shot_split(path: str, split: int = 0, part: str = "seen"
                         ) -> Tuple[int, ...]:
  """Class indices of one zero-shot split (tools/make_zero_shot_splits.py):
  `part` "seen" (train) or "unseen" (test)."""
  import json  # noqa: PLC0415
  if part not in ("seen", "unseen"):
    raise ValueError(f"part must be 'seen' or 'unseen', got {part!r}")
  with tf.io.gfile.GFile(path) as f:
    splits = json.load(f)["splits"]
  if not 0 <= split < len(splits):
    raise ValueError(f"{path}: split {split} outside [0, {len(splits)})")
  return tuple(int(i) for i in splits[split][f"{part}_indices"])
