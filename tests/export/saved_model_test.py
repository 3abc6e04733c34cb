"""SavedModel export: layout, fresh-process serving parity, op audit, errors.

"Loads in TF Serving" is checked the way dependencies.md §C describes: a
fresh `python` process that imports only tensorflow (plus tensorflow_text
for the string signature) audits the ops of saved_model.pb, loads the model
with `tf.compat.v1.saved_model.loader.load` in a TF1 Session (what the
model server does) and with `tf.saved_model.load`, and runs requests through
the signatures' tensor names.  Its outputs must equal the Keras model +
`unloc_tf.postprocess` run here.  Bad requests also go through a Session
callable ("server"), which, like the model server's C++ `Session::Run`,
feeds tensors without the Python client's check against the declared
shapes, so only the in-graph checks can reject them.

Requests also arrive as the server receives them: serialized gRPC
`PredictRequest`s and REST JSON bodies (both forms, and the README's
request.json), which the fresh process decodes with
`unloc_tf.export.serving_requests` (loaded by path: it imports only
TensorFlow) against the loaded signature_defs before running them in the TF1
Session; and every export's warm-up records run there the same way.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import fixtures
from unloc_tf import postprocess, spec
from unloc_tf.data import text as text_lib
from unloc_tf.export import op_audit, serving_metadata
from unloc_tf.export import saved_model as export_lib
from unloc_tf.export import serving_requests as requests_lib
from unloc_tf.tasks import (
  action_localizer,
  action_segmenter,
  base,
  moment_retriever,
)

N0, L, S, D = 8, 6, 32, 12
PYR = spec.PyramidSpec(N0, num_levels=2,
                       regression_ranges=((0, 2), (2, math.inf)))
CLASS_NAMES = ["running", "jumping rope", "cooking pasta"]
GIN = "build_action_localizer.size = 'tiny'\n"
TOL = 1e-4
OP_AUDIT_PATH = op_audit.__file__
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
README = os.path.join(ROOT, "README.md")
# gRPC / REST decoding and warm-up records need tensorflow-serving-api's
# protos (the dev extra).
HAVE_TF_SERVING = importlib.util.find_spec("tensorflow_serving") is not None
needs_tf_serving = pytest.mark.skipif(
    not HAVE_TF_SERVING,
    reason="pip install tensorflow-serving-api (the dev extra)")

# ---------------------------------------------------------------------------
# The fresh process: only `import tensorflow` (+ tensorflow_text on request).
# ---------------------------------------------------------------------------
_FRESH = r'''
import importlib.util, json, os, sys
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

job = json.load(open(sys.argv[1]))
if job["import_text"]:
  import tensorflow_text  # noqa: F401  (registers TF-Text's ops)
reqs = np.load(job["requests"])
results, meta = {}, {"audits": {}, "load_errors": {}, "method": {},
                     "valid": {}, "errors": {}, "signature_defs": {},
                     "wire_signature": {}, "warmup": {}}
if job.get("serving_requests"):
  spec_ = importlib.util.spec_from_file_location("serving_requests_alone",
                                                 job["serving_requests"])
  requests_lib = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(requests_lib)


def request(name):
  prefix = name + "/"
  return {k[len(prefix):]: reqs[k] for k in reqs.files if k.startswith(prefix)}


def tensor_info(info):
  shape = tf.TensorShape(info.tensor_shape).as_list()
  return {"name": info.name, "dtype": tf.dtypes.as_dtype(info.dtype).name,
          "shape": shape}


def signature_def(sig):
  """What TF Serving's GetModelMetadata returns for one signature."""
  return {"method_name": sig.method_name,
          "inputs": {k: tensor_info(v) for k, v in sig.inputs.items()},
          "outputs": {k: tensor_info(v) for k, v in sig.outputs.items()}}


def server_run(sess, sig, req):
  """A Session callable: no client-side check of the fed shapes."""
  keys = sorted(req)
  opts = config_pb2.CallableOptions()
  opts.feed.extend(sig.inputs[k].name for k in keys)
  opts.fetch.extend(v.name for v in sig.outputs.values())
  run = sess._make_callable_from_options(opts)
  return run(*[req[k].astype(object) if req[k].dtype.kind == "U" else req[k]
               for k in keys])


def run_decoded(sess, mg, decoded, prefix):
  """A decoded request through its signature, as the server runs it."""
  sig = mg.signature_def[decoded.signature_name]
  fetch = {k: v.name for k, v in sig.outputs.items()}
  feed = {sig.inputs[k].name: v for k, v in decoded.inputs.items()}
  for k, v in sess.run(fetch, feed).items():
    results[f"{prefix}/{k}"] = v


def decode_wire(name, signatures):
  """A serialized PredictRequest or a REST body, decoded as the server
  does (against the loaded signature_defs)."""
  wire = job["wire"][name]
  with open(wire["path"], "rb") as f:
    data = f.read()
  if wire["kind"] == "grpc":
    from tensorflow_serving.apis import predict_pb2
    return requests_lib.decode_predict_request(
        predict_pb2.PredictRequest.FromString(data), signatures)
  return requests_lib.decode_rest_body(data, signatures)


def error_text(fn):
  try:
    fn()
  except Exception as e:  # noqa: BLE001
    return [type(e).__name__, str(e)[:3000]]
  return None


if job.get("audit"):
  spec_ = importlib.util.spec_from_file_location("op_audit_alone",
                                                 job["op_audit"])
  audit = importlib.util.module_from_spec(spec_)
  spec_.loader.exec_module(audit)
  for name, d in job["audit"].items():
    meta["audits"][name] = audit.audit_ops(
        d, allowed_non_core=job["allowed_non_core"], in_process=True)

for model in job["models"]:
  d, tag = model["dir"], model["tag"]
  with tf.compat.v1.Session(graph=tf.Graph()) as sess:
    err = error_text(lambda: tf.compat.v1.saved_model.loader.load(
        sess, ["serve"], d))
    if err:
      meta["load_errors"][tag] = err
      continue
  warmup = []  # read eagerly (tf.data), run in the Session as the server
  if model.get("warmup"):
    meta["errors"][f"warmup/{tag}"] = error_text(lambda: warmup.extend(
        requests_lib.read_warmup_requests(os.path.join(
            d, "assets.extra", requests_lib.WARMUP_FILENAME))))
  with tf.compat.v1.Session(graph=tf.Graph()) as sess:
    mg = tf.compat.v1.saved_model.loader.load(sess, ["serve"], d)
    meta["signature_defs"][tag] = {
        k: signature_def(v) for k, v in mg.signature_def.items()
        if k != "__saved_model_init_op"}
    for sig_name, req_names in model["runs"].items():
      sig = mg.signature_def[sig_name]
      meta["method"][f"{tag}/{sig_name}"] = sig.method_name
      meta["valid"][f"{tag}/{sig_name}"] = bool(
          tf.compat.v1.saved_model.is_valid_signature(sig))
      fetch = {k: v.name for k, v in sig.outputs.items()}
      for r in req_names:
        feed = {sig.inputs[k].name: v for k, v in request(r).items()}
        for k, v in sess.run(fetch, feed).items():
          results[f"tf1/{tag}/{sig_name}/{r}/{k}"] = v
    for sig_name, r in model.get("bad_tf1", []):
      sig = mg.signature_def[sig_name]
      fetch = {k: v.name for k, v in sig.outputs.items()}
      feed = {sig.inputs[k].name: v for k, v in request(r).items()}
      meta["errors"][f"tf1/{tag}/{r}"] = error_text(
          lambda: sess.run(fetch, feed))
    for sig_name, r in model.get("bad_server", []):
      meta["errors"][f"server/{tag}/{r}"] = error_text(
          lambda: server_run(sess, mg.signature_def[sig_name], request(r)))
    signatures = meta["signature_defs"][tag]

    def one_wire(r):
      decoded = decode_wire(r, signatures)
      meta["wire_signature"][f"{tag}/{r}"] = decoded.signature_name
      run_decoded(sess, mg, decoded, f"wire/{tag}/{r}")

    def warm_up():
      meta["warmup"][tag] = [w.signature_name for w in warmup]
      for i, decoded in enumerate(warmup):
        run_decoded(sess, mg, decoded, f"warmup/{tag}/{i}")

    for r in model.get("wire", []):
      meta["errors"][f"wire/{tag}/{r}"] = error_text(lambda: one_wire(r))
    if model.get("warmup") and meta["errors"][f"warmup/{tag}"] is None:
      meta["errors"][f"warmup/{tag}"] = error_text(warm_up)
  obj = tf.saved_model.load(d)
  for sig_name, req_names in model["runs"].items():
    fn = obj.signatures[sig_name]
    for r in req_names:
      out = fn(**{k: tf.constant(v) for k, v in request(r).items()})
      for k, v in out.items():
        results[f"tf2/{tag}/{sig_name}/{r}/{k}"] = v.numpy()
  for sig_name, r in model.get("bad_tf2", []):
    fn = obj.signatures[sig_name]
    meta["errors"][f"tf2/{tag}/{r}"] = error_text(
        lambda: fn(**{k: tf.constant(v) for k, v in request(r).items()}))
  for sig_name, r in model.get("bad_function", []):
    fn = getattr(obj, sig_name)
    meta["errors"][f"function/{tag}/{r}"] = error_text(
        lambda: fn({k: tf.constant(v) for k, v in request(r).items()}))

meta["modules"] = sorted(
    m for m in sys.modules
    if m.split(".")[0] in ("unloc_tf", "keras_hub", "tensorflow_text"))
np.savez(job["results"], **results)
json.dump(meta, open(job["meta"], "w"))
'''


def _start_fresh(tmp_dir, name, requests, models, import_text, audit=None,
                 wire=None):
  """Starts `_FRESH` in a new interpreter; `_finish_fresh` collects it.

  `wire`: {name: ("grpc", serialized PredictRequest) | ("rest", JSON
  body)}, written to files that the process decodes.
  """
  paths = {k: os.path.join(tmp_dir, f"{name}_{k}") for k in
           ("script.py", "requests.npz", "results.npz", "meta.json",
            "job.json")}
  with open(paths["script.py"], "w") as f:
    f.write(_FRESH)
  np.savez(paths["requests.npz"], **{
      f"{r}/{k}": v for r, req in requests.items() for k, v in req.items()})
  wire_files = {}
  for r, (kind, data) in (wire or {}).items():
    wire_files[r] = {"kind": kind,
                     "path": os.path.join(tmp_dir, f"{name}_wire_{r}")}
    with open(wire_files[r]["path"], "wb") as f:
      f.write(data if isinstance(data, bytes) else data.encode())
  job = {"requests": paths["requests.npz"], "results": paths["results.npz"],
         "meta": paths["meta.json"], "models": models,
         "import_text": import_text, "audit": audit or {},
         "op_audit": OP_AUDIT_PATH,
         "serving_requests": requests_lib.__file__ if HAVE_TF_SERVING else "",
         "wire": wire_files,
         "allowed_non_core": list(export_lib.TEXT_NON_CORE_OPS)}
  with open(paths["job.json"], "w") as f:
    json.dump(job, f)
  # PYTHONPATH stays (it may be how tensorflow is found); what the process
  # imports is checked through sys.modules.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.Popen(
      [sys.executable, paths["script.py"], paths["job.json"]],
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
      cwd=tmp_dir)
  return proc, paths


def _finish_fresh(started):
  """(results, meta) of a process from `_start_fresh`."""
  proc, paths = started
  _, stderr = proc.communicate(timeout=600)
  assert proc.returncode == 0, stderr[-4000:]
  results = dict(np.load(paths["results.npz"]))
  with open(paths["meta.json"]) as f:
    return results, json.load(f)


# ---------------------------------------------------------------------------
# Requests and in-process references.
# ---------------------------------------------------------------------------
def _tokenize(texts):
  ids, mask = text_lib.TextTokenizer(L)(tf.constant(texts))
  return ids.numpy(), mask.numpy()


def _video(batch, seed, mode):
  rng = np.random.default_rng(seed)
  mask = np.ones((batch, N0), np.int32)
  if batch > 1:
    mask[1, 5:] = 0  # a short video: padded frames
  req = {
      spec.FRAME_MASK: mask,
      spec.NUM_FRAMES_TOTAL: np.array([8, 5, 40, 13, 9][:batch], np.int32),
      spec.BATCH_SECS_PER_TIMESTEP: np.array([0.5, 1.0, 0.25, 2.0, 1.5][
          :batch], np.float32),
  }
  if mode == "frames":
    req[spec.FRAMES] = rng.integers(0, 256, (batch, N0, S, S, 3)).astype(
        np.uint8)
  else:
    req[spec.FRAME_EMBEDDINGS] = rng.normal(size=(batch, N0, D)).astype(
        np.float32)
  return req


def _class_request(batch, seed, names=CLASS_NAMES):
  req = _video(batch, seed, "frames")
  ids, mask = _tokenize(names)
  req[spec.TEXT_IDS] = np.tile(ids[None], [batch, 1, 1])
  req[spec.TEXT_MASK] = np.tile(mask[None], [batch, 1, 1])
  return req


def _caption_request(batch, seed, num_captions):
  req = _video(batch, seed, "embeddings")
  words = ["a man opens the door", "the dog runs", "someone cooks",
           "two people talk loudly", "a child jumps", "rain falls",
           "a car stops", "he laughs", "she sings a song"]
  texts = [words[(seed + i) % len(words)] for i in range(batch * num_captions)]
  ids, mask = _tokenize(texts)
  ids = ids.reshape(batch, num_captions, L)
  mask = mask.reshape(batch, num_captions, L)
  if batch > 1:  # a padding caption: no detections
    ids[1, -1], mask[1, -1] = 0, 0
  req[spec.TEXT_IDS], req[spec.TEXT_MASK] = ids, mask
  return req


def _numeric(req):
  return {k: tf.constant(v) for k, v in req.items()}


def _keras_localization(model, req, task=spec.TAL):
  out = model(_numeric(req), training=False)
  det = postprocess.localization_detections(
      out["logits"], out["displacements"], out["token_mask"],
      req[spec.NUM_FRAMES_TOTAL], req[spec.BATCH_SECS_PER_TIMESTEP],
      pyramid_level_lengths=PYR.level_lengths, num_frames=N0,
      max_detections=100, score_threshold=0.001, soft_nms_sigma=0.3)
  det = {k: v.numpy() for k, v in det.items()}
  if task == spec.HD:
    det["saliency"] = postprocess.highlight_saliency(
        out["logits"], out["token_mask"], req[spec.NUM_FRAMES_TOTAL],
        req[spec.BATCH_SECS_PER_TIMESTEP], level_lengths=PYR.level_lengths,
        num_frames=N0, secs_per_clip=2.0, max_clips=75).numpy()
  return det


def _keras_retrieval(model, req):
  out = model(_numeric(req), training=False)
  det = postprocess.retrieval_detections(
      out["logits"], out["displacements"], out["token_mask"],
      req[spec.NUM_FRAMES_TOTAL], req[spec.BATCH_SECS_PER_TIMESTEP],
      pyramid_level_lengths=PYR.level_lengths, num_frames=N0,
      caption_mask=req[spec.TEXT_MASK].any(-1), max_detections=100,
      score_threshold=0.001, soft_nms_sigma=0.3)
  return {k: v.numpy() for k, v in det.items()}


def _assert_same(got, want, where):
  assert sorted(got) == sorted(want), where
  for k, w in want.items():
    g = got[k]
    assert g.shape == w.shape and g.dtype == w.dtype, (where, k, g.shape,
                                                       w.shape)
    if np.issubdtype(w.dtype, np.floating):
      np.testing.assert_allclose(g, w, atol=TOL, rtol=0, err_msg=f"{where}/{k}")
    else:
      np.testing.assert_array_equal(g, w, err_msg=f"{where}/{k}")


def _outputs(results, prefix):
  prefix += "/"
  return {k[len(prefix):]: v for k, v in results.items()
          if k.startswith(prefix)}


# ---------------------------------------------------------------------------
# Module-scoped exports (one per task) and fresh-process runs.
# ---------------------------------------------------------------------------
TAL_REQS = {"tal_b1": lambda: _class_request(1, 1),
            "tal_b3": lambda: _class_request(3, 2),
            "tal_b0": lambda: {k: v[:0] for k, v in _class_request(1, 3).items()}}
MR_REQS = {"mr_b1": lambda: _caption_request(1, 4, num_captions=3),
           "mr_b3": lambda: _caption_request(3, 5, num_captions=2),
           "mr_b0": lambda: {k: v[:0] for k, v in
                             _caption_request(1, 6, 2).items()}}


def _bad_requests():
  good = _class_request(1, 7)
  mr = _caption_request(1, 8, num_captions=2)
  return {
      "bad_dtype": dict(good, frames=good[spec.FRAMES].astype(np.float32)),
      "bad_rank": dict(good, frames=good[spec.FRAMES][0]),
      "bad_n0": dict(good, frames=good[spec.FRAMES][:, :N0 - 1]),
      "bad_text_length": dict(good, text_ids=good[spec.TEXT_IDS][..., :L - 1],
                              text_mask=good[spec.TEXT_MASK][..., :L - 1]),
      "bad_mask_n0": dict(good, frame_mask=good[spec.FRAME_MASK][:, :N0 - 2]),
      "bad_embedding_dim": dict(
          mr, frame_embeddings=mr[spec.FRAME_EMBEDDINGS][..., :D - 1]),
      "bad_text_mask": dict(mr, text_mask=mr[spec.TEXT_MASK][:, :1]),
  }


def _value_requests():
  """Right shapes, values the graph must reject (tal_v2 / mr)."""
  good = _class_request(2, 12)
  req = {f"bad_total_frames_{v}": dict(good, total_frames=np.array(
      [5, v], np.int32)) for v in (0, -3)}
  for tag, v in (("zero", 0.0), ("neg", -0.1), ("nan", np.nan),
                 ("inf", np.inf)):
    req[f"bad_secs_{tag}"] = dict(good, secs_per_timestep=np.array(
        [0.5, v], np.float32))
  ids, mask = good[spec.TEXT_IDS].copy(), good[spec.TEXT_MASK].copy()
  ids[:, 1], mask[:, 1] = _tokenize([" "])  # [BOS, EOS, 0, ...]
  req["bad_empty_class_row"] = dict(good, text_ids=ids, text_mask=mask)
  mr = _caption_request(2, 13, num_captions=2)
  ids, mask = mr[spec.TEXT_IDS].copy(), mr[spec.TEXT_MASK].copy()
  ids[0, 1], mask[0, 1] = _tokenize([""])
  req["bad_empty_caption"] = dict(mr, text_ids=ids, text_mask=mask)
  ids, mask = mr[spec.TEXT_IDS].copy(), mr[spec.TEXT_MASK].copy()
  ids[1], mask[1] = 0, 0  # video 1: padding captions only
  req["bad_no_caption"] = dict(mr, text_ids=ids, text_mask=mask)
  return req


_TOTAL_FRAMES = ("input total_frames must be > 0 (the number of stored frames"
                 " of each video); got")
_SECS = ("input secs_per_timestep must be finite and > 0 (seconds per stored"
         " frame); got")
VALUE_ERRORS = {
    # request: (model, the error's text, the printed values)
    "bad_total_frames_0": ("tal_v2", _TOTAL_FRAMES, "[5 0]"),
    "bad_total_frames_-3": ("tal_v2", _TOTAL_FRAMES, "[5 -3]"),
    "bad_secs_zero": ("tal_v2", _SECS, "[0.5 0]"),
    "bad_secs_neg": ("tal_v2", _SECS, "[0.5 -0.1]"),
    "bad_secs_nan": ("tal_v2", _SECS, "[0.5 nan]"),
    "bad_secs_inf": ("tal_v2", _SECS, "[0.5 inf]"),
    "bad_empty_class_row": ("tal_v2", "input text_ids must hold a class name"
                            " in every row (an id besides BOS, EOS and 0"
                            " where text_mask is 1); empty [video, row]:",
                            "[[0 1][1 1]]"),
    "bad_empty_caption": ("mr", "input text_ids must hold a text in every"
                          " caption whose text_mask is not all 0 (an id"
                          " besides BOS, EOS and 0); empty [video, caption]:",
                          "[[0 1]]"),
    "bad_no_caption": ("mr", "input text_mask must mark at least one caption"
                       " of every video (a caption whose text_mask is all 0"
                       " is padding); videos without one:", "[1]"),
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
  """TAL (frames) v1 with the text signature and a dynamic class list, v2
  static C = 3 without it; MR (embeddings) with dynamic K."""
  base = str(tmp_path_factory.mktemp("export"))
  keras.utils.set_random_seed(0)
  tal = fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", pyramid_spec=PYR,
      input_mode="frames", image_size=S,
      text_max_length=L, num_conv_layers=2)
  tal_base = os.path.join(base, "tal")
  common = dict(model=tal, export_dir=tal_base, task=spec.TAL, num_frames=N0,
                text_max_length=L, operative_config=GIN)
  tal_v1 = export_lib.export(num_text=None, audit=False, **common)
  tal_v2 = export_lib.export(num_text=len(CLASS_NAMES),
                             class_names=CLASS_NAMES, text_signature=False,
                             audit=False, **common)
  mr = fixtures.build_task(
      moment_retriever.build_moment_retriever, "tiny", pyramid_spec=PYR,
      input_mode="embeddings", image_size=S,
      text_max_length=L, num_conv_layers=2)
  mr(_numeric(_caption_request(1, 0, 2)))
  mr_dir = export_lib.export(
      model=mr, export_dir=os.path.join(base, "mr"), task=spec.MR,
      num_frames=N0, input_mode="embeddings", text_max_length=L,
      text_signature=False, audit=False)
  mr_text_dir = export_lib.export(
      model=mr, export_dir=os.path.join(base, "mr_text"), task=spec.MR,
      num_frames=N0, input_mode="embeddings", text_max_length=L,
      audit=False)
  return dict(base=base, tal=tal, tal_base=tal_base, tal_v1=tal_v1,
              tal_v2=tal_v2, mr=mr, mr_dir=mr_dir, mr_text_dir=mr_text_dir)


def _plain_job(exports):
  """The model-server substitute: a process with only `import tensorflow`."""
  requests = {k: f() for k, f in {**TAL_REQS, **MR_REQS}.items()}
  requests.update(_bad_requests())
  requests.update(_value_requests())
  tal_bad = ["bad_dtype", "bad_rank", "bad_n0", "bad_text_length",
             "bad_mask_n0"]
  values = {m: [("serving_default", r) for r, (model, *_) in
                VALUE_ERRORS.items() if model == m] for m in ("tal_v2", "mr")}
  mr_bad = [("serving_default", r) for r in
            ("bad_embedding_dim", "bad_text_mask")]
  models = [
      {"tag": "tal_v2", "dir": exports["tal_v2"],
       "runs": {"serving_default": list(TAL_REQS)},
       "bad_tf2": [("serving_default", r) for r in tal_bad] + values["tal_v2"],
       "bad_tf1": [("serving_default", r) for r in tal_bad],
       "bad_server": ([("serving_default", r) for r in tal_bad]
                      + values["tal_v2"]),
       "bad_function": [("serving_default", r) for r in tal_bad]},
      {"tag": "mr", "dir": exports["mr_dir"],
       "runs": {"serving_default": list(MR_REQS)},
       "bad_tf2": mr_bad + values["mr"], "bad_server": mr_bad + values["mr"]},
      {"tag": "tal_v1", "dir": exports["tal_v1"], "runs": {}},
  ]
  audit = {"tal_v1": exports["tal_v1"], "tal_v2": exports["tal_v2"],
           "mr": exports["mr_dir"]}
  return requests, models, audit


def _text_job(exports):
  """tensorflow + tensorflow_text: the TAL v1 export, both signatures."""
  requests = {k: f() for k, f in TAL_REQS.items()}
  two = ["cooking pasta", "a dog"]
  requests["tal2_b3"] = _class_request(3, 9, names=two)
  for r in ("tal_b1", "tal_b3", "tal_b0"):
    requests[r + "_text"] = dict(
        {k: v for k, v in requests[r].items() if not k.startswith("text_")},
        class_names=np.array(CLASS_NAMES))
  requests["tal2_b3_text"] = dict(
      {k: v for k, v in requests["tal2_b3"].items()
       if not k.startswith("text_")}, class_names=np.array(two))
  requests.update(_bad_text_requests())
  bad = {m: [(sig, r) for r, (model, sig, *_) in TEXT_ERRORS.items()
             if model == m] for m in ("tal_v1", "mr_text")}
  queries = [["a man opens the door", "the dog runs"], ["he laughs", ""]]
  mr_numeric = _caption_request(2, 14, num_captions=2)
  ids, mask = _tokenize(queries)
  ids[1, 1], mask[1, 1] = 0, 0  # "" is a padding caption
  mr_numeric[spec.TEXT_IDS], mr_numeric[spec.TEXT_MASK] = ids, mask
  requests["mr_b2"] = mr_numeric
  requests["mr_b2_text"] = dict(
      {k: v for k, v in mr_numeric.items() if not k.startswith("text_")},
      queries=np.array(queries))
  models = [{"tag": "tal_v1", "dir": exports["tal_v1"], "runs": {
      "serving_default": list(TAL_REQS) + ["tal2_b3"],
      "serving_text": [r + "_text" for r in TAL_REQS] + ["tal2_b3_text"]},
      "bad_tf2": bad["tal_v1"], "bad_server": bad["tal_v1"]},
            {"tag": "mr_text", "dir": exports["mr_text_dir"], "runs": {
                "serving_default": ["mr_b2"], "serving_text": ["mr_b2_text"]},
             "bad_tf2": bad["mr_text"], "bad_server": bad["mr_text"]}]
  return requests, models


def _bad_text_requests():
  """String requests the graph must reject (tal_v1 / mr_text)."""
  video = {k: v for k, v in _class_request(1, 15).items()
           if not k.startswith("text_")}
  mr_video = {k: v for k, v in _caption_request(2, 16, 1).items()
              if not k.startswith("text_")}
  tal1 = _class_request(1, 15)
  return {
      "names_none": dict(video, class_names=np.array([], dtype=str)),
      "names_blank": dict(video, class_names=np.array(["running", " \t"])),
      "names_all_empty": dict(video, class_names=np.array(["", ""])),
      "names_rank": dict(video, class_names=np.array([CLASS_NAMES])),
      "no_class_rows": dict(tal1, text_ids=tal1[spec.TEXT_IDS][:, :0],
                            text_mask=tal1[spec.TEXT_MASK][:, :0]),
      "queries_blank": dict(mr_video, queries=np.array(
          [["the dog runs", ""], ["  ", "he laughs"]])),
      "queries_all_empty": dict(mr_video, queries=np.array(
          [["the dog runs", ""], ["", ""]])),
      "queries_rank": dict(mr_video, queries=np.array(["a", "b"])),
      "queries_batch": dict(mr_video, queries=np.array([["a", "b"]])),
  }


TEXT_ERRORS = {
    # request: (model, signature, the error's text, the printed values)
    "names_none": ("tal_v1", "serving_text", "input class_names must hold at"
                   " least one class name; got shape", "[0]"),
    "names_blank": ("tal_v1", "serving_text", "input class_names must not"
                    " hold an empty or whitespace-only class name; at index",
                    "[1]"),
    "names_all_empty": ("tal_v1", "serving_text", "input class_names must"
                        " not hold an empty or whitespace-only class name; at"
                        " index", "[0 1]"),
    "names_rank": ("tal_v1", "serving_text", "input class_names must have"
                   " shape [C]; got shape", "[1 3]"),
    "no_class_rows": ("tal_v1", "serving_default", "input text_ids must hold"
                      " at least one class row; got shape", "[1 0 6]"),
    "queries_blank": ("mr_text", "serving_text", "input queries must not hold"
                      " a whitespace-only query (an empty string is a padding"
                      " caption); at [video, query]:", "[[1 0]]"),
    "queries_all_empty": ("mr_text", "serving_text", "input queries must"
                          " hold at least one non-empty query per video;"
                          " videos without one:", "[1]"),
    "queries_rank": ("mr_text", "serving_text", "input queries must have"
                     " shape [B, K] (B = the batch of frame_embeddings); got"
                     " shape", "[2]"),
    "queries_batch": ("mr_text", "serving_text", "input queries must have"
                      " shape [B, K] (B = the batch of frame_embeddings); got"
                      " shape", "[1 2]"),
}


# ---------------------------------------------------------------------------
# Requests as the server receives them, and the warm-up records.
# ---------------------------------------------------------------------------
# name: (export, signature (None: the body names none), request, form).
WIRE = {
    "grpc_tal_b3": ("tal_v2", "serving_default", "tal_b3", "grpc"),
    "rows_tal_b3": ("tal_v2", "serving_default", "tal_b3", "instances"),
    "cols_tal_b1": ("tal_v2", None, "tal_b1", "inputs"),
    "grpc_mr_b3": ("mr", "serving_default", "mr_b3", "grpc"),
    "rows_mr_b3": ("mr", "serving_default", "mr_b3", "instances"),
    "grpc_tal_b3_text": ("tal_v1", "serving_text", "tal_b3_text", "grpc"),
    "cols_tal_b3_text": ("tal_v1", "serving_text", "tal_b3_text", "inputs"),
    "b64_tal_b1_text": ("tal_v1", "serving_text", "tal_b1_text", "b64"),
    "grpc_mr_b2_text": ("mr_text", "serving_text", "mr_b2_text", "grpc"),
    "rows_mr_b2_text": ("mr_text", "serving_text", "mr_b2_text",
                        "instances"),
}
README_EXPORT = "tal_v1"  # the README's request.json asks a TAL serving_text


def _wire(requests, tags):
  """{name: ("grpc", PredictRequest bytes) | ("rest", body)} of WIRE's
  requests to the exports `tags`."""
  out = {}
  for name, (tag, sig, r, form) in WIRE.items():
    if tag not in tags:
      continue
    req = requests[r]
    if form == "grpc":
      out[name] = ("grpc", requests_lib.predict_request(
          req, sig, model_name="unloc").SerializeToString())
    elif form == "b64":  # binary strings: {"b64": ...}
      body = json.loads(requests_lib.rest_body(req, sig))
      body["inputs"]["class_names"] = [
          {"b64": base64.b64encode(n.encode()).decode()}
          for n in req["class_names"]]
      out[name] = ("rest", json.dumps(body))
    else:
      out[name] = ("rest", requests_lib.rest_body(
          req, sig, columnar=form == "inputs"))
  return out


def _readme_body(signatures):
  """The README's request.json ("Export and serving"), with each "..."
  standing for the item before it repeated up to the size its signature
  declares for that dimension (a real request lists every value)."""
  with open(README) as f:
    section = f.read().split("## Export and serving", 1)[1].split(
        "\n## ", 1)[0]
  block = next(b for b in re.findall(r"```\n(.*?)```", section, re.S)
               if '"signature_name"' in b)
  body = json.loads(block.replace("...", '"..."'))
  declared = signatures[body["signature_name"]]["inputs"]

  def expand(value, shape, level):
    if not isinstance(value, list):
      return value
    items = [expand(v, shape, level + 1) for v in value if v != "..."]
    if value and value[-1] == "...":
      assert shape[level] is not None, f"'...' at a free dimension: {shape}"
      items += [items[-1]] * (shape[level] - len(items))
    return items

  body["inputs"] = {k: expand(v, declared[k]["shape"], 0)
                    for k, v in body["inputs"].items()}
  return json.dumps(body)


def _export_signatures(export_dir):
  with open(os.path.join(export_dir, "assets.extra",
                         "export_info.json")) as f:
    return json.load(f)["signatures"]


def _export_dirs(exports):
  return {"tal_v1": exports["tal_v1"], "tal_v2": exports["tal_v2"],
          "mr": exports["mr_dir"], "mr_text": exports["mr_text_dir"]}


def _with_wire(models, wire, warmup_tags):
  """Adds to the fresh process's models the wire requests to each export
  and whether to replay its warm-up records."""
  def tag_of(name):
    return README_EXPORT if name == "readme" else WIRE[name][0]

  for model in models:
    model["wire"] = [n for n in wire if tag_of(n) == model["tag"]]
    model["warmup"] = model["tag"] in warmup_tags


@pytest.fixture(scope="module")
def fresh_runs(exports, tmp_path_factory):
  """Both fresh processes, run concurrently."""
  tmp = str(tmp_path_factory.mktemp("fresh"))
  requests, models, audit = _plain_job(exports)
  wire = {}
  if HAVE_TF_SERVING:
    wire = _wire(requests, ("tal_v2", "mr"))
    _with_wire(models, wire, ("tal_v2", "mr"))
  plain = _start_fresh(tmp, "plain", requests, models, import_text=False,
                       audit=audit, wire=wire)
  text_requests, text_models = _text_job(exports)
  text_wire, readme_error = {}, None
  if HAVE_TF_SERVING:
    text_wire = _wire(text_requests, ("tal_v1", "mr_text"))
    try:  # test_readme_request_json_runs reports a README that does not read
      text_wire["readme"] = ("rest", _readme_body(_export_signatures(
          exports[README_EXPORT])))
    except (StopIteration, ValueError, KeyError, IndexError,
            AssertionError) as e:
      readme_error = f"{type(e).__name__}: {e}"
    _with_wire(text_models, text_wire, ("tal_v1", "mr_text"))
  text = _start_fresh(tmp, "text", text_requests, text_models,
                      import_text=True, wire=text_wire)
  return {"plain": (*_finish_fresh(plain), wire),
          "text": (*_finish_fresh(text), text_requests, text_wire),
          "readme_error": readme_error}


@pytest.fixture(scope="module")
def plain_run(fresh_runs):
  return fresh_runs["plain"][:2]


@pytest.fixture(scope="module")
def text_run(fresh_runs):
  return fresh_runs["text"][:3]


# ---------------------------------------------------------------------------
# Layout and assets.
# ---------------------------------------------------------------------------
def test_versions_layout_and_assets(exports):
  base = exports["tal_base"]
  assert exports["tal_v1"] == os.path.join(base, "1") + os.sep
  assert exports["tal_v2"] == os.path.join(base, "2") + os.sep
  assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary leftovers
  assert export_lib.existing_versions(base) == [1, 2]
  assert export_lib.next_version(base) == 3
  for d in (exports["tal_v1"], exports["tal_v2"], exports["mr_dir"]):
    assert os.path.exists(os.path.join(d, "saved_model.pb"))
    assert os.path.isdir(os.path.join(d, "variables"))
  extra = os.path.join(exports["tal_v2"], "assets.extra")
  with open(os.path.join(extra, "operative_config.gin")) as f:
    assert f.read() == GIN
  with open(os.path.join(extra, "export_info.json")) as f:
    info = json.load(f)
  assert info["task"] == spec.TAL and info["version"] == 2
  assert info["class_names"] == CLASS_NAMES
  default = info["signatures"]["serving_default"]
  assert default["method_name"] == "tensorflow/serving/predict"
  assert default["inputs"]["frames"] == {
      "name": "serving_default_frames:0", "dtype": "uint8",
      "shape": [None, N0, S, S, 3]}
  assert default["inputs"]["frame_mask"]["shape"] == [None, N0]
  # Nt is free in the signature; this export's graph requires C = 3.
  assert default["inputs"]["text_ids"] == {
      "name": "serving_default_text_ids:0", "dtype": "int32",
      "shape": [None, None, L], "required_shape": [None, 3, L]}
  assert default["outputs"]["segments"]["dtype"] == "float32"
  assert default["outputs"]["segments"]["shape"] == [None, 100, 2]
  assert default["outputs"]["classes"]["dtype"] == "int32"
  assert "serving_text" not in info["signatures"]
  with open(os.path.join(exports["tal_v1"], "assets.extra",
                         "export_info.json")) as f:
    info1 = json.load(f)
  assert info1["signatures"]["serving_text"]["inputs"]["class_names"] == {
      "name": "serving_text_class_names:0", "dtype": "string",
      "shape": [None]}
  assert info1["signatures"]["serving_default"]["inputs"]["text_ids"][
      "shape"] == [None, None, L]
  assert not os.path.exists(os.path.join(exports["mr_dir"], "assets.extra",
                                         "operative_config.gin"))


def test_every_weight_is_stored_once(exports):
  """keras-team/keras#23553: tracking the model would store weights twice."""
  stored = tf.train.list_variables(
      os.path.join(exports["mr_dir"], "variables", "variables"))
  num_stored = sum(int(np.prod(shape)) for name, shape in stored
                   if name != "_CHECKPOINTABLE_OBJECT_GRAPH")
  assert num_stored == sum(int(np.prod(w.shape)) for w in exports["mr"].weights)


def test_existing_version_is_never_overwritten(exports):
  with pytest.raises(ValueError, match="exists"):
    export_lib.export(model=exports["mr"], export_dir=os.path.dirname(
        exports["mr_dir"].rstrip(os.sep)), version=1, task=spec.MR,
        num_frames=N0, input_mode="embeddings", text_max_length=L,
        text_signature=False, audit=False)


def test_export_rejects_mismatched_arguments(exports):
  with pytest.raises(ValueError, match="ActionLocalizer was built for task"
                     " 'temporal_localization', not 'moment_retrieval'"):
    export_lib.export(model=exports["tal"], export_dir=exports["base"],
                      task=spec.MR, num_frames=N0)
  with pytest.raises(ValueError, match="export takes a task model"):
    export_lib.export(model=keras.Sequential(), export_dir=exports["base"],
                      num_frames=N0)
  with pytest.raises(ValueError, match="image_size"):
    export_lib.export(model=exports["tal"], export_dir=exports["base"],
                      task=spec.TAL, num_frames=N0, image_size=64)
  with pytest.raises(ValueError, match="num_frames"):
    export_lib.export(model=exports["tal"], export_dir=exports["base"],
                      task=spec.TAL, num_frames=16)


# ---------------------------------------------------------------------------
# Serving parity in a fresh process.
# ---------------------------------------------------------------------------
def test_export_info_holds_the_model_metadata(exports, plain_run, text_run):
  """export_info.json's signatures = the signature_defs a loader reads
  (TF Serving's GetModelMetadata): names, dtypes, declared shapes."""
  metadata = {**plain_run[1]["signature_defs"], **text_run[1]["signature_defs"]}
  dirs = {"tal_v1": exports["tal_v1"], "tal_v2": exports["tal_v2"],
          "mr": exports["mr_dir"], "mr_text": exports["mr_text_dir"]}
  for tag, d in dirs.items():
    with open(os.path.join(d, "assets.extra", "export_info.json")) as f:
      info = json.load(f)["signatures"]
    assert sorted(info) == sorted(metadata[tag]), tag
    for name, sig in info.items():
      got = {k: v for k, v in sig.items() if k != "non_core_ops"}
      for io in ("inputs", "outputs"):
        got[io] = {k: {f: x for f, x in v.items() if f != "required_shape"}
                   for k, v in got[io].items()}
      assert got == metadata[tag][name], (tag, name)
  declared = metadata["mr"]["serving_default"]["inputs"]
  assert declared["frame_embeddings"]["shape"] == [None, N0, D]
  assert declared["text_mask"]["shape"] == [None, None, L]
  assert metadata["mr_text"]["serving_text"]["inputs"]["queries"] == {
      "name": "serving_text_queries:0", "dtype": "string",
      "shape": [None, None]}


def test_fresh_process_imports_only_tensorflow(plain_run):
  _, meta = plain_run
  assert meta["modules"] == []
  for tag in ("tal_v2/serving_default", "mr/serving_default"):
    assert meta["method"][tag] == "tensorflow/serving/predict"
    assert meta["valid"][tag] is True


@pytest.mark.parametrize("loader", ["tf1", "tf2"])
def test_tal_detections_match_keras(exports, plain_run, loader):
  results, _ = plain_run
  for r in ("tal_b1", "tal_b3"):
    want = _keras_localization(exports["tal"], TAL_REQS[r]())
    got = _outputs(results, f"{loader}/tal_v2/serving_default/{r}")
    _assert_same(got, want, f"{loader}/{r}")
  b3 = _outputs(results, f"{loader}/tal_v2/serving_default/tal_b3")
  assert (b3["num_detections"] > 0).all()  # the comparison is not vacuous
  assert set(np.unique(b3["classes"][0, :b3["num_detections"][0]])) <= {
      0, 1, 2}


@pytest.mark.parametrize("loader", ["tf1", "tf2"])
def test_mr_detections_match_keras_with_dynamic_captions(exports, plain_run,
                                                         loader):
  results, _ = plain_run
  for r, k in (("mr_b1", 3), ("mr_b3", 2)):
    want = _keras_retrieval(exports["mr"], MR_REQS[r]())
    got = _outputs(results, f"{loader}/mr/serving_default/{r}")
    _assert_same(got, want, f"{loader}/{r}")
    assert got["segments"].shape[1] == k
  got = _outputs(results, f"{loader}/mr/serving_default/mr_b3")
  assert got["num_detections"][1, 1] == 0  # the padding caption
  assert (got["num_detections"][:, 0] > 0).all()


@pytest.mark.parametrize("loader", ["tf1", "tf2"])
def test_batch_zero(plain_run, loader):
  results, _ = plain_run
  tal = _outputs(results, f"{loader}/tal_v2/serving_default/tal_b0")
  assert tal["segments"].shape == (0, 100, 2)
  assert tal["scores"].shape == tal["classes"].shape == (0, 100)
  assert tal["num_detections"].shape == (0,)
  mr = _outputs(results, f"{loader}/mr/serving_default/mr_b0")
  assert mr["segments"].shape == (0, 2, 100, 2)
  assert mr["num_detections"].shape == (0, 2)


# ---------------------------------------------------------------------------
# Op audit.
# ---------------------------------------------------------------------------
def test_op_audit(plain_run):
  _, meta = plain_run
  audits = meta["audits"]
  for tag in ("tal_v2", "mr"):
    assert audits[tag]["non_core"] == []
    assert "NonMaxSuppressionV5" in audits[tag]["ops"]  # Soft-NMS is in it
  v1 = audits["tal_v1"]
  assert v1["signatures"]["serving_default"]["non_core"] == []
  assert "NonMaxSuppressionV5" in v1["signatures"]["serving_default"]["ops"]
  assert v1["signatures"]["serving_text"]["non_core"] == sorted(
      export_lib.TEXT_NON_CORE_OPS)
  assert v1["non_core"] == sorted(export_lib.TEXT_NON_CORE_OPS)
  # One TF-Text op anywhere in the SavedModel stops plain TF loading it all.
  name, message = meta["load_errors"]["tal_v1"]
  assert name == "NotFoundError" and "Op type not registered" in message


def test_audit_ops_raises_on_disallowed_ops(exports):
  # This process imported tensorflow_text, so the registry check runs in a
  # fresh subprocess.
  with pytest.raises(ValueError, match="NormalizeUTF8") as info:
    op_audit.audit_ops(exports["tal_v1"])
  assert "serving_text" in str(info.value)
  assert "not allowed (['RegexSplitWithOffsets']): ['NormalizeUTF8']" in str(
      info.value)
  result = op_audit.audit_ops(exports["tal_v1"], export_lib.TEXT_NON_CORE_OPS)
  assert result["signatures"]["serving_default"]["non_core"] == []
  assert result["signatures"]["serving_text"]["non_core"] == sorted(
      export_lib.TEXT_NON_CORE_OPS)


# ---------------------------------------------------------------------------
# The string signature (tensorflow + tensorflow_text).
# ---------------------------------------------------------------------------
def test_text_signature_matches_numeric_signature_and_keras(exports, text_run):
  results, meta, requests = text_run
  assert "tensorflow_text" in meta["modules"]
  assert {m.split(".")[0] for m in meta["modules"]} == {"tensorflow_text"}
  assert meta["valid"]["tal_v1/serving_text"] is True
  for loader in ("tf1", "tf2"):
    for r in ("tal_b1", "tal_b3", "tal2_b3"):
      numeric = _outputs(results, f"{loader}/tal_v1/serving_default/{r}")
      text = _outputs(results, f"{loader}/tal_v1/serving_text/{r}_text")
      _assert_same(text, numeric, f"{loader}/{r} text vs ids")
      # The dynamic class list (class by class in the graph) equals the
      # Keras model on the whole list.
      want = _keras_localization(exports["tal"], requests[r])
      _assert_same(numeric, want, f"{loader}/{r} vs keras")
    zero = _outputs(results, f"{loader}/tal_v1/serving_text/tal_b0_text")
    assert zero["segments"].shape == (0, 100, 2)
  two = _outputs(results, "tf2/tal_v1/serving_text/tal2_b3_text")
  assert two["classes"].max() == 1  # two classes requested


# ---------------------------------------------------------------------------
# Bad requests.
# ---------------------------------------------------------------------------
def test_bad_inputs_give_errors_naming_the_input(plain_run):
  _, meta = plain_run
  errors = meta["errors"]
  # Restored tf.function: the input signature rejects dtype and rank.
  for r in ("bad_dtype", "bad_rank"):
    name, message = errors[f"function/tal_v2/{r}"]
    assert name == "TypeError" and "name='frames'" in message, message
  # Signature (TF2 `signatures`, and the graph a server runs): dtype by the
  # function itself; rank and lengths by the in-graph checks.
  name, message = errors["tf2/tal_v2/bad_dtype"]
  # TF's signature check runs first: it names the input by its position.
  assert name == "InvalidArgumentError" and "uint8" in message
  assert "input #" in message, message
  expected = {
      "bad_rank": ("frames", "[8 32 32 3]"),
      "bad_n0": ("frames", "[1 7 32 32 3]"),
      "bad_text_length": ("text_ids", "L=6"),
      "bad_mask_n0": ("frame_mask", "[1 6]"),
  }
  for r, (inp, detail) in expected.items():
    for loader in ("tf2", "server"):
      name, message = errors[f"{loader}/tal_v2/{r}"]
      assert name == "InvalidArgumentError", (loader, r, message)
      assert f"input {inp} must have shape" in message, message
      assert detail in message, message
    # TF1 Session.run: the Python client checks the declared shape first.
    name, message = errors[f"tf1/tal_v2/{r}"]
    assert name == "ValueError", message
    assert f"Tensor serving_default_{inp}:0, which has shape" in message
  for loader in ("tf2", "server"):
    name, message = errors[f"{loader}/mr/bad_embedding_dim"]
    assert "input frame_embeddings must have shape [B, N0=8, 12]" in message
    name, message = errors[f"{loader}/mr/bad_text_mask"]
    assert "input text_mask must have shape" in message


@pytest.mark.parametrize("loader", ["tf2", "server"])
@pytest.mark.parametrize("request_name", sorted(VALUE_ERRORS))
def test_bad_values_give_errors_naming_the_input(plain_run, loader,
                                                 request_name):
  model, text, values = VALUE_ERRORS[request_name]
  name, message = plain_run[1]["errors"][f"{loader}/{model}/{request_name}"]
  assert name == "InvalidArgumentError", message
  assert f"assertion failed: [{text}] {values}" in message, message


@pytest.mark.parametrize("loader", ["tf2", "server"])
@pytest.mark.parametrize("request_name", sorted(TEXT_ERRORS))
def test_bad_texts_give_errors_naming_the_input(text_run, loader,
                                                request_name):
  model, _, text, values = TEXT_ERRORS[request_name]
  name, message = text_run[1]["errors"][f"{loader}/{model}/{request_name}"]
  assert name == "InvalidArgumentError", message
  assert f"assertion failed: [{text}] {values}" in message, message


def test_queries_signature_matches_numeric_signature(exports, text_run):
  results, _, requests = text_run
  want = _keras_retrieval(exports["mr"], requests["mr_b2"])
  assert (want["num_detections"][:, 0] > 0).all()  # not vacuous
  assert want["num_detections"][1, 1] == 0  # the padding caption
  for loader in ("tf1", "tf2"):
    numeric = _outputs(results, f"{loader}/mr_text/serving_default/mr_b2")
    text = _outputs(results, f"{loader}/mr_text/serving_text/mr_b2_text")
    _assert_same(numeric, want, f"{loader} ids vs keras")
    _assert_same(text, want, f"{loader} text vs keras")


# ---------------------------------------------------------------------------
# HD and AS (in process: tf.saved_model.load).
# ---------------------------------------------------------------------------
def test_highlight_detection_export(tmp_path):
  keras.utils.set_random_seed(1)
  model = fixtures.build_task(
      action_localizer.build_action_localizer, "tiny", task=spec.HD,
      pyramid_spec=PYR, input_mode="embeddings",
      text_max_length=L, num_conv_layers=2)
  queries = ["a man opens the door", "x", "the dog runs"]
  req = _video(3, 10, "embeddings")
  ids, mask = _tokenize(queries)
  req[spec.TEXT_IDS], req[spec.TEXT_MASK] = ids[:, None], mask[:, None]
  want = _keras_localization(model, req, task=spec.HD)
  path = export_lib.export(model=model, export_dir=str(tmp_path),
                           task=spec.HD, num_frames=N0,
                           input_mode="embeddings", text_max_length=L,
                           audit=False)
  loaded = tf.saved_model.load(path)
  got = {k: v.numpy() for k, v in
         loaded.signatures["serving_default"](**_numeric(req)).items()}
  _assert_same(got, want, "hd")
  assert got["saliency"].shape == (3, 75)
  assert got["saliency"][0, 2:].max() == 0.0  # clips after the 4 s video
  assert got["saliency"][0, :2].min() > 0.0
  video = {k: v for k, v in req.items() if not k.startswith("text_")}
  text = loaded.signatures["serving_text"](
      **_numeric(video), queries=tf.constant([[q] for q in queries]))
  _assert_same({k: v.numpy() for k, v in text.items()}, want, "hd text")
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="input queries must have shape"):
    loaded.signatures["serving_text"](
        **_numeric(video), queries=tf.constant([[q, q] for q in queries]))


def test_action_segmentation_export_with_prompts(tmp_path):
  keras.utils.set_random_seed(2)
  model = fixtures.build_task(
      action_segmenter.build_action_segmenter, "tiny", num_frames=N0,
      input_mode="embeddings", text_max_length=L)
  prompts = ["a video of {}.", "{} now"]
  names = ["cut", "stir fry"]
  path = export_lib.export(model=model, export_dir=str(tmp_path),
                           task=spec.AS, num_frames=N0,
                           input_mode="embeddings", embedding_dim=D,
                           text_max_length=L, num_text=2, class_names=names,
                           prompts=prompts, settings=base.DecodeSettings(
                               background_logit_threshold=-10.0),
                           audit=False)
  loaded = tf.saved_model.load(path)
  req = _video(2, 11, "embeddings")
  # Reference: one model run per prompt, raw logits averaged (§5.1).
  runs = []
  for p in prompts:
    ids, mask = _tokenize([p.format(n) for n in names])
    runs.append(model(_numeric(dict(
        req, text_ids=np.tile(ids[None], [2, 1, 1]),
        text_mask=np.tile(mask[None], [2, 1, 1]))))["logits"])
  logits = postprocess.ensemble_prompts([{"logits": r} for r in runs])[
      "logits"].numpy()
  classes = postprocess.segmentation_predictions(
      logits, -10.0, token_mask=req[spec.FRAME_MASK]).numpy()
  text = loaded.signatures["serving_text"](
      **_numeric(req), class_names=tf.constant(names))
  np.testing.assert_allclose(text["logits"].numpy(), logits, atol=TOL)
  np.testing.assert_array_equal(text["frame_classes"].numpy(), classes)
  assert (classes[1, 5:] == -1).all() and (classes[0] >= 0).any()
  # serving_default takes the C * P prompted texts, class-major.
  ids, mask = _tokenize(text_lib.apply_prompts(names, prompts))
  numeric = loaded.signatures["serving_default"](**_numeric(dict(
      req, text_ids=np.tile(ids[None], [2, 1, 1]),
      text_mask=np.tile(mask[None], [2, 1, 1]))))
  np.testing.assert_allclose(numeric["logits"].numpy(), logits, atol=TOL)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="input class_names must have shape"):
    loaded.signatures["serving_text"](**_numeric(req),
                                      class_names=tf.constant(["cut"]))


# ---------------------------------------------------------------------------
# TF Serving's contracts: requests on the wire, warm-up records, metadata.
# ---------------------------------------------------------------------------
def _as_served(value):
  """A request array as a server feeds it (strings as UTF-8 bytes)."""
  value = np.asarray(value)
  if value.dtype.kind == "U":
    return np.vectorize(str.encode, otypes=[object])(value)
  return value


@needs_tf_serving
@pytest.mark.parametrize("name", sorted(WIRE))
def test_wire_requests_decode_exactly_and_match_keras(exports, fresh_runs,
                                                      name):
  """gRPC PredictRequests and REST bodies (both forms, b64 strings), decoded
  in the fresh process against the loaded signature_defs as the server
  does, give the Keras model's detections."""
  tag, sig, r, _ = WIRE[name]
  process = "text" if tag in ("tal_v1", "mr_text") else "plain"
  results, meta = fresh_runs[process][:2]
  wire = fresh_runs[process][-1]
  if process == "text":
    requests = fresh_runs["text"][2]
  else:
    requests = {k: f() for k, f in {**TAL_REQS, **MR_REQS}.items()}
  assert meta["errors"][f"wire/{tag}/{name}"] is None, meta["errors"][
      f"wire/{tag}/{name}"]
  assert meta["wire_signature"][f"{tag}/{name}"] == (
      sig or "serving_default")
  # Decoding here (export_info.json's signatures) gives the sent arrays.
  kind, data = wire[name]
  signatures = _export_signatures(_export_dirs(exports)[tag])
  if kind == "grpc":
    from tensorflow_serving.apis import predict_pb2  # noqa: PLC0415

    decoded = requests_lib.decode_predict_request(
        predict_pb2.PredictRequest.FromString(data), signatures)
  else:
    decoded = requests_lib.decode_rest_body(data, signatures)
  sent = requests[r]
  assert sorted(decoded.inputs) == sorted(sent)
  for k, v in sent.items():
    np.testing.assert_array_equal(decoded.inputs[k], _as_served(v))
    assert decoded.inputs[k].dtype == _as_served(v).dtype, k
  numeric = requests[r[:-len("_text")] if r.endswith("_text") else r]
  if tag.startswith("tal"):
    want = _keras_localization(exports["tal"], numeric)
  else:
    want = _keras_retrieval(exports["mr"], numeric)
  _assert_same(_outputs(results, f"wire/{tag}/{name}"), want, name)


@needs_tf_serving
def test_readme_request_json_runs(exports, fresh_runs):
  """README's request.json (its "..." filled to the declared sizes) decodes
  to the signature's shapes and gives the Keras model's detections."""
  assert fresh_runs["readme_error"] is None, (
      "README.md's request.json (Export and serving) does not read: "
      + fresh_runs["readme_error"])
  results, meta, _, wire = fresh_runs["text"]
  signatures = _export_signatures(exports[README_EXPORT])
  decoded = requests_lib.decode_rest_body(wire["readme"][1], signatures)
  declared = signatures[decoded.signature_name]["inputs"]
  for k, v in decoded.inputs.items():
    shape = declared[k]["shape"]
    assert v.ndim == len(shape) and all(
        d is None or d == n for d, n in zip(shape, v.shape)), (
            f"README request.json: {k} has shape {list(v.shape)}, the"
            f" signature declares {shape}: write '...' after the item of"
            " every fixed dimension")
  assert meta["errors"][f"wire/{README_EXPORT}/readme"] is None, meta[
      "errors"][f"wire/{README_EXPORT}/readme"]
  numeric = {k: v for k, v in decoded.inputs.items() if k != "class_names"}
  ids, mask = _tokenize([n.decode() for n in decoded.inputs["class_names"]])
  batch = numeric[spec.FRAME_MASK].shape[0]
  numeric[spec.TEXT_IDS] = np.tile(ids[None], [batch, 1, 1])
  numeric[spec.TEXT_MASK] = np.tile(mask[None], [batch, 1, 1])
  want = _keras_localization(exports["tal"], numeric)
  _assert_same(_outputs(results, f"wire/{README_EXPORT}/readme"), want,
               "README request.json")


@needs_tf_serving
def test_warmup_records_run_through_their_signatures(exports, fresh_runs):
  """Every export has one warm-up record of batch 1 per signature; each runs
  through its signature in the fresh process (TF Serving fails the load
  otherwise)."""
  dirs = _export_dirs(exports)
  for tag, process in (("tal_v2", "plain"), ("mr", "plain"),
                       ("tal_v1", "text"), ("mr_text", "text")):
    results, meta = fresh_runs[process][:2]
    signatures = _export_signatures(dirs[tag])
    path = os.path.join(dirs[tag], "assets.extra",
                        requests_lib.WARMUP_FILENAME)
    assert os.path.getsize(path) < 4096  # constant inputs are stored once
    warmup = requests_lib.read_warmup_requests(path, signatures)
    assert sorted(w.signature_name for w in warmup) == sorted(signatures)
    assert meta["errors"][f"warmup/{tag}"] is None, meta["errors"][
        f"warmup/{tag}"]
    assert meta["warmup"][tag] == [w.signature_name for w in warmup]
    for i, w in enumerate(warmup):
      assert {v.shape[0] for k, v in w.inputs.items()
              if k != "class_names"} == {1}, (tag, i)
      out = _outputs(results, f"warmup/{tag}/{i}")
      assert sorted(out) == sorted(signatures[w.signature_name]["outputs"])
      assert {v.shape[0] for v in out.values()} == {1}, (tag, i)
  # The numeric warm-up requests are real requests: Keras agrees ...
  results = fresh_runs["plain"][0]
  for tag, ref in (("tal_v2", lambda x: _keras_localization(
      exports["tal"], x)), ("mr", lambda x: _keras_retrieval(exports["mr"],
                                                             x))):
    path = os.path.join(dirs[tag], "assets.extra",
                        requests_lib.WARMUP_FILENAME)
    w, = requests_lib.read_warmup_requests(path)
    _assert_same(_outputs(results, f"warmup/{tag}/0"), ref(w.inputs), tag)
  # ... and the string signature's answers the numeric one's (same texts).
  results = fresh_runs["text"][0]
  for tag in ("tal_v1", "mr_text"):
    _assert_same(_outputs(results, f"warmup/{tag}/1"),
                 _outputs(results, f"warmup/{tag}/0"), tag)


def _compact(metadata):
  """The REST GetModelMetadata body's signatures, parsed back into
  SignatureDef protos, in export_info.json's form."""
  from google.protobuf import json_format  # noqa: PLC0415
  from tensorflow.core.protobuf import meta_graph_pb2  # noqa: PLC0415

  out = {}
  for name, d in metadata["metadata"]["signature_def"][
      "signature_def"].items():
    if name == serving_metadata.INIT_OP_SIGNATURE:
      continue
    sig = json_format.ParseDict(d, meta_graph_pb2.SignatureDef())
    out[name] = {"method_name": sig.method_name, **{
        io: {k: serving_metadata.tensor_info(v)
             for k, v in getattr(sig, io).items()}
        for io in ("inputs", "outputs")}}
  return out


def test_serving_metadata_tool_matches_the_loaded_signatures(exports,
                                                             fresh_runs):
  """tools/serving_metadata.py on the TAL base path answers for its newest
  version what a loader reads from the signature_defs."""
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "serving_metadata.py"),
       f"--saved_model={exports['tal_base']}", "--model_name=unloc"],
      capture_output=True, text=True, cwd=ROOT, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-3000:]
  metadata = {"tal_v2": json.loads(proc.stdout)}
  assert metadata["tal_v2"]["model_spec"] == {
      "name": "unloc", "signature_name": "", "version": "2"}
  dirs = _export_dirs(exports)
  for tag in ("tal_v1", "mr", "mr_text"):
    metadata[tag] = serving_metadata.model_metadata(dirs[tag])
  loaded = {**fresh_runs["plain"][1]["signature_defs"],
            **fresh_runs["text"][1]["signature_defs"]}
  for tag, m in metadata.items():
    defs = m["metadata"]["signature_def"]["signature_def"]
    assert serving_metadata.INIT_OP_SIGNATURE in defs  # as the server lists
    assert _compact(m) == loaded[tag], tag
  frames = metadata["tal_v2"]["metadata"]["signature_def"]["signature_def"][
      "serving_default"]["inputs"]["frames"]
  assert frames["dtype"] == "DT_UINT8"
  assert frames["name"] == "serving_default_frames:0"
  assert [d["size"] for d in frames["tensor_shape"]["dim"]] == [
      "-1", str(N0), str(S), str(S), "3"]


def test_serving_metadata_checks_export_info(exports, tmp_path):
  for d in _export_dirs(exports).values():
    serving_metadata.check_export_info(d)
  version = tmp_path / "unloc" / "7"
  os.makedirs(version / "assets.extra")
  shutil.copy(os.path.join(exports["tal_v2"], "saved_model.pb"), version)
  with open(os.path.join(exports["tal_v2"], "assets.extra",
                         "export_info.json")) as f:
    info = json.load(f)
  info_path = version / "assets.extra" / "export_info.json"
  info_path.write_text(json.dumps(info))
  with pytest.raises(ValueError, match="says version 2, but the directory is"
                     " version 7"):
    serving_metadata.model_metadata(str(tmp_path / "unloc"))
  info["version"] = 7
  info["signatures"]["serving_default"]["inputs"]["frames"]["dtype"] = (
      "float32")
  info_path.write_text(json.dumps(info))
  with pytest.raises(ValueError, match="disagrees with saved_model.pb:"
                     " signature serving_default input frames: .*'dtype':"
                     " 'float32'.* in the file, .*'dtype': 'uint8'.* in the"
                     " SavedModel"):
    serving_metadata.model_metadata(str(version))
  with pytest.raises(FileNotFoundError, match="holds neither saved_model.pb"
                     " nor an integer version directory"):
    serving_metadata.model_metadata(str(tmp_path))
