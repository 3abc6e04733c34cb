"""TF Serving's request contracts without the server: PredictRequest protos,
REST JSON bodies, warm-up records and the batching parameters file.

The end-to-end runs (requests decoded in a fresh process and run through a
loaded export) are in saved_model_test.py; here are the rules themselves,
on small arrays.
"""

from __future__ import annotations

import base64
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from unloc_tf.export import serving_requests as requests_lib

predict_pb2 = pytest.importorskip(
    "tensorflow_serving.apis.predict_pb2",
    reason="pip install tensorflow-serving-api (the dev extra)")
from tensorflow_serving.apis import prediction_log_pb2  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
BATCHING_PARAMETERS = os.path.join(ROOT, "serving", "batching_parameters.txt")

# Signatures as export_info.json gives them (dtype names; shapes unused).
SIGNATURES = {
    "serving_default": {"inputs": {
        "frames": {"dtype": "uint8"}, "frame_mask": {"dtype": "int32"},
        "secs_per_timestep": {"dtype": "float32"}}},
    "serving_text": {"inputs": {
        "frames": {"dtype": "uint8"}, "class_names": {"dtype": "string"}}},
    "one": {"inputs": {"x": {"dtype": "float32"}}},
    "kinds": {"inputs": {"b": {"dtype": "bool"}, "i64": {"dtype": "int64"},
                         "f64": {"dtype": "float64"}}},
    "half": {"inputs": {"h": {"dtype": "float16"}}},
    "rows": {"inputs": {"q": {"dtype": "string"}, "n": {"dtype": "int32"}}},
}


def _numeric(batch=2, seed=0):
  rng = np.random.default_rng(seed)
  return {"frames": rng.integers(0, 256, (batch, 2, 2, 2, 3), dtype=np.uint8),
          "frame_mask": np.array([[1, 1], [1, 0]][:batch], np.int32),
          "secs_per_timestep": rng.normal(size=batch).astype(np.float32)}


def _text():
  return {"frames": np.zeros((1, 2, 2, 2, 3), np.uint8),
          "class_names": np.array([b"moving left", "caf\u00e9".encode(),
                                   b"\xff\xfe raw"], object)}


def _assert_same(got, want):
  assert sorted(got) == sorted(want)
  for k, w in want.items():
    g, w = got[k], np.asarray(w)
    if w.dtype.kind in "OSU":
      w = np.vectorize(lambda v: v if isinstance(v, bytes) else v.encode(),
                       otypes=[object])(w)
      assert g.dtype == object, k
    else:
      assert g.dtype == w.dtype, (k, g.dtype, w.dtype)
    assert g.shape == w.shape, (k, g.shape, w.shape)
    np.testing.assert_array_equal(g, w, err_msg=k)


# ---------------------------------------------------------------------------
# gRPC.
# ---------------------------------------------------------------------------
def test_predict_request_round_trip():
  for name, inputs in (("serving_default", _numeric()),
                       ("serving_text", _text())):
    request = requests_lib.predict_request(inputs, name, model_name="unloc")
    wire = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert wire.model_spec.name == "unloc"
    got = requests_lib.decode_predict_request(wire, SIGNATURES)
    assert got.signature_name == name
    _assert_same(got.inputs, inputs)


def test_empty_signature_name_is_serving_default():
  request = requests_lib.predict_request(_numeric(), "")
  assert requests_lib.decode_predict_request(
      request, SIGNATURES).signature_name == "serving_default"


def test_constant_tensors_are_compact_and_decode_like_the_server():
  """A constant array is stored once; TF's C++ Tensor::FromProto (what the
  server and tf.io.parse_tensor run) and tf.make_ndarray fill it alike."""
  for value in (np.zeros((1, 8, 32, 32, 3), np.uint8),
                np.ones((2, 8), np.int32), np.full((3,), 0.25, np.float32),
                np.ones((2, 2), bool)):
    proto = requests_lib.tensor_proto(value)
    assert not proto.tensor_content and proto.ByteSize() < 64
    np.testing.assert_array_equal(tf.make_ndarray(proto), value)
    parsed = tf.io.parse_tensor(proto.SerializeToString(),
                                tf.as_dtype(value.dtype)).numpy()
    np.testing.assert_array_equal(parsed, value)
    assert parsed.dtype == value.dtype


@pytest.mark.parametrize("change,message", [
    (lambda r: r.inputs.pop("frame_mask"),
     r"signature serving_default takes inputs \['frame_mask', 'frames',"
     r" 'secs_per_timestep'\]; missing \['frame_mask'\], unknown \[\]"),
    (lambda r: r.inputs["text"].CopyFrom(tf.make_tensor_proto([1])),
     r"missing \[\], unknown \['text'\]"),
    (lambda r: r.inputs["frames"].CopyFrom(tf.make_tensor_proto(
        np.zeros((1, 2), np.float32))),
     "PredictRequest input frames: dtype float32, but signature"
     " serving_default takes uint8"),
    (lambda r: setattr(r.model_spec, "signature_name", "nope"),
     r"signature 'nope' is not in the model \(it has \['half', 'kinds',"),
])
def test_bad_predict_requests_name_the_input(change, message):
  request = requests_lib.predict_request(_numeric())
  change(request)
  with pytest.raises(ValueError, match=message):
    requests_lib.decode_predict_request(request, SIGNATURES)


# ---------------------------------------------------------------------------
# REST.
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("columnar", [True, False])
def test_rest_body_round_trip(columnar):
  inputs = _numeric(batch=2)
  inputs["secs_per_timestep"][1] = np.nan
  body = requests_lib.rest_body(inputs, "serving_default", columnar=columnar)
  assert ('"instances"' in body) != columnar and "NaN" in body
  got = requests_lib.decode_rest_body(body, SIGNATURES)
  assert got.signature_name == "serving_default"
  _assert_same(got.inputs, inputs)  # float32 values survive JSON exactly
  text = requests_lib.rest_body(_text(), "serving_text")
  assert '"moving left"' in text and '{"b64": "//4gcmF3"}' in text
  _assert_same(requests_lib.decode_rest_body(text, SIGNATURES).inputs,
               _text())


def test_rest_row_form_with_one_string_per_row():
  inputs = {"q": np.array([b"a", b"\xff"], object),
            "n": np.array([1, 2], np.int32)}
  body = requests_lib.rest_body(inputs, "rows", columnar=False)
  assert json.loads(body)["instances"] == [
      {"q": "a", "n": 1}, {"q": {"b64": "/w=="}, "n": 2}]
  _assert_same(requests_lib.decode_rest_body(body, SIGNATURES).inputs,
               inputs)


def test_rest_strings_plain_or_b64_and_single_input_forms():
  names = ["moving left", "caf\u00e9"]
  b64 = [{"b64": base64.b64encode(n.encode()).decode()} for n in names]
  for value in (names, b64):
    got = requests_lib.decode_rest_body(json.dumps({
        "signature_name": "serving_text",
        "inputs": {"frames": [[[[[0, 0, 0]]]]], "class_names": value}}),
        SIGNATURES)
    assert got.inputs["class_names"].tolist() == [n.encode() for n in names]
  # One input: a plain value in either form; no signature_name = default.
  single = {"one": SIGNATURES["one"], "serving_default": SIGNATURES["one"]}
  for body in ({"inputs": [1, 2.5]}, {"instances": [1, 2.5]},
               {"inputs": {"x": [1, 2.5]}}, {"instances": [{"x": 1},
                                                          {"x": 2.5}]}):
    got = requests_lib.decode_rest_body(body, single)
    assert got.signature_name == "serving_default"
    np.testing.assert_array_equal(got.inputs["x"], [1.0, 2.5])
    assert got.inputs["x"].dtype == np.float32
  got = requests_lib.decode_rest_body(
      {"signature_name": "kinds", "inputs": {
          "b": [True, False], "i64": [-2**63, 2**63 - 1], "f64": 1e300}},
      SIGNATURES).inputs
  assert got["b"].dtype == bool and got["i64"].dtype == np.int64
  assert got["i64"][1] == 2**63 - 1 and got["f64"] == 1e300
  assert got["f64"].shape == ()


def _body(**inputs):
  base = {"frames": [[[[[0, 0, 0]]]]], "frame_mask": [[1, 1]],
          "secs_per_timestep": [0.5]}
  base.update(inputs)
  return {"inputs": {k: v for k, v in base.items() if v is not None}}


BAD_BODIES = {
    "not_json": ("{", "REST request: the body is not JSON"),
    "not_object": ("[1]", "must be a JSON object"),
    "both_forms": ({"inputs": {}, "instances": []}, "exactly one of"),
    "no_form": ({"signature_name": "serving_default"}, "exactly one of"),
    "signature_type": ({"signature_name": 3, "inputs": {}},
                       "'signature_name' must be a string"),
    "unknown_signature": ({"signature_name": "nope", "inputs": {}},
                          "signature 'nope' is not in the model"),
    "unsupported_dtype": ({"signature_name": "half", "inputs": [1.0]},
                          "input h: TF Serving's JSON API does not convert"
                          " to float16"),
    "empty_instances": ({"instances": []},
                        "'instances' must be a non-empty list"),
    "plain_instances": ({"instances": [[1, 2]]}, "each item of 'instances'"
                        " must be an object naming the inputs"),
    "plain_inputs": ({"inputs": [1, 2]},
                     "'inputs' must be an object naming the inputs"),
    "missing_input": (_body(frame_mask=None),
                      r"missing \['frame_mask'\], unknown \[\]"),
    "unknown_input": (_body(text=[1]), r"missing \[\], unknown \['text'\]"),
    "ragged": (_body(frame_mask=[[1, 1], [1]]),
               r"input frame_mask at \[1\]: a list of 1 items where the"
               " first list of this level has 2"),
    "too_deep": (_body(frame_mask=[[1, [1]]]),
                 r"input frame_mask at \[0, 1\]: a list where a value was"
                 " expected"),
    "too_shallow": (_body(frame_mask=[[1, 1], 2]),
                    r"input frame_mask at \[1\]: a value where a list was"
                    " expected"),
    "float_for_int": (_body(frame_mask=[[1.0, 1]]),
                      r"input frame_mask at \[0, 0\]: 1.0 is not an integer"
                      r" \(int32 takes JSON integers\)"),
    "bool_for_int": (_body(frame_mask=[[True, 1]]),
                     r"frame_mask at \[0, 0\]: true is not an integer"),
    "uint8_range": (_body(frames=[[[[[0, 256, 0]]]]]),
                    r"input frames at \[0, 0, 0, 0, 1\]: 256 is out of"
                    r" range for uint8 \[0, 255\]"),
    "string_for_float": (_body(secs_per_timestep=["0.5"]),
                         r'secs_per_timestep at \[0\]: "0.5" is not a'
                         " number"),
    "null": (_body(secs_per_timestep=[None]), "null is not a number"),
    "lossy_int": (_body(secs_per_timestep=[2**24 + 1]),
                  "16777217 cannot be a float32 without loss of precision"),
    "float_range": (_body(secs_per_timestep=[1e39]),
                    "1e[+]?39 is out of range for float32"),
    "b64_for_int": (_body(frame_mask=[[{"b64": "AA=="}, 1]]),
                    "is not an integer"),
    "number_for_string": ({"signature_name": "serving_text", "inputs": {
        "frames": [0], "class_names": ["a", 1]}},
                          r"input class_names at \[1\]: 1 is not a string"),
    "bad_b64": ({"signature_name": "serving_text", "inputs": {
        "frames": [0], "class_names": [{"b64": "!!"}]}},
                r"input class_names at \[0\]: \{'b64': '!!'\} is not valid"
                " base64"),
    "instance_shapes": ({"instances": [
        {"frames": [0], "frame_mask": [1, 1], "secs_per_timestep": 1},
        {"frames": [0], "frame_mask": [1], "secs_per_timestep": 1}]},
                        r"input frame_mask: instance 1 has shape \[1\],"
                        r" instance 0 \[2\]"),
    "instance_keys": ({"instances": [
        {"frames": [0], "frame_mask": [1], "secs_per_timestep": 1},
        {"frame_mask": [1], "secs_per_timestep": 1}]},
                      r"'instances' item 1: .* missing \['frames'\]"),
    "instance_mixed": ({"signature_name": "one", "instances": [1, {"x": 1}]},
                       "'instances' item 1 is an object, unlike item 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_rest_bodies_name_the_input_and_cause(case):
  body, message = BAD_BODIES[case]
  if not isinstance(body, str):
    body = json.dumps(body)
  with pytest.raises(ValueError, match=message):
    requests_lib.decode_rest_body(body, SIGNATURES)


def test_rest_row_form_needs_a_batch_on_every_input():
  with pytest.raises(ValueError, match=r"input class_names has shape \[3\],"
                     " but frames has 1 rows: the row form"):
    requests_lib.rest_body(_text(), "serving_text", columnar=False)
  empty = {k: v[:0] for k, v in _numeric().items()}
  with pytest.raises(ValueError, match="cannot send an empty batch"):
    requests_lib.rest_body(empty, columnar=False)


# ---------------------------------------------------------------------------
# Warm-up records.
# ---------------------------------------------------------------------------
def test_prediction_log_equals_tensorflow_serving_serialization():
  for name, inputs in (("serving_default", _numeric()),
                       ("serving_text", _text())):
    inputs = dict(reversed(list(inputs.items())))  # any order
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(requests_lib.predict_request(
        inputs, name))
    assert requests_lib.prediction_log(name, inputs) == (
        log.SerializeToString(deterministic=True))


def test_warmup_file_round_trip(tmp_path):
  path = str(tmp_path / requests_lib.WARMUP_FILENAME)
  warmup = {"serving_default": _numeric(batch=1), "serving_text": _text()}
  assert requests_lib.write_warmup_requests(path, warmup) == 2
  records = list(tf.data.TFRecordDataset(path).as_numpy_iterator())
  assert len(records) == 2
  got = requests_lib.read_warmup_requests(path, SIGNATURES)
  assert [r.signature_name for r in got] == list(warmup)
  for r in got:
    _assert_same(r.inputs, warmup[r.signature_name])


def test_empty_warmup_set_is_an_error(tmp_path):
  path = str(tmp_path / requests_lib.WARMUP_FILENAME)
  with pytest.raises(ValueError, match="no warm-up requests for .*: TF"
                     " Serving replays one request per signature"):
    requests_lib.write_warmup_requests(path, {})
  with pytest.raises(ValueError, match="the warm-up request for signature"
                     " serving_text has no inputs"):
    requests_lib.write_warmup_requests(path, {"serving_text": {}})
  assert not os.path.exists(path)


# ---------------------------------------------------------------------------
# Batching parameters.
# ---------------------------------------------------------------------------
def _batching_parameters_class():
  """tensorflow.serving.BatchingParameters.  The pip package does not ship
  session_bundle_config_pb2, so the message is built from its definition in
  tensorflow_serving/servables/tensorflow/session_bundle_config.proto (the
  fields TF Serving has had since 1.x; newer releases only add fields)."""
  try:
    from tensorflow_serving.servables.tensorflow import (  # noqa: PLC0415
      session_bundle_config_pb2,
    )
    return session_bundle_config_pb2.BatchingParameters
  except ImportError:
    pass
  from google.protobuf import (  # noqa: PLC0415
    descriptor_pb2,
    descriptor_pool,
    message_factory,
    wrappers_pb2,
  )

  field = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(
      name="unloc_test/session_bundle_config.proto",
      package="tensorflow.serving", syntax="proto3",
      dependency=["google/protobuf/wrappers.proto"])
  message = proto.message_type.add(name="BatchingParameters")
  for number, name, wrapper in (
      (1, "max_batch_size", "Int64Value"),
      (2, "batch_timeout_micros", "Int64Value"),
      (3, "max_enqueued_batches", "Int64Value"),
      (4, "num_batch_threads", "Int64Value"),
      (5, "thread_pool_name", "StringValue")):
    message.field.add(name=name, number=number, type=field.TYPE_MESSAGE,
                      label=field.LABEL_OPTIONAL,
                      type_name=f".google.protobuf.{wrapper}")
  message.field.add(name="allowed_batch_sizes", number=6,
                    type=field.TYPE_INT64, label=field.LABEL_REPEATED)
  message.field.add(name="pad_variable_length_inputs", number=7,
                    type=field.TYPE_BOOL, label=field.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  pool.AddSerializedFile(proto.SerializeToString())
  return message_factory.GetMessageClass(
      pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def test_batching_parameters_file_parses():
  from google.protobuf import text_format  # noqa: PLC0415

  with open(BATCHING_PARAMETERS) as f:
    params = text_format.Parse(f.read(), _batching_parameters_class()())
  for name in ("max_batch_size", "batch_timeout_micros",
               "max_enqueued_batches", "num_batch_threads"):
    assert params.HasField(name), name  # stated, not TF Serving's default
  assert params.max_batch_size.value >= 1
  assert params.num_batch_threads.value >= 1
  assert params.max_enqueued_batches.value >= 1
  assert params.batch_timeout_micros.value >= 0
  # TF Serving pads with each tensor's first value (BOS ids, mask 1): padded
  # captions would look real, so the graph's checks would reject the batch.
  assert params.pad_variable_length_inputs is False
  if params.allowed_batch_sizes:
    assert list(params.allowed_batch_sizes) == sorted(
        params.allowed_batch_sizes)
    assert params.allowed_batch_sizes[-1] == params.max_batch_size.value
