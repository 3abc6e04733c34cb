"""Small records for tests: real JPEG frames, real TFRecord shards."""

from __future__ import annotations

import dataclasses
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import records
from unloc_tf.models import unloc_backbone


def frames(n: int, height: int = 24, width: int = 32, seed: int = 0):
  """n distinct uint8 frames: frame i has mean brightness ~ 8 * (i % 30)."""
  rng = np.random.default_rng(seed)
  base = rng.integers(0, 16, size=(n, height, width, 3))
  level = (8 * (np.arange(n) % 30))[:, None, None, None]
  return (base + level).astype(np.uint8)


def video_record(
    media_id: str,
    n: int = 20,
    segments: Sequence[records.Segment] = (),
    spt: float = 0.5,
    embeddings_dim: Optional[int] = None,
    with_frames: bool = True,
    **kwargs,
) -> records.VideoRecord:
  emb = None
  if embeddings_dim:
    emb = np.arange(n * embeddings_dim, dtype=np.float32).reshape(
        n, embeddings_dim)
  return records.VideoRecord(
      media_id=media_id,
      secs_per_timestep=spt,
      frames=records.encode_jpeg(frames(n)) if with_frames else None,
      embeddings=emb,
      segments=list(segments),
      **kwargs,
  )


def write(tmp_path, name: str, recs, num_shards: int = 1, task=None):
  prefix = os.path.join(str(tmp_path), name)
  return records.write_shards(recs, prefix, num_shards, task=task)


def write_raw(tmp_path, name: str, examples: Sequence[tf.train.SequenceExample]):
  """Writes SequenceExamples as they are (no validation): for bad input."""
  path = os.path.join(str(tmp_path), name + ".tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    for ex in examples:
      w.write(ex.SerializeToString())
  return path


def raw_example(n_frames_field: Optional[int], jpegs: Sequence[bytes],
                start=(), end=(), label=(), start_us=(), end_us=(),
                captions=()) -> tf.train.SequenceExample:
  """A SequenceExample built key by key, like a foreign writer would."""
  ex = tf.train.SequenceExample()
  c = ex.context.feature
  if n_frames_field is not None:
    c[spec.CLIP_FRAMES].int64_list.value.append(n_frames_field)
  c[spec.SEGMENT_START_INDEX].int64_list.value.extend(start)
  c[spec.SEGMENT_END_INDEX].int64_list.value.extend(end)
  c[spec.SEGMENT_LABEL_INDEX].int64_list.value.extend(label)
  if start_us:
    c[spec.SEGMENT_START_TIMESTAMP].int64_list.value.extend(start_us)
    c[spec.SEGMENT_END_TIMESTAMP].int64_list.value.extend(end_us)
  if captions:
    c[spec.SEGMENT_LABEL_STRING].bytes_list.value.extend(
        s.encode() for s in captions)
  fl = ex.feature_lists.feature_list[spec.IMAGE_ENCODED]
  for j in jpegs:
    fl.feature.add().bytes_list.value.append(j)
  return ex


_BACKBONE_FIELDS = {
    f.name for f in dataclasses.fields(unloc_backbone.BackboneConfig)}


def keeps_dtype_policy():
  """Fixture body (`pytest.fixture(autouse=True)(keeps_dtype_policy)`):
  the test leaves Keras' global dtype policy as it found it."""
  import keras  # noqa: PLC0415

  before = keras.config.dtype_policy()
  yield
  after = keras.config.dtype_policy()
  keras.config.set_dtype_policy(before)
  assert after.name == before.name, "a test changed the global dtype policy"


def build_task(builder, size: str = "tiny", **kwargs):
  """`builder(BackboneConfig(size, ...), ...)` with the keyword arguments
  split between the backbone's configuration and the task builder (tests
  mix them freely; the library keeps them apart)."""
  backbone = {k: kwargs.pop(k) for k in list(kwargs) if k in _BACKBONE_FIELDS}
  return builder(unloc_backbone.BackboneConfig(size=size, **backbone),
                 **kwargs)


def fit(model, batches, steps: int, jit_compile: bool = True,
        learning_rate: float = 1e-3) -> list:
  """`steps` AdamW steps (clip-norm 1, no decay) of a built task model on
  the next batches of an iterator (string features dropped); the losses."""
  import keras  # noqa: PLC0415

  opt = keras.optimizers.AdamW(learning_rate, weight_decay=0.0,
                               clipnorm=1.0)

  @tf.function(jit_compile=jit_compile)
  def step(batch):
    with tf.GradientTape() as tape:
      loss = model.compute_loss(x=batch, y_pred=model(batch, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    opt.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  return [float(step({k: v for k, v in next(batches).items()
                      if v.dtype != tf.string})) for _ in range(steps)]


def bindings_read_by(gin_files: Sequence[str], gin_bindings: Sequence[str]
                     ) -> list[str]:
  """The macro bindings among `gin_bindings` that the experiment reads (the
  experiment loader refuses a binding of a macro no config reads, e.g.
  NUM_LEVELS for action segmentation); other bindings are kept."""
  import gin  # noqa: PLC0415
  from unloc_tf.launch import bindings, experiment  # noqa: PLC0415

  gin.clear_config()
  experiment.parse_gin(gin_files, finalize=False)
  read = bindings.macros_referenced()
  gin.clear_config()
  return [b for b in gin_bindings
          if all(m in read for m in bindings.macros_set([b]))]


def planted_outputs(inside: np.ndarray, base: float = -2.0,
                    per_frame: float = 0.5):
  """The dense outputs of a fake one-class localization model (one pyramid
  level, stride 1) that sees only its window: every token inside a run of
  flagged tokens proposes the run `[first, last + 1]` (in tokens) with
  logit `base + per_frame * run length` (a run the window cuts short scores
  lower than the whole run); other tokens have logit -10.

  Args:
    inside: bool [B, N0], the tokens showing the planted segment.

  Returns:
    (logits float32 [B, N0, 1], displacements float32 [B, N0, 1, 2]).
  """
  inside = np.asarray(inside, bool)
  b, n0 = inside.shape
  logits = np.full((b, n0, 1), -10.0, np.float32)
  disp = np.zeros((b, n0, 1, 2), np.float32)
  for i in range(b):
    t = 0
    while t < n0:
      if not inside[i, t]:
        t += 1
        continue
      end = t
      while end + 1 < n0 and inside[i, end + 1]:
        end += 1
      for u in range(t, end + 1):
        logits[i, u, 0] = base + per_frame * (end - t + 1)
        disp[i, u, 0] = (u - t, end + 1 - u)
      t = end + 1
  return logits, disp
