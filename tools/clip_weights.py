"""CLIP checkpoints (Hugging Face or OpenAI/OpenCLIP) -> unloc_tf tower weights.

Library of `tools/convert_clip_checkpoint.py`; torch, transformers and the
safetensors package are never imported.

Inputs (`load_clip_checkpoint`):
  * a Hugging Face `CLIPModel` directory: `model.safetensors` (or a sharded
    `model.safetensors.index.json`, or `pytorch_model.bin`) + `config.json`
    [+ `vocab.json`, `merges.txt`], or the `.safetensors` file itself.
    Safetensors is read with numpy (8-byte little-endian header length, JSON
    header, raw buffer); F32/F16/BF16/F64 become float32.
  * an OpenAI or OpenCLIP `.pt`: a torch.save state dict (zip or legacy) or
    a TorchScript archive (OpenAI's released files), read by
    `torch_pickle`'s restricted unpickler, which refuses any global but the
    tensor-rebuild ones.

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

Attention heads are not in the weights: they come from `--vision_heads` /
`--text_heads`, else the HF config, else `--model_size`, else a named size
whose shapes match, else OpenAI's rule heads = width / 64.

Not reproducible by our towers (refused): MLP activations other than
quick-GELU (HF `hidden_act`; a `.pt` does not record it: OpenAI's models and
OpenCLIP's `-quickgelu` ones use quick-GELU, other OpenCLIP models use GELU
and would convert but not reproduce), LayerNorm epsilons other than 1e-5.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import zipfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf.models import variants

from . import torch_pickle

# TensorFlow/Keras and unloc_tf's layers are imported inside the functions
# that build towers, so reading and checking a checkpoint (and refusing a
# malicious one) does not load TensorFlow.

HF_FILES = ("model.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json",
                   "tokenizer_config.json", "special_tokens_map.json")
_IGNORED = re.compile(
    r"(^|\.)(position_ids|attn_mask|input_resolution|context_length|"
    r"vocab_size)$")
_LAYER_NORM_EPS = 1e-5


class CheckpointMismatchError(ValueError):
  """A checkpoint whose names/shapes do not map completely onto our towers.

  Attributes:
    unmatched: checkpoint names that map to nothing.
    missing: expected checkpoint names that are absent.
    shape_errors: "name: has (...), expected (...)" lines.
  """

  def __init__(self, message: str, unmatched=(), missing=(),
               shape_errors=()):
    super().__init__(message)
    self.unmatched = list(unmatched)
    self.missing = list(missing)
    self.shape_errors = list(shape_errors)


# ---------------------------------------------------------------------------
# Safetensors without the safetensors package.
# ---------------------------------------------------------------------------
_ST_DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "BF16": "bfloat16", "I64": np.dtype("<i8"), "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"), "I8": np.dtype("i1"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def read_safetensors(path: str) -> Dict[str, np.ndarray]:
  """{name: array} of a .safetensors file; floats become float32.

  Format: 8-byte little-endian header length N, N bytes of JSON
  {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__"},
  then the raw little-endian buffer (offsets relative to its start).

  Raises:
    ValueError: naming the file (and tensor) on a malformed header, an
      unsupported dtype or offsets outside the buffer.
  """
  size = os.path.getsize(path)
  with open(path, "rb") as f:
    head = f.read(8)
    if len(head) != 8:
      raise ValueError(f"{path}: too short for a safetensors file")
    n = int.from_bytes(head, "little")
    if n > size - 8 or n > 100 * 2**20:
      raise ValueError(
          f"{path}: header length {n} does not fit the file ({size} bytes):"
          " not a safetensors file")
    try:
      header = json.loads(f.read(n))
    except ValueError as e:
      raise ValueError(f"{path}: safetensors header is not JSON ({e})") from e
  if not isinstance(header, dict):
    raise ValueError(f"{path}: safetensors header is not a JSON object")
  if size > 8 + n:
    buffer = np.memmap(path, np.uint8, "r", offset=8 + n)
  else:
    buffer = np.zeros(0, np.uint8)
  out = {}
  for name, info in header.items():
    if name == "__metadata__":
      continue
    try:
      dtype = _ST_DTYPES[info["dtype"]]
      shape = tuple(int(s) for s in info["shape"])
      begin, end = (int(x) for x in info["data_offsets"])
    except (KeyError, TypeError, ValueError) as e:
      raise ValueError(
          f"{path}: tensor {name!r}: bad or unsupported header entry {info!r}"
          f" (dtypes: {sorted(_ST_DTYPES)})") from e
    itemsize = 2 if isinstance(dtype, str) else dtype.itemsize
    if not 0 <= begin <= end <= buffer.size or (
        end - begin != math.prod(shape) * itemsize):
      raise ValueError(
          f"{path}: tensor {name!r} ({info['dtype']} {list(shape)}): data "
          f"offsets [{begin}, {end}] do not fit its size or the "
          f"{buffer.size}-byte buffer")
    raw = np.asarray(buffer[begin:end])
    if isinstance(dtype, str):  # bfloat16 = the high half of a float32.
      array = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    else:
      array = raw.view(dtype)
    array = array.reshape(shape)
    if array.dtype.kind == "f":
      array = array.astype(np.float32)
    out[name] = np.array(array)
  return out


# ---------------------------------------------------------------------------
# Loading.
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class ClipCheckpoint:
  """Tensors of a CLIP checkpoint and where they came from.

  Attributes:
    path: the file or directory given.
    weights_file: the file(s) the tensors were read from.
    file_format: "safetensors", "torch zip", "torchscript" or "torch legacy".
    layout: "hf" or "openai" (the naming scheme).
    tensors: {name: float32 array (ints kept)}.
    config: the HF config.json dict, or None.
    tokenizer_files: paths of the tokenizer files found beside the weights.
  """

  path: str
  weights_file: str
  file_format: str
  layout: str
  tensors: Dict[str, np.ndarray]
  config: Optional[dict] = None
  tokenizer_files: List[str] = dataclasses.field(default_factory=list)


def _torch_format(path: str) -> str:
  if not zipfile.is_zipfile(path):
    return "torch legacy"
  with zipfile.ZipFile(path) as z:
    if any("/code/" in n or n.endswith("/constants.pkl")
           for n in z.namelist()):
      return "torchscript"
  return "torch zip"


def _read_weights(path: str) -> Tuple[Dict[str, np.ndarray], str, str]:
  """(tensors, file(s) read, file format) of a weights file or HF dir."""
  if os.path.isdir(path):
    for name in HF_FILES:
      candidate = os.path.join(path, name)
      if os.path.exists(candidate):
        break
    else:
      raise FileNotFoundError(
          f"{path}: no {', '.join(HF_FILES)} in this directory (a Hugging "
          "Face CLIP directory), and it is not a .pt file")
    if name.endswith(".index.json"):
      with open(candidate) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
      tensors = {}
      for shard in shards:
        tensors.update(read_safetensors(os.path.join(path, shard)))
      return tensors, candidate, "safetensors"
    path = candidate
  if path.endswith(".safetensors"):
    return read_safetensors(path), path, "safetensors"
  tensors = torch_pickle.load_state_dict(path)
  tensors = {k: (v.astype(np.float32) if v.dtype.kind == "f" else v)
             for k, v in tensors.items()}
  return tensors, path, _torch_format(path)


def detect_layout(tensors: Dict[str, np.ndarray], where: str) -> str:
  """"hf" (vision_model./text_model.) or "openai" (visual./transformer.)."""
  names = set(tensors)
  if any(k.startswith(("vision_model.", "text_model.")) for k in names):
    return "hf"
  if any(k.startswith("visual.") for k in names) or (
      "token_embedding.weight" in names):
    return "openai"
  sample = sorted(names)[:8]
  raise CheckpointMismatchError(
      f"{where}: neither Hugging Face CLIPModel names (vision_model.*, "
      f"text_model.*) nor OpenAI CLIP names (visual.*, token_embedding.*); "
      f"first names: {sample}", unmatched=sorted(names))


def load_clip_checkpoint(path: str) -> ClipCheckpoint:
  """Reads a HF CLIP directory / .safetensors / .bin or an OpenAI .pt.

  Raises:
    torch_pickle.UnsafePickleError: a .pt naming a disallowed global.
    torch_pickle.TorchFileError, ValueError, FileNotFoundError: unreadable.
    CheckpointMismatchError: not CLIP names.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"{path}: no such file or directory")
  tensors, weights_file, file_format = _read_weights(path)
  folder = path if os.path.isdir(path) else os.path.dirname(path)
  config = None
  layout = detect_layout(tensors, weights_file)
  config_path = os.path.join(folder, "config.json")
  if layout == "hf" and os.path.exists(config_path):
    with open(config_path) as f:
      config = json.load(f)
  tokenizer_files = []
  if layout == "hf":
    tokenizer_files = [os.path.join(folder, n) for n in TOKENIZER_FILES
                       if os.path.exists(os.path.join(folder, n))]
  return ClipCheckpoint(path, weights_file, file_format, layout, tensors,
                        config, tokenizer_files)


# ---------------------------------------------------------------------------
# Architecture.
# ---------------------------------------------------------------------------
_NAMES = {
    "hf": dict(
        patch="vision_model.embeddings.patch_embedding.weight",
        class_embedding="vision_model.embeddings.class_embedding",
        image_position="vision_model.embeddings.position_embedding.weight",
        ln_pre="vision_model.pre_layrnorm",
        ln_post="vision_model.post_layernorm",
        image_block="vision_model.encoder.layers.{}.",
        token="text_model.embeddings.token_embedding.weight",
        text_position="text_model.embeddings.position_embedding.weight",
        text_block="text_model.encoder.layers.{}.",
        ln_final="text_model.final_layer_norm",
        image_projection="visual_projection.weight",
        text_projection="text_projection.weight",
        logit_scale="logit_scale",
        fc1="mlp.fc1.weight"),
    "openai": dict(
        patch="visual.conv1.weight",
        class_embedding="visual.class_embedding",
        image_position="visual.positional_embedding",
        ln_pre="visual.ln_pre",
        ln_post="visual.ln_post",
        image_block="visual.transformer.resblocks.{}.",
        token="token_embedding.weight",
        text_position="positional_embedding",
        text_block="transformer.resblocks.{}.",
        ln_final="ln_final",
        image_projection="visual.proj",
        text_projection="text_projection",
        logit_scale="logit_scale",
        fc1="mlp.c_fc.weight"),
}


@dataclasses.dataclass
class ClipArchitecture:
  """Sizes of a CLIP checkpoint (the towers' constructor arguments).

  `image_size` and `text_length` are the checkpoint's own (224/77 for
  OpenAI's models); the converter may resize them.  `projection_dim` is None
  if the checkpoint has no projections.
  """

  patch_size: int
  image_size: int
  vision_width: int
  vision_layers: int
  vision_heads: int
  vision_mlp: int
  vocabulary_size: int
  text_length: int
  text_width: int
  text_layers: int
  text_heads: int
  text_mlp: int
  projection_dim: Optional[int]

  def image_encoder_kwargs(self) -> Dict[str, int]:
    """`CLIPImageEncoder` arguments (as `models.variants.SIZES`)."""
    return dict(patch_size=self.patch_size, hidden_dim=self.vision_width,
                num_layers=self.vision_layers, num_heads=self.vision_heads,
                intermediate_dim=self.vision_mlp, image_size=self.image_size)

  def text_encoder_kwargs(self) -> Dict[str, int]:
    """`CLIPTextEncoder` arguments (as `models.variants.SIZES`)."""
    return dict(vocabulary_size=self.vocabulary_size,
                hidden_dim=self.text_width, num_layers=self.text_layers,
                num_heads=self.text_heads, intermediate_dim=self.text_mlp,
                max_length=self.text_length)


def _count_blocks(tensors, template: str) -> int:
  pattern = re.compile(re.escape(template).replace(r"\{\}", r"(\d+)"))
  indices = {int(m.group(1)) for k in tensors
             for m in [pattern.match(k)] if m}
  return max(indices) + 1 if indices else 0


def _size_differences(arch: ClipArchitecture, size: str) -> List[str]:
  cfg = variants.size_config(size)
  diffs = []
  for tower, kwargs in (("image_encoder", arch.image_encoder_kwargs()),
                        ("text_encoder", arch.text_encoder_kwargs())):
    for key, value in kwargs.items():
      if key in ("image_size", "max_length"):
        continue  # resized, not structural
      if value is not None and cfg[tower].get(key) != value:
        diffs.append(f"{tower}.{key}: checkpoint {value}, {size} "
                     f"{cfg[tower].get(key)}")
  return diffs


def matching_model_size(arch: ClipArchitecture) -> Optional[str]:
  """The named size (`models.variants.SIZES`) with the same towers, or None
  (image size and text length are not compared: they are resized)."""
  for size in variants.SIZES:
    if not _size_differences(arch, size):
      return size
  return None


def infer_architecture(ckpt: ClipCheckpoint,
                       vision_heads: Optional[int] = None,
                       text_heads: Optional[int] = None,
                       model_size: Optional[str] = None
                       ) -> Tuple[ClipArchitecture, List[str]]:
  """Sizes from the tensor shapes (+ heads, see the module docstring).

  Args:
    ckpt: the loaded checkpoint.
    vision_heads, text_heads: explicit head counts, or None.
    model_size: a `models.variants.SIZES` name the checkpoint must match, or
      None.

  Returns:
    (architecture, notes): notes say where the heads came from.

  Raises:
    CheckpointMismatchError: a tensor needed to read the sizes is absent.
    ValueError: the checkpoint does not match `model_size`, the HF config
      disagrees with the shapes or asks for what our towers cannot do
      (activation, LayerNorm epsilon), or the heads cannot be determined.
  """
  t, names = ckpt.tensors, _NAMES[ckpt.layout]
  where = ckpt.weights_file
  needed = [names[k] for k in ("patch", "image_position", "token",
                               "text_position")]
  absent = [n for n in needed if n not in t]
  if absent:
    raise CheckpointMismatchError(
        f"{where}: cannot read the model sizes, missing {absent}",
        missing=absent)
  patch = t[names["patch"]]
  if patch.ndim != 4 or patch.shape[1] != 3 or (
      patch.shape[2] != patch.shape[3]):
    raise ValueError(f"{where}: {names['patch']} has shape {patch.shape}, "
                     "expected (width, 3, p, p)")
  width, _, p, _ = patch.shape
  positions = t[names["image_position"]].shape[0]
  grid = math.isqrt(positions - 1)
  if grid * grid != positions - 1:
    raise ValueError(
        f"{where}: {names['image_position']} has {positions} rows, not 1 + a"
        " square number of patches")
  vision_layers = _count_blocks(t, names["image_block"])
  text_layers = _count_blocks(t, names["text_block"])
  token = t[names["token"]]

  def mlp(template, layers):
    key = template.format(0) + names["fc1"]
    return int(t[key].shape[0]) if layers and key in t else None

  projection = None
  for key in ("image_projection", "text_projection"):
    w = t.get(names[key])
    if projection is None and w is not None and w.ndim == 2:
      projection = int(w.shape[0] if ckpt.layout == "hf" else w.shape[1])
  arch = ClipArchitecture(
      patch_size=int(p), image_size=int(grid * p), vision_width=int(width),
      vision_layers=vision_layers, vision_heads=0,
      vision_mlp=mlp(names["image_block"], vision_layers) or 4 * int(width),
      vocabulary_size=int(token.shape[0]),
      text_length=int(t[names["text_position"]].shape[0]),
      text_width=int(token.shape[1]), text_layers=text_layers, text_heads=0,
      text_mlp=mlp(names["text_block"], text_layers) or 4 * int(
          token.shape[1]),
      projection_dim=projection)
  if ckpt.config is not None:
    _check_hf_config(ckpt.config, arch, where)
  heads: Dict[str, Optional[int]] = {"vision": vision_heads,
                                     "text": text_heads}
  sources = {k: f"--{k}_heads" for k, v in heads.items() if v}

  def fill(values: Dict[str, Optional[int]], source: str):
    for tower, value in values.items():
      if not heads[tower] and value:
        heads[tower], sources[tower] = int(value), source

  for tower in ("vision", "text"):
    sub = _sub_config(ckpt.config, tower)
    fill({tower: sub.get("num_attention_heads")}, "config.json")
  size, source = model_size, f"--model_size={model_size}"
  if size is None:
    arch.vision_heads, arch.text_heads = heads["vision"], heads["text"]
    size = matching_model_size(arch)
    source = f"model size {size} (same shapes)"
  if size is not None:
    cfg = variants.size_config(size)
    fill({"vision": cfg["image_encoder"]["num_heads"],
          "text": cfg["text_encoder"]["num_heads"]}, source)
  for tower, tower_width in (("vision", arch.vision_width),
                             ("text", arch.text_width)):
    if not heads[tower]:
      if tower_width % 64:
        raise ValueError(
            f"{where}: the number of {tower} attention heads is not in the "
            f"checkpoint and width {tower_width} is not a multiple of 64 "
            f"(OpenAI's rule heads = width / 64); pass --{tower}_heads")
      fill({tower: tower_width // 64}, "OpenAI's rule width / 64")
    if tower_width % heads[tower]:
      raise ValueError(
          f"{where}: {tower} width {tower_width} is not divisible by "
          f"{heads[tower]} heads ({sources[tower]})")
  arch.vision_heads, arch.text_heads = heads["vision"], heads["text"]
  notes = [f"attention heads: vision {arch.vision_heads} "
           f"({sources['vision']}), text {arch.text_heads} "
           f"({sources['text']})"]
  if model_size is not None:
    diffs = _size_differences(arch, model_size)
    if diffs:
      raise ValueError(
          f"{where} does not match --model_size={model_size}:\n  "
          + "\n  ".join(diffs))
  return arch, notes


def _sub_config(config: Optional[dict], tower: str) -> dict:
  """`<tower>_config` of a HF CLIP config (old files: `<tower>_config_dict`)."""
  config = config or {}
  return (config.get(f"{tower}_config")
          or config.get(f"{tower}_config_dict") or {})


def _check_hf_config(config: dict, arch: ClipArchitecture, where: str):
  """Config fields our towers cannot follow, or that contradict shapes."""
  problems = []
  for tower, width, layers, mlp in (
      ("vision", arch.vision_width, arch.vision_layers, arch.vision_mlp),
      ("text", arch.text_width, arch.text_layers, arch.text_mlp)):
    sub = _sub_config(config, tower)
    act = sub.get("hidden_act", "quick_gelu")
    if act != "quick_gelu":
      problems.append(
          f"{tower}_config.hidden_act is {act!r}: our towers use quick-GELU "
          "(keras-hub CLIPEncoderLayer via clip_image_encoder.clip_blocks)")
    eps = float(sub.get("layer_norm_eps", _LAYER_NORM_EPS))
    if not math.isclose(eps, _LAYER_NORM_EPS, rel_tol=1e-6):
      problems.append(
          f"{tower}_config.layer_norm_eps is {eps}: keras-hub's "
          f"CLIPEncoderLayer fixes 1e-5")
    for key, value in (("hidden_size", width), ("num_hidden_layers", layers),
                       ("intermediate_size", mlp)):
      if key in sub and int(sub[key]) != value:
        problems.append(f"{tower}_config.{key} is {sub[key]} but the "
                        f"weights say {value}")
  if problems:
    raise ValueError(f"{where}: config.json:\n  " + "\n  ".join(problems))


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


def _rules(layout: str, arch: ClipArchitecture,
           projections: bool) -> List[_Rule]:
  n = _NAMES[layout]
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


def map_to_unloc(ckpt: ClipCheckpoint, arch: ClipArchitecture,
                 projections: bool = True,
                 ignore_regex: Optional[str] = None
                 ) -> Tuple[Dict[str, np.ndarray], Optional[float]]:
  """Checkpoint tensors -> {our relative variable path: array}.

  Shapes are ours except three that the converter fits to the target model:
  `image_encoder/class_embedding` (D,), `image_encoder/position_embedding`
  and `text_encoder/position_embedding` at the checkpoint's sizes.

  Args:
    ckpt: the loaded checkpoint.
    arch: its architecture (`infer_architecture`).
    projections: map the CLIP projections to `video_projection` /
      `text_projection` (else they are read and dropped).
    ignore_regex: checkpoint names matching it (`re.search`) are dropped
      before matching (extra tensors of a checkpoint variant).

  Returns:
    (weights, logit_scale or None).

  Raises:
    CheckpointMismatchError: listing unmatched names (in the checkpoint,
      mapped to nothing), missing names (expected, absent) and shape
      mismatches; nothing is returned then.
  """
  t = ckpt.tensors
  rules = _rules(ckpt.layout, arch, projections)
  known = {s for r in rules for s in r.sources}
  logit_name = _NAMES[ckpt.layout]["logit_scale"]
  known.add(logit_name)
  ignore = re.compile(ignore_regex) if ignore_regex else None
  unmatched = sorted(k for k in t if k not in known and not _IGNORED.search(k)
                     and not (ignore and ignore.search(k)))
  missing, shape_errors, out = [], [], {}
  if arch.projection_dim is None and projections:
    missing += [_NAMES[ckpt.layout][k]
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
    raise CheckpointMismatchError("\n".join(lines), unmatched, missing,
                                  shape_errors)
  logit = t.get(logit_name)
  return out, (float(np.asarray(logit).reshape(-1)[0])
               if logit is not None else None)


# ---------------------------------------------------------------------------
# Our towers, filled and written.
# ---------------------------------------------------------------------------
def build_towers(arch: ClipArchitecture, num_frames: int = 128,
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


def tokenizer_report(ckpt: ClipCheckpoint,
                     arch: ClipArchitecture) -> Dict[str, Any]:
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
  eos = _sub_config(ckpt.config, "text").get("eos_token_id")
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
    vision_heads, text_heads: attention heads (see `infer_architecture`).
    projections: also write `video_projection` / `text_projection` from the
      CLIP projections (reference `load_projection`).
    ignore_regex: checkpoint names to drop before matching (`map_to_unloc`).
    overwrite: replace an existing conversion in `output_dir`.

  Returns:
    The conversion.json content.

  Raises:
    torch_pickle.UnsafePickleError: a malicious or non-weights pickle.
    CheckpointMismatchError: incomplete or foreign checkpoint (lists names).
    ValueError, FileExistsError: see the messages.
  """
  ckpt = load_clip_checkpoint(source)
  arch, notes = infer_architecture(ckpt, vision_heads, text_heads, model_size)
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
      "matching_model_size": model_size or matching_model_size(arch),
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
