"""Checkpoint converters: pretrained CLIP and reference (Scenic / Flax) UnLoc
weights into unloc_tf models, and back; torch, transformers, flax and the
msgpack / safetensors packages are never imported.

  clip.convert(source, output_dir, ...)   CLIP checkpoint -> towers checkpoint
  reference.convert(path, model, workdir)  reference tree -> workdir checkpoint
  reference.to_reference(model, workdir, output)  and back

Modules: `torch_pickle` and `safetensors` (file readers), `clip_checkpoint`
(what a CLIP checkpoint holds), `clip` (mapping onto our towers), `msgpack`
(Flax's codec), `reference_io` (reading / writing reference trees),
`reference` (reference names <-> model variables).

Names load on first use, so reading or refusing a CLIP checkpoint does not
import TensorFlow.
"""

from __future__ import annotations

import importlib

_MODULE_OF = {
    "load_state_dict": "torch_pickle",
    "UnsafePickleError": "torch_pickle",
    "TorchFileError": "torch_pickle",
    "read_safetensors": "safetensors",
    "CheckpointMismatchError": "clip_checkpoint",
    "ClipArchitecture": "clip_checkpoint",
    "ClipCheckpoint": "clip_checkpoint",
    "infer_architecture": "clip_checkpoint",
    "load_clip_checkpoint": "clip_checkpoint",
    "matching_model_size": "clip_checkpoint",
    "assign_weights": "clip",
    "build_towers": "clip",
    "map_to_unloc": "clip",
    "tokenizer_report": "clip",
    "MsgpackError": "msgpack",
    "describe_reference_checkpoint": "reference_io",
    "describe_tree": "reference_io",
    "read_reference_tree": "reference_io",
    "write_reference_tree": "reference_io",
    "ParamSpec": "reference",
    "ReferenceTreeMismatch": "reference",
    "build_task_model": "reference",
    "example_inputs": "reference",
    "export_reference_tree": "reference",
    "import_reference_tree": "reference",
    "reference_param_specs": "reference",
    "task_of": "reference",
    "to_reference": "reference",
}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
  if name in _MODULE_OF:
    module = importlib.import_module(f"{__name__}.{_MODULE_OF[name]}")
    return getattr(module, name)
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
