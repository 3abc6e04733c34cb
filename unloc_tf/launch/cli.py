"""What every tool does around its `main`: a quiet TensorFlow start and one
line for a user's mistake (and quiet Beam worker processes,
`quiet_worker_processes`).

    from unloc_tf.launch import cli
    cli.import_tensorflow_quietly()   # before anything imports TensorFlow
    ...
    def run():
      cli.run(main)

`import_tensorflow_quietly` keeps TensorFlow's C++ log (oneDNN notices,
"Could not find cuda drivers", `failed call to cuInit` on a CPU-only
machine, CPU-feature banners, oneDNN's int64 advice at ERROR level) off the
terminal, unless the user asks for it with `TF_CPP_MIN_LOG_LEVEL=0` (or 1)
or `--verbosity=1`: start-up lines are filtered (any other one still
reaches stderr) and later ones are below TF_CPP_MIN_LOG_LEVEL=3 (unless the
user set the variable).  `run` turns the errors a user can fix (a missing
file or record, a bad binding, a shard that does not read, a wrong value)
into `<tool>: error: <message>` and exit status 1; `--verbosity=1` shows the
traceback instead.  This module imports neither TensorFlow nor gin.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from typing import Callable, Iterator

from absl import app, flags

# TensorFlow's own start-up lines: absl INFO / WARNING records, the banner
# absl prints before its logger is initialised, the CPU-feature advice, and
# the CUDA probes that fail on a machine without a GPU.
_STARTUP_NOISE = re.compile(
    r"^(?:[IW]\d{4} "
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|To enable the following instructions"
    r"|E\d{4} .*(?:cuInit|cuda_diagnostics|cuda_dnn|cuda_fft|cuda_blas"
    r"|Unable to register cu|computation placer already registered))")
_GIN_CONTEXT = re.compile(r"^\s*In call to configurable ")


def _wants_tensorflow_log(argv) -> bool:
  level = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
  if level is not None and level.strip() in ("0", "1"):
    return True
  return _verbose(argv)


def _verbose(argv) -> bool:
  """--verbosity >= 1 (or -v) among the arguments, read before absl parses
  them (TensorFlow may be imported before `app.run`)."""
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith(("--verbosity=", "-v=")):
      value = arg.split("=", 1)[1]
    elif arg in ("--verbosity", "-v") and i + 1 < len(argv):
      value = argv[i + 1]
    if value is not None:
      try:
        return int(value) >= 1
      except ValueError:
        return False
  return False


def import_tensorflow_quietly(argv=None) -> None:
  """Imports TensorFlow with its start-up noise filtered from stderr (see
  the module docstring); a no-op once TensorFlow is imported."""
  argv = sys.argv if argv is None else argv
  if "tensorflow" in sys.modules:
    return
  if _wants_tensorflow_log(argv):
    import tensorflow  # noqa: F401, PLC0415
    return
  # 3: also TensorFlow's C++ ERROR lines that are advice, not failures
  # (e.g. oneDNN's "supports DT_INT64 only on platforms with AVX-512");
  # a real failure still raises, and --verbosity=1 shows the log.
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      import tensorflow as tf  # noqa: PLC0415

      tf.config.list_physical_devices()  # the CUDA probe logs here
    finally:
      os.dup2(saved, 2)
      os.close(saved)
      captured.seek(0)
      kept = [line for line in captured.read().decode(
          "utf-8", "replace").splitlines() if not _STARTUP_NOISE.match(line)]
  if kept:
    print("\n".join(kept), file=sys.stderr)


def _user_error_types() -> tuple:
  types = [ValueError, OSError, SyntaxError, ImportError, flags.Error]
  tf = sys.modules.get("tensorflow")
  if tf is not None:
    types += [tf.errors.NotFoundError, tf.errors.DataLossError,
              tf.errors.InvalidArgumentError,
              tf.errors.FailedPreconditionError,
              tf.errors.PermissionDeniedError]
  return tuple(types)


def one_line(error: BaseException) -> str:
  """The error's message on one line, without gin's "In call to
  configurable" context and TensorFlow's op names."""
  message = getattr(error, "message", None) or str(error) or repr(error)
  lines = [ln.strip() for ln in str(message).splitlines()
           if ln.strip() and not _GIN_CONTEXT.match(ln)]
  text = " ".join(lines)
  return re.sub(r"\s*\[\[\{\{node .*$", "", text)


def run(main: Callable, program: str = "") -> None:
  """`absl.app.run(main)`, with a user's mistake reported in one line and
  exit status 1 (the traceback with --verbosity=1)."""
  program = program or os.path.basename(sys.argv[0]) or "unloc"

  def guarded(argv):
    try:
      return main(argv)
    except _user_error_types() as error:  # noqa: BLE001
      if flags.FLAGS.verbosity >= 1:
        raise
      print(f"{program}: error: {one_line(error)}"
            "  (--verbosity=1 shows the traceback)", file=sys.stderr)
      sys.exit(1)

  app.run(guarded)


# What Apache Beam's local worker processes print as they start, in Python
# logging's default format (their harness logs errors only once running):
# missing Google Cloud connectors, no semi-persistent directory, ...
_WORKER_NOISE = re.compile(
    r"^(?:INFO|WARNING):(?:__main__|root|apache_beam[.\w]*):")


@contextlib.contextmanager
def quiet_worker_processes(argv=None) -> Iterator[None]:
  """Filters the start-up noise of worker processes that write to this
  process's stderr (Beam's local runner) while the block runs: TensorFlow's
  start-up lines and Beam's own (`_WORKER_NOISE`); every other line passes.
  A no-op with --verbosity >= 1 or TF_CPP_MIN_LOG_LEVEL=0/1."""
  argv = sys.argv if argv is None else argv
  if _wants_tensorflow_log(argv):
    yield
    return
  sys.stderr.flush()
  saved = os.dup(2)
  read_end, write_end = os.pipe()
  os.dup2(write_end, 2)
  os.close(write_end)

  def forward():
    with os.fdopen(read_end, "rb") as lines:
      for line in lines:
        text = line.decode("utf-8", "replace")
        if not (_STARTUP_NOISE.match(text) or _WORKER_NOISE.match(text)):
          os.write(saved, line)

  thread = threading.Thread(target=forward, daemon=True)
  thread.start()
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)  # closes this process's end of the pipe
    # Workers still holding the pipe keep it open: do not wait for them.
    thread.join(timeout=5)
