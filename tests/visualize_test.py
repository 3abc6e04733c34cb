"""unloc_tf.visualize: timeline PNGs and reading official files into plot
items."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")  # An optional dependency.

from matplotlib import image as mpimg  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from unloc_tf import visualize  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("UNLOC_SHARED_DATA",
                      os.path.join(ROOT, "..", "shared", "data"))

GT = [[10.0, 30.0, "Ballet"], [50.0, 55.0, "Ballet"]]
PREDS_A = [[12.0, 29.0, 0.9], [48.0, 56.0, 0.6], [0.0, 100.0, 0.1]]
PREDS_B = [[60.0, 90.0, 0.8], [0.0, 5.0, 0.3], [20.0, 25.0, 0.2]]


def _pixels(path):
  img = mpimg.imread(path)
  assert img.ndim == 3 and img.shape[0] > 50 and img.shape[1] > 200
  return img


def test_plot_timeline_png_depends_on_predictions(tmp_path):
  a = visualize.plot_timeline(str(tmp_path / "a.png"), 100.0, GT, PREDS_A,
                              "video a")
  b = visualize.plot_timeline(str(tmp_path / "sub" / "b.png"), 100.0, GT,
                              PREDS_B, "video a")
  a2 = visualize.plot_timeline(str(tmp_path / "a2.png"), 100.0, GT,
                               PREDS_A[::-1], "video a")
  assert a == str(tmp_path / "a.png")
  assert os.path.getsize(a) > 1000 and os.path.getsize(b) > 1000
  pa, pb, pa2 = _pixels(a), _pixels(b), _pixels(a2)
  assert pa.shape == pb.shape  # Same number of rows.
  assert np.abs(pa - pb).sum() > 100  # Different predictions, other image.
  # Predictions are drawn sorted by score, so input order does not matter.
  np.testing.assert_array_equal(pa, pa2)
  # Not blank: green GT bars and blue prediction bars are both there.
  rgb = pa[..., :3]
  green = (rgb[..., 1] > 0.5) & (rgb[..., 0] < 0.3) & (rgb[..., 2] < 0.3)
  blue = (rgb[..., 2] > 0.5) & (rgb[..., 0] < 0.3)
  assert green.sum() > 100 and blue.sum() > 100


def test_plot_timeline_into_axes_rows_and_top_k():
  fig = Figure(figsize=(8, 3))
  FigureCanvasAgg(fig)
  ax = fig.add_subplot(1, 1, 1)
  preds = [{"segment": [0, 10], "score": 0.2, "label": "x"},
           {"segment": [5, 15], "score": 0.7, "label": "y"},
           {"segment": [1, 2], "score": 0.5, "label": "z"}]
  gt = [{"segment": [4, 16], "label": "y"}]
  out = visualize.plot_timeline(ax, None, gt, preds, "t", top_k=2)
  assert out is ax
  assert [t.get_text() for t in ax.get_yticklabels()] == ["#2", "#1", "GT"]
  texts = sorted(t.get_text() for t in ax.texts)
  assert texts == ["0.50 z", "0.70 y", "y"]  # Score labels; 0.2 is cut.
  assert ax.get_xlim() == (0.0, 16.0)  # No duration: the largest end.
  assert ax.get_title() == "t"


def test_plot_timeline_saliency_panel(tmp_path):
  path = visualize.plot_timeline(
      str(tmp_path / "hd.png"), 20.0, [[4, 10]], [[4, 8, 0.7]], "hd",
      gt_saliency=[0, 0, 3, 4, 2, 0, 0, 0, 0, 0],
      pred_saliency=np.linspace(-1, 1, 10))
  plain = visualize.plot_timeline(str(tmp_path / "mr.png"), 20.0, [[4, 10]],
                                  [[4, 8, 0.7]], "hd")
  assert _pixels(path).shape[0] > _pixels(plain).shape[0]  # Extra panel.


def test_load_items_and_detect_kind_on_real_files():
  qvh = os.path.join(DATA, "qvhighlights")
  if not os.path.isdir(qvh):
    pytest.skip(f"shared data not found at {DATA}")
  items = visualize.load_items(
      os.path.join(qvh, "highlight_val_release.jsonl"),
      os.path.join(qvh, "sample_val_preds.jsonl"))
  assert len(items) == 1550
  first = items[0]
  assert first["name"] == "NUsG9BgSes0_210.0_360.0_q2579"
  assert first["gt"] == [[82, 150]] and len(first["pred"]) == 10
  assert len(first["gt_saliency"]) == 75  # int(150 / 2) clips.
  assert first["gt_saliency"][41] == pytest.approx(4 / 3)
  kinds = {
      "activitynet1.3/sample_detection_prediction.json":
          "activitynet_results",
      "activitynet1.3/bsn_anet_anno_action.json": "activitynet",
      "activitynet_captions/val_1.json": "activitynet_captions",
      "charades_sta/charades_sta_test.txt": "charades_sta",
      "qvhighlights/highlight_test_release.jsonl": "qvhighlights",
      "qvhighlights/sample_val_preds.jsonl": "qvhighlights_predictions",
  }
  for rel, kind in kinds.items():
    assert visualize.detect_kind(os.path.join(DATA, rel)) == kind, rel


def _inside(box, outer):
  return (outer.x0 <= box.x0 and box.x1 <= outer.x1 and outer.y0 <= box.y0
          and box.y1 <= outer.y1)


@pytest.mark.parametrize("saliency", [False, True])
def test_labels_stay_inside_the_image(saliency):
  """Labels of bars at the right and left edges (wider than their bars) are
  moved inside the axes, where they are not clipped; every text is inside
  the figure."""
  preds = [{"segment": [97, 100], "score": 0.9,
            "label": "a rather long class name at the end"},
           {"segment": [0, 1], "score": 0.8,
            "label": "another long class name at the start"},
           {"segment": [30, 70], "score": 0.5, "label": "fits"}]
  gt = [[98, 100, "a long ground-truth label"], [20, 60, "gt"]]
  extra = dict(gt_saliency=[0, 1, 2] * 16) if saliency else {}
  fig = visualize.timeline_figure(100.0, gt, preds, "video.mp4: tal",
                                  **extra)
  fig.canvas.draw()
  renderer = fig.canvas.get_renderer()
  ax = fig.axes[0]
  labels = {t.get_text(): t for t in ax.texts}
  assert set(labels) == {"0.90 a rather long class name at the end",
                         "0.80 another long class name at the start",
                         "0.50 fits", "a long ground-truth label", "gt"}
  for text in labels.values():  # clipped to the axes, so inside them
    assert text.get_clip_on()
    assert _inside(text.get_window_extent(renderer), ax.bbox), text
  texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
  assert len(texts) > 15
  for text in texts:
    assert _inside(text.get_window_extent(renderer), fig.bbox), text
  # Wider than its bar: black on a light box; fitting: the bar's colour.
  wide = labels["0.90 a rather long class name at the end"]
  assert wide.get_color() == "black" and wide.get_bbox_patch() is not None
  assert labels["gt"].get_color() == "white"
  assert labels["gt"].get_bbox_patch() is None
  if saliency:  # the saliency panel keeps the timeline's time axis
    assert fig.axes[1].bbox.x0 == pytest.approx(ax.bbox.x0)
    assert fig.axes[1].bbox.x1 == pytest.approx(ax.bbox.x1)


def test_png_is_written_atomically(tmp_path, monkeypatch):
  """The PNG appears under its name only complete: a save that dies half
  way leaves no file of that name."""
  path = tmp_path / "a.png"

  def fail(self, fname, *args, **kwargs):
    with open(fname, "wb") as f:
      f.write(b"\x89PNG half")
    raise OSError("disk full")

  monkeypatch.setattr(Figure, "savefig", fail)
  with pytest.raises(OSError, match="disk full"):
    visualize.plot_timeline(str(path), 10.0, [], [[1, 2, 0.5]])
  assert not path.exists()
  monkeypatch.undo()
  assert visualize.plot_timeline(str(path), 10.0, [], [[1, 2, 0.5]]) == str(
      path)
  assert os.listdir(tmp_path) == ["a.png"] and _pixels(str(path)).size


def test_imports_without_matplotlib():
  """The library imports matplotlib only to draw: without it, importing
  works and drawing says what to install."""
  code = (
      "import sys\n"
      "sys.modules['matplotlib'] = None\n"  # as if not installed
      "import unloc_tf.predict, unloc_tf.visualize as v\n"
      "print(v.matplotlib_missing())\n"
      "try:\n"
      "  v.plot_timeline('/nonexistent/a.png', 1.0, [], [])\n"
      "except ImportError as e:\n"
      "  print('ImportError', e)\n")
  run = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                       capture_output=True, text=True,
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert run.returncode == 0, run.stderr[-3000:]
  message = ("plotting needs matplotlib, which is not installed: pip install"
             " matplotlib (or pip install 'unloc_tf[data]')")
  assert run.stdout.splitlines() == [message, "ImportError " + message]
