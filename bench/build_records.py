"""Record builder throughput: 480p 30 fps video converted at 10 fps.

Writes one synthetic 1-minute 854x480 30 fps h264 video with PyAV (a
scrolling colour texture, moving squares and noise), copies
it to `--videos` files listed in an ActivityNet 1.3 JSON, and converts them
(`unloc_tf.datasets.builder.convert`, as tools/build_records.py: --fps=10
--short_side=256, JPEG quality 90) with 1 worker (in-process) and 2 worker
processes, then on Apache Beam's local runner
(`unloc_tf.datasets.beam_conversion`, --beam_pipeline_options=
direct_num_workers=1 / 2: in-process / 2 SDK worker processes), checking
that its shards are byte-identical to the multiprocess path's.  Also times decode + resize alone
(`unloc_tf.data.video.VideoReader`, no JPEG).

Rows: stored frames converted per second (frames_per_s), seconds of video
per second (video_s_per_s), wall time, CPU time (main + workers, user +
system: unlike the wall time, independent of other jobs on the machine) and
peak RSS in MiB: of the main process (`getrusage`, cumulative: rows run in
order), of the largest worker process and of main + workers (both sampled
from /proc every 0.1 s).  The 2-worker row includes starting the workers
(each imports TensorFlow: about 4 s of CPU and 0.6 GB of RSS).

Run: python bench/build_records.py [--videos 4 --seconds 60]
"""

from __future__ import annotations

import argparse
import fractions
import json
import os
import resource
import shutil
import sys
import tempfile
import threading

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import common  # noqa: E402
from unloc_tf.data import video as video_io  # noqa: E402
from unloc_tf.datasets import beam_conversion, builder  # noqa: E402
from unloc_tf.launch import cli  # noqa: E402

WIDTH, HEIGHT, SOURCE_FPS, FPS = 854, 480, 30, 10.0


def write_video(path: str, seconds: float, seed: int = 0) -> None:
  """A 854x480 30 fps h264 (veryfast, crf 23) video: a scrolling colour
  texture, moving squares and per-frame noise."""
  import av  # pylint: disable=g-import-not-at-top

  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:HEIGHT, 0:2 * WIDTH].astype(np.float32)
  texture = np.stack([128 + 90 * np.sin(xx / 60 + yy / 90),
                      128 + 90 * np.sin(yy / 45 - xx / 130),
                      128 + 90 * np.sin((xx + yy) / 80)], -1).astype(np.uint8)
  noise = rng.integers(0, 24, size=(8, HEIGHT, WIDTH, 1), dtype=np.uint8)
  with av.open(path, "w") as container:
    stream = container.add_stream("libx264", rate=fractions.Fraction(
        SOURCE_FPS))
    stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    stream.options = {"crf": "23", "preset": "veryfast"}
    for i in range(int(seconds * SOURCE_FPS)):
      t = i / SOURCE_FPS
      offset = (3 * i) % WIDTH
      frame = texture[:, offset:offset + WIDTH] // 2 * 2 + noise[i % 8]
      for k in range(6):  # moving squares
        x = int((WIDTH - 80) * (0.5 + 0.5 * np.sin(0.4 * t + k)))
        y = int((HEIGHT - 80) * (0.5 + 0.5 * np.cos(0.3 * t + 2 * k)))
        frame[y:y + 80, x:x + 80] = (40 * k) % 255
      av_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
      for packet in stream.encode(av_frame):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def _read(path: str) -> bytes:
  with open(path, "rb") as f:
    return f.read()


def _cpu_seconds() -> float:
  """CPU time (user + system) of this process and its finished children."""
  own = resource.getrusage(resource.RUSAGE_SELF)
  kids = resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class RssSampler:
  """Polls /proc (every 0.1 s, in a thread) for the RSS of this process's
  descendants: the peak of the largest one and of main + descendants.

  (`getrusage(RUSAGE_CHILDREN)` is no use here: a fork-exec'd child inherits
  the parent's RSS high-water mark.)
  """

  def __init__(self):
    self.peak_child_mib = 0.0
    self.peak_total_mib = 0.0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  @staticmethod
  def _rss_mib(pid) -> float:
    try:
      with open(f"/proc/{pid}/status") as f:
        for line in f:
          if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    except OSError:
      pass
    return 0.0

  def _children(self):
    """Every descendant (Beam's SDK workers are grandchildren)."""
    parents = {}
    for pid in os.listdir("/proc"):
      if not pid.isdigit():
        continue
      try:
        with open(f"/proc/{pid}/stat") as f:
          parents[pid] = f.read().rsplit(")", 1)[1].split()[1]
      except (OSError, IndexError, ValueError):
        continue
    family = {str(os.getpid())}
    grew = True
    while grew:
      kids = {p for p, pp in parents.items() if pp in family} - family
      grew = bool(kids)
      family |= kids
    family.discard(str(os.getpid()))
    return family

  def _run(self):
    while not self._stop.is_set():
      kids = [self._rss_mib(p) for p in self._children()]
      self.peak_child_mib = max([self.peak_child_mib, *kids])
      self.peak_total_mib = max(self.peak_total_mib,
                                self._rss_mib("self") + sum(kids))
      self._stop.wait(0.1)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def _row(mode: str, workers: int, report: dict, args, seconds: float,
         cpu: float, rss: RssSampler) -> dict:
  """One conversion's row (every video must have converted)."""
  frames = report["written"]["frames"]
  assert report["written"]["videos"] == args.videos, report["issues"]
  return {"mode": mode, "workers": workers, "videos": args.videos,
          "frames": frames, "seconds": seconds,
          "frames_per_s": frames / seconds,
          "video_s_per_s": args.videos * args.seconds / seconds,
          "cpu_s": cpu, "cpu_ms_per_frame": 1000 * cpu / frames,
          "main_rss_mib": common.peak_rss_mib(),
          "worker_rss_mib": rss.peak_child_mib,
          "total_rss_mib": rss.peak_total_mib}


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--videos", type=int, default=4)
  parser.add_argument("--seconds", type=float, default=60.0)
  parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
  parser.add_argument("--beam_workers", type=int, nargs="*", default=[1, 2],
                      help="Beam rows (direct_num_workers; needs the beam"
                           " extra; none: --beam_workers with no value)")
  args = parser.parse_args()
  tmp = tempfile.mkdtemp(prefix="unloc_bench_records_")
  try:
    videos = os.path.join(tmp, "videos")
    os.makedirs(videos)
    first = os.path.join(videos, "vid000.mp4")
    with common.Timer() as t:
      write_video(first, args.seconds)
    print(f"wrote a {args.seconds:.0f} s {WIDTH}x{HEIGHT} {SOURCE_FPS} fps"
          f" video ({os.path.getsize(first) / 2**20:.1f} MiB) in"
          f" {t.seconds:.1f} s")
    database = {}
    for v in range(args.videos):
      vid = f"vid{v:03d}"
      if v:
        shutil.copyfile(first, os.path.join(videos, vid + ".mp4"))
      database[vid] = {"subset": "validation", "duration": args.seconds,
                       "annotations": [{"segment": [5.0, 25.0],
                                        "label": "juggling"}]}
    ann = os.path.join(tmp, "gt.json")
    with open(ann, "w") as f:
      json.dump({"version": "VERSION 1.3", "database": database}, f)

    rows = []
    cpu0 = _cpu_seconds()
    with common.Timer() as t:
      n = sum(1 for _ in video_io.VideoReader(first, FPS, 256))
    cpu = _cpu_seconds() - cpu0
    rows.append({"mode": "decode+resize only", "workers": 1, "videos": 1,
                 "frames": n, "seconds": t.seconds,
                 "frames_per_s": n / t.seconds,
                 "video_s_per_s": args.seconds / t.seconds,
                 "cpu_s": cpu, "cpu_ms_per_frame": 1000 * cpu / n,
                 "main_rss_mib": common.peak_rss_mib(),
                 "worker_rss_mib": 0.0, "total_rss_mib": common.peak_rss_mib()})
    for workers in args.workers:
      opts = builder.Options(
          "activitynet", ann, videos, os.path.join(tmp, f"out{workers}"),
          split="val", fps=FPS, short_side=256, num_shards=args.videos,
          num_workers=workers, progress=False)
      cpu0 = _cpu_seconds()
      with RssSampler() as rss, common.Timer() as t:
        report = builder.convert(opts)
      cpu = _cpu_seconds() - cpu0
      size = sum(os.path.getsize(os.path.join(opts.output_dir, s))
                 for s in report["shards"])
      rows.append(_row(f"convert ({size / 2**20:.0f} MiB out)", workers,
                       report, args, t.seconds, cpu, rss))
    for workers in args.beam_workers:
      opts = builder.Options(
          "activitynet", ann, videos, os.path.join(tmp, f"beam{workers}"),
          split="val", fps=FPS, short_side=256, num_shards=args.videos,
          progress=False)
      cpu0 = _cpu_seconds()
      with cli.quiet_worker_processes([]), RssSampler() as rss, \
          common.Timer() as t:
        report = beam_conversion.convert_with_beam(
            opts, f"direct_num_workers={workers}")
      cpu = _cpu_seconds() - cpu0
      same = None
      if args.workers:  # byte-identical to the multiprocess path's shards
        ref = os.path.join(tmp, f"out{args.workers[0]}")
        same = all(_read(os.path.join(ref, s)) == _read(
            os.path.join(opts.output_dir, s)) for s in report["shards"])
        assert same, "Beam shards differ from the multiprocess path's"
      rows.append(dict(_row(
          "convert on Beam (FnApiRunner"
          f"{', processes' if workers > 1 else ''})", workers, report, args,
          t.seconds, cpu, rss), same_bytes=same))
    common.report("build_records", rows, {
        "source": f"{WIDTH}x{HEIGHT} {SOURCE_FPS} fps h264",
        "fps": FPS, "short_side": 256, "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2)})
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
  main()
