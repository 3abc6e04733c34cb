"""Timeline plots of predictions against ground truth (the paper's Figure 3).

`plot_timeline` draws one video (temporal action localization /
segmentation) or query (moment retrieval, highlight detection): the GT
segments as green bars on the top row, the top-k predicted segments below
it, best first, coloured by score (with the score written on each bar), time
in seconds on the x axis; with saliency scores (QVHighlights), a second
panel shows the GT saliency (mean of the 3 annotators, per 2-second clip)
and the predicted saliency.  `load_items` reads official files into plot
items (`detect_kind` tells the format from the content), `write_plots`
writes one PNG per item.

Inputs of `load_items`:
  * an ActivityNet results JSON (`{"results": {vid: [{"segment", "label",
    "score"}]}}`): per video, with an ActivityNet GT (official,
    sample_detection_prediction.json or BSN's) or COIN.json;
  * a QVHighlights submission jsonl (`pred_relevant_windows`): per query,
    with a QVHighlights jsonl GT (matched by qid);
  * our candidates jsonl (`formats.write_retrieval_candidates`): per query;
    the GT is in the file, the optional ActivityNet Captions JSON or
    Charades-STA txt (with the Charades csv) only supplies the durations.

Needs matplotlib (in the `[data]` and `[viz]` extras), imported on first use
(importing this module does not need it; `matplotlib_missing` says what
to install); the
figures are drawn with the Agg backend (no display, no pyplot state).
"""

from __future__ import annotations

import functools
import json
import os
import re
import types
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

from unloc_tf.datasets import (
  activitynet,
  activitynet_captions,
  charades_sta,
  coin,
  qvhighlights,
)
from unloc_tf.metrics import formats

GT_COLOR = "#2ca02c"
MATPLOTLIB_MISSING = ("plotting needs matplotlib, which is not installed:"
                      " pip install matplotlib (or pip install"
                      " 'unloc_tf[data]')")
# Bar labels keep this many points from the axes' edges and, to count as
# fitting in their bar, from the bar's ends.
_LABEL_PAD_POINTS = 2.0
QVH_CLIP_SECONDS = qvhighlights.SECS_PER_CLIP


@functools.lru_cache(maxsize=None)
def _mpl() -> types.SimpleNamespace:
  """matplotlib, imported on first use (the `[data]` / `[viz]` extras)."""
  try:
    import matplotlib  # noqa: PLC0415
    from matplotlib import cm, colors  # noqa: PLC0415
    from matplotlib.artist import Artist  # noqa: PLC0415
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
    from matplotlib.figure import Figure  # noqa: PLC0415
  except ImportError as e:  # pragma: no cover - depends on the environment.
    raise ImportError(MATPLOTLIB_MISSING) from e
  # Blues from 30% on, so that low scores stay visible.
  score_cmap = colors.ListedColormap(
      matplotlib.colormaps["Blues"](np.linspace(0.3, 1.0, 256)),
      name="scores")

  class LabelFitter(Artist):
    """Fits the bar labels of an Axes when it is drawn (zorder 2.5: after
    the bars, before the labels), so with the final layout: see
    `_fit_labels`."""

    def __init__(self, labels):
      super().__init__()
      self.labels = labels
      self.set_zorder(2.5)

    def draw(self, renderer):
      _fit_labels(self.axes, self.labels, renderer)

  return types.SimpleNamespace(cm=cm, colors=colors, Figure=Figure,
                               FigureCanvasAgg=FigureCanvasAgg,
                               score_cmap=score_cmap, LabelFitter=LabelFitter)


def matplotlib_missing() -> Optional[str]:
  """None when matplotlib imports, else what to install (one line)."""
  try:
    _mpl()
  except ImportError as e:
    return str(e)
  return None


# ---------------------------------------------------------------------------
# Plotting.
# ---------------------------------------------------------------------------
def _gt_rows(gt_segments: Iterable[Any]) -> list[tuple[float, float, str]]:
  """[s, e] / [s, e, label] / {"segment", "label"} -> (s, e, label)."""
  out = []
  for g in gt_segments:
    if isinstance(g, Mapping):
      s, e = g["segment"]
      label = g.get("label", "")
    else:
      s, e = g[0], g[1]
      label = g[2] if len(g) > 2 else ""
    out.append((float(s), float(e), str(label)))
  return out


def _pred_rows(pred_segments: Iterable[Any]
               ) -> list[tuple[float, float, float, str]]:
  """[s, e, score(, label)] / {"segment", "score", "label"} -> tuples."""
  out = []
  for p in pred_segments:
    if isinstance(p, Mapping):
      s, e = p["segment"]
      score, label = p["score"], p.get("label", "")
    else:
      s, e, score = p[0], p[1], p[2]
      label = p[3] if len(p) > 3 else ""
    out.append((float(s), float(e), float(score), str(label)))
  return out


def _score_norm(scores: Sequence[float],
                score_range: Optional[tuple[float, float]]):
  """The colour scale (a matplotlib Normalize) of the scores."""
  normalize = _mpl().colors.Normalize
  if score_range is not None:
    return normalize(*score_range)
  if not scores or (min(scores) >= 0.0 and max(scores) <= 1.0):
    return normalize(0.0, 1.0)
  lo, hi = min(scores), max(scores)
  return normalize(lo, hi if hi > lo else lo + 1.0)


def _text_color(rgba) -> str:
  r, g, b = rgba[:3]
  return "white" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "black"


def _draw_timeline(ax, duration: Optional[float], gt, preds, title,
                   score_range) -> None:
  ends = [e for _, e, _ in gt] + [e for _, e, _, _ in preds]
  starts = [s for s, _, _ in gt] + [s for s, _, _, _ in preds]
  if duration is None or duration <= 0:
    duration = max(ends + [1.0])
  lo = min(starts + [0.0])
  hi = max(ends + [duration])
  min_width = (hi - lo) * 0.003
  n = len(preds)
  gt_y = n  # GT on top, predictions below (best first).
  ax.set_ylim(-0.6, n + 0.6)
  ax.set_xlim(lo, hi if hi > lo else lo + 1.0)
  for y in range(n + 1):
    ax.broken_barh([(0.0, duration)], (y - 0.42, 0.84),
                   facecolors="#eeeeee", zorder=0)
  if hi > duration:
    ax.axvline(duration, color="grey", linestyle=":", linewidth=1)
  labels = []  # (Text, bar start, bar end, text colour on the bar)
  for s, e, label in gt:
    ax.axvspan(s, e, color=GT_COLOR, alpha=0.08, zorder=0.5, linewidth=0)
    ax.broken_barh([(s, max(e - s, min_width))], (gt_y - 0.4, 0.8),
                   facecolors=GT_COLOR, edgecolor="black", linewidth=0.5,
                   zorder=2)
    if label:
      labels.append((ax.text((s + e) / 2, gt_y, label, ha="center",
                             va="center", fontsize=7, color="white",
                             clip_on=True, zorder=3), s, e, "white"))
  norm = _score_norm([p[2] for p in preds], score_range)
  for rank, (s, e, score, label) in enumerate(preds):
    y = n - 1 - rank
    rgba = _mpl().score_cmap(norm(score))
    ax.broken_barh([(s, max(e - s, min_width))], (y - 0.4, 0.8),
                   facecolors=[rgba], edgecolor="black", linewidth=0.5,
                   zorder=2)
    text = f"{score:.2f}" + (f" {label}" if label else "")
    color = _text_color(rgba)
    labels.append((ax.text((s + e) / 2, y, text, ha="center", va="center",
                           fontsize=7, color=color, clip_on=True, zorder=3),
                   s, e, color))
  if labels:
    ax.add_artist(_mpl().LabelFitter(labels))
  ax.set_yticks(list(range(n + 1)))
  ax.set_yticklabels([f"#{n - y}" for y in range(n)] + ["GT"])
  ax.set_xlabel("time (s)")
  if title:
    ax.set_title(title, fontsize=9)
  if preds:
    mpl = _mpl()
    mappable = mpl.cm.ScalarMappable(norm=norm, cmap=mpl.score_cmap)
    ax.figure.colorbar(mappable, ax=ax, pad=0.01, fraction=0.04,
                       label="score")


def _fit_labels(ax, labels, renderer) -> None:
  """Keeps bar labels inside the axes, where they are not clipped.

  A label is centred on its bar; one that would cross an edge of the axes
  is aligned to that edge instead (`_LABEL_PAD_POINTS` inside).  A label
  wider than its bar is drawn black on a light box (its part outside the bar
  would otherwise be white on the light grey track).  Runs at every draw
  (from `LabelFitter`), so it uses the final layout.

  Args:
    ax: the Axes.
    labels: [(Text, bar start (s), bar end (s), text colour on the bar)].
    renderer: the renderer that draws the figure.
  """
  pad = renderer.points_to_pixels(_LABEL_PAD_POINTS)
  axes_box = ax.get_window_extent(renderer)
  to_data = ax.transData.inverted()
  for text, s, e, color in labels:
    y = text.get_position()[1]
    text.set_position(((s + e) / 2, y))
    text.set_horizontalalignment("center")
    box = text.get_window_extent(renderer)
    bar_x0, bar_x1 = ax.transData.transform([(s, y), (e, y)])[:, 0]
    if box.width + 2 * pad <= abs(bar_x1 - bar_x0):
      text.set_color(color)
      text.set_bbox(None)
    else:
      text.set_color("black")
      text.set_bbox(dict(boxstyle="square,pad=0.1", facecolor="white",
                         edgecolor="none", alpha=0.75))
    if box.x1 > axes_box.x1 - pad:
      text.set_horizontalalignment("right")
      text.set_x(to_data.transform((axes_box.x1 - pad, 0.0))[0])
    elif box.x0 < axes_box.x0 + pad:
      text.set_horizontalalignment("left")
      text.set_x(to_data.transform((axes_box.x0 + pad, 0.0))[0])


def _draw_saliency(ax, duration, gt_saliency, pred_saliency,
                   clip_length) -> None:
  if gt_saliency is not None:
    gt_saliency = np.asarray(gt_saliency, dtype=np.float64)
    ax.bar(np.arange(len(gt_saliency)) * clip_length, gt_saliency,
           width=clip_length, align="edge", color=GT_COLOR, alpha=0.5,
           label="GT saliency")
    ax.set_ylabel("GT", color=GT_COLOR)
  if pred_saliency is not None:
    pred_saliency = np.asarray(pred_saliency, dtype=np.float64)
    ax2 = ax.twinx()
    x = (np.arange(len(pred_saliency)) + 0.5) * clip_length
    ax2.plot(x, pred_saliency, color="#1f4e9c", linewidth=1.2,
             label="predicted saliency")
    ax2.set_ylabel("pred", color="#1f4e9c")
  ax.set_xlabel("time (s)")


def plot_timeline(ax_or_path: Any, duration: Optional[float],
                  gt_segments: Iterable[Any], pred_segments: Iterable[Any],
                  title: Optional[str] = None, *, top_k: Optional[int] = None,
                  gt_saliency: Optional[Sequence[float]] = None,
                  pred_saliency: Optional[Sequence[float]] = None,
                  clip_length: float = QVH_CLIP_SECONDS,
                  score_range: Optional[tuple[float, float]] = None,
                  dpi: int = 100):
  """Draws GT and predicted segments on a timeline.

  Args:
    ax_or_path: a matplotlib Axes to draw into, or a PNG path (the figure
      of `timeline_figure` is saved as `<path>.incomplete` and renamed, so
      the path only ever holds a complete PNG; parent directories are
      created).
    duration: video length in seconds (None: the largest segment end).
    gt_segments: `[s, e]`, `[s, e, label]` or `{"segment", "label"}` items.
    pred_segments: `[s, e, score]`, `[s, e, score, label]` or `{"segment",
      "score", "label"}` items; drawn sorted by score, descending (stable).
    title: the title.
    top_k: keep the k best predictions (None: all).
    gt_saliency: optional per-clip GT saliency (highlight detection).
    pred_saliency: optional per-clip predicted saliency.
    clip_length: seconds per saliency clip (QVHighlights: 2).
    score_range: (low, high) of the colour scale; default [0, 1] when every
      score is in it, else the score range.
    dpi: resolution of a saved PNG.

  Returns:
    The Axes, or the path when a path was given.
  """
  if not isinstance(ax_or_path, (str, os.PathLike)):
    ax = ax_or_path
    gt, preds = _rows(gt_segments, pred_segments, top_k)
    _draw_timeline(ax, duration, gt, preds, title, score_range)
    if gt_saliency is not None or pred_saliency is not None:
      _draw_saliency(ax.twinx(), duration, gt_saliency, pred_saliency,
                     clip_length)
    return ax
  fig = timeline_figure(duration, gt_segments, pred_segments, title,
                        top_k=top_k, gt_saliency=gt_saliency,
                        pred_saliency=pred_saliency, clip_length=clip_length,
                        score_range=score_range, dpi=dpi)
  path = os.fspath(ax_or_path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  tmp = path + ".incomplete"  # a killed run leaves no partial PNG
  fig.savefig(tmp, format="png")
  os.replace(tmp, path)
  return path


def _rows(gt_segments, pred_segments, top_k):
  """(GT rows, the `top_k` best prediction rows, best first)."""
  preds = sorted(_pred_rows(pred_segments), key=lambda p: -p[2])
  if top_k is not None:
    preds = preds[:top_k]
  return _gt_rows(gt_segments), preds


def timeline_figure(duration: Optional[float], gt_segments: Iterable[Any],
                    pred_segments: Iterable[Any],
                    title: Optional[str] = None, *,
                    top_k: Optional[int] = None,
                    gt_saliency: Optional[Sequence[float]] = None,
                    pred_saliency: Optional[Sequence[float]] = None,
                    clip_length: float = QVH_CLIP_SECONDS,
                    score_range: Optional[tuple[float, float]] = None,
                    dpi: int = 100):
  """The matplotlib Figure (Agg canvas, laid out) that `plot_timeline`
  saves; the arguments are `plot_timeline`'s."""
  mpl = _mpl()  # first: no matplotlib, no file
  gt, preds = _rows(gt_segments, pred_segments, top_k)
  saliency = gt_saliency is not None or pred_saliency is not None
  height = 1.2 + 0.32 * (len(preds) + 1) + (1.6 if saliency else 0.0)
  fig = mpl.Figure(figsize=(10.0, height), dpi=dpi)
  mpl.FigureCanvasAgg(fig)
  if saliency:
    grid = fig.add_gridspec(2, 1, height_ratios=[max(len(preds) + 1, 2), 2.2])
    ax = fig.add_subplot(grid[0])
    ax_sal = fig.add_subplot(grid[1], sharex=ax)
    _draw_timeline(ax, duration, gt, preds, title, score_range)
    _draw_saliency(ax_sal, duration, gt_saliency, pred_saliency, clip_length)
    ax.set_xlabel("")
  else:
    ax = fig.add_subplot(1, 1, 1)
    _draw_timeline(ax, duration, gt, preds, title, score_range)
  fig.tight_layout()
  if saliency:  # the same time axis under the timeline (whose colour bar
    # took room from it alone)
    top, bottom = ax.get_position(), ax_sal.get_position()
    ax_sal.set_position([top.x0, bottom.y0, top.width, bottom.height])
  return fig


# ---------------------------------------------------------------------------
# Reading the inputs into plot items.
# ---------------------------------------------------------------------------
def detect_kind(path: str) -> str:
  """The format of a file, from its content.

  Args:
    path: the file.

  Returns:
    One of "activitynet" (GT: official, BSN), "activitynet_results",
    "coin", "activitynet_captions", "charades_sta", "qvhighlights",
    "qvhighlights_predictions", "candidates".

  Raises:
    ValueError: unknown format.
  """
  if path.endswith(".txt"):
    return "charades_sta"
  if path.endswith(".jsonl"):
    with open(path, encoding="utf-8") as f:
      for lineno, line in enumerate(f, 1):
        if line.strip():
          try:
            row = json.loads(line)
          except json.JSONDecodeError as e:
            raise formats.FormatError(path, f"line {lineno}", None,
                                      f"invalid JSON ({e.msg})") from e
          break
      else:
        raise ValueError(f"{path}: empty file")
    if not isinstance(row, dict):
      raise formats.FormatError(path, f"line {lineno}", None,
                                "expected a JSON object")
    if "pred_relevant_windows" in row:
      return "qvhighlights_predictions"
    if "candidates" in row:
      return "candidates"
    if "qid" in row:
      return "qvhighlights"
    raise ValueError(f"{path}: line {lineno}: not a QVHighlights or"
                     f" candidates row (keys {sorted(row)})")
  try:
    with open(path, encoding="utf-8") as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise formats.FormatError(path, f"line {e.lineno}", None,
                              f"invalid JSON ({e.msg})") from e
  layout = formats.activitynet_layout(data)
  if layout == "database":
    entries = list(data["database"].values())
    if entries and isinstance(entries[0], dict) and (
        "annotation" in entries[0] and "annotations" not in entries[0]):
      return "coin"
    return "activitynet"
  if layout == "results":
    return "activitynet_results"
  if layout == "bsn":
    return "activitynet"
  if isinstance(data, dict) and data and all(
      isinstance(v, dict) and "timestamps" in v for v in data.values()):
    return "activitynet_captions"
  raise ValueError(f"{path}: unknown format (expected an ActivityNet, COIN,"
                   " ActivityNet Captions, Charades-STA, QVHighlights or"
                   " candidates file)")


def _safe_name(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _shorten(text: str, n: int = 110) -> str:
  return text if len(text) <= n else text[:n - 1] + "…"


def _qvh_gt_saliency(row: Mapping[str, Any]) -> Optional[np.ndarray]:
  if "relevant_clip_ids" not in row:
    return None
  # As the official eval: int(duration / 2) clips, 0 outside the ids.
  num_clips = int(row["duration"] / QVH_CLIP_SECONDS)
  sal = np.zeros(max([num_clips] + [c + 1 for c in row["relevant_clip_ids"]]))
  for c, scores in zip(row["relevant_clip_ids"], row["saliency_scores"]):
    sal[c] = float(np.mean(scores))
  return sal


def load_items(ground_truth: Optional[str], predictions: str,
               charades_csv: Optional[str] = None) -> list[dict]:
  """Reads GT + predictions into plot items.

  Args:
    ground_truth: GT file (see the module doc); optional for candidates.
    predictions: predictions file.
    charades_csv: Charades csv (video lengths) for a Charades-STA GT.

  Returns:
    `[{"name", "video_id", "title", "duration", "gt", "pred",
    "gt_saliency", "pred_saliency"}]` (`gt`/`pred` in `plot_timeline`'s
    item formats).

  Raises:
    ValueError: unsupported combination of files.
  """
  pred_kind = detect_kind(predictions)
  gt_kind = detect_kind(ground_truth) if ground_truth else None
  items = []
  if pred_kind == "activitynet_results":
    preds = formats.read_activitynet_results(predictions)
    if gt_kind in ("activitynet", "activitynet_results"):
      gt, durations = activitynet.read_activitynet(ground_truth)
    elif gt_kind == "coin":
      entries = coin.read_coin(ground_truth)
      gt = coin.coin_segments(entries)
      durations = {v: e["duration"] for v, e in entries.items()}
    else:
      raise ValueError(f"{predictions} (ActivityNet results) needs"
                       " --ground_truth in the ActivityNet or COIN format,"
                       f" got {gt_kind or 'none'}")
    for vid, anns in gt.items():
      duration = durations.get(vid)
      items.append({
          "name": vid, "video_id": vid,
          "title": vid + (f" ({duration:.1f} s)" if duration else ""),
          "duration": duration, "gt": anns, "pred": preds.get(vid, []),
          "gt_saliency": None, "pred_saliency": None})
  elif pred_kind == "qvhighlights_predictions":
    if gt_kind != "qvhighlights":
      raise ValueError(f"{predictions} (QVHighlights submission) needs"
                       " --ground_truth in the QVHighlights jsonl format, got"
                       f" {gt_kind or 'none'}")
    preds = {r["qid"]: r for r in
             formats.read_qvhighlights_predictions(predictions)}
    for row in qvhighlights.read_qvhighlights(ground_truth):
      pred = preds.get(row["qid"], {})
      items.append({
          "name": f"{row['vid']}_q{row['qid']}", "video_id": row["vid"],
          "title": _shorten(f"{row['vid']} q{row['qid']}: {row['query']}"),
          "duration": float(row["duration"]),
          "gt": row.get("relevant_windows", []),
          "pred": pred.get("pred_relevant_windows", []),
          "gt_saliency": _qvh_gt_saliency(row),
          "pred_saliency": pred.get("pred_saliency_scores")})
  elif pred_kind == "candidates":
    durations = {}
    if gt_kind == "activitynet_captions":
      rows = activitynet_captions.read_activitynet_captions(
          ground_truth, preprocess=None)
      durations = {r["video_id"]: r["duration"] for r in rows}
    elif gt_kind == "charades_sta" and charades_csv:
      durations = charades_sta.read_charades_lengths(charades_csv)
    elif gt_kind not in (None, "charades_sta"):
      raise ValueError(f"{predictions} (candidates): --ground_truth must be"
                       " ActivityNet Captions or Charades-STA, got"
                       f" {gt_kind}")
    for i, row in enumerate(formats.read_retrieval_candidates(predictions)):
      vid = row["video_id"]
      items.append({
          "name": f"{vid}_{i:05d}", "video_id": vid,
          "title": _shorten(f"{vid}: {row['query']}"),
          "duration": row.get("duration") or durations.get(vid),
          "gt": [row["gt"]], "pred": row["candidates"],
          "gt_saliency": None, "pred_saliency": None})
  else:
    raise ValueError(f"{predictions}: {pred_kind} is not a predictions"
                     " format (ActivityNet results JSON, QVHighlights"
                     " submission jsonl or candidates jsonl)")
  return items


def write_plots(items: Sequence[Mapping[str, Any]], output_dir: str,
                top_k: int = 5, video_ids: Optional[Iterable[str]] = None,
                max_plots: int = 0) -> list[str]:
  """Writes one PNG per item; returns the paths.

  Args:
    items: from `load_items`.
    output_dir: where the PNGs go (`<name>.png`).
    top_k: predictions per plot.
    video_ids: only these videos (None: all).
    max_plots: stop after this many (0: no limit).

  Returns:
    The written paths.
  """
  wanted = set(video_ids) if video_ids else None
  paths = []
  for item in items:
    if wanted is not None and item["video_id"] not in wanted:
      continue
    if max_plots and len(paths) >= max_plots:
      break
    path = os.path.join(output_dir, _safe_name(item["name"]) + ".png")
    plot_timeline(path, item["duration"], item["gt"], item["pred"],
                  item["title"], top_k=top_k,
                  gt_saliency=item["gt_saliency"],
                  pred_saliency=item["pred_saliency"])
    paths.append(path)
  return paths
