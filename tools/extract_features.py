r"""Caches frozen image-tower frame embeddings (and text embeddings) in records.

  python tools/extract_features.py \
      --input='/data/syn/moment_retrieval/test-*.tfrecord' \
      --output_dir=/data/syn_emb/moment_retrieval \
      --gin_file=experiments/synthetic_mr \
      --gin_bindings="DATA_DIR='/data/syn'" --workdir=/tmp/w_mr \
      [--checkpoint=best] [--keep_frames=false] [--text_embeddings]

  python tools/extract_features.py --input='/data/anet/*.tfrecord' \
      --output_dir=/data/anet_emb --model_size=base_16 --frame_token=gap \
      --checkpoint=/ckpt/clip_b16.npz --batch_size=128

Reads frame records (`image/encoded` JPEGs, `tf.SequenceExample`s of
`unloc_tf/data/schema.py`), runs the FROZEN image tower on every stored frame
at the input pipeline's evaluation preprocessing (short side resized to
`min_resize`, centre crop of the tower's image size: the code paths of
`data/pipeline.py`), and writes the same records plus `image/embedding`
(float [n, Dv], the tower output before `video_projection`: what the
pipeline's `input_mode="embeddings"` feeds the model).  `--keep_frames=false`
drops the JPEGs.  With `--text_embeddings` the text tower also embeds

  * every record's `segment/label/string` (MR captions, HD queries) into
    `segment/label/embedding` ([S * Dt], the pipeline's cached-caption
    field, `text_mode="embeddings"`), and
  * the class names (`--class_names`, else the config's; with the config's
    prompts) into `<output_dir>/class_name_embeddings.npy` [C, P, Dt] (the
    pipeline's `class_name_embeddings`).

A text embedding is the pooled text-tower state (the backbone's
`text_pooling`, before `text_projection`); a model with cached text and
`text_mode="pooled"` then computes exactly what the tokens model computes.

The model: `--gin_file` (+ `--gin_bindings`), else `<workdir>/
operative_config.gin`, builds the training config's model (it must have an
image tower, `INPUT_MODE='frames'`); without gin, `--model_size` (+
`--num_frames`, `--frame_token`, `--image_size`) builds the towers alone.
Weights: with `--workdir`, its checkpoint (`--checkpoint` = latest, best or
a prefix; as tools/evaluate.py); otherwise `--checkpoint` = a .npz of
{variable path: array} (e.g. a converted CLIP checkpoint) or an unloc_tf
checkpoint prefix / directory, loaded by variable path with the shape
adaptations of reference_spec.md §7.3.

Per-frame CLS rows.  A "token" tower prepends the CLS vector of the frame's
POSITION in the sampled clip (reference_spec.md §2.2), so a frame's
embedding depends on where the task's sampling puts it.  `--cls_slots`:
  shared    row 0 for every frame: exact when all rows are equal (fresh CLIP
            initialisation tiles one vector);
  linspace  the position the frame takes in `int(linspace(0, n-1, N0))`
            (TAL / MR / HD / classification); exact for videos with
            n >= N0 (shorter videos repeat frames at several positions: the
            first is used; a warning counts them);
  window    position i mod N0 (AS non-overlapping sliding windows); exact;
  auto      (default) shared when the rows are equal, else window for AS
            configs and linspace otherwise.
"gap" towers have no CLS token: always exact.  The cache is for the N0
(and sampling) of the config it was made with; the choice is recorded in
`<output_dir>/extract_features.json`.

Shards: `<output_dir>/<input shard basename>`, one per input shard, written
to `<name>.incomplete` and renamed when complete.  A restarted run skips the
shards that exist (`--overwrite` recomputes them).  The embeddings of a shard
do not depend on the other shards or on the run, so a recomputed shard is
byte-identical.

Then train / evaluate with the cached mode, e.g.
  --gin_bindings="INPUT_MODE='embeddings'" --gin_bindings="EMBEDDING_DIM=768"
(the printed summary gives the dimensions).
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import sys
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app, flags, logging

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import gin  # noqa: E402
from unloc_tf import launch, spec  # noqa: E402
from unloc_tf.data import augment, pipeline, sampling  # noqa: E402
from unloc_tf.data import text as text_lib  # noqa: E402
from unloc_tf.layers import clip_image_encoder  # noqa: E402
from unloc_tf.models import unloc_backbone  # noqa: E402
from unloc_tf.ops import pooling  # noqa: E402
from unloc_tf.train import checkpoints, evaluation, trainer  # noqa: E402

try:
  from tqdm import tqdm  # noqa: E402
except ImportError:  # pragma: no cover - tqdm is the optional [data] extra.
  tqdm = None

MANIFEST_NAME = "extract_features.json"
CLASS_NAME_EMBEDDINGS = "class_name_embeddings.npy"
INCOMPLETE_SUFFIX = ".incomplete"
CLS_SLOT_MODES = ("auto", "shared", "linspace", "window")
_TEXT_BATCH = 32


# ---------------------------------------------------------------------------
# The towers and where they come from.
# ---------------------------------------------------------------------------
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
  class_names: Optional[Tuple[str, ...]] = None
  prompts: Optional[Tuple[str, ...]] = None
  source: str = "random initialisation"
  # Traced embedders, reused by later `extract` calls with the same towers.
  cache: dict = dataclasses.field(default_factory=dict, repr=False,
                                  compare=False)

  def frame_embedder(self, batch_size: int) -> "FrameEmbedder":
    key = ("frames", int(batch_size))
    if key not in self.cache:
      self.cache[key] = FrameEmbedder(self, batch_size)
    return self.cache[key]

  def text_embedder(self) -> "TextEmbedder":
    if "text" not in self.cache:
      self.cache["text"] = TextEmbedder(self)
    return self.cache["text"]


def gin_files_for(gin_files: Sequence[str], workdir: Optional[str]
                  ) -> List[str]:
  """The gin files to parse: the given ones, else the workdir's operative
  config (written by tools/train.py), else none."""
  if gin_files:
    return list(gin_files)
  if workdir:
    path = os.path.join(workdir, "operative_config.gin")
    if os.path.isfile(path):
      return [path]
  return []


def eval_input_config() -> pipeline.InputConfig:
  """The parsed gin config's evaluation `InputConfig`."""
  with gin.config_scope("eval"):
    return gin.get_configurable(pipeline.InputConfig)()


def dummy_batch(config: pipeline.InputConfig) -> Dict[str, np.ndarray]:
  """An all-zero batch of one example with the numeric keys of `config`'s
  evaluation batches (builds a model)."""
  if config.prompt_index == -1:
    config = dataclasses.replace(config, prompt_index=0)
  out = {}
  for key, (shape, dtype) in pipeline.describe_batch(config, False,
                                                     1).items():
    if dtype != "string":
      out[key] = np.zeros(shape, dtype)
  return out


def _load_weights(model, workdir: Optional[str], checkpoint: Optional[str]
                  ) -> str:
  """Restores `model` (built) from a workdir or a checkpoint / .npz path.

  Returns:
    A description of the source.
  """
  if workdir:
    step = evaluation.restore_model(model, workdir, checkpoint or "latest")
    return f"{workdir} ({checkpoint or 'latest'}, step {step})"
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


def towers_from_gin(workdir: Optional[str] = None,
                    checkpoint: Optional[str] = None) -> Towers:
  """The towers of the parsed gin config's model, with its weights."""
  bound = gin.get_bindings(trainer.train)
  if "model_fn" not in bound:
    raise ValueError("the gin config binds no trainer.train.model_fn (use a"
                     " training config, e.g. experiments/synthetic_tal)")
  config = eval_input_config()
  if config.input_mode != "frames":
    raise ValueError(
        "the gin config's model takes cached embeddings"
        f" (input_mode={config.input_mode!r}); extract features with the"
        " frames config of the same model (INPUT_MODE='frames')")
  model = bound["model_fn"]()
  model(dummy_batch(config), training=False)
  source = _load_weights(model, workdir, checkpoint)
  bb = model.backbone
  if bb.image_encoder is None:
    raise ValueError("the gin config's model has no image tower")
  return Towers(
      image_encoder=bb.image_encoder, text_encoder=bb.text_encoder,
      text_pooling=bb.text_pooling, crop_size=config.crop_size,
      min_resize=config.min_resize, num_frames=config.num_frames,
      task=config.task, text_max_length=config.max_text_length,
      keep_eos=config.keep_eos, class_names=config.class_names,
      prompts=config.prompts, source=source)


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
      size, num_frames=num_frames, frame_token=frame_token,
      image_size=image_size, text_max_length=text_max_length,
      pyramid="none")
  image, text = backbone.image_encoder, backbone.text_encoder
  s = image.image_size
  # Under one outer scope the variable paths relative to it are those of a
  # task model ("image_encoder/...", "text_encoder/..."), as checkpoints and
  # .npz files name them.
  with keras.name_scope("towers"):
    image.build((None, num_frames, s, s, 3))
    text.build((None, text.max_length))
  source = _load_weights(backbone, None, checkpoint)
  return Towers(
      image_encoder=image, text_encoder=text,
      text_pooling=backbone.text_pooling, crop_size=s,
      min_resize=int(min_resize or round(s * 256 / 224)),
      num_frames=num_frames, text_max_length=text_max_length or text.max_length,
      source=source)


# ---------------------------------------------------------------------------
# Frame embeddings.
# ---------------------------------------------------------------------------
def eval_frames(jpegs: tf.Tensor, crop_size: int, min_resize: int
                ) -> tf.Tensor:
  """JPEGs [T] → uint8 [T, crop, crop, 3], as the evaluation pipeline.

  The two paths of `pipeline._Processor._visual` (is_training=False): when
  the stored short side already is `min_resize` (>= crop) only the centre
  crop is decoded; otherwise decode, resize the short side, centre crop
  (`augment.preprocess_clip`).  Every frame of `jpegs` must have one size.
  """
  def decode_all():
    frames = tf.map_fn(
        lambda b: tf.io.decode_jpeg(b, channels=3), jpegs,
        fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8),
        parallel_iterations=16)
    return augment.preprocess_clip(
        frames, is_training=False, crop_size=crop_size,
        min_resize=min_resize, normalize_output=False)

  shape = tf.io.extract_jpeg_shape(jpegs[0])
  height, width = shape[0], shape[1]

  def decode_crop():
    off_y, off_x = augment.crop_offsets(height, width, crop_size,
                                        is_training=False)
    window = tf.stack([off_y, off_x, crop_size, crop_size])
    return tf.map_fn(
        lambda b: tf.io.decode_and_crop_jpeg(b, window, channels=3), jpegs,
        fn_output_signature=tf.TensorSpec([crop_size, crop_size, 3],
                                          tf.uint8),
        parallel_iterations=16)

  at_size = tf.logical_and(tf.equal(tf.minimum(height, width), min_resize),
                           min_resize >= crop_size)
  frames = tf.cond(at_size, decode_crop, decode_all)
  return tf.ensure_shape(frames, [jpegs.shape[0], crop_size, crop_size, 3])


def frame_slots(num_stored: int, num_frames: int, mode: str
                ) -> Tuple[Optional[np.ndarray], bool]:
  """CLS row of every stored frame (see the module docstring).

  Args:
    num_stored: n, stored frames of the record.
    num_frames: N0.
    mode: "shared", "linspace" or "window" (resolved, not "auto").

  Returns:
    (int array [n] of CLS rows, exact): `exact` is False when a frame
    takes several positions (linspace with n < N0).
  """
  if mode == "shared":
    return np.zeros([num_stored], np.int64), True
  if mode == "window":
    return np.arange(num_stored) % num_frames, True
  if mode != "linspace":
    raise ValueError(f"unknown CLS slot mode {mode!r}")
  idx = sampling.linspace_indices(tf.constant(num_stored),
                                  num_frames).numpy()
  # Frames that are never sampled take their proportional position.
  scale = (num_frames - 1) / max(num_stored - 1, 1)
  slots = np.clip(np.round(np.arange(num_stored) * scale), 0,
                  num_frames - 1).astype(np.int64)
  for pos in range(num_frames - 1, -1, -1):  # the first position wins
    slots[idx[pos]] = pos
  return slots, bool(len(np.unique(idx)) == num_frames)


class FrameEmbedder:
  """The frozen image tower on batches of stored frames.

  Frames are independent in the tower, so a batch of `batch_size` frames of
  one record (the last one padded by repeating a frame) gives each frame the
  embedding it gets inside a clip.  In "token" mode a probe encoder that
  shares every layer and weight of the tower, except its CLS table of
  `batch_size` rows, runs the tower's own `call` with the CLS row of each
  frame's slot.

  Args:
    towers: the `Towers`.
    batch_size: frames per forward pass.
  """

  def __init__(self, towers: Towers, batch_size: int = 64):
    enc = towers.image_encoder
    if batch_size < 1:
      raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if enc.image_size != towers.crop_size:
      raise ValueError(f"the image tower takes {enc.image_size} px frames but"
                       f" the config crops {towers.crop_size} px")
    self.encoder = enc
    self.crop_size = towers.crop_size
    self.min_resize = towers.min_resize
    self.batch_size = int(batch_size)
    self.dim = enc.hidden_dim
    self.token = enc.frame_token == "token"
    self.table = (keras.ops.convert_to_numpy(enc.class_embedding)
                  if self.token else None)
    self.probe = self._probe() if self.token else None
    row_spec = tf.TensorSpec([self.batch_size, self.dim], tf.float32)
    self._fn = tf.function(
        self._embed, input_signature=[
            tf.TensorSpec([self.batch_size], tf.string), row_spec])

  @property
  def rows_equal(self) -> bool:
    """Whether every CLS row is the same (or there is none)."""
    return self.table is None or bool(np.all(self.table == self.table[:1]))

  def _probe(self):
    enc = self.encoder
    config = enc.get_config()
    config.update(num_frames=self.batch_size, name=f"{enc.name}_probe")
    probe = clip_image_encoder.CLIPImageEncoder.from_config(config)
    # Shared layers and weights: only the CLS table is the probe's own.
    for attr in ("patch_embedding", "ln_pre", "ln_post", "blocks"):
      setattr(probe, attr, getattr(enc, attr))
    probe.position_embedding = enc.position_embedding
    probe.class_embedding = keras.Variable(
        np.zeros((self.batch_size, self.dim), np.float32), trainable=False,
        name="class_embedding")
    probe.built = True
    return probe

  def _embed(self, jpegs, cls_rows):
    frames = eval_frames(jpegs, self.crop_size, self.min_resize)[None]
    if not self.encoder.normalize_input:
      frames = augment.normalize(frames)
    if self.token:
      self.probe.class_embedding.assign(cls_rows)
      out = self.probe(frames, training=False)
    else:
      out = self.encoder(frames, training=False)
    return tf.cast(out[0], tf.float32)

  def __call__(self, jpegs: Sequence[bytes],
               slots: Optional[np.ndarray] = None) -> np.ndarray:
    """Embeddings float32 [n, Dv] of n JPEG frames (CLS rows `slots` [n])."""
    n, b = len(jpegs), self.batch_size
    out = np.zeros((n, self.dim), np.float32)
    for start in range(0, n, b):
      chunk = list(jpegs[start:start + b])
      real = len(chunk)
      chunk += [chunk[-1]] * (b - real)
      rows = np.zeros((b, self.dim), np.float32)
      if self.token:
        s = np.zeros([b], np.int64)
        if slots is not None:
          s[:real] = slots[start:start + real]
        rows = self.table[s].astype(np.float32)
      emb = self._fn(tf.constant(chunk, tf.string), tf.constant(rows))
      out[start:start + real] = emb.numpy()[:real]
    return out


class TextEmbedder:
  """Pooled text-tower states of texts (what cached text mode consumes).

  Args:
    towers: the `Towers` (with a text tower).
  """

  def __init__(self, towers: Towers):
    if towers.text_encoder is None:
      raise ValueError("--text_embeddings needs a model with a text tower"
                       " (TEXT_INPUT='tokens')")
    self.encoder = towers.text_encoder
    self.pooling = towers.text_pooling
    self.tokenizer = text_lib.TextTokenizer(towers.text_max_length,
                                            keep_eos=towers.keep_eos)
    self.dim = self.encoder.hidden_dim
    self._fn = tf.function(self._embed, input_signature=[
        tf.TensorSpec([_TEXT_BATCH], tf.string)])

  def _embed(self, texts):
    ids, mask = self.tokenizer(texts)
    states = self.encoder(ids, padding_mask=mask, training=False)
    pooled = pooling.pool_text(states, ids, mask, mode=self.pooling)
    return tf.cast(pooled, tf.float32)

  def __call__(self, texts: Sequence[str]) -> np.ndarray:
    """float32 [N, Dt] for N texts."""
    texts = list(texts)
    out = np.zeros((len(texts), self.dim), np.float32)
    for start in range(0, len(texts), _TEXT_BATCH):
      chunk = texts[start:start + _TEXT_BATCH]
      real = len(chunk)
      chunk += [""] * (_TEXT_BATCH - real)
      out[start:start + real] = self._fn(tf.constant(chunk)).numpy()[:real]
    return out


# ---------------------------------------------------------------------------
# Shards.
# ---------------------------------------------------------------------------
def count_records(path: str) -> int:
  """Records in a TFRecord file, from the length headers only (seeks)."""
  count = 0
  with tf.io.gfile.GFile(path, "rb") as f:
    while True:
      header = f.read(12)
      if not header:
        return count
      if len(header) < 12:
        raise ValueError(f"{path}: truncated TFRecord after record {count}")
      (length,) = struct.unpack("<Q", header[:8])
      f.seek(length + 4, 1)
      count += 1


def _bytes_list(ex, key) -> List[bytes]:
  fl = ex.feature_lists.feature_list
  if key not in fl:
    return []
  return [f.bytes_list.value[0] if f.bytes_list.value else b""
          for f in fl[key].feature]


def process_record(serialized: bytes, where: str, frames: FrameEmbedder,
                   slot_mode: str, num_frames: int,
                   text: Optional[TextEmbedder] = None,
                   keep_frames: bool = True) -> Tuple[bytes, bool]:
  """One record with `image/embedding` (and caption embeddings) added.

  Args:
    serialized: a `tf.SequenceExample`.
    where: "<shard>: record <i>" for error messages.
    frames: the `FrameEmbedder`.
    slot_mode: resolved CLS slot mode ("shared", "linspace", "window") or
      None for "gap" towers.
    num_frames: N0.
    text: caption embedder, or None.
    keep_frames: keep `image/encoded`.

  Returns:
    (serialized record, exact): `exact` is False when the CLS slots cannot
    reproduce every position (see `frame_slots`).
  """
  ex = tf.train.SequenceExample.FromString(serialized)
  jpegs = _bytes_list(ex, spec.IMAGE_ENCODED)
  ctx = ex.context.feature
  if spec.CLIP_FRAMES in ctx and ctx[spec.CLIP_FRAMES].int64_list.value:
    n = int(ctx[spec.CLIP_FRAMES].int64_list.value[0])
  else:
    n = len(jpegs)
  if not jpegs:
    raise ValueError(f"{where}: field '{spec.IMAGE_ENCODED}': no JPEG"
                     " frames (records must hold frames to embed)")
  if n != len(jpegs):
    raise ValueError(f"{where}: field '{spec.IMAGE_ENCODED}': {len(jpegs)}"
                     f" JPEG frames but {spec.CLIP_FRAMES} = {n}")
  exact = True
  slots = None
  if slot_mode is not None:
    slots, exact = frame_slots(n, num_frames, slot_mode)
  try:
    emb = frames(jpegs, slots)
  except tf.errors.InvalidArgumentError as e:
    raise ValueError(f"{where}: field '{spec.IMAGE_ENCODED}': cannot decode"
                     f" the frames: {e.message.splitlines()[0]}") from e
  lists = ex.feature_lists.feature_list
  if spec.IMAGE_EMBEDDING in lists:
    del lists[spec.IMAGE_EMBEDDING]
  fl = lists[spec.IMAGE_EMBEDDING]
  for row in emb:
    fl.feature.add().float_list.value.extend(row.tolist())
  if not keep_frames:
    del lists[spec.IMAGE_ENCODED]
  if text is not None and spec.SEGMENT_LABEL_STRING in ctx:
    strings = [s.decode("utf-8") for s in
               ctx[spec.SEGMENT_LABEL_STRING].bytes_list.value]
    if strings:
      value = text(strings).reshape(-1)
      feature = ctx[spec.SEGMENT_LABEL_EMBEDDING]
      feature.Clear()
      feature.float_list.value.extend(value.tolist())
  return ex.SerializeToString(deterministic=True), exact


def output_path(input_path: str, output_dir: str) -> str:
  return os.path.join(output_dir, os.path.basename(input_path))


def _resolve_slot_mode(mode: str, frames: FrameEmbedder, towers: Towers
                       ) -> Optional[str]:
  if mode not in CLS_SLOT_MODES:
    raise ValueError(f"cls_slots must be one of {CLS_SLOT_MODES}, got"
                     f" {mode!r}")
  if not frames.token:
    return None
  if mode != "auto":
    if mode == "shared" and not frames.rows_equal:
      logging.warning("--cls_slots=shared with a CLS table whose rows"
                      " differ: the cached embeddings are NOT the frames"
                      " model's")
    return mode
  if frames.rows_equal:
    return "shared"
  if towers.task is None:
    logging.warning("the CLS rows differ and the task is unknown"
                    " (--model_size): using linspace slots; pass"
                    " --cls_slots=window for action segmentation")
  return "window" if towers.task == spec.AS else "linspace"


def _write_manifest(output_dir: str, info: dict) -> None:
  path = os.path.join(output_dir, MANIFEST_NAME)
  tmp = path + INCOMPLETE_SUFFIX
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(info, f, indent=1)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def extract(input_patterns: Sequence[str], output_dir: str, towers: Towers,
            *, batch_size: int = 64, keep_frames: bool = True,
            text_embeddings: bool = False,
            class_names: Optional[Sequence[str]] = None,
            cls_slots: str = "auto", overwrite: bool = False,
            progress: bool = True) -> dict:
  """Writes embedding records for every input shard (module docstring).

  Args:
    input_patterns: globs of input shards.
    output_dir: where `<basename>` shards go (created).
    towers: the `Towers`.
    batch_size: frames per forward pass of the image tower.
    keep_frames: keep the JPEGs in the output.
    text_embeddings: also embed captions / queries and class names.
    class_names: class names to embed (default: the config's).
    cls_slots: "auto", "shared", "linspace" or "window".
    overwrite: recompute shards that exist.
    progress: show a progress bar over records.

  Returns:
    A summary: {"written": [paths], "skipped": [paths], "embedding_dim",
    "text_embedding_dim", "cls_slots", "inexact_records",
    "class_name_embeddings"}.
  """
  files = pipeline.list_files(list(input_patterns))
  names = [os.path.basename(f) for f in files]
  dup = sorted({n for n in names if names.count(n) > 1})
  if dup:
    raise ValueError(f"input shards share basenames {dup}: the outputs"
                     " (<output_dir>/<basename>) would collide")
  tf.io.gfile.makedirs(output_dir)
  frames = towers.frame_embedder(batch_size)
  slot_mode = _resolve_slot_mode(cls_slots, frames, towers)
  text = towers.text_embedder() if text_embeddings else None
  summary = {
      "embedding_key": spec.IMAGE_EMBEDDING,
      "embedding_dim": frames.dim,
      "text_embedding_dim": text.dim if text else None,
      "frame_token": towers.image_encoder.frame_token,
      "cls_slots": slot_mode,
      "num_frames": towers.num_frames,
      "crop_size": towers.crop_size,
      "min_resize": towers.min_resize,
      "task": towers.task,
      "keep_frames": keep_frames,
      "source": towers.source,
      "class_name_embeddings": None,
  }
  names = class_names or towers.class_names
  if text is not None and names:
    texts = text_lib.apply_prompts(list(names), towers.prompts)
    table = text(texts).reshape(len(names), -1, text.dim)
    npy = os.path.join(output_dir, CLASS_NAME_EMBEDDINGS)
    with tf.io.gfile.GFile(npy + INCOMPLETE_SUFFIX, "wb") as f:
      np.save(f, table)
    tf.io.gfile.rename(npy + INCOMPLETE_SUFFIX, npy, overwrite=True)
    summary["class_name_embeddings"] = npy
    summary["class_names"] = list(names)
    summary["prompts"] = list(towers.prompts) if towers.prompts else None
  _write_manifest(output_dir, summary)

  todo, skipped = [], []
  for path in files:
    out = output_path(path, output_dir)
    if tf.io.gfile.exists(out) and not overwrite:
      skipped.append(out)
    else:
      todo.append(path)
  for out in skipped:
    logging.info("%s exists: skipped", out)
  total = sum(count_records(p) for p in todo)
  bar = None
  if progress and tqdm is not None and todo:
    bar = tqdm(total=total, unit="record", desc="extract_features")
  written, inexact = [], 0
  try:
    for k, path in enumerate(todo):
      out = output_path(path, output_dir)
      tmp = out + INCOMPLETE_SUFFIX
      if bar is not None:
        bar.set_postfix_str(f"shard {k + 1}/{len(todo)}")
      with tf.io.TFRecordWriter(tmp) as writer:
        for i, raw in enumerate(tf.data.TFRecordDataset(path)):
          record, exact = process_record(
              raw.numpy(), f"{path}: record {i}", frames, slot_mode,
              towers.num_frames, text, keep_frames)
          inexact += not exact
          writer.write(record)
          if bar is not None:
            bar.update(1)
      tf.io.gfile.rename(tmp, out, overwrite=True)
      written.append(out)
  finally:
    if bar is not None:
      bar.close()
  if inexact:
    logging.warning(
        "%d record(s) have fewer stored frames than num_frames=%d: with"
        " linspace CLS slots their repeated frames use the CLS row of their"
        " first position, so cached outputs differ slightly from the"
        " frames model for them", inexact, towers.num_frames)
  summary.update(written=written, skipped=skipped, inexact_records=inexact)
  return summary


# ---------------------------------------------------------------------------
# The tool.
# ---------------------------------------------------------------------------
def _define_flags() -> None:
  """Defines the flags (at `run`, not at import: see tools/visualize.py).

  `--workdir`, `--gin_file` and `--gin_bindings` are the launch layer's.
  """
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
  flags.DEFINE_enum("cls_slots", "auto", list(CLS_SLOT_MODES),
                    "CLS row of each frame (module docstring).")
  flags.DEFINE_bool("overwrite", False, "Recompute existing output shards.")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  workdir = launch.WORKDIR.value
  gin_files = gin_files_for(launch.GIN_FILES.value, workdir)
  if gin_files:
    launch.parse_gin(gin_files, launch.GIN_BINDINGS.value)
    towers = towers_from_gin(workdir, f.checkpoint)
  elif f.model_size:
    if workdir:
      raise app.UsageError(f"{workdir} has no operative_config.gin: pass"
                           " --gin_file, or --checkpoint without --workdir")
    towers = towers_from_size(
        f.model_size, num_frames=f.num_frames, frame_token=f.frame_token,
        image_size=f.image_size, min_resize=f.min_resize,
        text_max_length=f.text_max_length, checkpoint=f.checkpoint)
  else:
    raise app.UsageError("give --gin_file (or a --workdir with"
                         " operative_config.gin) or --model_size")
  summary = extract(
      f.input, f.output_dir, towers, batch_size=f.batch_size,
      keep_frames=f.keep_frames, text_embeddings=f.text_embeddings,
      class_names=launch.parse_class_names(f.class_names), cls_slots=f.cls_slots,
      overwrite=f.overwrite, progress=f.progress)
  print(f"wrote {len(summary['written'])} shard(s), skipped"
        f" {len(summary['skipped'])} existing, to {f.output_dir}")
  print(f"cached mode: --gin_bindings=\"INPUT_MODE='embeddings'\""
        f" --gin_bindings=\"EMBEDDING_DIM={summary['embedding_dim']}\"")
  if summary["text_embedding_dim"]:
    print(f"text embeddings: D = {summary['text_embedding_dim']}"
          f" (segment/label/embedding"
          + (f", {summary['class_name_embeddings']}"
             if summary["class_name_embeddings"] else "") + ")")


def run():
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
