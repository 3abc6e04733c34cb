"""Predictions on video files, from a training workdir or an exported model.

    predictor = Predictor.from_workdir("/tmp/w_mr")
    [result] = predictor.predict(["cooking.mp4"],
                                 queries=["someone cuts an onion"])
    result["detections"][0]  # {"query", "segment": [12.4, 18.0], "score"}

Every video goes the way evaluation goes, so the detections equal what
`tools/evaluate.py` reports for records built from the same file (with the
same chunking): decode at the experiment's fps (`predict.videos`) → records
→ the evaluation pipeline's examples (linspace sampling of N0 frames over
the whole video for TAL / MR / HD, non-overlapping sliding windows for AS)
→ the model's `forward` + `decode`, or the SavedModel's signature, which
runs the same decoding → the task's `TaskResults` → detections per video in
seconds, best first.  AS: a run of frames a..b predicted as one class is the
segment [a / fps, (b + 1) / fps], scored by the class's mean sigmoid over
the run.

Long videos (`chunking`, default "auto", `data.chunks`): a video whose
whole-video tokens would be more than 2 s apart is cut into windows of N0
stored frames (overlap 25%), each run as a video of its own; the windows'
detections are merged in video time (`tasks.chunks.WindowMerger`).  Frames
are decoded as a stream and go to the model window by window: at most about
two windows of JPEG frames are held, whatever the video's length.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from absl import logging

from unloc_tf import spec, tasks
from unloc_tf.data import chunks, pipeline, records
from unloc_tf.data import video as video_lib
from unloc_tf.launch import experiment as experiment_lib
from unloc_tf.predict import videos as videos_lib
from unloc_tf.tasks import chunks as chunks_lib

TASKS = (spec.TAL, spec.MR, spec.HD, spec.AS)
SIGNATURES = ("serving_default", "serving_text")
_GIN_INFO = os.path.join("assets.extra", "operative_config.gin")
_EXPORT_INFO = os.path.join("assets.extra", "export_info.json")
_SIGNATURE_INPUTS = (spec.FRAMES, spec.FRAME_MASK, spec.NUM_FRAMES_TOTAL,
                     spec.BATCH_SECS_PER_TIMESTEP)

# A runner takes an evaluation batch and returns (numpy batch, numpy
# detections of the task's `decode`) for the same rows.
Runner = Callable[[Dict[str, tf.Tensor]],
                  Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]]


def saved_model_dir(path: str) -> str:
  """A SavedModel directory: `path` itself or its largest version."""
  if tf.io.gfile.exists(os.path.join(path, "saved_model.pb")):
    return path
  versions = []
  if tf.io.gfile.isdir(path):
    versions = sorted(int(n.rstrip("/")) for n in tf.io.gfile.listdir(path)
                      if n.rstrip("/").isdigit())
  for v in reversed(versions):
    cand = os.path.join(path, str(v))
    if tf.io.gfile.exists(os.path.join(cand, "saved_model.pb")):
      return cand
  raise FileNotFoundError(f"--saved_model: no saved_model.pb in {path} nor"
                          " in an integer version directory under it")


def _load_config(gin_files: Sequence[str], gin_bindings: Sequence[str],
                 task: Optional[str], class_names: Optional[Sequence[str]]):
  """(experiment, its evaluation InputConfig with `class_names` as the
  class list of a TAL / AS model)."""
  if task is not None and task not in TASKS:
    raise ValueError(f"--task must be one of {TASKS}, got {task!r}")
  override = class_names if task in (spec.TAL, spec.AS, None) else None
  experiment = experiment_lib.load_experiment(gin_files, gin_bindings,
                                              class_names=override)
  config = experiment.eval_config
  if config.task not in TASKS:
    raise ValueError(f"the config's task {config.task!r} is not one of"
                     f" {TASKS}")
  if task is not None and task != config.task:
    raise ValueError(f"--task={task} but the model was trained for"
                     f" {config.task}")
  if class_names and config.task in (spec.MR, spec.HD):
    raise ValueError(f"{config.task} takes --query, not --class_names")
  if class_names and config.task in (spec.TAL, spec.AS):
    config = dataclasses.replace(config, class_names=tuple(class_names),
                                 num_classes=len(class_names),
                                 class_subset=None)
  if config.input_mode != "frames":
    raise ValueError("the config's model takes cached frame embeddings"
                     " (input_mode='embeddings'); use the frames config of"
                     " the model (INPUT_MODE='frames')")
  if config.task in (spec.TAL, spec.AS) and config.text_mode == "tokens" and (
      not config.class_names):
    raise ValueError(f"{config.task} needs --class_names")
  if class_names and config.text_mode == "embeddings":
    raise ValueError("the model reads cached class-name embeddings"
                     f" ({config.class_name_embeddings}); --class_names"
                     " needs a model with a text tower")
  return experiment, config


class Predictor:
  """A trained UnLoc on video files (see the module docstring).

  Make one with `from_workdir` or `from_saved_model`.

  Args:
    config: the evaluation `InputConfig` of the model.
    runner: evaluation batch → (numpy batch, numpy detections).
    settings: decoding and class names of the task's results.
    source: a description of the model.
    batch_size: videos (or windows) per batch.
    chunking: long videos in windows (`data.chunks.Chunking`; default
      "auto": windows of N0 frames for videos whose whole-video tokens would
      be more than 2 s apart).

  Raises:
    ValueError: a chunking whose window is shorter than N0, or whose
      overlap is not shorter than the window.
  """

  def __init__(self, config: pipeline.InputConfig, runner: Runner,
               settings: tasks.MetricSettings, source: str,
               batch_size: int = 1,
               chunking: Optional[chunks.Chunking] = None):
    self.config = config
    self.runner = runner
    self.settings = settings
    self.source = source
    self.batch_size = int(batch_size)
    self.chunking = chunking or chunks.Chunking()
    self.plan(1.0 / config.secs_per_timestep)  # fails early

  def plan(self, fps: float) -> chunks.WindowPlan:
    """The windows of videos stored at `fps`."""
    c = self.config
    return self.chunking.plan(c.task, c.num_frames, fps, c.eval_windows)

  @property
  def task(self) -> str:
    return self.config.task

  # -- the model -------------------------------------------------------------
  @classmethod
  def from_workdir(cls, workdir: str, *, checkpoint: str = "latest",
                   gin_files: Sequence[str] = (),
                   gin_bindings: Sequence[str] = (),
                   task: Optional[str] = None,
                   class_names: Optional[Sequence[str]] = None,
                   batch_size: Optional[int] = None,
                   chunking: Optional[chunks.Chunking] = None
                   ) -> "Predictor":
    """The experiment's model restored from a training workdir.

    Args:
      workdir: the training workdir.
      checkpoint: "latest", "best" or a checkpoint path prefix.
      gin_files, gin_bindings: the config (default: the workdir's
        operative_config.gin).
      task: the expected task (checked), or None.
      class_names: TAL / AS class names (default: the config's; any names
        for a text-conditioned model, i.e. zero-shot).
      batch_size: evaluation batch size (default: the config's).
      chunking: long videos in windows (default "auto", see the class).
    """
    files = experiment_lib.workdir_gin_files(gin_files, workdir)
    experiment, config = _load_config(files, gin_bindings, task, class_names)
    model, step = experiment.load_model(workdir, checkpoint)
    if model.backbone.image_encoder is None:
      raise ValueError(
          "the model takes cached frame embeddings (INPUT_MODE='embeddings'):"
          " prediction needs a model with an image tower")
    outputs = getattr(model.head, "num_outputs", 1)
    if outputs > 1 and len(config.class_names or ()) != outputs:
      raise ValueError(f"the model is video-only with {outputs} fixed"
                       " classes; --class_names must list exactly its"
                       " classes")
    evaluator = experiment.evaluator

    def run(batch):
      detections = model.decode(evaluator.forward(model, batch), batch,
                                evaluator.decode_settings)
      return ({k: v.numpy() for k, v in batch.items()},
              {k: v.numpy() for k, v in detections.items()})

    settings = dataclasses.replace(evaluator.metric_settings,
                                   class_names=config.class_names)
    return cls(config, run, settings,
               f"checkpoint {workdir} ({checkpoint}, step {step})",
               batch_size or experiment.eval_batch_size, chunking)

  @classmethod
  def from_saved_model(cls, path: str, *,
                       signature: str = "serving_default",
                       gin_files: Sequence[str] = (),
                       gin_bindings: Sequence[str] = (),
                       task: Optional[str] = None,
                       class_names: Optional[Sequence[str]] = None,
                       batch_size: Optional[int] = None,
                       chunking: Optional[chunks.Chunking] = None
                       ) -> "Predictor":
    """An exported SavedModel (a version directory or the base path, whose
    largest version is used), called through `signature`: serving_default
    takes the pipeline's token ids, serving_text strings.  The config is
    `gin_files`, else the export's assets.extra/operative_config.gin;
    `chunking` as `from_workdir`."""
    if signature not in SIGNATURES:
      raise ValueError(f"--signature must be one of {SIGNATURES}")
    path = saved_model_dir(path)
    with open(os.path.join(path, _EXPORT_INFO)) as f:
      info = json.load(f)
    if not gin_files:
      gin_files = [os.path.join(path, _GIN_INFO)]
      if not os.path.isfile(gin_files[0]):
        raise FileNotFoundError(f"{path} has no {_GIN_INFO}: pass"
                                " --gin_file with its training config")
    if info.get("input_mode") != "frames":
      raise ValueError(f"{path} takes cached embeddings: prediction needs"
                       " a SavedModel exported with frames")
    if class_names is None and info.get("class_names"):
      class_names = tuple(info["class_names"])
    experiment, config = _load_config(gin_files, gin_bindings,
                                      task or info.get("task"), class_names)
    run = _SavedModelRunner(path, signature, config, info)
    # The export's decoding (the windows' merge uses its Soft-NMS too).
    names = {f.name for f in dataclasses.fields(tasks.DecodeSettings)}
    decode = tasks.DecodeSettings(**{
        k: v for k, v in info.get("postprocess", {}).items() if k in names})
    settings = tasks.MetricSettings(class_names=config.class_names,
                                    decode=decode)
    return cls(config, run, settings, f"saved_model {path} ({signature})",
               batch_size or experiment.eval_batch_size, chunking)

  # -- prediction ------------------------------------------------------------
  def check_queries(self, queries: Sequence[str]) -> List[str]:
    """The queries as a list; raises ValueError unless MR / HD have some
    (none empty) and TAL / AS none."""
    task = self.task
    queries = list(queries or ())
    if task in (spec.MR, spec.HD):
      if not queries:
        raise ValueError(f"{task} needs at least one --query")
      if any(not q.strip() for q in queries):
        raise ValueError("--query must not be empty")
    elif queries:
      raise ValueError(f"{task} takes --class_names, not --query")
    return queries

  def predict(self, paths: Sequence[str], *, queries: Sequence[str] = (),
              fps: Optional[float] = None, short_side: Optional[int] = None,
              jpeg_quality: int = 90, coarse_secs: float = 2.0,
              report: Callable[[str], None] = print,
              names: Optional[Sequence[str]] = None) -> List[dict]:
    """Scored segments of every video, batched together (all or nothing:
    a video that does not decode raises `data.video.VideoDecodeError`;
    `predict.predict_videos` runs videos one by one and skips bad ones).

    Each video is decoded as a stream and cut into the windows of
    `self.chunking` as its frames arrive (module docstring); a report line
    per video says how it was sampled once its frames are all read.

    Args:
      paths: video files.
      queries: MR / HD texts (MR records hold `num_captions_eval` queries
        each, HD one).
      fps: stored frames per second (default: the config's).
      short_side: decoded short side (default: the config's min_resize).
      jpeg_quality: JPEG quality of the stored frames.
      coarse_secs: warn when a model token covers more seconds than this.
      report: where the per-video resolution lines go.
      names: output names of the videos (default: `output_names(paths)`).

    Returns:
      One dict per video: {"name", "video", "task", "model", "fps",
      "duration" (s), "num_frames" (stored), "num_tokens" (N0),
      "secs_per_token", "chunked" (cut into windows), "windows" (model
      windows), "queries" (MR / HD) or "class_names" (TAL / AS),
      "detections": [{"label" or "query", "segment": [s, e], "score"}]}.
    """
    task, config = self.task, self.config
    queries = self.check_queries(queries)
    names = list(names) if names is not None else videos_lib.output_names(
        paths)
    if len(names) != len(paths):
      raise ValueError(f"{len(paths)} videos but {len(names)} names")
    config_fps = 1.0 / config.secs_per_timestep
    fps = float(fps or config_fps)
    if abs(fps - config_fps) > 1e-6 * config_fps:
      logging.warning("--fps=%g but the model's records are at %g fps", fps,
                      config_fps)
    short_side = int(short_side or config.min_resize)
    plan = self.plan(fps)
    videos: List[dict] = []  # per video, filled as its stream ends
    failed: List[Exception] = []

    def window_records() -> Iterator[chunks.WindowRecord]:
      # Runs inside tf.data: an exception would lose its type there, so it
      # is kept and raised after the dataset ends.
      try:
        for path, name in zip(paths, names):
          yield from self._video_records(path, name, queries, fps,
                                         short_side, jpeg_quality, plan,
                                         videos)
          info = videos[-1]
          res = plan.secs_per_token(info["num_frames"], fps)
          info["secs_per_token"] = res
          report(f"{path}: {info['duration']:.1f} s, {info['num_frames']}"
                 f" frames at {fps:g} fps; {plan.describe(info['num_frames'])}"
                 f": {res:.3f} s per model token")
          if res > coarse_secs:
            hint = ("use a higher --fps" if task == spec.AS else
                    "use --chunking=auto or on (windows), or a model with"
                    " more frames")
            report(f"WARNING: {path}: coarse temporal resolution, {res:.2f} s"
                   f" per model token (> {coarse_secs:g} s): segment"
                   f" boundaries are only that precise; {hint}")
      except Exception as e:  # noqa: BLE001  (re-raised below)
        failed.append(e)

    detections = self._detections(window_records)
    if failed:
      raise failed[0]
    out = []
    for info in videos:
      result = {"name": info["name"], "video": info["path"], "task": task,
                "model": self.source, "fps": fps,
                "duration": info["duration"],
                "num_frames": info["num_frames"], "num_tokens":
                config.num_frames, "secs_per_token": info["secs_per_token"],
                "chunked": plan.chunked(info["num_frames"]),
                "windows": plan.num_windows(info["num_frames"])}
      if task in (spec.MR, spec.HD):
        result["queries"] = list(queries)
      else:
        result["class_names"] = list(config.class_names or ())
      dets = [d for key in info["keys"] for d in detections.get(key, [])]
      dets.sort(key=lambda d: -d["score"])  # stable: ties keep their order
      result["detections"] = dets
      out.append(result)
    return out

  def _video_records(self, path: str, name: str, queries: List[str],
                     fps: float, short_side: int, jpeg_quality: int,
                     plan: chunks.WindowPlan, videos: List[dict]
                     ) -> Iterator[chunks.WindowRecord]:
    """The serialized records of one video, window by window; appends the
    video's {"path", "name", "duration", "num_frames", "keys"} to `videos`
    when its frames are all read."""
    task = self.task
    reader = video_lib.VideoReader(path, fps, short_side)
    keys: List[str] = []
    index = 0
    for window in chunks.stream(videos_lib.jpegs(reader, jpeg_quality),
                                plan):
      whole = window.last and window.offset == 0 and (
          len(window.frames) == window.video_frames)
      duration = (float(reader.duration) if whole
                  else len(window.frames) / fps)
      video = videos_lib.Video(path, name, window.frames, fps, duration)
      recs = videos_lib.video_records(video, task, queries,
                                      self.config.num_captions_eval)
      if not keys:
        keys = [f"{rec.media_id}#{rec.example_id}"
                if rec.example_id is not None else rec.media_id
                for rec, _ in recs]
      for rec, _ in recs:
        ex = records.to_sequence_example(rec, task)
        yield (path, index, ex.SerializeToString(), window.offset,
               window.video_frames, int(window.last))
        index += 1
      del video, window, recs  # the window's frames go with the records
    videos.append({"path": path, "name": name,
                   "duration": float(reader.duration),
                   "num_frames": reader.num_frames, "keys": keys})

  def _detections(self, records_fn: Callable[[], Iterator[chunks.WindowRecord]]
                  ) -> Dict[str, List[dict]]:
    """{record key: detections} of the records of `records_fn`, window by
    window, merged per video."""
    dataset = chunks.window_dataset(records_fn, self.config,
                                    global_batch_size=self.batch_size)
    results = tasks.results_for(self.task, self.settings)
    merger = chunks_lib.WindowMerger(self.task, self.settings.decode)
    for batch in dataset:
      for host in merger.add(*self.runner(batch)):
        results.add(*host)
    for host in merger.flush():
      results.add(*host)
    return results.detections()


class _SavedModelRunner:
  """A SavedModel signature on the pipeline's batches (real rows only)."""

  def __init__(self, path: str, signature: str,
               config: pipeline.InputConfig, info: dict):
    try:  # registers the TF-Text ops of a serving_text signature
      import tensorflow_text  # noqa: F401, PLC0415
    except ImportError:  # then only models without it load
      logging.warning("tensorflow_text is not installed")
    loaded = tf.saved_model.load(path)
    if signature not in loaded.signatures:
      raise ValueError(f"{path} has no signature {signature!r} (has"
                       f" {sorted(loaded.signatures)})")
    self.fn = loaded.signatures[signature]
    self.text = signature == "serving_text"
    self.config = config
    self.export_prompts = info.get("prompts")

  def _class_names(self) -> List[str]:
    names = list(self.config.class_names)
    c = self.config
    if c.prompts and c.prompt_index >= 0 and not self.export_prompts:
      names = [c.prompts[c.prompt_index].format(n) for n in names]
    return names  # else the graph applies the export's prompts

  def __call__(self, batch):
    count = int((batch["batch_mask"].numpy() > 0).sum())
    b = {k: v[:count] for k, v in batch.items()}  # real rows come first
    if spec.FRAMES not in b or b[spec.FRAMES].dtype != tf.uint8:
      raise ValueError("the SavedModel takes uint8 frames: the config must"
                       " have input_mode='frames' and normalize=False")
    x = {key: b[key] for key in _SIGNATURE_INPUTS}
    task = self.config.task
    if self.text and task in (spec.TAL, spec.AS):
      x["class_names"] = tf.constant(self._class_names())
    elif self.text:
      strings = b[spec.TEXT_STRINGS].numpy()
      valid = b[spec.TEXT_VALID].numpy()
      x["queries"] = tf.constant(
          [[s.decode("utf-8") if v else "" for s, v in zip(row, ok)]
           for row, ok in zip(strings, valid)])
    else:
      ids, mask = b[spec.TEXT_IDS], b[spec.TEXT_MASK]
      if len(ids.shape) == 4:  # [B, P, C, L] → class-major [B, C * P, L]
        if not self.export_prompts:
          raise ValueError("the config averages prompts but the SavedModel"
                           " was exported without them")
        shape = [count, -1, ids.shape[-1]]
        ids = tf.reshape(tf.transpose(ids, [0, 2, 1, 3]), shape)
        mask = tf.reshape(tf.transpose(mask, [0, 2, 1, 3]), shape)
      x[spec.TEXT_IDS], x[spec.TEXT_MASK] = ids, mask
    out = self.fn(**x)
    return ({k: v.numpy() for k, v in b.items()},
            {k: v.numpy() for k, v in out.items()})
