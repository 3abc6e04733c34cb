"""Helpers shared by the benchmarks: timing and peak memory."""

from __future__ import annotations

import json
import resource
import sys
import time


def peak_rss_mib() -> float:
  """Peak resident set size of this process, in MiB (Linux: KiB units)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Timer:
  def __enter__(self):
    self.start = time.perf_counter()
    return self

  def __exit__(self, *exc):
    self.seconds = time.perf_counter() - self.start


def report(name: str, rows: list[dict], extra: dict | None = None) -> None:
  """Prints a table and one JSON line (for machines)."""
  if rows:
    keys = list(rows[0])
    widths = [max(len(k), *(len(_fmt(r[k])) for r in rows)) for k in keys]
    print("  ".join(k.ljust(w) for k, w in zip(keys, widths)))
    for r in rows:
      print("  ".join(_fmt(r[k]).ljust(w) for k, w in zip(keys, widths)))
  payload = {"benchmark": name, "rows": rows, **(extra or {}),
             "peak_rss_mib": round(peak_rss_mib(), 1)}
  print("peak RSS: %.0f MiB" % payload["peak_rss_mib"])
  print("JSON " + json.dumps(payload))
  sys.stdout.flush()


def _fmt(v) -> str:
  if isinstance(v, float):
    return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
  return str(v)
