"""What TF Serving's GetModelMetadata returns for an export.

`model_metadata(path)` reads `saved_model.pb` of a version directory, or of
the newest version under a model base path (the one a server with the
default version policy serves), and returns the body of
`GET /v1/models/<name>[/versions/<v>]/metadata`:

  {"model_spec": {"name": "unloc", "signature_name": "", "version": "2"},
   "metadata": {"signature_def": {"signature_def": {
       "serving_default": {"inputs": {"frames": {"dtype": "DT_UINT8",
           "tensor_shape": {"dim": [{"size": "-1", "name": ""}, ...],
                            "unknown_rank": false},
           "name": "serving_default_frames:0"}, ...},
         "outputs": {...}, "method_name": "tensorflow/serving/predict",
         "defaults": {}},
       "__saved_model_init_op": {...}}}}}

(the server's JSON: every signature_def of the meta graph, proto field
names, int64 as strings, fields with default values printed).  The gRPC
response holds the same `SignatureDefMap` in an `Any`.

Before answering it checks `assets.extra/export_info.json`, when there is
one, against `saved_model.pb`: the version, and per signature the method and
each input's and output's tensor name, dtype and declared shape
(`signatures` gives that compact form: {"name", "dtype": "uint8", "shape":
[None, N0, S, S, 3]}, None = any size).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

import tensorflow as tf
from google.protobuf import json_format

from unloc_tf.export import op_audit

INIT_OP_SIGNATURE = "__saved_model_init_op"
EXPORT_INFO = os.path.join("assets.extra", "export_info.json")
_VERSION_DIR = re.compile(r"^\d+$")


def existing_versions(export_dir: str) -> List[int]:
  """Sorted integer version subdirectories of a model base path."""
  if not tf.io.gfile.isdir(export_dir):
    return []
  names = [n.rstrip("/") for n in tf.io.gfile.listdir(export_dir)]
  return sorted(int(n) for n in names if _VERSION_DIR.match(n)
                and tf.io.gfile.isdir(os.path.join(export_dir, n)))


def version_dir(path: str) -> Tuple[str, Optional[int]]:
  """(directory, version) of a version directory, or of the newest version
  under a model base path; version None if the directory is not named by
  an integer."""
  if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    name = os.path.basename(os.path.normpath(path))
    return path, int(name) if _VERSION_DIR.match(name) else None
  versions = existing_versions(path)
  if not versions:
    raise FileNotFoundError(
        f"{path!r} holds neither saved_model.pb nor an integer version"
        " directory (TF Serving's layout: <model base path>/<version>/"
        "saved_model.pb)")
  return os.path.join(path, str(versions[-1])), versions[-1]


def tensor_info(info) -> Dict[str, Any]:
  """A signature_def's `TensorInfo`: the graph tensor's name, the dtype
  name and the declared shape (None = any size; None for unknown rank)."""
  shape = tf.TensorShape(info.tensor_shape)
  return {"name": info.name, "dtype": tf.dtypes.as_dtype(info.dtype).name,
          "shape": shape.as_list() if shape.rank is not None else None}


def signature_defs(saved_model_dir: str) -> Dict[str, Any]:
  """{name: SignatureDef proto} of the SavedModel's (first) meta graph."""
  proto = op_audit.read_saved_model(saved_model_dir)
  return dict(proto.meta_graphs[0].signature_def)


def signatures(saved_model_dir: str) -> Dict[str, Dict[str, Any]]:
  """{signature: {"method_name", "inputs": {name: tensor_info}, "outputs"}}
  for the signatures a client calls (not the init op)."""
  return {name: {"method_name": sig.method_name,
                 "inputs": {k: tensor_info(v) for k, v in sig.inputs.items()},
                 "outputs": {k: tensor_info(v)
                             for k, v in sig.outputs.items()}}
          for name, sig in signature_defs(saved_model_dir).items()
          if name != INIT_OP_SIGNATURE}


def check_export_info(saved_model_dir: str,
                      version: Optional[int] = None) -> None:
  """Raises ValueError where export_info.json (if any) disagrees with
  saved_model.pb (or with the directory's `version`)."""
  path = os.path.join(saved_model_dir, EXPORT_INFO)
  if not tf.io.gfile.exists(path):
    return
  with tf.io.gfile.GFile(path) as f:
    info = json.load(f)
  where = f"{path} disagrees with saved_model.pb"
  if version is not None and info.get("version") != version:
    raise ValueError(f"{path} says version {info.get('version')}, but the"
                     f" directory is version {version}")
  actual = signatures(saved_model_dir)
  recorded = info.get("signatures", {})
  if sorted(recorded) != sorted(actual):
    raise ValueError(f"{where}: signatures {sorted(recorded)} in the file,"
                     f" {sorted(actual)} in the SavedModel")
  for name, sig in recorded.items():
    if sig.get("method_name") != actual[name]["method_name"]:
      raise ValueError(f"{where}: signature {name} method_name"
                       f" {sig.get('method_name')!r} in the file,"
                       f" {actual[name]['method_name']!r} in the SavedModel")
    for io in ("inputs", "outputs"):
      if sorted(sig[io]) != sorted(actual[name][io]):
        raise ValueError(f"{where}: signature {name} {io}"
                         f" {sorted(sig[io])} in the file,"
                         f" {sorted(actual[name][io])} in the SavedModel")
      for key, want in actual[name][io].items():
        got = {f: sig[io][key].get(f) for f in want}
        if got != want:
          raise ValueError(f"{where}: signature {name} {io[:-1]} {key}:"
                           f" {got} in the file, {want} in the SavedModel")


def model_metadata(path: str, model_name: str = "unloc") -> Dict[str, Any]:
  """TF Serving's GetModelMetadata response body (module docstring).

  Args:
    path: a version directory, or a model base path (its newest version).
    model_name: the server's --model_name.

  Returns:
    The JSON-ready dict the REST API returns.

  Raises:
    FileNotFoundError: no SavedModel at `path`.
    ValueError: export_info.json disagrees with saved_model.pb.
  """
  directory, version = version_dir(path)
  check_export_info(directory, version)
  defs = {name: json_format.MessageToDict(
      sig, preserving_proto_field_name=True,
      always_print_fields_with_no_presence=True)
          for name, sig in signature_defs(directory).items()}
  spec = {"name": model_name, "signature_name": ""}
  if version is not None:
    spec["version"] = str(version)
  return {"model_spec": spec,
          "metadata": {"signature_def": {"signature_def": defs}}}
