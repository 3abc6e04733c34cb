"""tools/visualize.py end to end (the library: tests/visualize_test.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("matplotlib")  # An optional dependency.

from matplotlib import image as mpimg  # noqa: E402

from unloc_tf.metrics import formats  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _pixels(path):
  img = mpimg.imread(path)
  assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 200
  return img


def _anet_files(tmp_path):
  gt = {"version": "VERSION 1.3", "taxonomy": [], "database": {
      "vidA": {"subset": "validation", "duration": 120.0,
               "annotations": [{"segment": [10, 40], "label": "Ballet"}]},
      "vid/B": {"subset": "validation", "duration": 60.0,
                "annotations": [{"segment": [5, 20], "label": "Zumba"}]},
  }}
  gt_path = tmp_path / "gt.json"
  gt_path.write_text(json.dumps(gt))
  pred_path = str(tmp_path / "results.json")
  formats.write_activitynet_results(pred_path, {
      "vidA": [{"segment": [12, 38], "label": "Ballet", "score": 0.8},
               {"segment": [0, 100], "label": "Zumba", "score": 0.1}],
      "vid/B": [{"segment": [4, 22], "label": "Zumba", "score": 0.95}],
  })
  return str(gt_path), pred_path


def _run_tool(*args):
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "visualize.py"), *args],
      capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_tool_end_to_end_activitynet(tmp_path):
  gt_path, pred_path = _anet_files(tmp_path)
  out = tmp_path / "plots"
  r = _run_tool(f"--ground_truth={gt_path}", f"--predictions={pred_path}",
                f"--output_dir={out}", "--top_k=1")
  assert r.returncode == 0, r.stderr
  assert "wrote 2 plot(s)" in r.stdout
  assert sorted(os.listdir(out)) == ["vidA.png", "vid_B.png"]
  for name in os.listdir(out):
    _pixels(str(out / name))
  # --video_ids selects; an unknown id is an error.
  out2 = tmp_path / "one"
  r = _run_tool(f"--ground_truth={gt_path}", f"--predictions={pred_path}",
                f"--output_dir={out2}", "--video_ids=vid/B")
  assert r.returncode == 0, r.stderr
  assert os.listdir(out2) == ["vid_B.png"]
  r = _run_tool(f"--ground_truth={gt_path}", f"--predictions={pred_path}",
                f"--output_dir={out2}", "--video_ids=nope")
  assert r.returncode != 0 and "nope" in r.stderr
  # A results file needs an ActivityNet / COIN ground truth.
  r = _run_tool(f"--predictions={pred_path}", f"--output_dir={out2}")
  assert r.returncode != 0 and "needs --ground_truth" in r.stderr


def test_tool_end_to_end_qvhighlights_and_candidates(tmp_path):
  gt_path = tmp_path / "qvh_gt.jsonl"
  gt_path.write_text(json.dumps({
      "qid": 5, "query": "a dog runs", "duration": 20, "vid": "vid_0.0_20.0",
      "relevant_windows": [[4, 10]], "relevant_clip_ids": [2, 3, 4],
      "saliency_scores": [[1, 2, 3], [4, 4, 4], [2, 2, 2]]}) + "\n")
  pred_path = str(tmp_path / "qvh_preds.jsonl")
  formats.write_qvhighlights_submission(pred_path, [{
      "qid": 5, "query": "a dog runs", "vid": "vid_0.0_20.0",
      "pred_relevant_windows": [[0, 4, 0.2], [4, 10, 0.9]],
      "pred_saliency_scores": [0.1] * 10}])
  cand_path = str(tmp_path / "cands.jsonl")
  formats.write_retrieval_candidates(cand_path, [
      {"video_id": "3MSZA", "query": "person turn a light on.",
       "gt": [24.3, 30.4], "candidates": [[20, 30, 0.4], [24, 31, 0.8]],
       "duration": 33.0},
      {"video_id": "3MSZA", "query": "person opens door.", "gt": [1, 5],
       "candidates": [[0, 4, 0.5]]}])
  out = tmp_path / "plots"
  r = _run_tool(f"--ground_truth={gt_path}", f"--predictions={pred_path}",
                f"--output_dir={out}")
  assert r.returncode == 0, r.stderr
  r = _run_tool(f"--predictions={cand_path}", f"--output_dir={out}")
  assert r.returncode == 0, r.stderr
  assert sorted(os.listdir(out)) == ["3MSZA_00000.png", "3MSZA_00001.png",
                                     "vid_0.0_20.0_q5.png"]
  assert all(os.path.getsize(out / f) > 1000 for f in os.listdir(out))
