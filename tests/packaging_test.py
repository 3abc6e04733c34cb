"""setup.py ships the gin configs, the vocabulary and the tools' console
scripts."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

from unloc_tf.launch import config_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_files_find_by_name():
  path = config_files.find("datasets/synthetic")
  assert path.endswith(os.path.join("gin", "datasets", "synthetic.gin"))
  assert config_files.find(path) == path
  assert "datasets/synthetic.gin" in config_files.list_configs()
  with pytest.raises(FileNotFoundError, match="not found"):
    config_files.find("datasets/no_such_dataset")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  out = tmp_path_factory.mktemp("wheel")
  subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps",
       "--no-build-isolation", "-q", "-w", str(out), ROOT],
      check=True, capture_output=True)
  [name] = [f for f in os.listdir(out) if f.endswith(".whl")]
  return zipfile.ZipFile(os.path.join(out, name))


def test_wheel_contents(wheel):
  names = set(wheel.namelist())
  assert "unloc_tf/gin_configs/datasets/synthetic.gin" in names
  assert "unloc_tf/data/assets/bpe_simple_vocab_16e6.txt.gz" in names
  assert "unloc_tf/data/assets/LICENSE_clip_vocabulary.txt" in names
  assert "unloc_tf_tools/make_synthetic.py" in names
  assert "unloc_tf_tools/main_job.py" in names
  assert not any(n.startswith("unloc_tf/tools/") for n in names)
  entry = [n for n in names if n.endswith("entry_points.txt")]
  text = wheel.read(entry[0]).decode()
  assert "unloc-make-synthetic = unloc_tf_tools.make_synthetic:run" in text
  assert not any(n.startswith("tests/") for n in names)


def test_installed_layout_finds_configs(wheel, tmp_path):
  """After pip install, configs are found inside the package."""
  wheel.extractall(tmp_path)
  code = ("import sys; sys.path.insert(0, %r); "
          "from unloc_tf.launch import config_files; "
          "print(config_files.find('datasets/synthetic'))" % str(tmp_path))
  out = subprocess.run([sys.executable, "-c", code], check=True,
                       capture_output=True, text=True, cwd=str(tmp_path))
  assert out.stdout.strip() == str(
      tmp_path / "unloc_tf" / "gin_configs" / "datasets" / "synthetic.gin")


def test_installed_console_script_runs(wheel, tmp_path):
  """A console script's module runs from the installed layout alone."""
  wheel.extractall(tmp_path)
  entry = [n for n in wheel.namelist() if n.endswith("entry_points.txt")]
  line = next(ln for ln in wheel.read(entry[0]).decode().splitlines()
              if ln.startswith("unloc-make-zero-shot-splits"))
  module = line.split("=", 1)[1].strip().split(":")[0]
  classes = tmp_path / "classes.txt"
  classes.write_text("jump\nrun\nswim\nsit\n")
  output = tmp_path / "splits.json"
  out = subprocess.run(
      [sys.executable, "-m", module, f"--class_list={classes}",
       f"--output={output}", "--num_splits=2"], capture_output=True,
      text=True, cwd=str(tmp_path),
      env=dict(os.environ, PYTHONPATH=str(tmp_path)))
  assert out.returncode == 0, out.stderr
  assert len(json.load(open(output))["splits"]) == 2


def test_repo_gin_folder_does_not_shadow_gin_config():
  """gin/ holds configs, not a package: `import gin` must be gin-config."""
  out = subprocess.run([sys.executable, "-c",
                        "import gin; print(hasattr(gin, 'parse_config'))"],
                       cwd=ROOT, capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "True"
  assert not os.path.exists(os.path.join(ROOT, "gin", "__init__.py"))
