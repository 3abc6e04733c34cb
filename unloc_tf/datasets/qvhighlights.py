"""QVHighlights: highlight detection (HD) or moment retrieval (MR), 1 fps.

`read_qvhighlights` reads the ground-truth / query jsonl files
(highlight_{train,val,test}_release.jsonl; `unloc_tf.metrics.formats` reads
the submissions).  `plan_qvhighlights` makes one record per query
(`example_id` = qid): HD (default) with the relevant windows as segments
labelled 0, the query and the per-clip saliency (`SECS_PER_CLIP`-second
clips, 3 annotators), or MR (windows and query only).  A file without labels
(no "relevant_windows": the release test file) gives unlabeled records: the
query without segment or saliency, for a submission; a labeled query with
an empty window list is reported (no_segments).  The default 1 fps is the
reference configs'.
"""

from __future__ import annotations

from typing import Dict

from unloc_tf import spec
from unloc_tf.datasets import common
from unloc_tf.metrics import formats

SECS_PER_CLIP = 2.0  # the saliency clips

_QVH_QUERY_FIELDS = ("qid", "query", "duration", "vid")
_QVH_LABEL_FIELDS = ("relevant_windows", "relevant_clip_ids",
                     "saliency_scores")


def read_qvhighlights(path: str, require_labels: bool = False) -> list[dict]:
  """Reads a QVHighlights jsonl (highlight_{train,val,test}_*.jsonl).

  Every row needs "qid" (int, unique), "query" (str), "duration" (number) and
  "vid" (str).  The label fields are validated when present:
  "relevant_windows" ([[s, e], ...]), "relevant_clip_ids" (ints, 2-second
  clips) and "saliency_scores" (one [a, b, c] triple of the 3 annotators per
  clip id); the last two go together.  With `require_labels` (ground truth)
  all three are required.  The release test file has no labels.

  Args:
    path: the jsonl file.
    require_labels: formats.require the label fields.

  Returns:
    The rows, as stored (dicts parsed from JSON), in file order.

  Raises:
    formats.FormatError: names the file, the line and the field.
  """
  rows = []
  qids: dict[int, int] = {}
  for lineno, row in formats.iter_jsonl(path):
    where = f"line {lineno}"
    for field in _QVH_QUERY_FIELDS:
      formats.require(row, field, path, where)
    qid = formats.as_integer(row["qid"], path, where, "qid")
    if qid in qids:
      raise formats.FormatError(
          path, where, "qid",
          f"duplicate qid {qid} (first on line {qids[qid]})")
    qids[qid] = lineno
    formats.as_string(row["query"], path, where, "query")
    formats.as_string(row["vid"], path, where, "vid")
    formats.as_number(row["duration"], path, where, "duration")
    if require_labels:
      for field in _QVH_LABEL_FIELDS:
        formats.require(row, field, path, where)
    if "relevant_windows" in row:
      for w in formats.as_list(row["relevant_windows"], path, where,
                               "relevant_windows"):
        formats.as_segment(w, path, where, "relevant_windows")
    has_ids = "relevant_clip_ids" in row
    has_scores = "saliency_scores" in row
    if has_ids != has_scores:
      raise formats.FormatError(
          path, where,
          "saliency_scores" if has_ids else "relevant_clip_ids",
          "missing (relevant_clip_ids and saliency_scores go together)")
    if has_ids:
      ids = formats.as_list(row["relevant_clip_ids"], path, where,
                            "relevant_clip_ids")
      for c in ids:
        formats.as_integer(c, path, where, "relevant_clip_ids")
      scores = formats.as_list(row["saliency_scores"], path, where,
                               "saliency_scores")
      if len(scores) != len(ids):
        raise formats.FormatError(path, where, "saliency_scores",
                                  f"{len(scores)} entries for {len(ids)}"
                                  " relevant_clip_ids")
      for s in scores:
        s = formats.as_list(s, path, where, "saliency_scores")
        if len(s) != 3:
          raise formats.FormatError(path, where, "saliency_scores",
                                    f"expected 3 annotator scores, got {s!r}")
        for v in s:
          formats.as_number(v, path, where, "saliency_scores")
    rows.append(row)
  return rows


def _check_all_or_none_labeled(path: str, rows: list[dict]) -> None:
  """Every row has "relevant_windows", or none has (qid order: file)."""
  labeled = [r for r in rows if "relevant_windows" in r]
  unlabeled = [r for r in rows if "relevant_windows" not in r]
  if labeled and unlabeled:
    raise formats.FormatError(
        path, f"qid {unlabeled[0]['qid']}", "relevant_windows",
        f"missing, but qid {labeled[0]['qid']} has it: a split is either"
        " labeled (every row has relevant_windows) or unlabeled (none has;"
        " its records get no targets); split the file")


def plan_qvhighlights(annotations: str, task: str = spec.HD) -> common.Plan:
  """QVHighlights jsonl -> HD (or MR) records, one per query.

  Args:
    annotations: the jsonl file.
    task: spec.HD (segments labelled 0, with saliency) or spec.MR.

  Rows without "relevant_windows" (the release test file) become unlabeled
  records (`RecordPlan.queries` = [the query]); a file must not mix them
  with labeled rows.

  Returns:
    (one item per video, in file order; no classes).

  Raises:
    formats.FormatError: labeled and unlabeled rows in one file (names the
      first of each).
  """
  rows = read_qvhighlights(annotations)
  _check_all_or_none_labeled(annotations, rows)
  hd = task == spec.HD
  planner = common.Planner(None)
  by_video: Dict[str, common.VideoItem] = {}
  for row in rows:
    vid = row["vid"]
    item = by_video.get(vid)
    if item is None:
      item = by_video[vid] = common.VideoItem(
          vid, [], common.video_names(vid), float(row["duration"]))
    rec = common.RecordPlan(vid, example_id=int(row["qid"]))
    query = row["query"].strip()
    if "relevant_windows" not in row:
      if query:
        rec.queries = (query,)
      else:
        item.issues.append(common.issue(common.EMPTY_CAPTION, vid,
                                        example_id=rec.example_id))
    for k, (s, e) in enumerate(row.get("relevant_windows", [])):
      planner.segment(item, rec, k, float(s), float(e), text=query,
                      label_index=0 if hd else -1)
    if hd and "relevant_clip_ids" in row:
      rec.saliency = ([int(c) for c in row["relevant_clip_ids"]],
                      [[float(v) for v in s] for s in row["saliency_scores"]])
    planner.finish(item, rec, required=True)
  return list(by_video.values()), []
