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


def test_a_set_of_files_changes_together_or_not_at_all(tmp_path, monkeypatch):
  a, b = tmp_path / 'a.json', tmp_path / 'b.md'
  fileio.write_files_atomic({a: b'old a', b: b'old b'})
  calls = []
  real_fsync = os.fsync

  def fsync_fails_second(fd):
    calls.append(fd)
    if len(calls) == 2:
      raise OSError(28, 'No space left on device')
    real_fsync(fd)
  monkeypatch.setattr(os, 'fsync', fsync_fails_second)
  with pytest.raises(fileio.WriteError) as info:
    fileio.write_files_atomic({a: b'new a', b: b'new b'}, 'the results')
  assert str(info.value) == (f'could not write {b}: No space left on device '
                             '(none of the results changed)')
  assert info.value.exit_code == 3
  assert a.read_bytes() == b'old a' and b.read_bytes() == b'old b'
  assert sorted(os.listdir(tmp_path)) == ['a.json', 'b.md']
