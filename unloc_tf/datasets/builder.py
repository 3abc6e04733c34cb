"""Annotations + videos -> TFRecord shards: the record builder.

`convert(Options)` plans the items of an annotation file (the dataset
module's `plan_<format>`, `PLANNERS`), finds their videos (`plan`), decodes
them (`convert_video`, in spawned worker processes with `num_workers` > 1)
and writes one `tf.SequenceExample` per record in the record contract of
`unloc_tf.data.schema`.  `unloc_tf.datasets.beam_conversion` writes the
same bytes from the same plan on an Apache Beam runner.  Output paths may
be `tf.io.gfile` URLs (gs://...).

Output (`<output_dir>`):
  <split>-0000i-of-0000N.tfrecord   the shards (N = num_shards);
  classes.txt, classes.json         TAL / AS / CLS: the class list (one name
                                    per line, line = label index; {name:
                                    index});
  <split>.report.json               what was converted and every problem
                                    (`common.REASONS`), per-reason counts;
  <split>.parts/                    one small JSON per finished shard (its
                                    report part and input fingerprint; used
                                    to resume).

Determinism and resume: items (videos; Kinetics: clips) are sorted by id and
item i goes to shard i % N, so shards are a pure function of the annotation
list and N.  Records of a video are consecutive, in annotation order, and a
shard holds its videos in sorted order whatever `num_workers` is.  A shard
is written to `<shard>.incomplete` and renamed when complete (its part
first); a restarted conversion skips the shards that exist with their part
and writes the others, byte-identical to an uninterrupted run.  Changing
the inputs or the options of an existing output is an error (`overwrite`
rewrites every shard), and so are shards of the split with another N.
Workers decode one video at a time with one thread each; each imports
TensorFlow (about 0.6 GB RSS) for the JPEG encoder.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import dataclasses
import glob
import hashlib
import json
import multiprocessing
import os
import time
from typing import Callable, Dict, Iterator, List, Optional, Sequence

import tensorflow as tf

from unloc_tf import spec
from unloc_tf.data import records
from unloc_tf.datasets import (
  activitynet,
  activitynet_captions,
  charades_sta,
  coin,
  common,
  kinetics,
  qvhighlights,
)
from unloc_tf.datasets.video_records import Params, VideoResult, convert_video


@dataclasses.dataclass(frozen=True)
class Format:
  """A supported annotation format.

  Attributes:
    name: the --format value.
    task: the task of its records (one of `spec.TASKS`).
    fps: default stored frames per second.
    fps_source: where the default comes from (for the help text).
  """

  name: str
  task: str
  fps: float
  fps_source: str


FORMATS: Dict[str, Format] = {f.name: f for f in (
    Format("activitynet", spec.TAL, 10.0, "reference configs"),
    Format("activitynet_captions", spec.MR, 10.0, "reference configs"),
    Format("charades_sta", spec.MR, 10.0, "reference configs"),
    Format("qvhighlights", spec.HD, 1.0, "reference configs"),
    Format("coin", spec.AS, 2.0,
           "the paper; the reference config uses 10"),
    Format("kinetics", spec.CLS, 10.0, "as the reference's other configs"),
)}

# format -> its planner, called with the `Options`.
PLANNERS: Dict[str, Callable[["Options"], common.Plan]] = {
    "activitynet": lambda o: activitynet.plan_activitynet(
        o.annotations, o.subset, o.class_list, o.video_info),
    "activitynet_captions": lambda o: (
        activitynet_captions.plan_activitynet_captions(o.annotations)),
    "charades_sta": lambda o: charades_sta.plan_charades_sta(
        o.annotations, o.charades_csv, per_query=o.per_query),
    "qvhighlights": lambda o: qvhighlights.plan_qvhighlights(
        o.annotations, o.task_or_default()),
    "coin": lambda o: coin.plan_coin(o.annotations, o.subset, o.class_list),
    "kinetics": lambda o: kinetics.plan_kinetics(o.annotations, o.subset,
                                                 o.class_list),
}


def _init_worker() -> None:
  """One thread per worker process: the workers are the parallelism."""
  try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
  except RuntimeError:  # already initialised
    pass


def _ordered_results(items: Sequence[common.VideoItem], params: Params,
                     num_workers: int) -> Iterator[VideoResult]:
  """`convert_video` of every item, in order (workers: spawned processes,
  at most 2 * num_workers videos in flight)."""
  if num_workers <= 1:
    for item in items:
      yield convert_video(item, params)
    return
  ctx = multiprocessing.get_context("spawn")
  with concurrent.futures.ProcessPoolExecutor(
      num_workers, mp_context=ctx, initializer=_init_worker) as pool:
    pending: collections.deque = collections.deque()
    for item in items:
      if item.path is None or not item.records:  # nothing to decode
        pending.append(convert_video(item, params))
      else:
        pending.append(pool.submit(convert_video, item, params))
      while pending and (len(pending) > 2 * num_workers or not isinstance(
          pending[0], concurrent.futures.Future) or pending[0].done()):
        head = pending.popleft()
        yield head.result() if isinstance(
            head, concurrent.futures.Future) else head
    while pending:
      head = pending.popleft()
      yield head.result() if isinstance(
          head, concurrent.futures.Future) else head


@dataclasses.dataclass(frozen=True)
class Options:
  """Everything `convert` needs (the flags of the tool).

  Attributes:
    format: one of `FORMATS`.
    annotations: the annotation file.
    videos_dir: folder searched (recursively) for the videos.
    output_dir: where the shards, class lists and the report go.
    split: output name: `<split>-0000i-of-0000N.tfrecord`.
    subset: keep only this annotation subset (ActivityNet / COIN "subset",
      Kinetics "split" column); None keeps every entry.
    task: qvhighlights: highlight_detection (default) or moment_retrieval;
      other formats: None or their own task.
    fps: stored frames per second; None = the format's default.
    short_side: short side of the stored frames in pixels (0 = source
      size); a video whose short side is smaller is stored at its source
      size (reported: stored_at_source_size) unless `upscale`.
    upscale: resize smaller videos up to `short_side` too (the behaviour
      before; the reference resizes to 256 when it reads the frames).
    jpeg_quality: JPEG quality of the stored frames.
    num_shards: N.
    num_workers: worker processes (1 = in this process).
    class_list: fixed class list file (TAL / AS / CLS).
    charades_csv: Charades csv with the video lengths (charades_sta).
    per_query: charades_sta: one record per query (the reference's layout,
      with example_id) instead of one per video with all its queries.
    video_info: BSN's video_info_new.csv (ActivityNet BSN layout with a
      subset).
    duration_tolerance: seconds of annotated vs decoded duration difference
      that are not reported.
    overwrite: rewrite every shard (and the class lists) instead of
      resuming.
    progress: show a progress bar.
  """

  format: str
  annotations: str
  videos_dir: str
  output_dir: str
  split: str = "train"
  subset: Optional[str] = None
  task: Optional[str] = None
  fps: Optional[float] = None
  short_side: int = 256
  upscale: bool = False
  jpeg_quality: int = 90
  num_shards: int = 8
  num_workers: int = 1
  class_list: Optional[str] = None
  charades_csv: Optional[str] = None
  per_query: bool = False
  video_info: Optional[str] = None
  duration_tolerance: float = 1.0
  overwrite: bool = False
  progress: bool = True

  def task_or_default(self) -> str:
    return self.task or FORMATS[self.format].task

  def fps_or_default(self) -> float:
    return float(self.fps) if self.fps else FORMATS[self.format].fps

  def check(self) -> None:
    if self.format not in FORMATS:
      raise ValueError(f"unknown format {self.format!r}; expected one of"
                       f" {sorted(FORMATS)}")
    own = FORMATS[self.format].task
    allowed = {own, spec.MR} if self.format == "qvhighlights" else {own}
    if self.task is not None and self.task not in allowed:
      raise ValueError(f"--task={self.task} is not available for"
                       f" --format={self.format}; expected one of"
                       f" {sorted(allowed)}")
    if self.per_query and self.format != "charades_sta":
      raise ValueError(f"per_query is for --format=charades_sta (records of"
                       f" --format={self.format} are laid out as the"
                       " reference's)")
    if not self.fps_or_default() > 0:
      raise ValueError(f"fps must be positive, got {self.fps}")
    if self.num_shards < 1:
      raise ValueError(f"num_shards must be >= 1, got {self.num_shards}")
    if self.num_workers < 1:
      raise ValueError(f"num_workers must be >= 1, got {self.num_workers}")
    if not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f"jpeg_quality must be in [1, 100], got"
                       f" {self.jpeg_quality}")
    if self.short_side < 0:
      raise ValueError(f"short_side must be >= 0, got {self.short_side}")
    if not self.split or os.sep in self.split:
      raise ValueError(f"split must be a plain name, got {self.split!r}")
    for name in ("annotations", "class_list", "charades_csv", "video_info"):
      path = getattr(self, name)
      if path is not None and not os.path.isfile(path):
        raise FileNotFoundError(f"--{name}: no such file: {path}")


def atomic_write(path: str, data: str | bytes) -> None:
  """Writes text or bytes to `path` (local or a `tf.io.gfile` URL) under a
  temporary name, then renames it."""
  tmp = path + ".incomplete"
  with tf.io.gfile.GFile(tmp, "wb" if isinstance(data, bytes) else "w") as f:
    f.write(data)
  tf.io.gfile.rename(tmp, path, overwrite=True)


def _glob(directory: str, pattern: str) -> List[str]:
  """Files in `directory` (local or a tf.io.gfile URL such as gs://)
  matching `pattern`; `directory` is taken literally."""
  if "://" in directory:
    return tf.io.gfile.glob(directory.rstrip("/") + "/" + pattern)
  return glob.glob(os.path.join(glob.escape(directory), pattern))


def _read_text(path: str) -> str:
  with tf.io.gfile.GFile(path, "r") as f:
    return f.read()


def _fingerprint(opts: Options, params: Params, classes: Sequence[str],
                 shard_items: Sequence[common.VideoItem]) -> str:
  """sha1 of everything a shard's bytes depend on."""
  def item_key(item):
    d = dict(vars(item))
    d["path"] = (os.path.relpath(item.path, opts.videos_dir)
                 if item.path else None)
    return d

  payload = {"params": vars(params), "format": opts.format,
             "per_query": opts.per_query,
             "num_shards": opts.num_shards, "classes": list(classes),
             "items": [item_key(i) for i in shard_items]}
  # vars() of the nested dataclasses: much faster than dataclasses.asdict.
  return hashlib.sha1(json.dumps(payload, sort_keys=True, default=vars)
                      .encode()).hexdigest()


def _write_classes(opts: Options, classes: Sequence[str]) -> None:
  text = "".join(c + "\n" for c in classes)
  path = os.path.join(opts.output_dir, "classes.txt")
  if tf.io.gfile.exists(path) and not opts.overwrite:
    old = _read_text(path)
    if old != text:
      raise ValueError(
          f"{path} exists with another class list ({len(old.splitlines())}"
          f" names, now {len(classes)}); pass the same --class_list to every"
          " split of an output_dir, or --overwrite")
  atomic_write(path, text)
  atomic_write(os.path.join(opts.output_dir, "classes.json"),
                json.dumps({c: i for i, c in enumerate(classes)}, indent=1)
                + "\n")


class _Bar:
  """tqdm over videos (a no-op without tqdm or with progress=False)."""

  def __init__(self, enabled: bool, total: int, initial: int, desc: str):
    self._bar = None
    if enabled:
      try:
        import tqdm  # pylint: disable=g-import-not-at-top
        self._bar = tqdm.tqdm(total=total, initial=initial, desc=desc,
                              unit="video", dynamic_ncols=True)
      except ImportError:
        pass

  def update(self, k: int = 1) -> None:
    if self._bar is not None:
      self._bar.update(k)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


@dataclasses.dataclass
class ConversionPlan:
  """What a conversion writes, before any video is decoded (`plan`).

  Attributes:
    opts, params: the options and what a worker needs of them.
    classes: the class list (TAL / AS / CLS; else empty).
    items: every video item, sorted by id, videos located.
    shard_items: items[k::N], the items of shard k, in order.
    paths: the N shard paths.
    part_paths: the N part paths (`<split>.parts/0000k-of-0000N.json`).
    keys: the N shard fingerprints.
    parts: the part of each finished shard (resumed), else None.
    started: `time.perf_counter()` when planning began.
  """

  opts: Options
  params: Params
  classes: List[str]
  items: List[common.VideoItem]
  shard_items: List[List[common.VideoItem]]
  paths: List[str]
  part_paths: List[str]
  keys: List[str]
  parts: List[Optional[dict]]
  started: float

  @property
  def todo(self) -> List[int]:
    """The shards still to write."""
    return [k for k, part in enumerate(self.parts) if part is None]

  def new_part(self, k: int) -> dict:
    """The empty part (report counts) of shard k."""
    return {"fingerprint": self.keys[k],
            "shard": os.path.basename(self.paths[k]),
            "videos": len(self.shard_items[k]), "videos_converted": 0,
            "records": 0, "frames": 0, "segments": 0,
            "without_targets": 0, "max_queries": 0, "issues": []}

  def commit(self, k: int, part: dict, tmp: str) -> None:
    """Publishes shard k (`commit_shard`)."""
    commit_shard(self.part_paths[k], self.paths[k], part, tmp)
    self.parts[k] = part

  def reload_parts(self, shards: Sequence[int]) -> None:
    """Reads the parts of `shards` (written by other processes)."""
    for k in shards:
      self.parts[k] = json.loads(_read_text(self.part_paths[k]))

  def report(self, skipped: int) -> dict:
    """Writes `<split>.report.json` from the parts of every shard."""
    opts = self.opts
    report = _report(opts, self.params, self.classes, self.items, self.paths,
                     self.parts, skipped, time.perf_counter() - self.started)
    path = os.path.join(opts.output_dir, opts.split + ".report.json")
    atomic_write(path, json.dumps(report, indent=1) + "\n")
    report["report_path"] = path
    return report


def commit_shard(part_path: str, shard_path: str, part: dict,
                 tmp: str) -> None:
  """Publishes a shard: its part first (a shard under its final name always
  has its part), then `tmp` renamed to the shard."""
  atomic_write(part_path, json.dumps(part, indent=1) + "\n")
  tf.io.gfile.rename(tmp, shard_path, overwrite=True)


def video_counts(res: VideoResult) -> dict:
  """What one video adds to its shard's part (`add_counts`)."""
  return {"videos_converted": int(res.converted),
          "records": len(res.serialized),
          "frames": res.frames * len(res.serialized),
          "segments": res.segments, "without_targets": res.without_targets,
          "max_queries": res.max_queries, "issues": list(res.issues)}


def add_counts(part: dict, counts: dict) -> None:
  """Adds one video's `video_counts` to a shard's part."""
  for key in ("videos_converted", "records", "frames", "segments",
              "without_targets"):
    part[key] += counts[key]
  part["max_queries"] = max(part["max_queries"], counts["max_queries"])
  part["issues"].extend(counts["issues"])


def plan(opts: Options) -> ConversionPlan:
  """Checks the options, plans the items, writes the class lists and finds
  the shards finished by an earlier run (module docstring: resume).

  Raises:
    ValueError / FileNotFoundError / formats.FormatError: bad options, a
      malformed annotation file or one with nothing to convert.
  """
  started = time.perf_counter()
  opts.check()
  task = opts.task_or_default()
  params = Params(task, opts.fps_or_default(), opts.short_side,
                  opts.jpeg_quality, float(opts.duration_tolerance),
                  opts.upscale)
  items, classes = PLANNERS[opts.format](opts)
  if not items:
    subset = f" with subset {opts.subset!r}" if opts.subset else ""
    raise ValueError(
        f"{opts.annotations}: no annotated videos{subset} (format"
        f" {opts.format}): nothing to convert; check --annotations,"
        " --format and --subset")
  items.sort(key=lambda it: it.video_id)
  common.locate_videos(items, common.index_videos(opts.videos_dir))
  tf.io.gfile.makedirs(opts.output_dir)
  if task in (spec.TAL, spec.AS, spec.CLS):
    _write_classes(opts, classes)
  num_shards = opts.num_shards
  shard_items = [items[k::num_shards] for k in range(num_shards)]
  paths = records.shard_paths(os.path.join(opts.output_dir, opts.split),
                              num_shards)
  others = sorted(set(_glob(opts.output_dir, opts.split
                            + "-*-of-*.tfrecord")) - set(paths))
  if others:
    # `<split>-*.tfrecord` (the pipeline's pattern) would read them too.
    raise ValueError(
        f"{opts.output_dir} holds shards of split {opts.split!r} with"
        f" another --num_shards ({os.path.basename(others[0])}, ...);"
        " remove them or use another --output_dir / --split")
  parts_dir = os.path.join(opts.output_dir, opts.split + ".parts")
  tf.io.gfile.makedirs(parts_dir)
  part_paths = [os.path.join(parts_dir, f"{k:05d}-of-{num_shards:05d}.json")
                for k in range(num_shards)]
  parts: List[Optional[dict]] = [None] * num_shards
  keys = [_fingerprint(opts, params, classes, s) for s in shard_items]
  for k in range(num_shards):
    if opts.overwrite or not (tf.io.gfile.exists(paths[k])
                              and tf.io.gfile.exists(part_paths[k])):
      continue
    part = json.loads(_read_text(part_paths[k]))
    if part.get("fingerprint") != keys[k]:
      raise ValueError(
          f"{paths[k]} exists but was written from other annotations,"
          " videos or options (its fingerprint in"
          f" {part_paths[k]} differs); use a new --output_dir or"
          " --overwrite")
    parts[k] = part
  return ConversionPlan(opts, params, list(classes or []), items,
                        shard_items, paths, part_paths, keys, parts, started)


def convert(opts: Options) -> dict:
  """Converts the annotations + videos to shards; returns the report.

  Raises:
    ValueError / FileNotFoundError / formats.FormatError: bad options or a
      malformed annotation file (never for a bad video).
  """
  conv = plan(opts)
  todo = conv.todo
  skipped = opts.num_shards - len(todo)
  bar = _Bar(opts.progress, len(conv.items),
             len(conv.items) - sum(len(conv.shard_items[k]) for k in todo),
             opts.split)
  with contextlib.ExitStack() as stack:
    stack.callback(bar.close)
    jobs = [item for k in todo for item in conv.shard_items[k]]
    results = _ordered_results(jobs, conv.params, opts.num_workers)
    stack.callback(results.close)
    for k in todo:
      tmp = conv.paths[k] + ".incomplete"
      part = conv.new_part(k)
      with tf.io.TFRecordWriter(tmp) as writer:
        for _ in conv.shard_items[k]:
          res = next(results)
          for data in res.serialized:
            writer.write(data)
          add_counts(part, video_counts(res))
          bar.update()
      conv.commit(k, part, tmp)
  return conv.report(skipped)


def _report(opts: Options, params: Params, classes: Sequence[str],
            items: Sequence[common.VideoItem], paths: Sequence[str],
            parts: Sequence[dict], skipped: int, seconds: float) -> dict:
  issues = [i for p in parts for i in p["issues"]]
  counts = collections.Counter(i["reason"] for i in issues)
  written = {"videos": sum(p["videos_converted"] for p in parts),
             "records": sum(p["records"] for p in parts),
             "frames": sum(p["frames"] for p in parts),
             "segments": sum(p["segments"] for p in parts),
             "without_targets": sum(p["without_targets"] for p in parts),
             "max_queries_per_record": max(
                 [p["max_queries"] for p in parts], default=0)}
  annotated = {"videos": len(items),
               "records": sum(i.num_records for i in items),
               "segments": sum(i.num_segments for i in items)}
  return {
      "format": opts.format,
      "task": params.task,
      "split": opts.split,
      "subset": opts.subset,
      "annotations": os.path.abspath(opts.annotations),
      "videos_dir": os.path.abspath(opts.videos_dir),
      "fps": params.fps,
      "short_side": params.short_side,
      "upscale": params.upscale,
      "per_query": opts.per_query,
      "jpeg_quality": params.jpeg_quality,
      "duration_tolerance": params.duration_tolerance,
      "num_classes": len(classes) if classes else None,
      "shards": [os.path.basename(p) for p in paths],
      "shards_resumed": skipped,
      "annotated": annotated,
      "written": written,
      "dropped": {k: annotated[k] - written[k]
                  for k in ("videos", "records", "segments")},
      "issue_counts": {r: counts.get(r, 0) for r in common.REASONS},
      "issues": issues,
      "seconds": round(seconds, 2),
  }


def summary_line(report: dict) -> str:
  """The one-line summary printed at the end of a conversion."""
  a, w = report["annotated"], report["written"]
  problems = ", ".join(f"{r} {c}" for r, c in report["issue_counts"].items()
                       if c) or "none"
  unlabeled = ""
  if w["without_targets"]:
    unlabeled = (f"; {w['without_targets']} records without targets"
                 " (unlabeled: evaluation writes a submission, no metrics)")
  return (f"{report['split']}: {w['records']}/{a['records']} records from"
          f" {w['videos']}/{a['videos']} videos ({w['frames']} frames,"
          f" {w['segments']}/{a['segments']} segments{unlabeled}) in"
          f" {len(report['shards'])} shards ({report['shards_resumed']}"
          f" resumed), {report['seconds']:.1f} s; issues: {problems};"
          f" report: {report.get('report_path', '')}")
