"""Tools as a user runs them: a mistake is one line and exit status 1, the
traceback only with --verbosity=1, and TensorFlow's start-up log stays off
the terminal."""

import os
import subprocess
import sys

import pytest

from unloc_tf.launch import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))


def _tool(name, *args, env=None):
  environ = {k: v for k, v in os.environ.items()
             if k != "TF_CPP_MIN_LOG_LEVEL"}
  environ.update(env or {})
  return subprocess.run(
      [sys.executable, os.path.join(ROOT, "tools", name), *args],
      capture_output=True, text=True, env=environ, timeout=300, check=False)


def test_a_mistake_is_one_line_without_startup_noise(tmp_path):
  run = _tool("train.py", "--gin_file=experiments/synthetic_tal",
              "--gin_bindings=TRAIN_STEP=3", f"--workdir={tmp_path}/w")
  assert run.returncode == 1
  lines = run.stderr.strip().splitlines()
  assert lines == ["train.py: error: unknown macro TRAIN_STEP (did you mean"
                   " TRAIN_STEPS?): no config reads --gin_bindings"
                   " TRAIN_STEP  (--verbosity=1 shows the traceback)"], (
                       run.stderr)


def test_verbosity_shows_the_traceback(tmp_path):
  run = _tool("evaluate.py", "--gin_file=experiments/synthetic_tal",
              f"--gin_bindings=DATA_DIR='{tmp_path}'",
              f"--workdir={tmp_path}/w", "--verbosity=1")
  assert run.returncode != 0
  assert "Traceback (most recent call last)" in run.stderr
  assert "FileNotFoundError: workdir" in run.stderr


def test_a_bug_is_not_hidden():
  """Only a user's kind of error is shortened: others keep the traceback."""
  assert KeyError not in cli._user_error_types()  # noqa: SLF001
  assert TypeError not in cli._user_error_types()  # noqa: SLF001


def test_one_line_drops_gin_context_and_op_names():
  error = ValueError("no class list at /d/classes.txt: bind NUM_CLASSES\n"
                     "  In call to configurable 'count_class_names' (<f>)")
  assert cli.one_line(error) == ("no class list at /d/classes.txt: bind"
                                 " NUM_CLASSES")
  assert cli.one_line(ValueError("a\nb [[{{node IteratorGetNext}}]]")) == (
      "a b")


@pytest.mark.parametrize("argv,verbose", [
    (["t"], False), (["t", "--verbosity=1"], True), (["t", "-v", "2"], True),
    (["t", "--verbosity=0"], False), (["t", "--verbosity", "x"], False)])
def test_verbosity_is_read_before_absl_parses(argv, verbose):
  assert cli._verbose(argv) is verbose  # noqa: SLF001


def test_startup_noise_is_filtered_and_other_lines_kept():
  noise = ["WARNING: All log messages before absl::InitializeLog() is called"
           " are written to STDERR",
           "I0000 00:00:1796678545.716576    6457 port.cc:153] oneDNN custom"
           " operations are on.",
           "E0000 00:00:1796679136.589080   18966 cuda_platform.cc:52] failed"
           " call to cuInit: INTERNAL: CUDA error: UNKNOWN ERROR (303)",
           "To enable the following instructions: AVX2 AVX512F FMA, in other"
           " operations, rebuild TensorFlow"]
  for line in noise:
    assert cli._STARTUP_NOISE.match(line), line  # noqa: SLF001
  assert not cli._STARTUP_NOISE.match(  # noqa: SLF001
      "E0000 00:00:1.0 1 op_kernel.cc:1] OOM when allocating tensor")


def test_importing_tensorflow_is_quiet_by_default():
  code = ("import sys; from unloc_tf.launch import cli;"
          " cli.import_tensorflow_quietly(['x']); print('ok')")
  quiet = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, cwd=ROOT, timeout=300, check=True,
                         env={k: v for k, v in os.environ.items()
                              if k != "TF_CPP_MIN_LOG_LEVEL"})
  assert quiet.stdout.strip() == "ok"
  assert "InitializeLog" not in quiet.stderr and "I0000" not in quiet.stderr


def test_worker_processes_start_quietly(capfd, monkeypatch):
  """Lines a worker process (Beam's local runner) writes to the inherited
  stderr: its start-up noise is dropped, anything else passes, in order."""
  monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
  lines = ["INFO:__main__:Logging handler created.",
           "WARNING:root:apitools not found, and bigquery client libraries"
           " are not available despite the import not raising an ImportError.",
           "a real problem",
           "WARNING:__main__:No semi_persistent_directory found",
           "I0000 00:00:1796678545.716576    6457 port.cc:153] oneDNN custom"
           " operations are on.",
           "WARNING:absl:a warning of ours"]
  code = f"import sys; sys.stderr.write({chr(10).join(lines)!r} + '\\n')"
  capfd.readouterr()
  with cli.quiet_worker_processes(["t"]):
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
  assert capfd.readouterr().err == "a real problem\nWARNING:absl:a warning" \
      " of ours\n"
  with cli.quiet_worker_processes(["t", "--verbosity=1"]):
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
  assert capfd.readouterr().err == "\n".join(lines) + "\n"
