"""Where predictions go, and many videos one by one.

`write_outputs` writes `<output_dir>/<name>.png` (the timeline of the
`top_k` best detections; needs matplotlib) and then `<name>.json` (the
scored segments), each under a temporary name renamed when complete, so a
killed run leaves no partial output and `<name>.json` exists only when the
whole output does.

`predict_videos` runs a `Predictor` on each video on its own: a video whose
outputs exist is skipped (unless `overwrite`), one that fails (undecodable,
truncated, ...) is reported in one line and skipped, the others are written
as soon as they are done; the returned `Summary` counts the three.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Callable, List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from unloc_tf.data import video as video_lib
from unloc_tf.predict import predictor as predictor_lib
from unloc_tf.predict import videos as videos_lib

_TMP_SUFFIX = ".incomplete"
# Per-video problems: PyAV / OS errors on the file (data.video turns them
# into VideoDecodeError, a ValueError), refused records, pipeline errors.
_VIDEO_ERRORS = (ValueError, OSError, tf.errors.OpError)


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def output_paths(output_dir: str, name: str, plot: bool = True
                 ) -> List[str]:
  """The files `write_outputs` writes for `name`: [json(, png)]."""
  base = os.path.join(output_dir, name)
  return [base + ".json"] + ([base + ".png"] if plot else [])


def write_outputs(output_dir: str, result: dict, top_k: int = 10,
                  plot: bool = True) -> Tuple[str, Optional[str]]:
  """Writes the outputs of one `Predictor.predict` result.

  Args:
    output_dir: created if needed.
    result: one dict of `Predictor.predict`; its "name" names the files.
    top_k: detections drawn in the PNG.
    plot: also write the PNG.

  Returns:
    (json path, png path or None).

  Raises:
    ImportError: `plot` without matplotlib (the message says what to
      install); nothing is written then.
  """
  from unloc_tf import visualize  # noqa: PLC0415

  if plot and visualize.matplotlib_missing():
    raise ImportError(visualize.matplotlib_missing())
  os.makedirs(output_dir, exist_ok=True)
  result = dict(result)
  name = result.pop("name")
  json_path, *png = output_paths(output_dir, name, plot)
  png_path = png[0] if png else None
  if png_path:  # first: the JSON marks a complete output
    preds = [dict(segment=d["segment"], score=d["score"],
                  label=d.get("label") or _short(d.get("query", "")))
             for d in result["detections"]]
    visualize.plot_timeline(  # writes a temporary file and renames it
        png_path, result["duration"], [], preds,
        f"{os.path.basename(result['video'])}: {result['task']}",
        top_k=top_k)
  tmp = json_path + _TMP_SUFFIX
  with open(tmp, "w") as f:
    json.dump(result, f, indent=1)
  os.replace(tmp, json_path)
  return json_path, png_path


def _short(text: str, n: int = 40) -> str:
  return text if len(text) <= n else text[:n - 3] + "..."


@dataclasses.dataclass
class Summary:
  """What `predict_videos` did.

  Attributes:
    done: videos predicted and written.
    skipped: videos whose outputs existed.
    failed: (video, the reason) of the videos that failed.
  """

  done: List[str] = dataclasses.field(default_factory=list)
  skipped: List[str] = dataclasses.field(default_factory=list)
  failed: List[Tuple[str, str]] = dataclasses.field(default_factory=list)

  def line(self) -> str:
    """One line: the three counts and the failed files."""
    text = (f"{len(self.done)} done, {len(self.skipped)} skipped (outputs"
            f" exist), {len(self.failed)} failed")
    if self.failed:
      text += ": " + ", ".join(path for path, _ in self.failed)
    return text


def _reason(path: str, e: Exception) -> str:
  """The error without a leading "<path>: " (VideoDecodeError has one)."""
  text = str(e)
  if text.startswith(path + ": "):
    text = text[len(path) + 2:]
  if not isinstance(e, video_lib.VideoDecodeError):  # "<reason>: ..."
    text = f"{type(e).__name__}: {text}"
  return " ".join(text.split())  # one line


def predict_videos(
    predictor: Union[predictor_lib.Predictor,
                     Callable[[], predictor_lib.Predictor]],
    paths: Sequence[str], output_dir: str, *,
    queries: Sequence[str] = (), fps: Optional[float] = None,
    short_side: Optional[int] = None, jpeg_quality: int = 90,
    coarse_secs: float = 2.0, top_k: int = 10, plot: bool = True,
    overwrite: bool = False, report: Callable[[str], None] = print,
    warn: Callable[[str], None] = _stderr) -> Summary:
  """Predicts and writes each video on its own (see the module docstring).

  Args:
    predictor: a `Predictor`, or a function making one (called at the first
      video to predict: a rerun with every output present loads no model).
    paths: video files; outputs are named by `output_names(paths)`.
    output_dir: where `<name>.json` / `<name>.png` go.
    queries, fps, short_side, jpeg_quality, coarse_secs: as
      `Predictor.predict`.
    top_k: detections drawn in each PNG.
    plot: write the PNGs (without matplotlib: one `warn` line saying what to
      install, then JSON only).
    overwrite: predict videos whose outputs exist too.
    report: progress lines (per video: resolution, written / skipped).
    warn: problem lines (matplotlib missing; "FAILED: <video>: <reason>").

  Returns:
    The `Summary`.

  Raises:
    ValueError: bad queries for the model's task (before any video).
  """
  from unloc_tf import visualize  # noqa: PLC0415

  if plot and visualize.matplotlib_missing():
    warn(f"no timeline PNGs: {visualize.matplotlib_missing()}; or pass"
         " --noplot")
    plot = False
  summary = Summary()
  model = predictor if isinstance(predictor, predictor_lib.Predictor) else None
  for path, name in zip(paths, videos_lib.output_names(paths)):
    outputs = output_paths(output_dir, name, plot)
    if not overwrite and all(os.path.exists(p) for p in outputs):
      summary.skipped.append(path)
      report(f"{path}: skipped, outputs exist ({outputs[0]}; --overwrite"
             " redoes it)")
      continue
    if model is None:
      model = predictor()
    queries = model.check_queries(queries)  # raises before any video
    try:
      [result] = model.predict([path], names=[name], queries=queries,
                               fps=fps, short_side=short_side,
                               jpeg_quality=jpeg_quality,
                               coarse_secs=coarse_secs, report=report)
      json_path, png_path = write_outputs(output_dir, result, top_k, plot)
    except _VIDEO_ERRORS as e:
      reason = _reason(path, e)
      summary.failed.append((path, reason))
      warn(f"FAILED: {path}: {reason}")
      continue
    summary.done.append(path)
    report(f"{path}: {len(result['detections'])} detections -> {json_path}"
           + (f", {png_path}" if png_path else ""))
  return summary
