"""Kinetics: the csv reader and the classification records of clips (full
videos cut to the clip, and a trimmed clip file)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.datasets.helpers import (
  RENDER_TOLERANCE,
  SRC_FPS,
  convert,
  no_issues,
  pixels,
  read_records,
)
from unloc_tf.datasets import kinetics


def test_kinetics_clips(syn, tmp_path):
  report = convert(syn, "kinetics", tmp_path, fps=SRC_FPS)
  no_issues(report)
  classes = sorted({r["label"] for r in syn.kinetics_rows})
  recs = {r["media_id"]: r for r in read_records(tmp_path)}
  assert len(recs) == len(syn.kinetics_rows)
  for row in syn.kinetics_rows:
    s, e = row["time_start"], row["time_end"]
    rec = recs[kinetics.kinetics_clip_id(row["youtube_id"], s, e)]
    v = syn.videos[row["youtube_id"]]
    assert rec["clip_labels"] == [classes.index(row["label"])]
    end = min(e, v.duration)
    assert rec["n"] == round(end * SRC_FPS) - round(s * SRC_FPS)
    assert rec["duration"] == pytest.approx(end - s)
    got = pixels(rec["jpegs"])
    ref = v.frames[round(s * SRC_FPS):round(s * SRC_FPS) + rec["n"]]
    assert np.abs(got - ref).mean(axis=(1, 2, 3)).max() < RENDER_TOLERANCE


def test_bad_csv_names_file_line_and_field(tmp_path):
  bad = tmp_path / "bad.csv"
  bad.write_text("label,youtube_id,time_start,time_end,split\n"
                 "x,abc,zero,10,train\n")
  with pytest.raises(ValueError, match=r"bad.csv: line 2: field "
                     r"'time_start'"):
    kinetics.read_kinetics_csv(str(bad))
