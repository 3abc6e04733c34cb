"""Readers of the official GT formats (on the real files) and the writers."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from unloc_tf.metrics import formats

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))
DATA = os.environ.get("UNLOC_SHARED_DATA",
                      os.path.join(ROOT, "..", "shared", "data"))
ANET = os.path.join(DATA, "activitynet1.3")
CAPTIONS = os.path.join(DATA, "activitynet_captions")
CHARADES = os.path.join(DATA, "charades_sta")
QVH = os.path.join(DATA, "qvhighlights")

real_data = pytest.mark.skipif(
    not os.path.isdir(DATA), reason=f"shared data not found at {DATA}")


@pytest.fixture(scope="module")
def anet_val():
  return formats.read_activitynet(
      os.path.join(ANET, "sample_detection_prediction.json"))


def _write(path, text):
  with open(path, "w") as f:
    f.write(text)
  return str(path)


# ---------------------------------------------------------------------------
# ActivityNet 1.3.
# ---------------------------------------------------------------------------
@real_data
def test_activitynet_val_gt_from_results_layout(anet_val):
  gt, durations = anet_val
  assert len(gt) == 4926
  assert sum(len(v) for v in gt.values()) == 7654
  assert len(formats.activitynet_class_names(gt)) == 200
  assert set(durations.values()) == {None}
  assert gt["wONwHYy59Tc"] == [{"segment": [94.52138901727746,
                                            130.48707650118757],
                                "label": "Blow-drying hair"}]
  zero = [v for v, anns in gt.items() for a in anns
          if a["segment"][0] == a["segment"][1]]
  assert sorted(zero) == sorted(["QhiKgeJV3k0", "e6J_ygZ779A",
                                 "6kgJx6ahgq0"])
  with pytest.raises(ValueError, match="no subsets"):
    formats.read_activitynet(
        os.path.join(ANET, "sample_detection_prediction.json"),
        subset="validation")


@real_data
def test_activitynet_bsn_layout_strips_v_prefix(anet_val):
  path = os.path.join(ANET, "bsn_anet_anno_action.json")
  info = os.path.join(ANET, "bsn_video_info_new.csv")
  gt, durations = formats.read_activitynet(path)
  assert len(gt) == 19228
  assert not any(v.startswith("v_") for v in gt if v[2:] in anet_val[0])
  assert durations["QOlSCBRmfWY"] == 82.73
  val, val_durations = formats.read_activitynet(path, "validation",
                                                video_info=info)
  assert len(val) == 4728
  # BSN's validation videos agree exactly with the results-layout val GT.
  assert all(val[v] == anet_val[0][v] for v in val)
  over = sum(a["segment"][1] > val_durations[v]
             for v, anns in val.items() for a in anns)
  assert over == 71
  train, _ = formats.read_activitynet(path, "training", video_info=info)
  test, _ = formats.read_activitynet(path, "testing", video_info=info)
  assert (len(train), len(test)) == (9649, 4851)
  assert not any(test.values())
  raw, _ = formats.read_activitynet(path, strip_v_prefix=False)
  assert all(v.startswith("v_") for v in raw)
  with pytest.raises(ValueError, match="video_info"):
    formats.read_activitynet(path, "validation")


def _official(tmp_path, database):
  return _write(tmp_path / "activity_net.v1-3.min.json", json.dumps(
      {"version": "VERSION 1.3", "taxonomy": [], "database": database}))


def test_activitynet_official_layout_and_subsets(tmp_path):
  path = _official(tmp_path, {
      "a": {"subset": "training", "duration": 10.0, "url": "",
            "annotations": [{"segment": [1, 2], "label": "x"}]},
      "v_b": {"subset": "validation", "duration": 20.5,
              "annotations": [{"segment": [3.5, 30.0], "label": "y"},
                              {"segment": [0, 1], "label": "x"}]},
      "c": {"subset": "testing", "duration": 5.0, "annotations": []},
  })
  gt, durations = formats.read_activitynet(path)
  assert list(gt) == ["a", "v_b", "c"]  # Official ids are never modified.
  assert gt["c"] == []
  val, val_durations = formats.read_activitynet(path, "validation")
  assert val == {"v_b": [{"segment": [3.5, 30.0], "label": "y"},
                         {"segment": [0.0, 1.0], "label": "x"}]}
  assert val_durations == {"v_b": 20.5}
  with pytest.raises(ValueError, match=r"'val'.*\['testing', 'training',"
                     r" 'validation'\]"):
    formats.read_activitynet(path, "val")


@pytest.mark.parametrize("video,field", [
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"segment": [0, 1]}]}, "label"),
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"label": "x"}]}, "segment"),
    ({"subset": "training", "annotations": []}, "duration"),
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"segment": [0, "1"], "label": "x"}]}, "segment"),
    ({"subset": "training", "duration": 1.0,
      "annotations": [{"segment": [0, 1, 2], "label": "x"}]}, "segment"),
])
def test_activitynet_bad_input_names_file_video_field(tmp_path, video, field):
  path = _official(tmp_path, {"ok": {"subset": "training", "duration": 1.0,
                                     "annotations": []},
                              "bad_vid": video})
  with pytest.raises(formats.FormatError) as e:
    formats.read_activitynet(path)
  msg = str(e.value)
  assert path in msg and "'bad_vid'" in msg and f"field {field!r}" in msg
  assert e.value.field == field


def test_activitynet_not_an_activitynet_file(tmp_path):
  path = _write(tmp_path / "x.json", json.dumps({"foo": 1}))
  with pytest.raises(formats.FormatError, match="not an ActivityNet file"):
    formats.read_activitynet(path)
  path = _write(tmp_path / "broken.json", '{"database": {\n"a": }')
  with pytest.raises(formats.FormatError, match="line 2: invalid JSON"):
    formats.read_activitynet(path)


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
  gt, durations = formats.read_activitynet(path)
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
# ActivityNet Captions.
# ---------------------------------------------------------------------------
@real_data
def test_activitynet_captions_val_1_2d_tan_rules():
  path = os.path.join(CAPTIONS, "val_1.json")
  rows, stats = formats.read_activitynet_captions(path, return_stats=True)
  assert len(rows) == 17505
  assert stats == {"videos": 4917, "total": 17505, "kept": 17505,
                   "dropped": 0, "clipped_start": 0, "clipped_end": 134}
  assert len({r["video_id"] for r in rows}) == 4917
  assert all(0 <= r["segment"][0] < r["segment"][1] <= r["duration"]
             for r in rows)
  assert rows[0] == {"video_id": "v_uqiMw7tQ1Cc",
                     "query": "A weight lifting tutorial is given.",
                     "segment": [0.28, 55.15], "duration": 55.15,
                     "sentence_index": 0}
  assert rows[1]["query"].startswith("The coach helps")  # Leading spaces.
  raw = formats.read_activitynet_captions(path, preprocess=None)
  assert len(raw) == 17505
  assert sum(r["segment"][1] > r["duration"] for r in raw) == 134


@real_data
def test_activitynet_captions_train_drops_empty_segments():
  rows, stats = formats.read_activitynet_captions(
      os.path.join(CAPTIONS, "train.json"), return_stats=True)
  assert (len(rows), stats["dropped"], stats["clipped_end"]) == (37417, 4,
                                                                 261)
  rows, stats = formats.read_activitynet_captions(
      os.path.join(CAPTIONS, "val_2.json"), return_stats=True)
  assert (len(rows), stats["videos"]) == (17031, 4885)


def test_activitynet_captions_rules_and_bad_input(tmp_path):
  path = _write(tmp_path / "c.json", json.dumps({"v": {
      "duration": 10.0, "timestamps": [[-1, 4], [5, 5], [6, 12], [8, 2]],
      "sentences": ["a", "b", " c ", "d"]}}))
  rows, stats = formats.read_activitynet_captions(path, return_stats=True)
  assert [(r["query"], r["segment"], r["sentence_index"]) for r in rows] == [
      ("a", [0.0, 4.0], 0), ("c", [6.0, 10.0], 2)]
  assert stats == {"videos": 1, "total": 4, "kept": 2, "dropped": 2,
                   "clipped_start": 1, "clipped_end": 1}
  path = _write(tmp_path / "bad.json", json.dumps({
      "v": {"duration": 10.0, "timestamps": [[0, 1]],
            "sentences": ["a", "b"]}}))
  with pytest.raises(formats.FormatError,
                     match=r"bad\.json: video 'v': field 'sentences'"):
    formats.read_activitynet_captions(path)
  path = _write(tmp_path / "bad2.json", json.dumps({
      "v": {"timestamps": [], "sentences": []}}))
  with pytest.raises(formats.FormatError, match="field 'duration': missing"):
    formats.read_activitynet_captions(path)


# ---------------------------------------------------------------------------
# Charades-STA.
# ---------------------------------------------------------------------------
@real_data
def test_charades_sta_test_with_lengths():
  txt = os.path.join(CHARADES, "charades_sta_test.txt")
  rows, stats = formats.read_charades_sta(
      txt, os.path.join(CHARADES, "Charades_v1_test.csv"), return_stats=True)
  assert len(rows) == 3720
  assert stats == {"videos": 1334, "total": 3720, "kept": 3720, "dropped": 0,
                   "clipped_end": 562}
  assert rows[0] == {"video_id": "3MSZA", "query": "person turn a light on.",
                     "segment": [24.3, 30.4], "duration": rows[0]["duration"]}
  assert all(r["segment"][0] < r["segment"][1] <= r["duration"]
             for r in rows)
  raw = formats.read_charades_sta(txt)
  assert len(raw) == 3720 and raw[0]["duration"] is None
  assert sum(a["segment"][1] != b["segment"][1]
             for a, b in zip(raw, rows)) == 562
  train = formats.read_charades_sta(
      os.path.join(CHARADES, "charades_sta_train.txt"))
  assert len(train) == 12408


@pytest.mark.parametrize("line,field", [
    ("AAAAA 1.0 2.0 person sits.", "sentence"),
    ("AAAAA 1.0##person sits.", "end"),
    ("AAAAA 1.0 x##person sits.", "end"),
    ("AAAAA one 2.0##person sits.", "start"),
    ("ZZZZZ 1.0 2.0##person sits.", "video_id"),
])
def test_charades_sta_bad_line_names_line_and_field(tmp_path, line, field):
  txt = _write(tmp_path / "sta.txt", f"AAAAA 0.5 3.0##ok.\n{line}\n")
  csv_path = _write(tmp_path / "c.csv", "id,length\nAAAAA,10.5\n")
  with pytest.raises(formats.FormatError) as e:
    formats.read_charades_sta(txt, csv_path)
  assert str(e.value).startswith(f"{txt}: line 2: field {field!r}")


def test_charades_sta_clips_and_drops(tmp_path):
  txt = _write(tmp_path / "sta.txt",
               "A 1 12##clipped.\r\nA 11 12##dropped.\n\nB 0 2##kept.\n")
  csv_path = _write(tmp_path / "c.csv", "id,x,length\nA,1,10\nB,2,5.5\n")
  rows, stats = formats.read_charades_sta(txt, csv_path, return_stats=True)
  assert [(r["video_id"], r["query"], r["segment"], r["duration"])
          for r in rows] == [("A", "clipped.", [1.0, 10.0], 10.0),
                             ("B", "kept.", [0.0, 2.0], 5.5)]
  assert stats == {"videos": 2, "total": 3, "kept": 2, "dropped": 1,
                   "clipped_end": 2}
  bad_csv = _write(tmp_path / "bad.csv", "id,length\nA,long\n")
  with pytest.raises(formats.FormatError,
                     match=r"bad\.csv: line 2: field 'length'"):
    formats.read_charades_sta(txt, bad_csv)


# ---------------------------------------------------------------------------
# QVHighlights.
# ---------------------------------------------------------------------------
@real_data
def test_qvhighlights_real_files():
  val = formats.read_qvhighlights(
      os.path.join(QVH, "highlight_val_release.jsonl"), require_labels=True)
  assert len(val) == 1550
  assert val[0]["qid"] == 2579 and val[0]["relevant_windows"] == [[82, 150]]
  test = formats.read_qvhighlights(
      os.path.join(QVH, "highlight_test_release.jsonl"))
  assert len(test) == 1542 and "relevant_windows" not in test[0]
  with pytest.raises(formats.FormatError,
                     match=r"line 1: field 'relevant_windows': missing"):
    formats.read_qvhighlights(
        os.path.join(QVH, "highlight_test_release.jsonl"),
        require_labels=True)
  preds = formats.read_qvhighlights_predictions(
      os.path.join(QVH, "sample_val_preds.jsonl"))
  assert len(preds) == 1550
  assert {p["qid"] for p in preds} == {r["qid"] for r in val}


_QVH_ROW = {"qid": 1, "query": "a dog", "duration": 150, "vid": "v_0.0_150.0",
            "relevant_windows": [[0, 4]], "relevant_clip_ids": [0, 1],
            "saliency_scores": [[1, 2, 3], [4, 4, 4]]}


@pytest.mark.parametrize("change,field", [
    ({"vid": None}, "vid"),
    ({"qid": "1"}, "qid"),
    ({"qid": 1}, "qid"),  # Duplicate of line 1.
    ({"saliency_scores": [[1, 2, 3]]}, "saliency_scores"),
    ({"saliency_scores": [[1, 2], [1, 2]]}, "saliency_scores"),
    ({"relevant_windows": [[0, 1, 2]]}, "relevant_windows"),
    ({"relevant_clip_ids": None}, "relevant_clip_ids"),
    ({"saliency_scores": None}, "saliency_scores"),
])
def test_qvhighlights_bad_row_names_line_and_field(tmp_path, change, field):
  bad = {**_QVH_ROW, "qid": 2, **change}
  bad = {k: v for k, v in bad.items() if v is not None}
  path = _write(tmp_path / "q.jsonl",
                json.dumps(_QVH_ROW) + "\n\n" + json.dumps(bad) + "\n")
  with pytest.raises(formats.FormatError) as e:
    formats.read_qvhighlights(path)
  assert str(e.value).startswith(f"{path}: line 3: field {field!r}")


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


# ---------------------------------------------------------------------------
# COIN.
# ---------------------------------------------------------------------------
def test_coin(tmp_path):
  db = {"database": {
      "vidA": {"recipe_type": 3, "class": "ChangeBulb", "subset": "training",
               "start": 0.0, "end": 60.0, "duration": 61.0,
               "video_url": "https://example.com",
               "annotation": [{"id": "12", "segment": [1.0, 5.5],
                               "label": "take out the old bulb"},
                              {"id": 13, "segment": [6, 9],
                               "label": "install the new bulb"}]},
      "vidB": {"recipe_type": 4, "subset": "testing", "annotation": []},
  }}
  path = _write(tmp_path / "COIN.json", json.dumps(db))
  coin = formats.read_coin(path)
  assert list(coin) == ["vidA", "vidB"]
  assert coin["vidA"]["annotation"][1] == {"id": "13", "segment": [6.0, 9.0],
                                           "label": "install the new bulb"}
  assert coin["vidA"]["class"] == "ChangeBulb"
  assert coin["vidB"]["duration"] is None
  assert list(formats.read_coin(path, subset="testing")) == ["vidB"]
  assert formats.coin_segments(formats.read_coin(path, "training")) == {
      "vidA": [{"segment": [1.0, 5.5], "label": "take out the old bulb"},
               {"segment": [6.0, 9.0], "label": "install the new bulb"}]}
  with pytest.raises(ValueError, match="subsets in the file"):
    formats.read_coin(path, subset="validation")
  del db["database"]["vidA"]["annotation"][0]["segment"]
  path = _write(tmp_path / "bad.json", json.dumps(db))
  with pytest.raises(formats.FormatError,
                     match=r"video 'vidA' annotation\[0\]: field 'segment'"):
    formats.read_coin(path)
