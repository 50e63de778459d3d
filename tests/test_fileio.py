"""Atomic writes: a complete file under its name, or nothing at all."""

import os

import pytest

from magjax_common import fileio


def test_success_writes_the_file_and_leaves_no_tmp(tmp_path):
  path = tmp_path / 'sub' / 'out.bin'
  fileio.write_bytes_atomic(path, b'abc')
  assert path.read_bytes() == b'abc'
  assert os.listdir(path.parent) == ['out.bin']
  assert oct(path.stat().st_mode & 0o777) == oct(0o644)


def test_failure_midway_leaves_neither_file_nor_tmp(tmp_path):
  path = tmp_path / 'out.bin'
  with pytest.raises(RuntimeError):
    with fileio.atomic_write(path) as f:
      f.write(b'half')
      raise RuntimeError('killed')
  assert os.listdir(tmp_path) == []


def test_failure_keeps_the_previous_version(tmp_path):
  path = tmp_path / 'out.bin'
  fileio.write_bytes_atomic(path, b'old')
  with pytest.raises(KeyboardInterrupt):
    with fileio.atomic_write(path) as f:
      f.write(b'new, half written')
      raise KeyboardInterrupt
  assert path.read_bytes() == b'old'
  assert os.listdir(tmp_path) == ['out.bin']
