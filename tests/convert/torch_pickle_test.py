"""unloc_tf/convert/torch_pickle.py: malicious pickles are refused before
anything they name runs, and the conversion writes nothing."""

from __future__ import annotations

import io
import os
import pickletools
import shutil
import struct
import zipfile

import pytest

from tests.convert.clip_helpers import FIXTURE, MARKER, PT_HEADS
from unloc_tf.convert import clip, torch_pickle


def _unicode(text):
  data = text.encode()
  return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _write_malicious_legacy(path):
  # Hand-written protocol-0 pickle: builtins.eval("open(MARKER, 'w')").
  body = b"cbuiltins\neval\n(V" + f"open('{MARKER}', 'w')".encode() + b"\ntR."
  path.write_bytes(body)
  return body


def _write_malicious_script(path):
  # A TorchScript-shaped zip (code/ present, so __torch__ classes are
  # allowed as inert records) whose module state smuggles builtins.exec.
  body = (b"\x80\x02c__torch__\nCLIP\n)\x81}(" + _unicode("visual")
          + b"cbuiltins\nexec\n" + _unicode(f"open('{MARKER}', 'w')")
          + b"\x85Rub.")
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("m/data.pkl", body)
    z.writestr("m/code/__torch__.py", "")
    z.writestr("m/constants.pkl", b"\x80\x02).")
  return body


@pytest.mark.parametrize("kind,global_name", [
    ("fixture_zip", "posix.system"),
    ("legacy_eval", "builtins.eval"),
    ("torchscript_exec", "builtins.exec"),
])
def test_malicious_pickle_refused(tmp_path, monkeypatch, kind, global_name):
  monkeypatch.chdir(tmp_path)  # the payloads write into the cwd
  path = tmp_path / "evil.pt"
  if kind == "fixture_zip":
    shutil.copyfile(os.path.join(FIXTURE, "malicious.pt"), path)
    with zipfile.ZipFile(path) as z:
      body = z.read("malicious/data.pkl")
  elif kind == "legacy_eval":
    body = _write_malicious_legacy(path)
  else:
    body = _write_malicious_script(path)
  # A well-formed pickle that plain pickle.load would run (disassembled
  # here, never loaded).
  listing = io.StringIO()
  pickletools.dis(body, out=listing)
  assert global_name.replace(".", " ") in listing.getvalue()
  with pytest.raises(torch_pickle.UnsafePickleError) as e:
    clip.convert(str(path), str(tmp_path / "out"), **PT_HEADS)
  assert e.value.global_name == global_name
  assert f"'{global_name}'" in str(e.value) and "evil.pt" in str(e.value)
  assert not (tmp_path / MARKER).exists()
  assert not (tmp_path / "out").exists()
