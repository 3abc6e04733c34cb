"""tools/build_records.py, the binary: killed mid-way and resumed, it writes
the bytes of an uninterrupted run (the library is tested in tests/datasets)."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("av")  # An optional dependency.

from tests.datasets.helpers import (  # noqa: E402
  ROOT,
  SRC_FPS,
  annotation_options,
  convert,
  make_synthetic,
)


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
  return make_synthetic(str(tmp_path_factory.mktemp("synthetic")))


def test_worker_count_does_not_change_the_bytes_and_resume_does(syn,
                                                                tmp_path):
  """A conversion killed mid-way (a video that blocks: a FIFO) and resumed
  with 2 worker processes writes the bytes of an uninterrupted in-process
  run, and skips the shards that were finished."""
  ann, extra = annotation_options(syn, "activitynet")
  ref = tmp_path / "ref"
  common = dict(fps=SRC_FPS, short_side=24, num_shards=4)
  ref_report = convert(syn, "activitynet", ref, **common)
  vdir = tmp_path / "videos"
  vdir.mkdir()
  train = sorted(v for v in syn.videos if v.startswith("syn_train"))
  assert len(train) == 4
  for vid in train:
    target = vdir / f"{vid}.mp4"
    if vid == train[1]:
      os.mkfifo(target)  # opening it blocks: shard 1 never finishes
    else:
      os.symlink(os.path.join(syn.videos_dir, f"{vid}.mp4"), target)
  out = tmp_path / "out"
  args = [sys.executable, os.path.join(ROOT, "tools", "build_records.py"),
          "--format=activitynet", f"--annotations={ann}",
          f"--subset={extra['subset']}", f"--videos_dir={vdir}",
          f"--output_dir={out}", "--split=train", "--num_shards=4",
          f"--fps={SRC_FPS}", "--short_side=24", "--noprogress"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE)
  shards = [out / os.path.basename(p) for p in ref_report["shards"]]
  try:
    deadline = time.time() + 120
    while not (shards[0].exists()
               and os.path.exists(str(shards[1]) + ".incomplete")):
      assert proc.poll() is None, proc.communicate()
      assert time.time() < deadline, "the conversion did not start"
      time.sleep(0.1)
    time.sleep(0.3)
    assert proc.poll() is None  # blocked on the FIFO
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
  assert shards[0].exists() and not any(s.exists() for s in shards[1:])
  mtime = shards[0].stat().st_mtime_ns
  os.remove(vdir / f"{train[1]}.mp4")
  os.symlink(os.path.join(syn.videos_dir, f"{train[1]}.mp4"),
             vdir / f"{train[1]}.mp4")
  report = convert(syn, "activitynet", out, videos_dir=str(vdir),
                   num_workers=2, **common)
  assert report["shards_resumed"] == 1
  assert shards[0].stat().st_mtime_ns == mtime  # skipped, not rewritten
  for s in shards:
    with open(s, "rb") as f, open(ref / s.name, "rb") as g:
      assert f.read() == g.read(), s.name
  assert not glob.glob(str(out / "*.incomplete"))
  for key in ("issues", "annotated", "written", "issue_counts"):
    assert report[key] == ref_report[key]
  # A third run resumes everything and writes nothing.
  again = convert(syn, "activitynet", out, videos_dir=str(vdir), **common)
  assert again["shards_resumed"] == 4
  assert again["written"] == ref_report["written"]
  # Other options on the same output are refused, not mixed.
  with pytest.raises(ValueError, match="fingerprint"):
    convert(syn, "activitynet", out, videos_dir=str(vdir),
            **dict(common, fps=2.0))
  with pytest.raises(ValueError, match="another --num_shards"):
    convert(syn, "activitynet", out, videos_dir=str(vdir),
            **dict(common, num_shards=2))


def test_per_query_and_upscale_flags(syn, tmp_path):
  """--per_query and --upscale reach the library (the report says so)."""
  ann, extra = annotation_options(syn, "charades_sta")
  out = tmp_path / "out"
  args = [sys.executable, os.path.join(ROOT, "tools", "build_records.py"),
          "--format=charades_sta", f"--annotations={ann}",
          f"--charades_csv={extra['charades_csv']}",
          f"--videos_dir={syn.videos_dir}", f"--output_dir={out}",
          "--num_shards=1", f"--fps={SRC_FPS}", "--short_side=40",
          "--per_query", "--upscale", "--noprogress"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                        text=True, timeout=600, check=True)
  with open(out / "train.report.json") as f:
    report = json.load(f)
  queries = sum(1 for line in open(ann) if line.strip())
  assert (report["per_query"], report["upscale"]) == (True, True)
  assert report["written"]["records"] == queries
  assert report["issue_counts"]["stored_at_source_size"] == 0
  assert f"train: {queries}/{queries} records" in proc.stdout
