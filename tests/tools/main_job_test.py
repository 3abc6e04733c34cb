"""The README's main job at toy size: every stage runs (generate → train the
three tasks → official metrics → export → one served request) and the
results file holds what the table prints."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def test_main_job_runs_every_stage(tmp_path):
  work = str(tmp_path / "main")
  out = subprocess.run(
      [sys.executable, "tools/main_job.py", f"--workdir={work}",
       "--num_train=4", "--num_val=1", "--num_test=2", "--steps=2,2,2"],
      cwd=ROOT, capture_output=True, text=True, timeout=900,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-5000:]
  assert "results on the synthetic test split" in out.stdout
  with open(os.path.join(work, "main_job.json")) as f:
    result = json.load(f)
  assert [r["metric"] for r in result["headline"]] == [
      "TAL mAP@0.5", "MR R1@0.5", "AS frame accuracy"]
  for row in result["headline"]:
    assert 0.0 <= row["value"] <= 1.0
    assert row["reached"] == (row["value"] >= row["target"])
  for task in ("temporal_localization", "moment_retrieval",
               "action_segmentation"):
    assert os.path.exists(os.path.join(work, "runs", task, "checkpoints",
                                       "ckpt-2.index"))
  assert os.path.exists(os.path.join(work, "export", "moment_retrieval", "1",
                                     "saved_model.pb"))
  served = result["served"]
  assert served["answers"], served
  for answer in served["answers"]:
    assert answer["query"] and 0.0 <= answer["iou"] <= 1.0
    start, end = answer["top_segment"]
    assert start <= end
  assert result["peak_rss_gib"] > 0
  # The default path: embedding-only records (no pixels rendered).
  assert result["input_mode"] == "embeddings"
  with open(os.path.join(work, "data", "summary.json")) as f:
    summary = json.load(f)
  assert summary["frames"] is False and summary["embedding_dim"] == 132
