"""The README's two set-up commands: present, and the test one is CI's."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(*parts):
  with open(os.path.join(ROOT, *parts)) as f:
    return f.read()


def _code_blocks(text):
  return re.findall(r"```\n(.*?)\n```", text, re.S)


def test_readme_has_exactly_two_setup_commands():
  section = _read("README.md").split("## Set-up commands", 1)[1]
  section = section.split("\n## ", 1)[0]
  blocks = _code_blocks(section)
  assert len(blocks) == 2, blocks
  main_job, tests = blocks
  assert main_job.startswith("pip install") and "tools/main_job.py" in main_job
  assert tests.startswith("pip install") and "pytest" in tests


def test_ci_runs_the_readme_test_command():
  section = _read("README.md").split("## Set-up commands", 1)[1]
  test_command = _code_blocks(section)[1].strip()
  ci_lines = [l.strip() for l in _read(".ci", "run").splitlines()
              if l.strip() and not l.strip().startswith("#")]
  assert test_command in ci_lines
