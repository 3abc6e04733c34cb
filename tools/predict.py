r"""Runs a trained UnLoc on video files: scored segments (JSON) and timelines.

  python tools/predict.py --workdir=/tmp/w_mr --video=/data/cooking.mp4 \
      --query="a person cuts an onion" --query="someone washes the pan" \
      --output_dir=/tmp/pred
  python tools/predict.py --saved_model=/tmp/serving/unloc_tal \
      --videos_dir=/data/clips --class_names=classes.txt \
      --task=temporal_localization --output_dir=/tmp/pred
  python tools/predict.py --gin_file=experiments/synthetic_as \
      --gin_bindings="DATA_DIR='/data/syn'" --workdir=/tmp/w_as \
      --video=a.mp4 --class_names="appearing,spinning" --output_dir=/tmp/pred

The model: `--workdir` (its checkpoint, `--checkpoint` = latest, best or a
prefix, restored as tools/evaluate.py does; the config is `--gin_file` +
`--gin_bindings`, else the `operative_config.gin` the training wrote), or
`--saved_model` (a tools/export_saved_model.py directory: a version
directory or the base path, whose largest version is used; the config is
its `assets.extra/operative_config.gin`; `--signature` = serving_default,
fed the pipeline's token ids, or serving_text, fed strings).

Every video goes the way evaluation goes, so the detections equal what
tools/evaluate.py reports for records built from the same file by
tools/build_records.py: decode at `--fps` (default: the config's
`1 / secs_per_timestep`) with `tools/video_io.py`, short side `--short_side`
(default: the config's `min_resize`), JPEG (`--jpeg_quality`, 90) →
`records.VideoRecord` (`secs_per_timestep = 1 / fps`) → a temporary TFRecord
→ `pipeline.make_dataset(eval config)` (linspace sampling of `num_frames`
over the whole video for TAL / MR / HD; non-overlapping sliding windows for
AS) → the evaluator (`train.evaluation.Evaluator`: model, prompt averaging,
decoding, Soft-NMS) or the SavedModel signature (the same post-processing).
Texts: MR / HD `--query` (repeatable; MR records hold `num_captions_eval`
queries each, HD one), TAL / AS `--class_names` (a comma list or a
classes.txt file; any names for a text-conditioned model, i.e. zero-shot;
default: the config's).

The tool prints each video's temporal resolution (seconds per level-0
model token: (n - 1) / (N0 - 1) / fps for linspace tasks, 1 / fps for AS)
and warns when it is coarser than `--coarse_secs`.

Outputs, per video `<name>` (the file name without its extension):
  <output_dir>/<name>.json
    {"video": path, "task", "model", "fps", "duration" (s), "num_frames"
     (stored), "num_tokens" (N0), "secs_per_token", "queries" (MR / HD) or
     "class_names" (TAL / AS),
     "detections": [{"label" (TAL / AS) or "query" (MR / HD),
                     "segment": [start_s, end_s], "score"}, ...]}
    detections sorted by score, best first (up to the evaluator's
    max_detections per video and query).  AS: a run of consecutive frames
    a..b predicted as one class is the segment [a / fps, (b + 1) / fps],
    scored by the class's mean sigmoid over the run; background (max logit
    <= the evaluator's background threshold) is no segment.
  <output_dir>/<name>.png
    timeline of the `--top_k` best detections (tools/visualize.py; needs
    matplotlib, else skipped with a warning).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app, flags, logging

if __package__ in (None, ""):
  sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
      __file__))))
  from tools import video_io  # noqa: E402
else:
  from . import video_io  # noqa: E402

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import gin  # noqa: E402
from unloc_tf import launch, postprocess, spec  # noqa: E402
from unloc_tf.data import pipeline, records  # noqa: E402
from unloc_tf.train import evaluation, trainer  # noqa: E402

TASKS = (spec.TAL, spec.MR, spec.HD, spec.AS)
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v",
                    ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ts")
SIGNATURES = ("serving_default", "serving_text")
_GIN_INFO = os.path.join("assets.extra", "operative_config.gin")
_EXPORT_INFO = os.path.join("assets.extra", "export_info.json")


# ---------------------------------------------------------------------------
# Inputs.
# ---------------------------------------------------------------------------
def list_videos(videos: Sequence[str] = (), videos_dir: Optional[str] = None
                ) -> List[str]:
  """`--video` paths, then the video files of `--videos_dir` (sorted)."""
  out = list(videos or ())
  if videos_dir:
    if not os.path.isdir(videos_dir):
      raise FileNotFoundError(f"--videos_dir: no such directory: {videos_dir}")
    found = sorted(
        os.path.join(videos_dir, f) for f in os.listdir(videos_dir)
        if f.lower().endswith(VIDEO_EXTENSIONS))
    if not found:
      raise FileNotFoundError(f"{videos_dir}: no video files"
                              f" ({', '.join(VIDEO_EXTENSIONS)})")
    out += found
  if not out:
    raise ValueError("no video: give --video or --videos_dir")
  for path in out:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"--video: no such file: {path}")
  return out


def output_names(paths: Sequence[str]) -> List[str]:
  """Output names: the file name without extension, made unique."""
  names, seen = [], {}
  for path in paths:
    stem = os.path.splitext(os.path.basename(path))[0]
    k = seen.get(stem, 0)
    seen[stem] = k + 1
    names.append(stem if k == 0 else f"{stem}_{k}")
  return names


@dataclasses.dataclass
class Video:
  """One decoded video.

  Attributes:
    path: the file.
    name: output name (unique).
    jpegs: stored frames, JPEG bytes [n] (frame i shows time i / fps).
    fps: the sampling rate.
    duration: seconds.
  """

  path: str
  name: str
  jpegs: List[bytes]
  fps: float
  duration: float

  @property
  def num_frames(self) -> int:
    return len(self.jpegs)


def decode(path: str, name: str, fps: float, short_side: int,
           jpeg_quality: int = 90) -> Video:
  """Decodes a video as tools/build_records.py does (video_io sampling and
  resizing, each frame JPEG-encoded as it is decoded; the same bytes as
  `video_io.frames_to_jpeg` of `video_io.decode_video`'s frames)."""
  reader = video_io.VideoReader(path, fps, short_side)
  jpegs: List[bytes] = []
  last = None
  for frame in reader:  # streams: long videos are never all in memory
    if frame is last:  # a repeated frame (upsampling): the same bytes
      jpegs.append(jpegs[-1])
      continue
    jpegs.extend(video_io.frames_to_jpeg(frame[None], jpeg_quality))
    last = frame
  return Video(path, name, jpegs, float(fps), float(reader.duration))


def video_records(video: Video, task: str, queries: Sequence[str],
                  num_captions: int) -> List[Tuple[records.VideoRecord,
                                                   List[str]]]:
  """The records evaluation would read for this video and these texts.

  TAL / AS: one record, no segments (class names come with the config).
  MR: one record per `num_captions` queries (`example_id` = chunk index);
  HD: one record per query (`example_id` = query index).  A query rides on a
  dummy segment spanning the video (the pipeline reads captions from the
  segments); it only affects the evaluator's metrics, never detections.

  Returns:
    [(record, the queries of the record)].
  """
  n = video.num_frames
  spt = 1.0 / video.fps
  base = dict(media_id=video.name, secs_per_timestep=spt,
              frames=video.jpegs, duration=video.duration)
  if task in (spec.TAL, spec.AS):
    return [(records.VideoRecord(**base), [])]
  end = max(video.duration, n * spt)

  def seg(query, label):
    return records.Segment(0, n - 1, label, query, 0.0, end)

  if task == spec.HD:
    return [(records.VideoRecord(**base, segments=[seg(q, 0)],
                                 example_id=i), [q])
            for i, q in enumerate(queries)]
  out = []
  for c in range(0, len(queries), num_captions):
    chunk = list(queries[c:c + num_captions])
    out.append((records.VideoRecord(
        **base, segments=[seg(q, -1) for q in chunk],
        example_id=c // num_captions), chunk))
  return out


def temporal_resolution(task: str, num_stored: int, num_tokens: int,
                        fps: float) -> float:
  """Seconds between consecutive level-0 model tokens."""
  if task == spec.AS or num_stored <= num_tokens:
    return 1.0 / fps  # every stored frame is a token (AS windows, or
    # linspace with repeated frames)
  return (num_stored - 1) / (num_tokens - 1) / fps


# ---------------------------------------------------------------------------
# The model and its config.
# ---------------------------------------------------------------------------
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


def _override_bindings(task: Optional[str],
                       class_names: Optional[Sequence[str]]) -> List[str]:
  """Gin bindings that replace the config's class list (TAL / AS), so the
  training data directory need not exist."""
  if not class_names or task not in (spec.TAL, spec.AS, None):
    return []
  names = tuple(str(c) for c in class_names)
  # NUM_CLASSES itself stays: a video-only model's head is built from it.
  return [f"CLASS_NAMES = {names!r}",
          f"eval/pipeline.InputConfig.num_classes = {len(names)}",
          "eval/pipeline.InputConfig.class_subset = None",
          "evaluation.Evaluator.class_subset = None"]


def load_config(gin_files: Sequence[str], gin_bindings: Sequence[str],
                task: Optional[str], class_names: Optional[Sequence[str]]
                ) -> pipeline.InputConfig:
  """Parses the gin config; returns its evaluation `InputConfig` with the
  class list replaced by `class_names` (TAL / AS)."""
  gin.clear_config()
  launch.parse_gin(gin_files, list(gin_bindings)
                   + _override_bindings(task, class_names), finalize=False)
  with gin.config_scope("eval"):
    config = gin.get_configurable(pipeline.InputConfig)()
  if class_names and config.task in (spec.TAL, spec.AS):
    config = dataclasses.replace(
        config, class_names=tuple(class_names),
        num_classes=len(class_names), class_subset=None)
  return config


def _eval_batch_size() -> int:
  try:
    with gin.config_scope("eval"):
      value = gin.get_bindings(pipeline.make_dataset).get("global_batch_size")
  except (ValueError, TypeError):
    value = None
  return int(value or 1)


def make_evaluator(config: pipeline.InputConfig) -> evaluation.Evaluator:
  """The config's evaluator, for `config`'s task and class list."""
  try:
    kwargs = dict(gin.get_bindings(evaluation.Evaluator))
  except ValueError:
    kwargs = {}
  kwargs.update(task=config.task, class_names=config.class_names,
                class_subset=None)
  if config.task != spec.AS:
    kwargs["pyramid"] = kwargs.get("pyramid") or config.pyramid_spec
  return evaluation.Evaluator(**kwargs)


def _numeric(batch):
  return {k: v for k, v in batch.items() if v.dtype != tf.string}


def _key(batch, i) -> str:
  vid = batch[spec.VIDEO_ID][i]
  vid = vid.decode() if isinstance(vid, bytes) else str(vid)
  eid = int(batch[spec.EXAMPLE_ID_KEY][i])
  return f"{vid}#{eid}" if eid >= 0 else vid


# ---------------------------------------------------------------------------
# Runners: records dataset → {record key: raw detections}.
# ---------------------------------------------------------------------------
# Raw detections per record key:
#   TAL / HD: [(class index or name, start, end, score)]
#   MR: {caption index: [(start, end, score)]}
#   AS: (logits [n, C] assembled over the windows, secs_per_timestep)


def _as_windows(windows, totals):
  out = {}
  for key, wins in windows.items():
    logits = np.stack([w[1] for w in wins])
    offsets = np.array([w[0] for w in wins])
    masks = np.stack([w[2] for w in wins])
    out[key] = (postprocess.assemble_windows_np(
        logits, offsets, masks, totals[key][0]), totals[key][1])
  return out


def _collect_window(windows, totals, batch, logits):
  b = {k: v.numpy() for k, v in batch.items()}
  for i in range(len(b[evaluation.BATCH_MASK])):
    if not b[evaluation.BATCH_MASK][i]:
      continue
    key = _key(b, i)
    windows.setdefault(key, []).append(
        (int(b[spec.WINDOW_OFFSET][i]), logits[i], b[spec.FRAME_MASK][i]))
    totals[key] = (int(b[spec.NUM_FRAMES_TOTAL][i]),
                   float(b[spec.BATCH_SECS_PER_TIMESTEP][i]))


def run_checkpoint(dataset, config: pipeline.InputConfig, workdir: str,
                   checkpoint: str = "latest") -> Tuple[dict, str, dict]:
  """The gin config's model restored from `workdir`, through the evaluator.

  Returns:
    (raw detections per record key, a description of the model, settings
    {"background_logit_threshold"}).
  """
  bound = gin.get_bindings(trainer.train)
  if "model_fn" not in bound:
    raise ValueError("the gin config binds no trainer.train.model_fn")
  model = bound["model_fn"]()
  if getattr(model.backbone, "image_encoder", None) is None:
    raise ValueError(
        "the model takes cached frame embeddings (INPUT_MODE='embeddings'):"
        " predict.py needs a model with an image tower")
  outputs = getattr(getattr(model, "head", None), "num_outputs", 1)
  if outputs > 1 and len(config.class_names or ()) != outputs:
    raise ValueError(f"the model is video-only with {outputs} fixed classes;"
                     " --class_names must list exactly its classes")
  model(_numeric(next(iter(dataset))), training=False)
  step = evaluation.restore_model(model, workdir, checkpoint)
  evaluator = make_evaluator(config)
  source = f"checkpoint {workdir} ({checkpoint}, step {step})"
  settings = {"background_logit_threshold":
              evaluator.background_logit_threshold}
  if config.task == spec.AS:
    windows, totals = {}, {}
    forward = tf.function(lambda b: model(b, training=False),
                          jit_compile=evaluator.jit_compile)
    for batch in dataset:
      out = evaluation.forward_with_prompts(forward, batch)
      _collect_window(windows, totals, batch, out["logits"].numpy())
    return _as_windows(windows, totals), source, settings
  evaluator(model, dataset)
  preds = evaluator.last_predictions
  raw = {}
  if config.task == spec.MR:
    for row in preds:
      raw.setdefault(row["video_id"], {})[row["caption_index"]] = [
          tuple(c) for c in row["candidates"]]
  else:
    for key, dets in preds["results"].items():
      raw[key] = [(d["label"], d["segment"][0], d["segment"][1], d["score"])
                  for d in dets]
  return raw, source, settings


def run_saved_model(dataset, config: pipeline.InputConfig, path: str,
                    signature: str = "serving_default",
                    queries_by_key: Optional[Dict[str, List[str]]] = None
                    ) -> Tuple[dict, str, dict]:
  """An exported SavedModel's signature on the pipeline's batches.

  Returns:
    As `run_checkpoint`.
  """
  try:  # registers the TF-Text ops of a serving_text signature
    import tensorflow_text  # noqa: F401
  except ImportError:  # then only models without it load
    logging.warning("tensorflow_text is not installed")

  with open(os.path.join(path, _EXPORT_INFO)) as f:
    info = json.load(f)
  loaded = tf.saved_model.load(path)
  if signature not in loaded.signatures:
    raise ValueError(f"{path} has no signature {signature!r} (has"
                     f" {sorted(loaded.signatures)})")
  fn = loaded.signatures[signature]
  task = config.task
  raw, windows, totals = {}, {}, {}
  for batch in dataset:
    real = batch[evaluation.BATCH_MASK].numpy() > 0
    count = int(real.sum())
    b = {k: v[:count] for k, v in batch.items()}  # real rows come first
    x = {key: b[key] for key in (spec.FRAMES, spec.FRAME_MASK,
                                 spec.NUM_FRAMES_TOTAL,
                                 spec.BATCH_SECS_PER_TIMESTEP)}
    if spec.FRAMES not in b or b[spec.FRAMES].dtype != tf.uint8:
      raise ValueError("the SavedModel takes uint8 frames: the config must"
                       " have input_mode='frames' and normalize=False")
    keys = [_key({k: v.numpy() for k, v in b.items()
                  if k in (spec.VIDEO_ID, spec.EXAMPLE_ID_KEY)}, i)
            for i in range(count)]
    if signature == "serving_text":
      if task in (spec.TAL, spec.AS):
        names = list(config.class_names)
        if (config.prompts and config.prompt_index >= 0
            and not info.get("prompts")):  # else the graph applies them
          names = [config.prompts[config.prompt_index].format(n)
                   for n in names]
        x["class_names"] = tf.constant(names)
      else:
        k = b[spec.TEXT_VALID].shape[1]
        rows = [(queries_by_key[key] + [""] * k)[:k] for key in keys]
        x["queries"] = tf.constant(rows)
    else:
      ids, mask = b[spec.TEXT_IDS], b[spec.TEXT_MASK]
      if len(ids.shape) == 4:  # [B, P, C, L] → class-major [B, C * P, L]
        if not info.get("prompts"):
          raise ValueError("the config averages prompts but the SavedModel"
                           " was exported without them")
        shape = [count, -1, ids.shape[-1]]
        ids = tf.reshape(tf.transpose(ids, [0, 2, 1, 3]), shape)
        mask = tf.reshape(tf.transpose(mask, [0, 2, 1, 3]), shape)
      x[spec.TEXT_IDS], x[spec.TEXT_MASK] = ids, mask
    out = {k: v.numpy() for k, v in fn(**x).items()}
    if task == spec.AS:
      _collect_window(windows, totals, b, out["logits"])
      continue
    for i, key in enumerate(keys):
      if task == spec.MR:
        valid = b[spec.TEXT_VALID].numpy()[i]
        raw[key] = {
            k: [(*map(float, out["segments"][i, k, j]),
                 float(out["scores"][i, k, j]))
                for j in range(int(out["num_detections"][i, k]))]
            for k in range(len(valid)) if valid[k]}
      else:
        raw[key] = [(int(out["classes"][i, j]),
                     *map(float, out["segments"][i, j]),
                     float(out["scores"][i, j]))
                    for j in range(int(out["num_detections"][i]))]
  settings = {"background_logit_threshold": float(
      info.get("postprocess", {}).get("background_logit_threshold", 0.0))}
  source = f"saved_model {path} ({signature})"
  if task == spec.AS:
    return _as_windows(windows, totals), source, settings
  return raw, source, settings


# ---------------------------------------------------------------------------
# Detections per video.
# ---------------------------------------------------------------------------
def segmentation_segments(logits: np.ndarray, secs_per_timestep: float,
                          class_names: Sequence[str],
                          background_logit_threshold: float = 0.0
                          ) -> List[dict]:
  """Runs of frames predicted as one class → scored segments (seconds).

  Frame prediction as the evaluator: argmax class where the max logit is
  above the threshold, else background (also frames no window covered).

  Args:
    logits: float [n, C] per stored frame (NaN rows: not covered).
    secs_per_timestep: seconds per stored frame.
    class_names: the C names.
    background_logit_threshold: the background rule.

  Returns:
    [{"label", "segment": [a * spt, (b + 1) * spt], "score": mean sigmoid
    of the class over frames a..b}].
  """
  logits = np.asarray(logits, np.float32)
  covered = ~np.isnan(logits).any(-1)
  safe = np.where(covered[:, None], logits, -np.inf)
  pred = np.where(covered & (safe.max(-1) > background_logit_threshold),
                  safe.argmax(-1), -1)
  out = []
  start = 0
  for i in range(1, len(pred) + 1):
    if i < len(pred) and pred[i] == pred[start]:
      continue
    c = int(pred[start])
    if c >= 0:
      prob = 1.0 / (1.0 + np.exp(-logits[start:i, c].astype(np.float64)))
      out.append({"label": class_names[c] if c < len(class_names) else str(c),
                  "segment": [start * secs_per_timestep,
                              i * secs_per_timestep],
                  "score": float(prob.mean())})
    start = i
  return out


def video_detections(task: str, raw: dict, keys_and_queries, class_names,
                     settings: dict) -> List[dict]:
  """Detections of one video from the raw per-record results, best first.

  Args:
    keys_and_queries: [(record key, queries of the record)].
  """
  dets = []
  for key, queries in keys_and_queries:
    result = raw.get(key)
    if result is None:
      continue
    if task == spec.AS:
      logits, spt = result
      dets += segmentation_segments(
          logits, spt, class_names or (),
          settings.get("background_logit_threshold", 0.0))
    elif task == spec.MR:
      for k, cands in result.items():
        dets += [{"query": queries[k], "segment": [float(s), float(e)],
                  "score": float(score)} for s, e, score in cands]
    else:
      for label, s, e, score in result:
        if task == spec.HD:
          item = {"query": queries[0]}
        elif isinstance(label, str):
          item = {"label": label}
        else:
          item = {"label": class_names[label]
                  if class_names and 0 <= label < len(class_names)
                  else str(label)}
        item.update(segment=[float(s), float(e)], score=float(score))
        dets.append(item)
  dets.sort(key=lambda d: -d["score"])  # stable: ties keep their order
  return dets


def write_outputs(output_dir: str, result: dict, top_k: int = 10,
                  plot: bool = True) -> Tuple[str, Optional[str]]:
  """Writes `<name>.json` and (with matplotlib) `<name>.png`."""
  os.makedirs(output_dir, exist_ok=True)
  name = result.pop("name")
  json_path = os.path.join(output_dir, name + ".json")
  tmp = json_path + ".incomplete"
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, json_path)
  png_path = None
  if plot:
    try:
      if __package__ in (None, ""):
        from tools import visualize  # pylint: disable=g-import-not-at-top
      else:
        from . import visualize  # pylint: disable=g-import-not-at-top
    except ImportError as e:
      logging.warning("no timeline PNG: %s", e)
    else:
      preds = [dict(segment=d["segment"], score=d["score"],
                    label=d.get("label") or _short(d.get("query", "")))
               for d in result["detections"]]
      png_path = visualize.plot_timeline(
          os.path.join(output_dir, name + ".png"), result["duration"], [],
          preds, f"{os.path.basename(result['video'])}: {result['task']}",
          top_k=top_k)
  return json_path, png_path


def _short(text: str, n: int = 40) -> str:
  return text if len(text) <= n else text[:n - 3] + "..."


# ---------------------------------------------------------------------------
# The whole run.
# ---------------------------------------------------------------------------
def predict(videos: Sequence[str], *, output_dir: Optional[str] = None,
            task: Optional[str] = None, queries: Sequence[str] = (),
            class_names: Optional[Sequence[str]] = None,
            workdir: Optional[str] = None, checkpoint: str = "latest",
            saved_model: Optional[str] = None,
            signature: str = "serving_default",
            gin_files: Sequence[str] = (), gin_bindings: Sequence[str] = (),
            fps: Optional[float] = None, short_side: Optional[int] = None,
            jpeg_quality: int = 90, batch_size: Optional[int] = None,
            top_k: int = 10, coarse_secs: float = 2.0,
            plot: bool = True) -> Dict[str, dict]:
  """Predicts on video files (module docstring).

  Args:
    videos: video paths.
    output_dir: where `<name>.json` / `<name>.png` go (None: not written).
    task: expected task (default: the config's); must match the model.
    queries: MR / HD texts.
    class_names: TAL / AS class names (default: the config's / export's).
    workdir, checkpoint: a training workdir and its checkpoint.
    saved_model: an exported SavedModel (instead of `workdir`).
    signature: SavedModel signature ("serving_default" or "serving_text").
    gin_files, gin_bindings: the config (default: the workdir's / the
      SavedModel's operative config).
    fps: stored frames per second (default: the config's).
    short_side: decoded short side (default: the config's min_resize).
    jpeg_quality: JPEG quality of the stored frames.
    batch_size: evaluation batch size (default: the config's).
    top_k: detections drawn per PNG.
    coarse_secs: warn when a token covers more seconds than this.
    plot: write the PNGs.

  Returns:
    {video path: the JSON content (plus "name")}.
  """
  if task is not None and task not in TASKS:
    raise ValueError(f"--task must be one of {TASKS}, got {task!r}")
  if bool(workdir) == bool(saved_model):
    raise ValueError("give exactly one of --workdir and --saved_model")
  if signature not in SIGNATURES:
    raise ValueError(f"--signature must be one of {SIGNATURES}")
  user_class_names = class_names
  info = {}
  if saved_model:
    saved_model = saved_model_dir(saved_model)
    with open(os.path.join(saved_model, _EXPORT_INFO)) as f:
      info = json.load(f)
    if not gin_files:
      cfg = os.path.join(saved_model, _GIN_INFO)
      if not os.path.isfile(cfg):
        raise FileNotFoundError(f"{saved_model} has no {_GIN_INFO}: pass"
                                " --gin_file with its training config")
      gin_files = [cfg]
    if info.get("input_mode") != "frames":
      raise ValueError(f"{saved_model} takes cached embeddings: predict.py"
                       " needs a SavedModel exported with frames")
    if class_names is None and info.get("class_names"):
      class_names = tuple(info["class_names"])
  elif not gin_files:
    cfg = os.path.join(workdir, "operative_config.gin")
    if not os.path.isfile(cfg):
      raise FileNotFoundError(f"{workdir} has no operative_config.gin: pass"
                              " --gin_file (+ --gin_bindings) of its config")
    gin_files = [cfg]
  config = load_config(gin_files, gin_bindings, task or info.get("task"),
                       class_names)
  if config.task not in TASKS:
    raise ValueError(f"the config's task {config.task!r} is not one of"
                     f" {TASKS}")
  if task is not None and task != config.task:
    raise ValueError(f"--task={task} but the model was trained for"
                     f" {config.task}")
  task = config.task
  if config.input_mode != "frames":
    raise ValueError("the config's model takes cached frame embeddings"
                     " (input_mode='embeddings'); use the frames config of"
                     " the model (INPUT_MODE='frames')")
  queries = list(queries or ())
  if task in (spec.MR, spec.HD):
    if not queries:
      raise ValueError(f"{task} needs at least one --query")
    if any(not q.strip() for q in queries):
      raise ValueError("--query must not be empty")
  elif queries:
    raise ValueError(f"{task} takes --class_names, not --query")
  if task in (spec.MR, spec.HD) and user_class_names:
    raise ValueError(f"{task} takes --query, not --class_names")
  if task in (spec.TAL, spec.AS) and config.text_mode == "tokens" and (
      not config.class_names):
    raise ValueError(f"{task} needs --class_names")
  if class_names and config.text_mode == "embeddings":
    raise ValueError("the model reads cached class-name embeddings"
                     f" ({config.class_name_embeddings}); --class_names"
                     " needs a model with a text tower")
  fps = float(fps or 1.0 / config.secs_per_timestep)
  config_fps = 1.0 / config.secs_per_timestep
  if abs(fps - config_fps) > 1e-6 * config_fps:
    logging.warning("--fps=%g but the model's records are at %g fps", fps,
                    config_fps)
  short_side = int(short_side or config.min_resize)
  batch_size = int(batch_size or _eval_batch_size())
  num_tokens = config.num_frames
  names = output_names(videos)
  tmp_dir = tempfile.mkdtemp(prefix="unloc_predict_")
  try:
    decoded, plan, queries_by_key = [], [], {}
    recs = []
    for path, name in zip(videos, names):
      video = decode(path, name, fps, short_side, jpeg_quality)
      res = temporal_resolution(task, video.num_frames, num_tokens, fps)
      how = (f"{math.ceil(video.num_frames / num_tokens)} window(s) of"
             f" {num_tokens} frames" if task == spec.AS else
             f"{num_tokens} tokens (linspace)")
      print(f"{path}: {video.duration:.1f} s, {video.num_frames} frames at"
            f" {fps:g} fps; {how}: {res:.3f} s per model token")
      if res > coarse_secs:
        hint = ("use a higher --fps" if task == spec.AS else
                "split the video or use a model with more frames")
        print(f"WARNING: {path}: coarse temporal resolution, {res:.2f} s per"
              f" model token (> {coarse_secs:g} s): segment boundaries are"
              f" only that precise; {hint}")
      keys = []
      for rec, qs in video_records(video, task, queries,
                                   config.num_captions_eval):
        key = (f"{rec.media_id}#{rec.example_id}"
               if rec.example_id is not None else rec.media_id)
        keys.append((key, qs))
        queries_by_key[key] = qs
        recs.append(rec)
      decoded.append((video, video.num_frames, res))
      plan.append(keys)
      video.jpegs = []  # in the records now
    shard = records.write_shards(recs, os.path.join(tmp_dir, "predict"), 1,
                                 task=task)
    del recs
    dataset = pipeline.make_dataset(shard, config, is_training=False,
                                    global_batch_size=batch_size,
                                    deterministic=True)
    if saved_model:
      raw, source, settings = run_saved_model(
          dataset, config, saved_model, signature, queries_by_key)
    else:
      raw, source, settings = run_checkpoint(dataset, config, workdir,
                                             checkpoint)
  finally:
    shutil.rmtree(tmp_dir, ignore_errors=True)
  results = {}
  for (video, num_stored, res), keys in zip(decoded, plan):
    result = {
        "name": video.name, "video": video.path, "task": task,
        "model": source, "fps": fps, "duration": video.duration,
        "num_frames": num_stored, "num_tokens": num_tokens,
        "secs_per_token": res,
    }
    if task in (spec.MR, spec.HD):
      result["queries"] = list(queries)
    else:
      result["class_names"] = list(config.class_names or ())
    result["detections"] = video_detections(
        task, raw, keys, config.class_names, settings)
    results[video.path] = result
    if output_dir:
      json_path, png_path = write_outputs(output_dir, dict(result), top_k,
                                          plot)
      print(f"{video.path}: {len(result['detections'])} detections ->"
            f" {json_path}" + (f", {png_path}" if png_path else ""))
  return results


# ---------------------------------------------------------------------------
# The tool.
# ---------------------------------------------------------------------------
def _define_flags() -> None:
  """Defines the flags (at `run`, not at import: see tools/visualize.py).

  `--workdir`, `--gin_file` and `--gin_bindings` are the launch layer's.
  """
  flags.DEFINE_multi_string("video", [], "A video file (repeatable).")
  flags.DEFINE_string("videos_dir", None, "Every video file in this folder.")
  flags.DEFINE_enum("task", None, list(TASKS), "The task (default: the"
                    " model's; must match it).")
  flags.DEFINE_multi_string("query", [], "MR / HD query (repeatable).")
  flags.DEFINE_string("class_names", None, "TAL / AS class names: a comma"
                      " list or a classes.txt file (default: the model's).")
  flags.DEFINE_string("checkpoint", "latest", "With --workdir: latest, best"
                      " or a checkpoint path prefix.")
  flags.DEFINE_string("saved_model", None, "An exported SavedModel (a"
                      " version directory or its base path).")
  flags.DEFINE_enum("signature", "serving_default", list(SIGNATURES),
                    "SavedModel signature to call.")
  flags.DEFINE_float("fps", None, "Stored frames per second (default: the"
                     " model's records').")
  flags.DEFINE_integer("short_side", None, "Short side of the decoded frames"
                       " (default: the config's min_resize).")
  flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality of the frames.")
  flags.DEFINE_integer("batch_size", None, "Evaluation batch size (default:"
                       " the config's).")
  flags.DEFINE_string("output_dir", None, "Where <video>.json and"
                      " <video>.png go.", required=True)
  flags.DEFINE_integer("top_k", 10, "Detections drawn in each PNG.")
  flags.DEFINE_float("coarse_secs", 2.0, "Warn when a model token covers"
                     " more seconds than this.")
  flags.DEFINE_bool("plot", True, "Write the timeline PNGs.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  f = flags.FLAGS
  try:
    videos = list_videos(f.video, f.videos_dir)
    predict(
        videos, output_dir=f.output_dir, task=f.task, queries=f.query,
        class_names=launch.parse_class_names(f.class_names),
        workdir=launch.WORKDIR.value, checkpoint=f.checkpoint,
        saved_model=f.saved_model, signature=f.signature,
        gin_files=launch.GIN_FILES.value,
        gin_bindings=launch.GIN_BINDINGS.value, fps=f.fps,
        short_side=f.short_side, jpeg_quality=f.jpeg_quality,
        batch_size=f.batch_size, top_k=f.top_k, coarse_secs=f.coarse_secs,
        plot=f.plot)
  except (ValueError, FileNotFoundError, video_io.VideoDecodeError) as e:
    sys.exit(f"predict.py: error: {e}")


def run():
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
