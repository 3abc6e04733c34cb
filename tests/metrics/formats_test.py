"""The submission formats (writers and readers), on the real files too."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from unloc_tf.datasets import activitynet, qvhighlights
from unloc_tf.metrics import formats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
DATA = os.environ.get("UNLOC_SHARED_DATA",
                      os.path.join(ROOT, "..", "shared", "data"))
ANET = os.path.join(DATA, "activitynet1.3")
QVH = os.path.join(DATA, "qvhighlights")

real_data = pytest.mark.skipif(
    not os.path.isdir(DATA), reason=f"shared data not found at {DATA}")


# ---------------------------------------------------------------------------
# ActivityNet results: writer, reader, padded arrays.
# ---------------------------------------------------------------------------
def test_activitynet_results_round_trip(tmp_path):
  detections = {
      "vid1": [{"segment": [np.float32(1.5), 4.0], "label": "x",
                "score": np.float64(0.25)},
               {"segment": np.array([0.0, 9.0]), "label": "y", "score": 1}],
      "vid2": [],
  }
  path = str(tmp_path / "out" / "results.json")
  formats.write_activitynet_results(path, detections,
                                    external_data={"used": True,
                                                   "details": "CLIP"})
  with open(path) as f:
    raw = json.load(f)
  assert raw["version"] == "VERSION 1.3"
  assert raw["external_data"] == {"used": True, "details": "CLIP"}
  assert raw["results"]["vid1"][0] == {"label": "x", "score": 0.25,
                                       "segment": [1.5, 4.0]}
  back = formats.read_activitynet_results(path)
  assert back == {
      "vid1": [{"segment": [1.5, 4.0], "label": "x", "score": 0.25},
               {"segment": [0.0, 9.0], "label": "y", "score": 1.0}],
      "vid2": []}
  # The same file read as GT (results layout) drops the scores.
  gt, durations = activitynet.read_activitynet(path)
  assert gt["vid1"] == [{"segment": [1.5, 4.0], "label": "x"},
                        {"segment": [0.0, 9.0], "label": "y"}]
  assert durations == {"vid1": None, "vid2": None}
  formats.write_activitynet_results(path, detections)
  with open(path) as f:
    assert json.load(f)["external_data"] == {"used": False, "details": ""}


@real_data
def test_activitynet_results_round_trip_real_file(tmp_path):
  src = os.path.join(ANET, "sample_detection_prediction.json")
  preds = formats.read_activitynet_results(src)
  out = str(tmp_path / "copy.json")
  formats.write_activitynet_results(out, preds)
  assert formats.read_activitynet_results(out) == preds
  with open(src) as f:
    assert json.load(f)["results"] == preds


def test_write_activitynet_results_bad_detection(tmp_path):
  path = str(tmp_path / "r.json")
  with pytest.raises(formats.FormatError) as e:
    formats.write_activitynet_results(
        path, {"v": [{"segment": [0, 1], "label": "x", "score": 1.0},
                     {"segment": [0, 1], "label": "x"}]})
  assert "video 'v' detection 1" in str(e.value)
  assert e.value.field == "score"
  assert not os.path.exists(path)


def test_detections_to_activitynet_padded_arrays():
  segments = np.array([[[0.1, 0.5], [0.2, 0.3], [9, 9]],
                       [[0.0, 1.0], [9, 9], [9, 9]],
                       [[0.5, 0.6], [9, 9], [9, 9]]], np.float32)
  scores = np.array([[0.9, 0.4, -1], [0.7, -1, -1], [0.2, -1, -1]])
  classes = np.array([[1, 0, 7], [2, 7, 7], [0, 7, 7]])
  out = formats.detections_to_activitynet(
      np.array([b"v1", b"v2", b"v1"], dtype=object), segments, scores,
      classes, np.array([2, 1, 1]), ["a", "b", "c"],
      durations=[10.0, 100.0, 10.0])
  assert list(out) == ["v1", "v2"]
  assert [d["label"] for d in out["v1"]] == ["b", "a", "a"]
  np.testing.assert_allclose([d["segment"] for d in out["v1"]],
                             [[1.0, 5.0], [2.0, 3.0], [5.0, 6.0]], rtol=1e-6)
  np.testing.assert_allclose([d["score"] for d in out["v1"]],
                             [0.9, 0.4, 0.2])
  assert out["v2"] == [{"label": "c", "score": 0.7, "segment": [0.0, 100.0]}]
  assert all(type(d["score"]) is float for d in out["v1"])
  # num_detections = 0 keeps the video with no detections.
  out = formats.detections_to_activitynet(["v"], segments[:1], scores[:1],
                                          classes[:1], [0], ["a", "b"])
  assert out == {"v": []}


@pytest.mark.parametrize("kwargs,match", [
    ({"num_detections": [4]}, r"in \[0, 3\]"),
    ({"classes": [[0, 5, 0]]}, "class index 5"),
    ({"scores": [[1.0, 1.0]]}, "scores must be"),
    ({"segments": [[0, 1], [0, 1], [0, 1]]}, "segments must be"),
])
def test_detections_to_activitynet_errors(kwargs, match):
  args = {"video_ids": ["v"], "segments": [[[0, 1], [0, 1], [0, 1]]],
          "scores": [[1.0, 1.0, 1.0]], "classes": [[0, 1, 0]],
          "num_detections": [3], "class_names": ["a", "b"]}
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    formats.detections_to_activitynet(**args)


# ---------------------------------------------------------------------------
# QVHighlights submissions.
# ---------------------------------------------------------------------------
@real_data
def test_qvhighlights_predictions_real_file():
  val = qvhighlights.read_qvhighlights(
      os.path.join(QVH, "highlight_val_release.jsonl"), require_labels=True)
  preds = formats.read_qvhighlights_predictions(
      os.path.join(QVH, "sample_val_preds.jsonl"))
  assert len(preds) == 1550
  assert {p["qid"] for p in preds} == {r["qid"] for r in val}


def test_qvhighlights_submission_sorted_by_score(tmp_path):
  rows = [
      {"qid": np.int64(7), "query": "q", "vid": "v",
       "pred_relevant_windows": np.array([[0, 10, 0.2], [5, 15, 0.9],
                                          [1, 2, 0.5], [3, 4, 0.5]]),
       "pred_saliency_scores": np.array([0.1, -0.3], np.float32),
       "extra": "dropped"},
      {"qid": 8, "query": "r", "vid": "w",
       "pred_relevant_windows": [[0, 1, 0.1]]},
  ]
  path = str(tmp_path / "sub" / "preds.jsonl")
  formats.write_qvhighlights_submission(path, rows)
  with open(path) as f:
    lines = [json.loads(line) for line in f]
  assert lines[0] == {
      "qid": 7, "query": "q", "vid": "v",
      "pred_relevant_windows": [[5.0, 15.0, 0.9], [1.0, 2.0, 0.5],
                                [3.0, 4.0, 0.5], [0.0, 10.0, 0.2]],
      "pred_saliency_scores": [pytest.approx(0.1), pytest.approx(-0.3)]}
  assert "pred_saliency_scores" not in lines[1]
  assert formats.read_qvhighlights_predictions(path) == lines
  with pytest.raises(formats.FormatError, match="row 1: field 'qid'"):
    formats.write_qvhighlights_submission(path, [rows[1], rows[1]])
  with pytest.raises(formats.FormatError,
                     match="row 0: field 'pred_relevant_windows'"):
    formats.write_qvhighlights_submission(
        path, [{"qid": 1, "query": "q", "vid": "v",
                "pred_relevant_windows": [[0, 1]]}])


@real_data
def test_qvhighlights_sample_submission_rewritten_sorted(tmp_path):
  preds = formats.read_qvhighlights_predictions(
      os.path.join(QVH, "sample_val_preds.jsonl"))
  shuffled = [{**p, "pred_relevant_windows": p["pred_relevant_windows"][::-1]}
              for p in preds]
  out = str(tmp_path / "sorted.jsonl")
  formats.write_qvhighlights_submission(out, shuffled)
  back = formats.read_qvhighlights_predictions(out)
  assert len(back) == 1550
  for p, q in zip(back, preds):
    scores = [w[2] for w in p["pred_relevant_windows"]]
    assert scores == sorted(scores, reverse=True)
    assert sorted(map(tuple, p["pred_relevant_windows"])) == sorted(
        map(tuple, q["pred_relevant_windows"]))
  # The official sample is already sorted; the stable sort keeps it as is
  # (equal scores keep their input order).
  formats.write_qvhighlights_submission(out, preds)
  assert formats.read_qvhighlights_predictions(out) == preds


# ---------------------------------------------------------------------------
# Retrieval candidates.
# ---------------------------------------------------------------------------
def test_retrieval_candidates_round_trip(tmp_path):
  rows = [{"video_id": "3MSZA", "query": "person turn a light on.",
           "gt": (24.3, 30.4),
           "candidates": np.array([[20, 30, 0.1], [24, 31, 0.8]]),
           "duration": np.float32(33.5), "sentence_index": 2}]
  path = str(tmp_path / "c.jsonl")
  formats.write_retrieval_candidates(path, rows)
  back = formats.read_retrieval_candidates(path)
  assert back == [{"video_id": "3MSZA", "query": "person turn a light on.",
                   "gt": [24.3, 30.4],
                   "candidates": [[24.0, 31.0, 0.8], [20.0, 30.0, 0.1]],
                   "duration": 33.5, "sentence_index": 2}]
  with open(path) as f:
    assert list(json.loads(f.readline()))[:4] == ["video_id", "query", "gt",
                                                  "candidates"]
  with pytest.raises(formats.FormatError, match="row 0: field 'gt'"):
    formats.write_retrieval_candidates(path, [{"video_id": "v", "query": "q",
                                               "candidates": []}])
