"""CLIP checkpoints (Hugging Face or OpenAI/OpenCLIP) -> unloc_tf towers.

`convert` reads a checkpoint (`clip_checkpoint`), maps its names onto our
variables (`map_to_unloc`), fills our towers (`build_towers`,
`assign_weights`) and writes them as an unloc_tf checkpoint + .npz.

Name mapping (`map_to_unloc`).  Targets are variable paths relative to the
model, as in every unloc_tf task model; D = width, H = heads, P = projection
width; HF names under `vision_model.`/`text_model.`, OpenAI names under
`visual.` (image) or at the root (text):

  * `image_encoder/patch_embedding/kernel` (p, p, 3, D) <- HF
    `embeddings.patch_embedding.weight`, OpenAI `conv1.weight` (D, 3, p, p),
    transposed (2, 3, 1, 0);
  * `image_encoder/class_embedding` (T, D) <- `embeddings.class_embedding`,
    `class_embedding` (D,), tiled to T frames;
  * `image_encoder/position_embedding` <- `embeddings.position_embedding.
    weight`, `positional_embedding` (1 + N, D), interpolated to the image
    size (CLS row dropped in "gap" mode);
  * `image_encoder/ln_pre`, `ln_post` {gamma, beta} <- `pre_layrnorm`,
    `post_layernorm`, `ln_pre`, `ln_post` {weight, bias};
  * `<tower>/resblocks_i/` <- HF `encoder.layers.i.`, OpenAI
    `transformer.resblocks.i.`:
      `layer_norm_1`, `layer_norm_2` <- `layer_norm1/2`, `ln_1/2`;
      `attention/{query,key,value}` kernel (D, H, D/H) = W.T reshaped, bias
        (H, D/H) <- `self_attn.{q,k,v}_proj`, or OpenAI's fused
        `attn.in_proj_weight` (3D, D) / `in_proj_bias` split in three;
      `attention/attention_output` kernel (H, D/H, D) = W.T reshaped <-
        `self_attn.out_proj`, `attn.out_proj`;
      `dense_1`, `dense_2` (kernel W.T) <- `mlp.fc1/fc2`, `mlp.c_fc/c_proj`;
  * `text_encoder/token_embedding/embeddings` <- `embeddings.
    token_embedding.weight`, `token_embedding.weight`;
  * `text_encoder/position_embedding` <- `embeddings.position_embedding.
    weight`, `positional_embedding` (77, D), truncated to the text length;
  * `text_encoder/ln_final` <- `final_layer_norm`, `ln_final`;
  * `video_projection/kernel`, `text_projection/kernel` (D, P) <- HF
    `visual_projection.weight`, `text_projection.weight` (P, D) transposed,
    OpenAI `visual.proj`, `text_projection` (D, P) as they are;
  * `logit_scale` has no unloc_tf variable: it goes to conversion.json.

Ignored on purpose: `*.position_ids` (HF buffers), `*attn_mask` (OpenAI's
causal mask tensor), `input_resolution`, `context_length`, `vocab_size`
(OpenAI JIT attributes).  Anything else that does not map, or any expected
name that is absent, is refused (`CheckpointMismatchError`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf.convert import clip_checkpoint
from unloc_tf.models import variants

# TensorFlow/Keras and unloc_tf's layers are imported inside the functions
# that build towers, so reading and checking a checkpoint (and refusing a
# malicious one) does not load TensorFlow.

_IGNORED = re.compile(
    r"(^|\.)(position_ids|attn_mask|input_resolution|context_length|"
    r"vocab_size)$")


# ---------------------------------------------------------------------------
# Name mapping.
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class _Rule:
  sources: Tuple[str, ...]
  shapes: Tuple[Tuple[int, ...], ...]
  targets: Tuple[str, ...]
  fn: Callable[..., Sequence[np.ndarray]]


def _same(*xs):
  return xs


def _transpose(w):
  return (w.T,)


def _block_rules(layout: str, src: str, dst: str, width: int, heads: int,
                 mlp: int) -> List[_Rule]:
  d, h = width, heads
  hd = d // h
  qkv_kernel = lambda w: w.T.reshape(d, h, hd)
  rules = []
  ln_names = ("layer_norm1", "layer_norm2") if layout == "hf" else (
      "ln_1", "ln_2")
  for ours, theirs in zip(("layer_norm_1", "layer_norm_2"), ln_names):
    rules.append(_Rule((f"{src}{theirs}.weight", f"{src}{theirs}.bias"),
                       ((d,), (d,)),
                       (f"{dst}/{ours}/gamma", f"{dst}/{ours}/beta"), _same))
  att = f"{dst}/attention"
  if layout == "hf":
    for ours, theirs in (("query", "q"), ("key", "k"), ("value", "v")):
      rules.append(_Rule(
          (f"{src}self_attn.{theirs}_proj.weight",
           f"{src}self_attn.{theirs}_proj.bias"), ((d, d), (d,)),
          (f"{att}/{ours}/kernel", f"{att}/{ours}/bias"),
          lambda w, b: (qkv_kernel(w), b.reshape(h, hd))))
    out = f"{src}self_attn.out_proj"
    fc1, fc2 = f"{src}mlp.fc1", f"{src}mlp.fc2"
  else:
    def split(w, b):
      ws, bs = np.split(w, 3, axis=0), np.split(b, 3)
      return tuple(x for wi, bi in zip(ws, bs)
                   for x in (qkv_kernel(wi), bi.reshape(h, hd)))

    rules.append(_Rule(
        (f"{src}attn.in_proj_weight", f"{src}attn.in_proj_bias"),
        ((3 * d, d), (3 * d,)),
        tuple(f"{att}/{n}/{p}" for n in ("query", "key", "value")
              for p in ("kernel", "bias")), split))
    out = f"{src}attn.out_proj"
    fc1, fc2 = f"{src}mlp.c_fc", f"{src}mlp.c_proj"
  rules.append(_Rule(
      (f"{out}.weight", f"{out}.bias"), ((d, d), (d,)),
      (f"{att}/attention_output/kernel", f"{att}/attention_output/bias"),
      lambda w, b: (w.T.reshape(h, hd, d), b)))
  for ours, theirs, shape in (("dense_1", fc1, (mlp, d)),
                              ("dense_2", fc2, (d, mlp))):
    rules.append(_Rule(
        (f"{theirs}.weight", f"{theirs}.bias"), (shape, (shape[0],)),
        (f"{dst}/{ours}/kernel", f"{dst}/{ours}/bias"),
        lambda w, b: (w.T, b)))
  return rules


def _rules(layout: str, arch: clip_checkpoint.ClipArchitecture,
           projections: bool) -> List[_Rule]:
  n = clip_checkpoint.LAYOUT_NAMES[layout]
  dv, dt, p = arch.vision_width, arch.text_width, arch.patch_size
  positions = (arch.image_size // p) ** 2 + 1
  rules = [
      _Rule((n["patch"],), ((dv, 3, p, p),),
            ("image_encoder/patch_embedding/kernel",),
            lambda w: (w.transpose(2, 3, 1, 0),)),
      _Rule((n["class_embedding"],), ((dv,),),
            ("image_encoder/class_embedding",), _same),
      _Rule((n["image_position"],), ((positions, dv),),
            ("image_encoder/position_embedding",), _same),
      _Rule((n["token"],), ((arch.vocabulary_size, dt),),
            ("text_encoder/token_embedding/embeddings",), _same),
      _Rule((n["text_position"],), ((arch.text_length, dt),),
            ("text_encoder/position_embedding",), _same),
  ]
  for key, ours, width in (("ln_pre", "image_encoder/ln_pre", dv),
                           ("ln_post", "image_encoder/ln_post", dv),
                           ("ln_final", "text_encoder/ln_final", dt)):
    rules.append(_Rule((f"{n[key]}.weight", f"{n[key]}.bias"),
                       ((width,), (width,)),
                       (f"{ours}/gamma", f"{ours}/beta"), _same))
  for i in range(arch.vision_layers):
    rules += _block_rules(layout, n["image_block"].format(i),
                          f"image_encoder/resblocks_{i}", dv,
                          arch.vision_heads, arch.vision_mlp)
  for i in range(arch.text_layers):
    rules += _block_rules(layout, n["text_block"].format(i),
                          f"text_encoder/resblocks_{i}", dt, arch.text_heads,
                          arch.text_mlp)
  e = arch.projection_dim
  if e is not None:
    hf = layout == "hf"
    for key, ours, width in (("image_projection", "video_projection", dv),
                             ("text_projection", "text_projection", dt)):
      rules.append(_Rule(
          (n[key],), ((e, width) if hf else (width, e),),
          (f"{ours}/kernel",) if projections else (),
          (_transpose if hf else _same) if projections else (lambda w: ())))
  return rules


def map_to_unloc(ckpt: clip_checkpoint.ClipCheckpoint,
                 arch: clip_checkpoint.ClipArchitecture,
                 projections: bool = True,
                 ignore_regex: Optional[str] = None
                 ) -> Tuple[Dict[str, np.ndarray], Optional[float]]:
  """Checkpoint tensors -> {our relative variable path: array}.

  Shapes are ours except three that the converter fits to the target model:
  `image_encoder/class_embedding` (D,), `image_encoder/position_embedding`
  and `text_encoder/position_embedding` at the checkpoint's sizes.

  Args:
    ckpt: the loaded checkpoint.
    arch: its architecture (`clip_checkpoint.infer_architecture`).
    projections: map the CLIP projections to `video_projection` /
      `text_projection` (else they are read and dropped).
    ignore_regex: checkpoint names matching it (`re.search`) are dropped
      before matching (extra tensors of a checkpoint variant).

  Returns:
    (weights, logit_scale or None).

  Raises:
    clip_checkpoint.CheckpointMismatchError: listing unmatched names (in
      the checkpoint, mapped to nothing), missing names (expected, absent)
      and shape mismatches; nothing is returned then.
  """
  t = ckpt.tensors
  rules = _rules(ckpt.layout, arch, projections)
  known = {s for r in rules for s in r.sources}
  logit_name = clip_checkpoint.LAYOUT_NAMES[ckpt.layout]["logit_scale"]
  known.add(logit_name)
  ignore = re.compile(ignore_regex) if ignore_regex else None
  unmatched = sorted(k for k in t if k not in known and not _IGNORED.search(k)
                     and not (ignore and ignore.search(k)))
  missing, shape_errors, out = [], [], {}
  if arch.projection_dim is None and projections:
    missing += [clip_checkpoint.LAYOUT_NAMES[ckpt.layout][k]
                for k in ("image_projection", "text_projection")]
  for rule in rules:
    absent = [s for s in rule.sources if s not in t]
    if absent:
      missing += absent
      continue
    bad = [f"{s}: has {tuple(t[s].shape)}, expected {shape}"
           for s, shape in zip(rule.sources, rule.shapes)
           if tuple(t[s].shape) != tuple(shape)]
    if bad:
      shape_errors += bad
      continue
    values = rule.fn(*(t[s] for s in rule.sources))
    out.update(zip(rule.targets, (np.asarray(v, np.float32) for v in values)))
  if unmatched or missing or shape_errors:
    lines = [f"{ckpt.weights_file} does not map completely onto the CLIP "
             f"towers ({ckpt.layout} names, {arch.vision_layers} vision / "
             f"{arch.text_layers} text blocks); nothing was converted."]
    for title, items in (("unmatched (in the checkpoint, mapped to nothing)",
                          unmatched),
                         ("missing (expected, not in the checkpoint)",
                          missing),
                         ("shape mismatches", shape_errors)):
      if items:
        lines.append(f"{len(items)} {title}:")
        lines += [f"  {x}" for x in items]
    raise clip_checkpoint.CheckpointMismatchError(
        "\n".join(lines), unmatched, missing, shape_errors)
  logit = t.get(logit_name)
  return out, (float(np.asarray(logit).reshape(-1)[0])
               if logit is not None else None)


# ---------------------------------------------------------------------------
# Our towers, filled and written.
# ---------------------------------------------------------------------------
def build_towers(arch: clip_checkpoint.ClipArchitecture, num_frames: int = 128,
                 frame_token: str = "token", image_size: Optional[int] = None,
                 text_max_length: Optional[int] = None,
                 projection_dim: Optional[int] = None,
                 normalize_input: bool = True):
  """A built Keras model holding our CLIP towers (+ projections).

  Its variable paths relative to the model are those of every unloc_tf
  task model: `image_encoder/...`, `text_encoder/...`,
  `video_projection/kernel`, `text_projection/kernel`.

  Args:
    arch: checkpoint sizes.
    num_frames: rows of the per-frame CLS table.
    frame_token: "token" or "gap" (`CLIPImageEncoder`).
    image_size: frame size (None: the checkpoint's).
    text_max_length: text positions (None: the checkpoint's).
    projection_dim: width of the projections (None: no projections).
    normalize_input: `CLIPImageEncoder.normalize_input`.

  Returns:
    `ClipTowers` with attributes image_encoder, text_encoder,
    video_projection and text_projection (the last two None without
    projections).
  """
  import keras

  from unloc_tf.layers import clip_image_encoder, clip_text_encoder

  class ClipTowers(keras.Model):

    def __init__(self):
      super().__init__(name="clip")
      image_kwargs = arch.image_encoder_kwargs()
      image_kwargs["image_size"] = image_size or arch.image_size
      text_kwargs = arch.text_encoder_kwargs()
      text_kwargs["max_length"] = text_max_length or arch.text_length
      self.image_encoder = clip_image_encoder.CLIPImageEncoder(
          **image_kwargs, num_frames=num_frames, frame_token=frame_token,
          normalize_input=normalize_input, name="image_encoder")
      self.text_encoder = clip_text_encoder.CLIPTextEncoder(
          **text_kwargs, name="text_encoder")
      self.video_projection = self.text_projection = None
      if projection_dim:
        self.video_projection = keras.layers.Dense(
            projection_dim, use_bias=False, name="video_projection")
        self.text_projection = keras.layers.Dense(
            projection_dim, use_bias=False, name="text_projection")

    def build(self, input_shape=None):
      s = self.image_encoder.image_size
      self.image_encoder.build((None, num_frames, s, s, 3))
      self.text_encoder.build((None, self.text_encoder.max_length))
      if self.video_projection is not None:
        self.video_projection.build((None, arch.vision_width))
        self.text_projection.build((None, arch.text_width))
      self.built = True

    def call(self, inputs):
      raise NotImplementedError(
          "ClipTowers only holds weights: call image_encoder, text_encoder "
          "and the projections")

  towers = ClipTowers()
  towers.build()
  return towers


def assign_weights(towers, weights: Dict[str, np.ndarray]) -> List[str]:
  """Copies `map_to_unloc` weights into `build_towers` variables.

  The CLS vector is tiled to the table (`adapt_class_embedding`; dropped in
  "gap" mode), the image positions are interpolated to the image size
  (`adapt_position_embedding`), the text positions truncated (or extended
  with the fresh rows, `adapt_text_position_embedding`).

  Returns:
    Paths whose value was adapted (resized/tiled).

  Raises:
    ValueError: a variable without a value, or a value without a variable,
      or a shape that no adaptation fits (names the variable).
  """
  import keras

  from unloc_tf.layers import clip_image_encoder, clip_text_encoder
  from unloc_tf.train import checkpoints

  variables = checkpoints.variables_by_path(towers)
  image = towers.image_encoder
  weights = dict(weights)
  if image.frame_token == "gap":
    weights.pop("image_encoder/class_embedding", None)
  missing = sorted(set(variables) - set(weights))
  extra = sorted(set(weights) - set(variables))
  if missing or extra:
    raise ValueError(
        f"internal: converted weights and towers differ: without value "
        f"{missing}, without variable {extra}")
  adapted = []
  for path, var in variables.items():
    value = weights[path]
    shape = tuple(var.shape)
    if path == "image_encoder/class_embedding":
      value = clip_image_encoder.adapt_class_embedding(value, shape[0])
    elif path == "image_encoder/position_embedding" and value.shape != shape:
      value = clip_image_encoder.adapt_position_embedding(
          value, shape[0], has_cls=image.frame_token == "token",
          source_has_cls=True)
    elif path == "text_encoder/position_embedding" and value.shape != shape:
      value = clip_text_encoder.adapt_text_position_embedding(
          value, keras.ops.convert_to_numpy(var))
    if value is not weights[path]:
      adapted.append(path)
    if tuple(value.shape) != shape:
      raise ValueError(f"{path}: converted value has shape {value.shape}, "
                       f"the variable {shape}")
    var.assign(value.astype(var.dtype))
  return adapted


def tokenizer_report(ckpt: clip_checkpoint.ClipCheckpoint,
                     arch: clip_checkpoint.ClipArchitecture) -> Dict[str, Any]:
  """How the checkpoint's vocabulary relates to unloc_tf's shipped one."""
  from unloc_tf.data import text

  report: Dict[str, Any] = {"files": [os.path.basename(p)
                                      for p in ckpt.tokenizer_files]}
  standard = arch.vocabulary_size == text.EOS_ID + 1
  files = {os.path.basename(p): p for p in ckpt.tokenizer_files}
  if ckpt.layout == "openai":
    report["note"] = (
        "an OpenAI/OpenCLIP .pt has no tokenizer files beside it; OpenAI's "
        "models use the standard 49408-token CLIP BPE vocabulary, which "
        "unloc_tf ships (unloc_tf/data/assets/bpe_simple_vocab_16e6.txt.gz) "
        "and TextTokenizer uses by default"
        + ("" if standard else
           f"; but this checkpoint has {arch.vocabulary_size} token "
           "embeddings, so it was trained with another vocabulary"))
    report["same_as_shipped"] = None
    return report
  if "vocab.json" not in files or "merges.txt" not in files:
    report["note"] = "no vocab.json/merges.txt beside the checkpoint"
    report["same_as_shipped"] = None
    return report
  with open(files["vocab.json"], encoding="utf-8") as f:
    vocab = json.load(f)
  with open(files["merges.txt"], encoding="utf-8") as f:
    merges = [line for line in f.read().split("\n")[1:] if line]
  same = False
  if len(vocab) == text.EOS_ID + 1:
    # The construction TextTokenizer uses for the shipped vocabulary.
    shipped_vocab, shipped_merges = text._read_vocabulary(
        text.vocabulary_path())
    same = vocab == shipped_vocab and merges == list(shipped_merges)
  report["same_as_shipped"] = same
  if same:
    report["note"] = ("vocab.json/merges.txt are the OpenAI CLIP vocabulary "
                      "unloc_tf ships: TextTokenizer() needs no argument")
  else:
    report["note"] = (
        f"vocab.json ({len(vocab)} tokens) differs from unloc_tf's shipped "
        f"OpenAI CLIP vocabulary ({text.EOS_ID + 1} tokens); "
        "unloc_tf.data.text.TextTokenizer only supports the OpenAI "
        "vocabulary, so tokenise with this model's own tokenizer")
  eos = clip_checkpoint.sub_config(ckpt.config, "text").get("eos_token_id")
  if eos is not None and eos not in (2, arch.vocabulary_size - 1):
    report["warning"] = (
        f"text_config.eos_token_id is {eos}, not the largest id "
        f"{arch.vocabulary_size - 1}: our EOS pooling takes the argmax of "
        "the token ids (as OpenAI CLIP), transformers the first EOS")
  return report


def convert(source: str, output_dir: str, *,
            model_size: Optional[str] = None, num_frames: int = 128,
            frame_token: str = "token", image_size: Optional[int] = None,
            text_max_length: Optional[int] = None,
            vision_heads: Optional[int] = None,
            text_heads: Optional[int] = None, projections: bool = True,
            ignore_regex: Optional[str] = None,
            overwrite: bool = False) -> Dict[str, Any]:
  """Converts a CLIP checkpoint into unloc_tf initial weights.

  Writes into `output_dir`:
    checkpoints/ckpt-0*  an unloc_tf checkpoint with the variable-path
      index: `trainer.train.init_checkpoint='<output_dir>/checkpoints'`
      (`checkpoints.restore_partial`, which fits the CLS table, positions
      and text length to the model being trained);
    clip_weights.npz  {variable path: array}
      (`checkpoints.load_weights_npz`);
    conversion.json  source, architecture, target sizes, logit scale,
      tokenizer notes;
    vocab.json, merges.txt, ...  the tokenizer files found beside a Hugging
      Face checkpoint (copied as they are).

  Args:
    source: HF directory / .safetensors / .bin, or OpenAI/OpenCLIP .pt.
    output_dir: where to write (created).
    model_size: `models.variants.SIZES` name the checkpoint must match
      (supplies the heads of a .pt, checks the projection width against the
      fusion width).
    num_frames, frame_token, image_size, text_max_length: target sizes
      (None: the checkpoint's image size / text length).
    vision_heads, text_heads: attention heads (see
      `clip_checkpoint.infer_architecture`).
    projections: also write `video_projection` / `text_projection` from the
      CLIP projections (reference `load_projection`).
    ignore_regex: checkpoint names to drop before matching (`map_to_unloc`).
    overwrite: replace an existing conversion in `output_dir`.

  Returns:
    The conversion.json content.

  Raises:
    torch_pickle.UnsafePickleError: a malicious or non-weights pickle.
    clip_checkpoint.CheckpointMismatchError: incomplete or foreign
      checkpoint (lists names).
    ValueError, FileExistsError: see the messages.
  """
  ckpt = clip_checkpoint.load_clip_checkpoint(source)
  arch, notes = clip_checkpoint.infer_architecture(
      ckpt, vision_heads, text_heads, model_size)
  weights, logit_scale = map_to_unloc(ckpt, arch, projections, ignore_regex)
  # TensorFlow only once the checkpoint has been read and mapped.
  from unloc_tf.train import checkpoints

  projection_dim = arch.projection_dim if projections else None
  if model_size is not None and projection_dim is not None:
    fusion = variants.size_config(model_size)["fusion"]["hidden_dim"]
    if fusion != projection_dim:
      raise ValueError(
          f"{ckpt.weights_file}: CLIP projections are {projection_dim} wide "
          f"but {model_size}'s fusion width is {fusion}; pass "
          "--noprojections")
  ckpt_dir = os.path.join(output_dir, "checkpoints")
  npz_path = os.path.join(output_dir, "clip_weights.npz")
  if os.path.exists(ckpt_dir) or os.path.exists(npz_path):
    if not overwrite:
      raise FileExistsError(
          f"{output_dir} already holds a conversion (checkpoints/ or "
          "clip_weights.npz); pass --overwrite to replace it")
    shutil.rmtree(ckpt_dir, ignore_errors=True)
    if os.path.exists(npz_path):
      os.remove(npz_path)
  towers = build_towers(arch, num_frames=num_frames, frame_token=frame_token,
                        image_size=image_size,
                        text_max_length=text_max_length,
                        projection_dim=projection_dim)
  adapted = assign_weights(towers, weights)
  os.makedirs(output_dir, exist_ok=True)
  prefix = checkpoints.Checkpointer(ckpt_dir, towers, max_to_keep=1).save(0)
  checkpoints.save_weights_npz(towers, npz_path)
  copied = []
  for path in ckpt.tokenizer_files:
    shutil.copyfile(path, os.path.join(output_dir, os.path.basename(path)))
    copied.append(os.path.basename(path))
  if ckpt.layout == "openai":
    notes.append("MLP activation: a .pt does not record it; converted as "
                 "quick-GELU (OpenAI's models, OpenCLIP '-quickgelu'); "
                 "OpenCLIP models trained with GELU will not reproduce")
  summary = {
      "source": os.path.abspath(source),
      "weights_file": os.path.abspath(ckpt.weights_file),
      "file_format": ckpt.file_format,
      "layout": ckpt.layout,
      "architecture": dataclasses.asdict(arch),
      "matching_model_size": (model_size
                              or clip_checkpoint.matching_model_size(arch)),
      "target": {
          "num_frames": num_frames, "frame_token": frame_token,
          "image_size": towers.image_encoder.image_size,
          "text_max_length": towers.text_encoder.max_length,
          "projection_dim": projection_dim,
      },
      "adapted": adapted,
      "ignore_regex": ignore_regex,
      "logit_scale": logit_scale,
      "checkpoint": os.path.abspath(prefix),
      "npz": os.path.abspath(npz_path),
      "tokenizer": tokenizer_report(ckpt, arch),
      "notes": notes,
      "num_variables": len(towers.variables),
  }
  with open(os.path.join(output_dir, "conversion.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary
