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
  check_frames,
  check_segments,
  convert,
  no_issues,
  read_records,
  real_data,
  write,
)
from unloc_tf import spec
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
