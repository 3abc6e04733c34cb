"""QVHighlights: the GT reader (real files, bad rows) and the highlight
detection / moment retrieval records of synthetic mp4s."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.datasets.helpers import (
  CONFIG,
  DATA,
  SRC_FPS,
  annotation_options,
  check_frames,
  check_segments,
  convert,
  no_issues,
  read_records,
  real_data,
  write,
)
from unloc_tf import datasets, spec
from unloc_tf.datasets import qvhighlights
from unloc_tf.metrics import formats

QVH = os.path.join(DATA, "qvhighlights")


@real_data
def test_qvhighlights_real_files():
  val = qvhighlights.read_qvhighlights(
      os.path.join(QVH, "highlight_val_release.jsonl"), require_labels=True)
  assert len(val) == 1550
  assert val[0]["qid"] == 2579 and val[0]["relevant_windows"] == [[82, 150]]
  test = qvhighlights.read_qvhighlights(
      os.path.join(QVH, "highlight_test_release.jsonl"))
  assert len(test) == 1542 and "relevant_windows" not in test[0]
  with pytest.raises(formats.FormatError,
                     match=r"line 1: field 'relevant_windows': missing"):
    qvhighlights.read_qvhighlights(
        os.path.join(QVH, "highlight_test_release.jsonl"),
        require_labels=True)


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
  path = write(tmp_path / "q.jsonl",
               json.dumps(_QVH_ROW) + "\n\n" + json.dumps(bad) + "\n")
  with pytest.raises(formats.FormatError) as e:
    qvhighlights.read_qvhighlights(path)
  assert str(e.value).startswith(f"{path}: line 3: field {field!r}")


# ---------------------------------------------------------------------------
# Records (synthetic mp4s).
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("task", [spec.HD, spec.MR])
def test_qvhighlights(syn, tmp_path, task):
  report = convert(syn, "qvhighlights", tmp_path, task=task, fps=SRC_FPS)
  no_issues(report)
  assert report["task"] == task
  recs = read_records(tmp_path)
  events = {e.query_id: (v, k, e) for v in syn.videos.values()
            for k, e in enumerate(v.events)}
  assert len(recs) == CONFIG.num_train  # hd_max_queries = 1
  for rec in recs:
    v, k, ev = events[rec["example_id"][0]]
    assert rec["media_id"] == v.video_id
    assert rec["text"] == [ev.caption]
    assert rec["label"] == [0 if task == spec.HD else -1]
    check_segments(rec, [ev], SRC_FPS, rec["n"])
    check_frames(rec, v, SRC_FPS)
    if task == spec.HD:
      sal = v.saliency[k]
      assert rec["saliency_ids"] == list(sal.clip_index)
      np.testing.assert_allclose(rec["saliency"],
                                 np.asarray(sal.scores).reshape(-1))
    else:
      assert rec["saliency_ids"] == []


def _unlabeled_file(syn, path):
  """The synthetic train file without its labels (as the test release)."""
  src, _ = annotation_options(syn, "qvhighlights")
  rows = [json.loads(line) for line in open(src) if line.strip()]
  with open(path, "w") as f:
    for row in rows:
      f.write(json.dumps({k: row[k] for k in ("qid", "query", "duration",
                                              "vid")}) + "\n")
  return rows


@pytest.mark.parametrize("task", [spec.HD, spec.MR])
def test_qvhighlights_unlabeled_split_gives_records_without_targets(
    syn, tmp_path, task):
  """The test release has no labels: one record per query with the query,
  no segment, no saliency (before: 0 records, no_segments for each)."""
  ann = tmp_path / "highlight_test_release.jsonl"
  rows = _unlabeled_file(syn, ann)
  report = datasets.convert(datasets.Options(
      "qvhighlights", str(ann), syn.videos_dir, str(tmp_path / "out"),
      split="test", task=task, fps=SRC_FPS, short_side=0, num_shards=2,
      progress=False))
  no_issues(report)
  assert report["written"]["records"] == len(rows)
  assert report["written"]["without_targets"] == len(rows)
  assert report["written"]["segments"] == 0
  assert (f"{len(rows)} records without targets (unlabeled: evaluation"
          " writes a submission, no metrics)") in datasets.summary_line(report)
  recs = read_records(tmp_path / "out", "test")
  by_qid = {r["example_id"][0]: r for r in recs}
  assert sorted(by_qid) == sorted(r["qid"] for r in rows)
  for row in rows:
    rec = by_qid[row["qid"]]
    assert rec["media_id"] == row["vid"]
    assert rec["text"] == [row["query"]]
    assert (rec["start"], rec["end"], rec["start_us"], rec["label"]) == (
        [], [], [], [])
    assert rec["saliency_ids"] == [] and rec["saliency"] == []
    assert rec["duration"] == pytest.approx(syn.videos[row["vid"]].duration)
    check_frames(rec, syn.videos[row["vid"]], SRC_FPS)


def test_qvhighlights_labeled_and_unlabeled_rows_are_refused(tmp_path):
  unlabeled = {k: _QVH_ROW[k] for k in ("qid", "query", "duration", "vid")}
  path = write(tmp_path / "q.jsonl", json.dumps(_QVH_ROW) + "\n"
               + json.dumps({**unlabeled, "qid": 7}) + "\n")
  with pytest.raises(formats.FormatError) as e:
    qvhighlights.plan_qvhighlights(path)
  assert str(e.value).startswith(
      f"{path}: qid 7: field 'relevant_windows': missing, but qid 1 has it:"
      " a split is either labeled")


def test_qvhighlights_unlabeled_empty_query_is_reported(tmp_path):
  rows = [{"qid": 1, "query": " ", "duration": 150, "vid": "a"},
          {"qid": 2, "query": "a dog", "duration": 150, "vid": "a"}]
  path = write(tmp_path / "q.jsonl",
               "".join(json.dumps(r) + "\n" for r in rows))
  (item,), _ = qvhighlights.plan_qvhighlights(path)
  assert [(r.example_id, r.queries, r.segments) for r in item.records] == [
      (2, ("a dog",), [])]
  assert [(i["reason"], i["example_id"]) for i in item.issues] == [
      ("empty_caption", 1), ("no_segments", 1)]
