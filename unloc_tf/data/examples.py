"""One parsed record → one model example (or, AS evaluation, one per window).

`Processor` parses and checks a serialized `tf.SequenceExample` (errors name
the file, the record and the field), then builds the example of the task:
sampled frame indices (linspace, or an AS window), pixels via
`augment.decode_clip` or gathered cached embeddings, class-name or caption
text, the targets per pyramid level (or AS frame labels), ground truth in
seconds, HD saliency and the metadata.  Every output has a static shape.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import augment, input_config, sampling, schema
from unloc_tf.data import text as text_lib
from unloc_tf.targets import localization as loc_targets
from unloc_tf.targets import segmentation as seg_targets


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


def _host_class_text(config: input_config.InputConfig):
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
      keep_eos=config.keep_eos, mask_rule=config.text_mask_rule)
  return tf.constant(ids, tf.int32), tf.constant(mask, tf.int32)


def _select_prompts(table: tf.Tensor, config: input_config.InputConfig,
                    is_training: bool, seed: tf.Tensor) -> tf.Tensor:
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
class Processor:
  """Turns one record into one example (AS: one per window).

  `parse` first, then `linspace_example` (TAL, MR, HD, CLS) or
  `window_example` (AS, one call per window offset); `chunk_example` is one
  window of a long video (TAL, MR, HD; `data.chunks`).  Example keys are the
  batch keys of `unloc_tf.spec`, shapes as `input_config.describe_batch`
  without the batch dimension.

  Args:
    config: what to produce.
    is_training: random augmentation, prompts and captions (else fixed).
    validate: check every record and sampled JPEG (`schema.validate`).
  """

  def __init__(self, config: input_config.InputConfig, is_training: bool,
               validate: bool):
    self.config = config
    self.is_training = is_training
    self.validate = validate
    self.class_text = _host_class_text(config)
    self.tokenizer = None
    if config.text_mode == "tokens" and config.task in (spec.MR, spec.HD):
      self.tokenizer = text_lib.TextTokenizer(
          config.max_text_length, keep_eos=config.keep_eos,
          mask_rule=config.text_mask_rule)
    self.label_table = None
    if config.class_subset is not None:
      keys = tf.constant(list(config.class_subset), tf.int64)
      values = tf.range(len(config.class_subset), dtype=tf.int64)
      self.label_table = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(keys, values), default_value=-1)

  # -- parsing ---------------------------------------------------------------
  def parse(self, source_file, record_index, serialized):
    """Parsed (and checked) record, with its file and index for errors."""
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
      num_text = tf.shape(seg["caption"])[0]
      # An unlabeled record (captions, no segment): padded segments that
      # are not ground truth (gt_valid 0), with valid captions.
      pad = tf.maximum(num_text - num, 0)
      seg["gt_valid"] = tf.ones([num], tf.int32)
      fill = {"start": spec.PAD_SEGMENT_INDEX, "end": spec.PAD_SEGMENT_INDEX,
              "label": spec.PAD_LABEL, "t_start": -1.0, "t_end": -1.0,
              "gt_valid": 0}
      seg.update({k: tf.pad(seg[k], [[0, pad]], constant_values=v)
                  for k, v in fill.items()})
      if c.text_mode == "embeddings":
        seg["embedding"] = tf.reshape(
            p[spec.SEGMENT_LABEL_EMBEDDING], [-1, c.text_embedding_dim])
      if self.is_training:
        perm = tf.random.experimental.stateless_shuffle(
            tf.range(num_text), seed)
        seg = {k: tf.gather(v, perm) for k, v in seg.items()}
      size = c.num_captions(self.is_training)
    else:
      size = c.max_num_segments
      if self.label_table is not None:
        new = self.label_table.lookup(seg["label"])
        keep = new >= 0
        seg["label"] = new
        seg = {k: tf.boolean_mask(v, keep) for k, v in seg.items()}
    valid = seg.pop("gt_valid", tf.ones_like(seg["start"], tf.int32))
    out = {
        "text_valid": _pad_or_trim(tf.ones_like(seg["start"], tf.int32), size,
                                   0),
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
    frames = augment.decode_clip(
        jpegs, is_training=self.is_training, seed=seed,
        crop_size=c.crop_size, min_resize=c.min_resize,
        jitter_scale=c.jitter_scale, min_scale=c.min_scale,
        max_scale=c.max_scale, rand_augment=c.rand_augment,
        num_layers=c.rand_augment_layers,
        magnitude=c.rand_augment_magnitude, flip=c.random_flip,
        normalize_output=c.normalize, rand_augment_impl=c.rand_augment_impl)
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
    return self._linspace(p, seed)

  def chunk_example(self, p, offset, window, seed) -> Dict[str, tf.Tensor]:
    """TAL, MR, HD: one window of a long video (chunked inference).

    The `window` stored frames from `offset` are sampled and decoded as a
    video of their own (linspace over them; `total_frames` = `window`, so the
    task's decoding gives seconds from the window's start); ground truth,
    saliency and `frame_indices` stay in the whole video's frames and
    seconds.  `chunk_example(p, 0, n, seed)` is `linspace_example(p, seed)`.
    """
    if self.config.task not in (spec.TAL, spec.MR, spec.HD):
      raise ValueError(f"chunk_example is for {spec.TAL}, {spec.MR} and"
                       f" {spec.HD}, not {self.config.task}")
    return self._linspace(p, seed, offset, window)

  def _linspace(self, p, seed, offset=None, window=None
                ) -> Dict[str, tf.Tensor]:
    """Linspace sampling of the record (or of `window` frames from
    `offset`: targets in the window's frames, see `chunk_example`)."""
    c = self.config
    s_seg, s_vis, s_txt = tf.unstack(
        tf.random.experimental.stateless_split(seed, 3))
    n = tf.cast(p[spec.CLIP_FRAMES], tf.int32)
    if window is None:
      indices = sampling.linspace_indices(n, c.num_frames)
    else:
      n = tf.cast(window, tf.int32)  # the targets' video is the window
      indices = tf.cast(offset, tf.int32) + sampling.linspace_indices(
          n, c.num_frames)
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
    start, end = seg["start"], seg["end"]
    if window is not None:  # in the window's frames (padding stays invalid)
      start = start - tf.cast(offset, start.dtype)
      end = end - tf.cast(offset, end.dtype)
    pyr = c.pyramid_spec
    if c.task == spec.MR:
      labels, disp = loc_targets.moment_retrieval_targets(
          start, end, seg["valid"], n, pyr,
          normalize_by_stride=c.normalize_displacements_by_stride)
      out.update(self._caption_text(seg["caption"], seg["text_valid"], seg))
    else:
      labels, disp = loc_targets.localization_targets(
          start, end, seg["label"], n, c.num_output_classes,
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
    out[spec.NUM_FRAMES_TOTAL] = n  # the window's, for a chunk
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

