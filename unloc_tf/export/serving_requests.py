"""Requests as TF Serving receives them: gRPC, REST and warm-up records.

A model server turns every request into one tensor per signature input and
feeds them to the signature's graph.  This module does the same conversions
in Python, so a request can be checked end to end without the server:

* gRPC `Predict`: `predict_request(inputs, signature_name)` builds the
  `tensorflow.serving.PredictRequest` a client sends (one `TensorProto` per
  input, by `tf.make_tensor_proto`); `decode_predict_request(request)` gives
  back the arrays the server feeds (`tf.make_ndarray`, the Python twin of
  the server's `Tensor::FromProto`).
* REST `POST /v1/models/<name>:predict`: `rest_body(inputs, ...)` writes the
  JSON body in the row ("instances": one object per video) or columnar
  ("inputs": one value per input) form; `decode_rest_body(body,
  signatures)` decodes a body by TF Serving's rules (util/json_tensor.cc):
  each input's values become the dtype its signature declares — integers
  only for integer dtypes, numbers for floats, true / false for bool, and
  for `tf.string` a plain JSON string (its UTF-8 bytes) or `{"b64": ...}`
  for binary; nested lists must be rectangular; the row form stacks the
  items into a batch dimension, so every input needs one there
  (`class_names` [C] can only be sent in the columnar form).
* Warm-up: `write_warmup_requests(path, requests)` writes the TFRecord file
  of `tensorflow.serving.PredictionLog`s that TF Serving replays from
  `<version>/assets.extra/tf_serving_warmup_requests` before it marks the
  version available (a failing record fails the load; at most 1,000).  The
  records are encoded here without `tensorflow_serving` (protobuf wire format
  with the field numbers of its prediction_log / predict / model protos;
  tests check the bytes equal the real protos'), so exporting needs no
  extra package; `read_warmup_requests` (tests, debugging) does import it.

Inputs are `{name: array}` with the signature's shapes and dtypes, e.g. for
`serving_default` frames uint8 [B, N0, S, S, 3] (or frame_embeddings
float32 [B, N0, D]), frame_mask int32 [B, N0], text_ids / text_mask int32
[B, Nt, L], total_frames int32 [B], secs_per_timestep float32 [B]; for
`serving_text` class_names string [C] or queries string [B, K] instead of
the ids.  Decoded strings are object arrays of `bytes`, as `tf.make_ndarray`
returns them.  `signatures` is `{signature name: {"inputs": {name: {"dtype":
"uint8", ...}}}}`, as `export_info.json` and `serving_metadata.signatures`
give it.

Stricter than the server, so that every mistake names its input: an integer
outside the declared integer dtype (the server wraps it for int8 / int16 /
uint8) and an unknown key in "inputs" (the server ignores it) are errors.
The REST decoder walks every value in Python: for tests and client-side
checks, not for converting large frame requests in bulk.

This module imports nothing from `unloc_tf`, so a process that has only
TensorFlow (the tests' model-server stand-in) can load it by path.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Union

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

DEFAULT_SIGNATURE = "serving_default"  # TF Serving's default signature key
WARMUP_FILENAME = "tf_serving_warmup_requests"  # in assets.extra/
MAX_WARMUP_RECORDS = 1000  # TF Serving's WarmupConsts::kMaxNumRecords

# dtype -> (lowest, highest) of the integer dtypes the REST API converts to.
_INT_RANGES = {name: (int(np.iinfo(name).min), int(np.iinfo(name).max))
               for name in ("int8", "int16", "int32", "int64", "uint8",
                            "uint32", "uint64")}
# Largest integer a float dtype holds exactly (json_tensor.cc's lossless
# rule) and its largest finite value.
_FLOAT_LIMITS = {"float32": (2**24 - 1, float(np.finfo(np.float32).max)),
                 "float64": (2**53 - 1, float(np.finfo(np.float64).max))}
_REST_DTYPES = ("bool", "string", *_INT_RANGES, *_FLOAT_LIMITS)

Signatures = Mapping[str, Mapping[str, Any]]


class DecodedRequest(NamedTuple):
  """A request as the server feeds it: the signature and its input arrays."""
  signature_name: str
  inputs: Dict[str, np.ndarray]


# ---------------------------------------------------------------------------
# gRPC: PredictRequest protos.
# ---------------------------------------------------------------------------
def tensor_proto(value) -> tensor_pb2.TensorProto:
  """`tf.make_tensor_proto(value)`; a constant numeric array of several
  values is stored once with its shape (TF fills a proto with fewer values
  than its shape holds with the last one: `Tensor::FromProto`,
  `tf.make_ndarray`), which keeps all-zero warm-up frames small."""
  array = np.asarray(value)
  if array.dtype.kind == "U":
    array = array.astype(object)
  if array.dtype.kind in "biuf" and array.size > 1:
    first = array.flat[0]  # bitwise: -0.0 and NaN payloads stay exact
    if np.full_like(array, first).tobytes() == array.tobytes():
      return tf.make_tensor_proto(first, dtype=array.dtype,
                                  shape=array.shape)
  return tf.make_tensor_proto(array)


def predict_request(inputs: Mapping[str, Any],
                    signature_name: str = DEFAULT_SIGNATURE,
                    model_name: str = ""):
  """The `tensorflow.serving.PredictRequest` a gRPC client sends.

  Args:
    inputs: {input name: array} in the signature's shapes (module doc).
    signature_name: the signature to run.
    model_name: the server's --model_name ("" in warm-up records).

  Returns:
    A `predict_pb2.PredictRequest` (needs `tensorflow-serving-api`).
  """
  from tensorflow_serving.apis import predict_pb2  # noqa: PLC0415

  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  for key, value in inputs.items():
    request.inputs[key].CopyFrom(tensor_proto(value))
  return request


def decode_predict_request(request, signatures: Optional[Signatures] = None
                           ) -> DecodedRequest:
  """The arrays a server feeds for a `PredictRequest`.

  Args:
    request: a `tensorflow.serving.PredictRequest`.
    signatures: the model's signatures (module doc); given, the request is
      checked as the server does (the signature exists, the inputs are
      exactly its inputs) and each input's dtype against the declared one.

  Returns:
    (signature name, {input: array}); an empty signature_name is
    "serving_default", as for the server.

  Raises:
    ValueError: naming the input and the cause.
  """
  name = request.model_spec.signature_name or DEFAULT_SIGNATURE
  inputs = {}
  for key, proto in request.inputs.items():
    try:
      inputs[key] = tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
      raise ValueError(f"PredictRequest input {key}: not a valid TensorProto"
                       f" ({e})") from e
  if signatures is not None:
    declared = _signature_inputs(signatures, name, "PredictRequest")
    _check_names("PredictRequest", name, list(inputs), declared)
    for key, proto in request.inputs.items():
      got = tf.dtypes.as_dtype(proto.dtype).name
      if got != declared[key]["dtype"]:
        raise ValueError(f"PredictRequest input {key}: dtype {got}, but"
                         f" signature {name} takes {declared[key]['dtype']}")
  return DecodedRequest(name, inputs)


# ---------------------------------------------------------------------------
# REST: JSON bodies.
# ---------------------------------------------------------------------------
def _json_value(array):
  """An array as nested JSON lists; bytes that are not UTF-8 as b64."""
  array = np.asarray(array, object if isinstance(array, bytes) else None)
  if array.dtype.kind not in "SUO":
    return array.tolist()

  def text(v):
    if isinstance(v, bytes):
      try:
        return v.decode("utf-8")
      except UnicodeDecodeError:
        return {"b64": base64.b64encode(v).decode("ascii")}
    return str(v)

  if not array.ndim:
    return text(array.item())
  return np.vectorize(text, otypes=[object])(array).tolist()


def rest_body(inputs: Mapping[str, Any], signature_name: Optional[str] = None,
              columnar: bool = True) -> str:
  """The JSON body of a REST predict request.

  Args:
    inputs: {input name: array} in the signature's shapes (module doc).
    signature_name: written as "signature_name" (None: the server's default,
      serving_default).
    columnar: the "inputs" form ({name: value}); False: the row form
      ("instances": [{name: row b of value}, ...] for b < B), which needs
      the same B on every input and B > 0.

  Returns:
    The body as a JSON string (NaN / Infinity as TF Serving reads them).

  Raises:
    ValueError: for the row form, an input without the batch dimension.
  """
  arrays = {k: np.asarray(v) for k, v in inputs.items()}
  body: Dict[str, Any] = {}
  if signature_name is not None:
    body["signature_name"] = signature_name
  if columnar:
    body["inputs"] = {k: _json_value(v) for k, v in arrays.items()}
    return json.dumps(body)
  batch = {k: (v.shape[0] if v.ndim else None) for k, v in arrays.items()}
  first = next(iter(arrays))
  for key, b in batch.items():
    if b is None or b != batch[first]:
      raise ValueError(
          f"input {key} has shape {list(arrays[key].shape)}, but {first} has"
          f" {batch[first]} rows: the row form ('instances') stacks every"
          " input along a batch dimension; send this request in the columnar"
          " form ('inputs')")
  if not batch[first]:
    raise ValueError("the row form ('instances') cannot send an empty batch"
                     " (TF Serving rejects an empty 'instances' list)")
  body["instances"] = [{k: _json_value(v[b]) for k, v in arrays.items()}
                       for b in range(batch[first])]
  return json.dumps(body)


def _is_b64(value) -> bool:
  return (isinstance(value, dict) and len(value) == 1
          and isinstance(value.get("b64"), str))


def _scalar(where: str, value, dtype: str):
  """One JSON leaf as TF Serving's AddValueToTensor converts it."""
  if dtype == "string":
    if _is_b64(value):
      try:
        return base64.b64decode(value["b64"], validate=True)
      except (binascii.Error, ValueError) as e:
        raise ValueError(f"{where}: {value!r} is not valid base64") from e
    if isinstance(value, str):
      try:
        return value.encode("utf-8")
      except UnicodeEncodeError as e:
        raise ValueError(f"{where}: {value!r} is not valid UTF-8") from e
    raise ValueError(f"{where}: {json.dumps(value)} is not a string (a"
                     ' string input takes JSON strings, or {"b64": ...} for'
                     " binary)")
  if dtype == "bool":
    if isinstance(value, bool):
      return value
    raise ValueError(f"{where}: {json.dumps(value)} is not true or false")
  number = isinstance(value, (int, float)) and not isinstance(value, bool)
  if dtype in _INT_RANGES:
    if not number or isinstance(value, float):
      raise ValueError(f"{where}: {json.dumps(value)} is not an integer"
                       f" ({dtype} takes JSON integers)")
    low, high = _INT_RANGES[dtype]
    if not low <= value <= high:
      raise ValueError(f"{where}: {value} is out of range for {dtype}"
                       f" [{low}, {high}]")
    return value
  if not number:
    raise ValueError(f"{where}: {json.dumps(value)} is not a number ({dtype}"
                     " takes JSON numbers)")
  exact, largest = _FLOAT_LIMITS[dtype]
  if isinstance(value, int) and abs(value) > exact:
    raise ValueError(f"{where}: {value} cannot be a {dtype} without loss of"
                     " precision")
  if np.isfinite(value) and abs(value) > largest:
    raise ValueError(f"{where}: {value} is out of range for {dtype}")
  return value


def _rest_array(where: str, value, dtype: str) -> np.ndarray:
  """A JSON value (scalar or nested lists) -> array of the declared dtype.

  The shape follows the first item of each list (as the server does); every
  list of a level must have that length and every leaf the same depth.
  """
  shape: List[int] = []
  item = value
  while isinstance(item, list):
    shape.append(len(item))
    if not item:
      break
    item = item[0]
  flat = []

  def walk(v, index):
    level = len(index)
    at = f"{where} at {list(index)}" if index else where
    if isinstance(v, list):
      if level >= len(shape):
        raise ValueError(f"{at}: a list where a value was expected (lists"
                         f" nested deeper than the first item's {len(shape)}"
                         " levels)")
      if len(v) != shape[level]:
        raise ValueError(f"{at}: a list of {len(v)} items where the first"
                         f" list of this level has {shape[level]} (nested"
                         " lists must be rectangular)")
      for i, x in enumerate(v):
        walk(x, index + (i,))
    elif level != len(shape):
      raise ValueError(f"{at}: a value where a list was expected (values"
                       f" must all be at depth {len(shape)})")
    else:
      flat.append(_scalar(at, v, dtype))

  walk(value, ())
  np_dtype = object if dtype == "string" else np.dtype(dtype)
  array = np.empty(len(flat), np_dtype)
  array[:] = flat
  return array.reshape(shape)


def decode_rest_body(body: Union[str, bytes, Mapping[str, Any]],
                     signatures: Signatures) -> DecodedRequest:
  """The arrays a server feeds for a REST predict body.

  Args:
    body: the JSON body (text, bytes, or already parsed).
    signatures: the model's signatures (module doc): the server converts
      each input to the dtype its signature declares.

  Returns:
    (signature name, {input: array}), e.g. frames uint8 [B, N0, S, S, 3].

  Raises:
    ValueError: naming the input (and the item / index) and the cause.
  """
  if isinstance(body, (str, bytes)):
    try:
      body = json.loads(body)
    except ValueError as e:
      raise ValueError(f"REST request: the body is not JSON ({e})") from e
  if not isinstance(body, dict):
    raise ValueError("REST request: the body must be a JSON object with"
                     " 'instances' or 'inputs'")
  name = body.get("signature_name", "")
  if not isinstance(name, str):
    raise ValueError("REST request: 'signature_name' must be a string")
  name = name or DEFAULT_SIGNATURE
  declared = _signature_inputs(signatures, name, "REST request")
  for key, info in declared.items():
    if info["dtype"] not in _REST_DTYPES:
      raise ValueError(f"REST request input {key}: TF Serving's JSON API"
                       f" does not convert to {info['dtype']}")
  if ("instances" in body) == ("inputs" in body):
    raise ValueError("REST request: the body needs exactly one of"
                     " 'instances' (row form) and 'inputs' (columnar form)")
  if "inputs" in body:
    return DecodedRequest(name, _columnar(body["inputs"], declared, name))
  return DecodedRequest(name, _rows(body["instances"], declared, name))


def _named(value) -> bool:
  return isinstance(value, dict) and not _is_b64(value)


def _columnar(value, declared, name) -> Dict[str, np.ndarray]:
  if not _named(value):
    if len(declared) > 1:
      raise ValueError(f"REST request: 'inputs' must be an object naming"
                       f" the inputs of {name}: {sorted(declared)}")
    value = {next(iter(declared)): value}
  _check_names("REST request 'inputs'", name, list(value), declared)
  return {k: _rest_array(f"REST request input {k}", value[k],
                         declared[k]["dtype"]) for k in declared}


def _rows(items, declared, name) -> Dict[str, np.ndarray]:
  if not isinstance(items, list) or not items:
    raise ValueError("REST request: 'instances' must be a non-empty list")
  named = _named(items[0])
  if not named and len(declared) > 1:
    raise ValueError(f"REST request: each item of 'instances' must be an"
                     f" object naming the inputs of {name}: {sorted(declared)}")
  rows: Dict[str, List[np.ndarray]] = {k: [] for k in declared}
  for i, item in enumerate(items):
    if _named(item) != named:
      raise ValueError(f"REST request: 'instances' item {i} is"
                       f" {'not ' if named else ''}an object, unlike item 0")
    if not named:
      item = {next(iter(declared)): item}
    _check_names(f"REST request 'instances' item {i}", name, list(item),
                 declared)
    for key in declared:
      row = _rest_array(f"REST request input {key} (instance {i})",
                        item[key], declared[key]["dtype"])
      if rows[key] and row.shape != rows[key][0].shape:
        raise ValueError(f"REST request input {key}: instance {i} has shape"
                         f" {list(row.shape)}, instance 0"
                         f" {list(rows[key][0].shape)} (every instance needs"
                         " the same shape)")
      rows[key].append(row)
  return {k: np.stack(v) for k, v in rows.items()}


def _signature_inputs(signatures: Signatures, name: str, what: str):
  if name not in signatures:
    raise ValueError(f"{what}: signature {name!r} is not in the model (it"
                     f" has {sorted(signatures)})")
  return signatures[name]["inputs"]


def _check_names(what: str, name: str, given, declared) -> None:
  missing = sorted(set(declared) - set(given))
  extra = sorted(set(given) - set(declared))
  if missing or extra:
    raise ValueError(f"{what}: signature {name} takes inputs"
                     f" {sorted(declared)}; missing {missing}, unknown {extra}")


# ---------------------------------------------------------------------------
# Warm-up records.
# ---------------------------------------------------------------------------
def _varint(n: int) -> bytes:
  out = bytearray()
  while True:
    byte, n = n & 0x7F, n >> 7
    out.append(byte | (0x80 if n else 0))
    if not n:
      return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
  """A length-delimited protobuf field (wire type 2)."""
  return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def prediction_log(signature_name: str, inputs: Mapping[str, Any]) -> bytes:
  """A serialized `tensorflow.serving.PredictionLog` whose
  `predict_log.request` asks `signature_name` for `inputs` (no model name:
  the server warms up the version it is loading).  The bytes equal
  `PredictionLog.SerializeToString(deterministic=True)`."""
  # ModelSpec.signature_name = 3; PredictRequest.model_spec = 1, .inputs = 2
  # (map entries: key = 1, value = 2); PredictLog.request = 1;
  # PredictionLog.predict_log = 6.
  request = _field(1, _field(3, signature_name.encode()))
  for key in sorted(inputs):
    entry = _field(1, key.encode()) + _field(
        2, tensor_proto(inputs[key]).SerializeToString())
    request += _field(2, entry)
  return _field(6, _field(1, request))


def write_warmup_requests(path: str,
                          requests: Mapping[str, Mapping[str, Any]]) -> int:
  """Writes TF Serving's warm-up file: one `PredictionLog` per request.

  Args:
    path: `<version>/assets.extra/tf_serving_warmup_requests`.
    requests: {signature name: {input name: array}}, one valid request
      per signature (module doc for the shapes).

  Returns:
    The number of records written.

  Raises:
    ValueError: no requests, or a request without inputs.
  """
  if not requests:
    raise ValueError(
        f"no warm-up requests for {path}: TF Serving replays one request per"
        " signature from this file before serving, so give at least one"
        " {signature name: inputs}")
  if len(requests) > MAX_WARMUP_RECORDS:
    raise ValueError(f"{len(requests)} warm-up requests for {path}; TF"
                     f" Serving reads at most {MAX_WARMUP_RECORDS}")
  for name, inputs in requests.items():
    if not inputs:
      raise ValueError(f"the warm-up request for signature {name} has no"
                       " inputs")
  with tf.io.TFRecordWriter(path) as writer:
    for name, inputs in requests.items():
      writer.write(prediction_log(name, inputs))
  return len(requests)


def read_warmup_requests(path: str, signatures: Optional[Signatures] = None
                         ) -> List[DecodedRequest]:
  """The requests of a warm-up file, in order (needs
  `tensorflow-serving-api`; reads with tf.data, so call it eagerly, not
  inside a TF1 Session's graph); `signatures` as in
  `decode_predict_request`."""
  from tensorflow_serving.apis import prediction_log_pb2  # noqa: PLC0415

  out = []
  for i, record in enumerate(tf.data.TFRecordDataset(path)):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    kind = log.WhichOneof("log_type")
    if kind != "predict_log":
      raise ValueError(f"{path}: record {i} is a {kind}, not a predict_log")
    out.append(decode_predict_request(log.predict_log.request, signatures))
  return out
