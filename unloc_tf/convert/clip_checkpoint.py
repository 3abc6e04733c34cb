"""What a CLIP checkpoint holds: its tensors, naming scheme and sizes.

Numpy only (no TensorFlow, torch, transformers or safetensors package), so
reading, checking and refusing a checkpoint is cheap and safe.

Inputs (`load_clip_checkpoint`):
  * a Hugging Face `CLIPModel` directory: `model.safetensors` (or a sharded
    `model.safetensors.index.json`, or `pytorch_model.bin`) + `config.json`
    [+ `vocab.json`, `merges.txt`], or the `.safetensors` file itself;
  * an OpenAI or OpenCLIP `.pt`: a torch.save state dict (zip or legacy) or
    a TorchScript archive (OpenAI's released files), read by `torch_pickle`'s
    restricted unpickler, which refuses any global but the tensor-rebuild
    ones.

Sizes (`infer_architecture`) come from the tensor shapes.  Attention heads
are not in the weights: they come from `vision_heads` / `text_heads`, else
the HF config, else `model_size`, else a named size whose shapes match, else
OpenAI's rule heads = width / 64.

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
import zipfile
from typing import Dict, List, Optional, Tuple

import numpy as np

from unloc_tf.convert import safetensors, torch_pickle
from unloc_tf.models import variants

HF_FILES = ("model.safetensors", "model.safetensors.index.json",
            "pytorch_model.bin")
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer.json",
                   "tokenizer_config.json", "special_tokens_map.json")
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
        tensors.update(safetensors.read_safetensors(os.path.join(path, shard)))
      return tensors, candidate, "safetensors"
    path = candidate
  if path.endswith(".safetensors"):
    return safetensors.read_safetensors(path), path, "safetensors"
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
# Checkpoint names (or name templates) of each layout, "hf" or "openai": read
# by `infer_architecture` and by the name mapping (`clip.map_to_unloc`).
LAYOUT_NAMES = {
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
  t, names = ckpt.tensors, LAYOUT_NAMES[ckpt.layout]
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
    sub = sub_config(ckpt.config, tower)
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


def sub_config(config: Optional[dict], tower: str) -> dict:
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
    sub = sub_config(config, tower)
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
