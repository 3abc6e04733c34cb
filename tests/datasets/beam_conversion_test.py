"""The record builder on Apache Beam's local runner: the multiprocess path's
bytes, a bad video in the report, resume, and the errors of a run with
nothing to convert or without Beam."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.datasets.helpers import (
  ROOT,
  SRC_FPS,
  annotation_options,
  convert,
)
from unloc_tf import datasets
from unloc_tf.data import beam as beam_lib

beam = pytest.importorskip("apache_beam")  # the beam extra (dev has it)

from unloc_tf.datasets import beam_conversion  # noqa: E402

# Two SDK worker processes: what the README recommends on this machine.
LOCAL_PROCESSES = "direct_num_workers=2"


def _videos_with_a_broken_one(syn, tmp_path):
  """The 4 train videos, the second replaced by bytes no decoder opens."""
  vdir = tmp_path / "videos"
  vdir.mkdir()
  train = sorted(v for v in syn.videos if v.startswith("syn_train"))
  for vid in train:
    target = vdir / f"{vid}.mp4"
    if vid == train[1]:
      target.write_bytes(b"not a video" * 100)
    else:
      os.symlink(os.path.join(syn.videos_dir, f"{vid}.mp4"), target)
  return str(vdir), train[1]


def _beam_convert(syn, out, videos_dir, beam_options, **kw):
  ann, extra = annotation_options(syn, "activitynet")
  extra.update(kw)
  opts = datasets.Options("activitynet", ann, videos_dir, str(out),
                          split="train", progress=False, **extra)
  return beam_conversion.convert_with_beam(opts, beam_options)


def _files(out):
  """{name: bytes} of the shards, parts and class lists under `out`."""
  found = {}
  for dirpath, _, names in os.walk(out):
    for name in names:
      if name.endswith((".tfrecord", ".txt")) or dirpath.endswith(".parts"):
        path = os.path.join(dirpath, name)
        with open(path, "rb") as f:
          found[os.path.relpath(path, out)] = f.read()
  return found


def _comparable(report):
  return {k: v for k, v in report.items()
          if k not in ("seconds", "report_path")}


def test_beam_writes_the_bytes_of_the_multiprocess_path(syn, tmp_path):
  """On 2 worker processes, with a video that does not decode and more
  shards than videos: the same shards, parts, class list and report as
  the multiprocess path (whose worker count changes no byte:
  tests/tools/build_records_test.py), the bad video a report entry; a rerun after losing a shard rewrites only that one."""
  videos_dir, broken = _videos_with_a_broken_one(syn, tmp_path)
  common = dict(fps=SRC_FPS, short_side=24, num_shards=5)
  ref = convert(syn, "activitynet", tmp_path / "ref", videos_dir=videos_dir,
                **common)
  report = _beam_convert(syn, tmp_path / "beam", videos_dir,
                         LOCAL_PROCESSES, **common)
  assert _comparable(report) == _comparable(ref)
  assert report["issue_counts"]["undecodable_video"] == 1
  assert [i["video_id"] for i in report["issues"]
          if i["reason"] == "undecodable_video"] == [broken]
  assert report["written"]["videos"] == 3 and report["written"]["records"]
  beam_files = _files(tmp_path / "beam")
  assert beam_files == _files(tmp_path / "ref")
  assert len([n for n in beam_files if n.endswith(".tfrecord")]) == 5
  with open(report["report_path"]) as f:
    assert _comparable(json.load(f)) == _comparable(ref)
  # The work folder is gone once every shard is published.
  assert not os.path.exists(tmp_path / "beam" / "train.beam")

  # Resume (in-memory runner): only the lost shard is rewritten, the same.
  lost = tmp_path / "beam" / report["shards"][2]
  os.remove(lost)
  again = _beam_convert(syn, tmp_path / "beam", videos_dir, "", **common)
  assert again["shards_resumed"] == 4
  assert _files(tmp_path / "beam") == beam_files


def test_a_preempted_run_reuses_the_converted_videos(syn, tmp_path):
  """A video file left by a preempted run is concatenated as it is (its
  decode is not repeated): planted with other bytes, they reach the
  shard; the work folder of a shard carries the shard's fingerprint, and
  one of another fingerprint is removed."""
  ann, extra = annotation_options(syn, "activitynet")
  opts = datasets.Options("activitynet", ann, syn.videos_dir,
                          str(tmp_path / "out"), split="train",
                          progress=False, fps=SRC_FPS, short_side=24,
                          num_shards=1, **extra)
  conv = datasets.builder.plan(opts)
  shard_dir = beam_conversion._shard_dir(  # pylint: disable=protected-access
      os.path.join(opts.output_dir, "train.beam"), 0, conv.keys[0])
  os.makedirs(shard_dir)
  planted = b"\x01" * 40
  with open(os.path.join(shard_dir, "0000000.tfrecord"), "wb") as f:
    f.write(planted)
  with open(os.path.join(shard_dir, "0000000.json"), "w") as f:
    json.dump({"videos_converted": 1, "records": 7, "frames": 0,
               "segments": 0, "without_targets": 0, "max_queries": 0,
               "issues": []}, f)
  stale = os.path.join(opts.output_dir, "train.beam", "00000-0123456789abcdef")
  os.makedirs(stale)  # a run with other inputs: not reused, removed
  report = beam_conversion.convert_with_beam(opts, "runner=FnApiRunner")
  with open(os.path.join(opts.output_dir, report["shards"][0]), "rb") as f:
    assert f.read().startswith(planted)
  assert not os.path.exists(os.path.join(opts.output_dir, "train.beam"))
  assert report["written"]["records"] == 7 + sum(
      r.num_records for r in conv.items[1:])


def test_no_annotations_is_an_error_naming_the_file(tmp_path):
  """A Beam run over an annotation file without a video stops before the
  pipeline, with the file and what to check, in one line (the binary)."""
  ann = tmp_path / "empty.json"
  ann.write_text(json.dumps({"version": "VERSION 1.3", "database": {}}))
  with pytest.raises(ValueError, match="no annotated videos"):
    beam_conversion.convert_with_beam(
        datasets.Options("activitynet", str(ann), str(tmp_path),
                         str(tmp_path / "out"), progress=False),
        "runner=FnApiRunner")
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", "build_records.py"),
       "--format=activitynet", f"--annotations={ann}",
       f"--videos_dir={tmp_path}", f"--output_dir={tmp_path / 'out'}",
       "--beam_pipeline_options=runner=FnApiRunner"],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 1
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "build_records.py: error:" in lines[0]
  assert f"{ann}: no annotated videos" in lines[0]


def test_pipeline_options_flag():
  assert beam_lib.pipeline_args("direct_num_workers=2") == [
      "--runner=FnApiRunner", "--direct_num_workers=2",
      "--direct_running_mode=multi_processing",
      "--default_sdk_harness_log_level=ERROR"]
  assert beam_lib.pipeline_args("runner=DirectRunner,direct_num_workers=1") == [
      "--runner=DirectRunner", "--direct_num_workers=1",
      "--default_sdk_harness_log_level=ERROR"]
  assert beam_lib.pipeline_args(
      "runner=DataflowRunner, project=p ,save_main_session") == [
          "--runner=DataflowRunner", "--project=p", "--save_main_session",
          "--default_sdk_harness_log_level=ERROR"]
  assert beam_lib.pipeline_args("") == [
      "--runner=FnApiRunner", "--default_sdk_harness_log_level=ERROR"]
  for bad in ("runner=DirectRunner,,x=1", "--runner=DirectRunner",
              "a b=1"):
    with pytest.raises(ValueError, match="beam_pipeline_options"):
      beam_lib.pipeline_args(bad)


def test_without_beam_the_error_says_what_to_install(monkeypatch):
  monkeypatch.setitem(sys.modules, "apache_beam", None)
  with pytest.raises(ImportError, match=r"pip install 'unloc_tf\[beam\]'"):
    beam_lib.import_beam()
