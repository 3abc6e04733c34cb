"""Writers: the records of every task, statistics, annotation files.

One layout yields the data of every task (`to_records`):
  * TAL (closed set): class = action, `scene.ACTIONS` order; zero-shot TAL
    (`ZERO_SHOT_TAL_DIR`): class = f"{shape} {action}"
    (`scene.compositional_classes()` order), with the held-out combinations
    of `scene.held_out_combinations` absent from train.  In every TAL record
    label_string is the compositional name.
  * MR: one caption per event, e.g. "the red circle moves to the left"
    (unique within its video).
  * AS: per-frame labels (`SyntheticVideo.frame_labels`: the later-starting
    of overlapping events wins).
  * HD: one record per (video, query): the query is an event caption, the
    event's span the relevant window, with QVHighlights-style saliency (2 s
    clips, 3 annotators, integer scores 0..4 from the clip's overlap with
    the event plus seeded annotator noise, only for the clips that touch the
    window: `scene.saliency_for_event`).  `hd_max_queries` (default 1,
    as QVHighlights has about one query per video) seeded-random events per
    video become queries.
  * CLS: Kinetics-style trimmed clips, one per event (`cls_clip`): the
    event's span resized to `cls_clip_seconds` (centre crop of long events,
    symmetric context around short ones).  Labels: the event's action plus
    every other action whose events cover at least half of the clip's frames
    (multi-label, usually one).

`write_benchmark` (`tools/make_synthetic.py`) writes the records of every
split and task, the class lists, a summary and optionally mp4 videos and
annotation files in the official formats (`write_annotations`).  Default
size: 240 / 40 / 40 videos of 20-60 s at 5 fps (~63k frames, ~0.8 GB
of records); generation takes ~10-15 s on 2 cores (see the summary's
`seconds`).
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import json
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from unloc_tf import spec
from unloc_tf.data import records
from unloc_tf.data import video as video_lib
from unloc_tf.data.synthetic import embeddings as embeddings_lib
from unloc_tf.data.synthetic import render as render_lib
from unloc_tf.data.synthetic import scene

ZERO_SHOT_TAL_DIR = spec.TAL + "_zero_shot"
_ANET_SUBSET = {"train": "training", "val": "validation", "test": "testing"}


# ---------------------------------------------------------------------------
# Records.
# ---------------------------------------------------------------------------
def _segment(video: scene.SyntheticVideo, ev: scene.Event, label: int,
             text: str) -> records.Segment:
  n = video.num_frames
  return records.Segment(
      start_index=ev.start_index(video.fps),
      end_index=ev.end_index(video.fps, n), label_index=label,
      label_string=text, start_time=ev.start_time, end_time=ev.end_time)


def cls_clip(video: scene.SyntheticVideo, k: int,
             clip_seconds: Tuple[float, float] = (2.0, 10.0)
             ) -> Tuple[int, int, List[int]]:
  """The CLS clip of event k: frames [first, last] and its action labels.

  Returns:
    (first, last, labels): inclusive stored-frame range and sorted action
    indices (event k's action plus actions covering >= half of the clip).
  """
  n, fps = video.num_frames, video.fps
  ev = video.events[k]
  si, ei = ev.start_index(fps), ev.end_index(fps, n)
  lo = max(1, int(round(clip_seconds[0] * fps)))
  hi = max(lo, int(round(clip_seconds[1] * fps)))
  length = min(max(ei - si + 1, lo), hi, n)
  centre = (si + ei) / 2.0
  first = int(round(centre - (length - 1) / 2.0))
  first = min(max(first, 0), n - length)
  last = first + length - 1
  labels = {ev.label}
  for other in video.events:
    covered = np.zeros([length], bool)
    a = max(other.start_index(fps), first)
    b = min(other.end_index(fps, n), last)
    if b >= a:
      covered[a - first:b - first + 1] = True
    if covered.mean() >= 0.5:
      labels.add(other.label)
  return first, last, sorted(labels)


def to_records(video: scene.SyntheticVideo, task: str, jpeg_quality: int = 90,
               zero_shot: bool = False,
               hd_max_queries: Optional[int] = 1,
               cls_clip_seconds: Tuple[float, float] = (2.0, 10.0),
               embeddings: Optional[np.ndarray] = None
               ) -> List[records.VideoRecord]:
  """The records of one video for one task (frames JPEG-encoded once).

  Args:
    video: a rendered video, or a layout (`render=False`: no frames) with
      `embeddings`, whose records then hold the embeddings only.
    task: one of `spec.TASKS`.
    jpeg_quality: JPEG quality of the frames.
    zero_shot: TAL only: label_index into `scene.compositional_classes()`
      instead of `scene.ACTIONS` (label_string is the compositional name
      either way).
    hd_max_queries: HD: at most this many queries (the first of
      `video.hd_order`); None = one record per event.
    cls_clip_seconds: CLS clip length range (see `cls_clip`).
    embeddings: per-frame embeddings [n, D] stored beside the frames
      (e.g. `embeddings.scene_embeddings`), or None.

  Returns:
    TAL / MR / AS: one record; HD: one per query; CLS: one per event.
  """
  if video.frames is None and video._jpeg is None:
    if embeddings is None:
      raise ValueError(f"video {video.video_id} has neither frames nor"
                       " embeddings")
    jpeg = None
  else:
    jpeg = render_lib.encode_frames(video, jpeg_quality)
  spt = video.secs_per_timestep
  common = dict(media_id=video.video_id, secs_per_timestep=spt, frames=jpeg,
                duration=video.duration, embeddings=embeddings)
  if task == spec.TAL:
    segs = [
        _segment(video, ev, ev.zero_shot_label if zero_shot else ev.label,
                 ev.zero_shot_name) for ev in video.events
    ]
    return [records.VideoRecord(segments=segs, **common)]
  if task == spec.MR:
    segs = [_segment(video, ev, -1, ev.caption) for ev in video.events]
    return [records.VideoRecord(segments=segs, **common)]
  if task == spec.AS:
    segs = [_segment(video, ev, ev.label, ev.action) for ev in video.events]
    labels = [[int(v)] if v >= 0 else [] for v in video.frame_labels]
    return [records.VideoRecord(segments=segs, frame_labels=labels, **common)]
  if task == spec.HD:
    out = []
    order = video.hd_order or list(range(len(video.events)))
    if hd_max_queries is not None:
      order = order[:hd_max_queries]
    for k in order:
      ev, sal = video.events[k], video.saliency[k]
      out.append(records.VideoRecord(
          segments=[_segment(video, ev, 0, ev.caption)],
          example_id=ev.query_id, saliency=sal, **common))
    return out
  if task == spec.CLS:
    out = []
    for k in range(len(video.events)):
      first, last, labels = cls_clip(video, k, cls_clip_seconds)
      out.append(records.VideoRecord(
          media_id=f"{video.video_id}_clip{k}", secs_per_timestep=spt,
          frames=None if jpeg is None else jpeg[first:last + 1],
          duration=(last - first + 1) * spt,
          embeddings=(None if embeddings is None
                      else embeddings[first:last + 1]),
          clip_labels=labels,
          clip_label_strings=[scene.ACTIONS[i] for i in labels]))
    return out
  raise ValueError(f"unknown task {task!r}; expected one of {spec.TASKS}")


# ---------------------------------------------------------------------------
# Statistics.
# ---------------------------------------------------------------------------
def _overlap_different(events: Sequence[scene.Event]) -> bool:
  for i, a in enumerate(events):
    for b in events[i + 1:]:
      if a.action != b.action and a.start_time < b.end_time and (
          b.start_time < a.end_time):
        return True
  return False


def statistics(videos: Sequence[scene.SyntheticVideo]) -> dict:
  """Dataset statistics (works on layouts and on rendered videos).

  Returns:
    A JSON-serialisable dict: num_videos, num_events, events_per_video
    (mean/min/max), duration (mean/min/max s), event_length_fraction
    (min/max/mean and quantiles 5..95), event_length_seconds (min/max),
    event_length_fraction_bins (share of events per length bin),
    background_frame_fraction, overlap_different_classes_fraction (of
    videos), distractors_per_video (mean / fraction of videos with any),
    class_counts (per action), compositional_counts.
  """
  videos = list(videos)
  fractions_, seconds, per_video = [], [], []
  bg = total = overlap = with_d = distractors = 0
  counts = {a: 0 for a in scene.ACTIONS}
  comp = {c: 0 for c in scene.compositional_classes()}
  durations = []
  for v in videos:
    per_video.append(len(v.events))
    durations.append(v.duration)
    for ev in v.events:
      fractions_.append((ev.end_time - ev.start_time) / v.duration)
      seconds.append(ev.end_time - ev.start_time)
      counts[ev.action] += 1
      comp[ev.zero_shot_name] += 1
    bg += int(np.sum(v.frame_labels < 0))
    total += v.num_frames
    overlap += _overlap_different(v.events)
    distractors += v.num_distractors
    with_d += v.num_distractors > 0
  nv = max(len(videos), 1)
  f = np.asarray(fractions_ or [0.0])
  qs = (5, 25, 50, 75, 95)
  edges = (0.0, 0.05, 0.1, 0.2, 0.4, 1.01)
  hist = np.histogram(f, bins=edges)[0] / max(len(fractions_), 1)
  return {
      "num_videos": len(videos),
      "num_events": len(fractions_),
      "num_frames": total,
      "events_per_video": {
          "mean": float(np.mean(per_video or [0])),
          "min": int(np.min(per_video or [0])),
          "max": int(np.max(per_video or [0])),
      },
      "duration": {
          "mean": float(np.mean(durations or [0])),
          "min": float(np.min(durations or [0])),
          "max": float(np.max(durations or [0])),
      },
      "event_length_fraction": {
          "min": float(f.min()),
          "max": float(f.max()),
          "mean": float(f.mean()),
          **{f"q{q:02d}": float(np.percentile(f, q)) for q in qs},
      },
      "event_length_seconds": {
          "min": float(np.min(seconds or [0])),
          "max": float(np.max(seconds or [0])),
      },
      "event_length_fraction_bins": {
          f"[{edges[i]:.2f},{min(edges[i + 1], 1.0):.2f})": float(hist[i])
          for i in range(len(hist))
      },
      "background_frame_fraction": bg / max(total, 1),
      "overlap_different_classes_fraction": overlap / nv,
      "distractors_per_video": distractors / nv,
      "videos_with_distractors_fraction": with_d / nv,
      "class_counts": counts,
      "compositional_counts": comp,
  }


# ---------------------------------------------------------------------------
# Official-format annotation files.
# ---------------------------------------------------------------------------
def _t(x: float) -> float:
  return round(float(x), 2)


def write_annotations(
    output_dir: str,
    videos_by_split: Dict[str, Sequence[scene.SyntheticVideo]],
    config: scene.SyntheticConfig = scene.SyntheticConfig()
) -> Dict[str, str]:
  """Writes the annotations in the official public formats.

  Files (under `output_dir`):
    activitynet1.3/activity_net.v1-3.min.json: every split (subset
      training / validation / testing), labels = `scene.ACTIONS`.
    activitynet_captions/{split}.json: {vid: {duration, timestamps,
      sentences}}.
    charades_sta/charades_sta_{split}.txt ("vid start end##sentence") and
      charades_sta/Charades_v1_{split}.csv (Charades columns; `length` =
      duration, `actions` = "cNNN start end;...").
    qvhighlights/highlight_{split}_release.jsonl: one line per HD query
      (the same queries as the HD records).
    coin/COIN.json: train as "training", test as "testing" (COIN has no
      validation subset, so val is not in this file).

  Returns:
    {name: path} of the written files.
  """
  paths: Dict[str, str] = {}

  def path(*parts):
    p = os.path.join(output_dir, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p

  anet = {
      "version": "VERSION 1.3",
      "taxonomy": [{"parentName": "Root", "nodeName": a, "nodeId": i + 1,
                    "parentId": 0} for i, a in enumerate(scene.ACTIONS)],
      "database": {},
  }
  coin = {"database": {}}
  size = f"{config.frame_size}x{config.frame_size}"
  for split, videos in videos_by_split.items():
    captions = {}
    sta_lines = []
    csv_rows = []
    qvh_lines = []
    for v in videos:
      anet["database"][v.video_id] = {
          "subset": _ANET_SUBSET[split], "duration": _t(v.duration),
          "resolution": size, "url": "",
          "annotations": [{"segment": [_t(e.start_time), _t(e.end_time)],
                           "label": e.action} for e in v.events],
      }
      captions[v.video_id] = {
          "duration": _t(v.duration),
          "timestamps": [[_t(e.start_time), _t(e.end_time)]
                         for e in v.events],
          "sentences": [e.caption for e in v.events],
      }
      for e in v.events:
        sta_lines.append(
            f"{v.video_id} {e.start_time:.2f} {e.end_time:.2f}##{e.caption}.")
      csv_rows.append({
          "id": v.video_id, "subject": "SYN", "scene": "synthetic",
          "quality": 7, "relevance": 7, "verified": "Yes",
          "script": ". ".join(e.caption for e in v.events),
          "objects": ";".join(sorted({f"{e.colour} {e.shape}"
                                      for e in v.events})),
          "descriptions": ". ".join(e.caption for e in v.events),
          "actions": ";".join(f"c{e.label:03d} {e.start_time:.2f}"
                              f" {e.end_time:.2f}" for e in v.events),
          "length": f"{v.duration:.2f}",
      })
      order = v.hd_order or list(range(len(v.events)))
      if config.hd_max_queries is not None:
        order = order[:config.hd_max_queries]
      for k in order:
        e, sal = v.events[k], v.saliency[k]
        qvh_lines.append({
            "qid": e.query_id, "query": e.caption, "duration": _t(v.duration),
            "vid": v.video_id,
            "relevant_windows": [[_t(e.start_time), _t(e.end_time)]],
            "relevant_clip_ids": [int(c) for c in sal.clip_index],
            "saliency_scores": np.asarray(sal.scores).astype(int).tolist(),
        })
      if split in ("train", "test"):
        coin["database"][v.video_id] = {
            "recipe_type": 0, "class": "synthetic shapes",
            "subset": "training" if split == "train" else "testing",
            "start": 0.0, "end": _t(v.duration), "duration": _t(v.duration),
            "annotation": [{"id": str(e.label),
                            "segment": [_t(e.start_time), _t(e.end_time)],
                            "label": e.action} for e in v.events],
        }
    p = path("activitynet_captions", f"{split}.json")
    with open(p, "w") as f:
      json.dump(captions, f)
    paths[f"activitynet_captions/{split}"] = p
    p = path("charades_sta", f"charades_sta_{split}.txt")
    with open(p, "w") as f:
      f.write("".join(line + "\n" for line in sta_lines))
    paths[f"charades_sta/{split}"] = p
    p = path("charades_sta", f"Charades_v1_{split}.csv")
    with open(p, "w", newline="") as f:
      fields = ["id", "subject", "scene", "quality", "relevance", "verified",
                "script", "objects", "descriptions", "actions", "length"]
      w = csv.DictWriter(f, fieldnames=fields)
      w.writeheader()
      w.writerows(csv_rows)
    paths[f"charades_csv/{split}"] = p
    p = path("qvhighlights", f"highlight_{split}_release.jsonl")
    with open(p, "w") as f:
      f.write("".join(json.dumps(q) + "\n" for q in qvh_lines))
    paths[f"qvhighlights/{split}"] = p
  p = path("activitynet1.3", "activity_net.v1-3.min.json")
  with open(p, "w") as f:
    json.dump(anet, f)
  paths["activitynet1.3"] = p
  p = path("coin", "COIN.json")
  with open(p, "w") as f:
    json.dump(coin, f)
  paths["coin"] = p
  return paths


# ---------------------------------------------------------------------------
# The benchmark.
# ---------------------------------------------------------------------------
def zero_shot_info(config: scene.SyntheticConfig,
                   videos_by_split: Dict[str, Sequence[scene.SyntheticVideo]]
                   ) -> dict:
  """Contents of zero_shot.json (class list, held-out set, occurrences)."""
  names = scene.compositional_classes()
  held = scene.held_out_combinations(config)
  held_idx = [scene.compositional_index(s, a) for s, a in held]
  occurrence = {}
  for split, videos in videos_by_split.items():
    counts = {c: 0 for c in names}
    for v in videos:
      for e in v.events:
        counts[e.zero_shot_name] += 1
    occurrence[split] = counts
  return {
      "class_names": list(names),
      "held_out": [scene.compositional_name(s, a) for s, a in held],
      "held_out_class_indices": held_idx,
      "seen_class_indices": [i for i in range(len(names))
                             if i not in held_idx],
      "closed_set_classes": list(scene.ACTIONS),
      "records_dir": ZERO_SHOT_TAL_DIR,
      "occurrence": occurrence,
  }


def write_benchmark(
    output_dir: str,
    config: scene.SyntheticConfig = scene.SyntheticConfig(),
    tasks: Sequence[str] = spec.TASKS,
    num_shards: int = 2,
    write_videos: bool = False,
    write_annotation_files: Optional[bool] = None,
    zero_shot_records: bool = True,
    jpeg_quality: int = 90,
    progress: Optional[Callable[[str, int, int], None]] = None,
    state_embeddings: bool = False,
    render: bool = True,
) -> dict:
  """Generates every split and writes records, class lists and a summary.

  Layout of `output_dir`:
    <task>/<split>-0000i-of-0000N.tfrecord for each task in `tasks` (TAL /
      MR / AS: one record per video; HD: per query; CLS: per event clip);
    temporal_localization_zero_shot/<split>-... (`ZERO_SHOT_TAL_DIR`, if
      TAL is in `tasks` and `zero_shot_records`): TAL records whose
      label_index indexes `scene.compositional_classes()`;
    classes.txt (`scene.ACTIONS`, one per line); zero_shot.json
      (`zero_shot_info`: the seen / held-out class indices, for
      `class_subset` zero-shot splits); summary.json (`statistics` per
      split);
    videos/<vid>.mp4 and annotations/... (see `write_annotations`) if
    `write_videos` (annotations alone with `write_annotation_files=True`).

  Args:
    output_dir: where to write (created).
    config: the benchmark config.
    tasks: tasks to write records for.
    num_shards: shards per task and split (fewer if there are fewer records).
    write_videos: also write h264 mp4s (PyAV) and the annotation files.
    write_annotation_files: annotation files; defaults to `write_videos`.
    zero_shot_records: with TAL, also write the compositional-label TAL
      records.
    jpeg_quality: JPEG quality of the stored frames.
    progress: called as progress(split, done, total) after every video.
    state_embeddings: also store `embeddings.scene_embeddings` in every
      record (`image/embedding`, for the cached-embedding input mode).
    render: False skips the pixels (records hold the embeddings only; much
      faster): needs `state_embeddings`, excludes `write_videos`.

  Returns:
    The summary (also written to summary.json): per-split statistics, record
    counts, the config and the wall time.
  """
  for task in tasks:
    if task not in spec.TASKS:
      raise ValueError(f"unknown task {task!r}; expected one of {spec.TASKS}")
  if write_annotation_files is None:
    write_annotation_files = write_videos
  if not render and (write_videos or not state_embeddings):
    raise ValueError("render=False needs state_embeddings=True and"
                     " write_videos=False")
  t0 = time.perf_counter()
  os.makedirs(output_dir, exist_ok=True)
  layouts: Dict[str, List[scene.SyntheticVideo]] = {}
  num_records: Dict[str, Dict[str, int]] = {}
  shards: Dict[str, Dict[str, List[str]]] = {}
  for split in scene.SPLITS:
    total = config.num_videos(split)
    videos: List[scene.SyntheticVideo] = []

    def finish(video: scene.SyntheticVideo) -> scene.SyntheticVideo:
      if not render:
        return video
      render_lib.encode_frames(video, jpeg_quality)
      if write_videos:
        video_lib.write_mp4(
            os.path.join(output_dir, "videos", f"{video.video_id}.mp4"),
            video.frames, video.fps)
      video.frames = None  # keep only the JPEG bytes in memory
      return video

    # JPEG encoding (a TF op, which releases the GIL) of video i overlaps
    # with the numpy rendering of video i + 1.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      pending: collections.deque = collections.deque()
      for video in render_lib.generate_split(split, config, render=render):
        pending.append(pool.submit(finish, video))
        while pending and (len(pending) > 2 or pending[0].done()):
          videos.append(pending.popleft().result())
          if progress is not None:
            progress(split, len(videos), total)
      while pending:
        videos.append(pending.popleft().result())
        if progress is not None:
          progress(split, len(videos), total)
    layouts[split] = videos
    variants = [(task, task, False) for task in tasks]
    if spec.TAL in tasks and zero_shot_records:
      variants.append((ZERO_SHOT_TAL_DIR, spec.TAL, True))
    embeddings = {v.video_id: embeddings_lib.scene_embeddings(v, config)
                  for v in videos} if state_embeddings else {}
    for name, task, zs in variants:
      recs = [r for v in videos for r in to_records(
          v, task, jpeg_quality, zero_shot=zs,
          hd_max_queries=config.hd_max_queries,
          cls_clip_seconds=config.cls_clip_seconds,
          embeddings=embeddings.get(v.video_id))]
      paths = records.write_shards(
          recs, os.path.join(output_dir, name, split),
          max(1, min(num_shards, len(recs))), task)
      num_records.setdefault(name, {})[split] = len(recs)
      shards.setdefault(name, {})[split] = [
          os.path.relpath(p, output_dir) for p in paths]
  with open(os.path.join(output_dir, "classes.txt"), "w") as f:
    f.write("".join(a + "\n" for a in scene.ACTIONS))
  with open(os.path.join(output_dir, "zero_shot.json"), "w") as f:
    json.dump(zero_shot_info(config, layouts), f, indent=1)
  annotation_paths = {}
  if write_annotation_files:
    annotation_paths = write_annotations(
        os.path.join(output_dir, "annotations"), layouts, config)
    annotation_paths = {k: os.path.relpath(p, output_dir)
                        for k, p in annotation_paths.items()}
  all_videos = [v for s in scene.SPLITS for v in layouts[s]]
  summary = {
      "statistics": {s: statistics(layouts[s]) for s in scene.SPLITS},
      "overall": statistics(all_videos),
      "num_records": num_records,
      "shards": shards,
      "annotations": annotation_paths,
      "tasks": list(tasks),
      "frames": render,
      "embedding_dim": (embeddings_lib.SCENE_EMBEDDING_DIM
                        if state_embeddings else None),
      "config": dataclasses.asdict(config),
      "seconds": round(time.perf_counter() - t0, 2),
  }
  with open(os.path.join(output_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
  return summary


def format_summary(summary: dict) -> str:
  """A short human-readable digest of `write_benchmark`'s summary."""
  o = summary["overall"]
  f = o["event_length_fraction"]
  lines = [
      f"videos: {o['num_videos']}  events: {o['num_events']}"
      f"  frames: {o['num_frames']}  ({summary['seconds']:.1f} s)",
      "per split: " + ", ".join(
          f"{s} {summary['statistics'][s]['num_videos']}"
          for s in scene.SPLITS),
      f"events/video: mean {o['events_per_video']['mean']:.2f}"
      f" [{o['events_per_video']['min']}, {o['events_per_video']['max']}]",
      f"event length / video: min {f['min']:.3f} q05 {f['q05']:.3f}"
      f" median {f['q50']:.3f} q95 {f['q95']:.3f} max {f['max']:.3f}",
      f"background frames: {o['background_frame_fraction']:.3f}",
      "videos with overlapping events of different classes:"
      f" {o['overlap_different_classes_fraction']:.3f}",
      f"distractors/video: {o['distractors_per_video']:.2f}",
      "class counts: " + ", ".join(
          f"{a} {c}" for a, c in o["class_counts"].items()),
      "records: " + ", ".join(
          f"{t} " + "/".join(str(c) for c in n.values())
          for t, n in summary["num_records"].items()),
  ]
  return "\n".join(lines)

