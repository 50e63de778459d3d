"""A training workdir belongs to one run at a time (magjax/workdir_lock.py)."""
import json
import os
import socket
import subprocess
import sys

import pytest

import train_helpers
from magjax import workdir_lock
from magjax.training import train as train_lib
from magjax_common.errors import UserError


def _dead_pid():
  proc = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True)
  return int(proc.stdout)


def _write_holder(workdir, **fields):
  os.makedirs(workdir, exist_ok=True)
  holder = {'host': socket.gethostname(), 'pid': _dead_pid(),
            'start': '2026-12-01T00:00:00+00:00', 'command': 'train.py old'}
  holder.update(fields)
  with open(os.path.join(workdir, workdir_lock.LOCK_NAME), 'w',
            encoding='utf-8') as f:
    json.dump(holder, f)
  return holder


def test_a_second_holder_is_refused_with_the_first_named(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lock.WorkdirLock(workdir):
    with open(os.path.join(workdir, workdir_lock.LOCK_NAME),
              encoding='utf-8') as f:
      holder = json.load(f)
    assert holder['pid'] == os.getpid()
    assert holder['host'] == socket.gethostname()
    with pytest.raises(UserError) as info:
      workdir_lock.WorkdirLock(workdir).acquire()
    message = str(info.value)
    assert 'is in use by' in message and f'pid {os.getpid()}' in message
    assert socket.gethostname() in message and holder['start'] in message
    assert '\n' not in message
  # released: the file is gone and the workdir can be locked again
  assert not os.path.exists(os.path.join(workdir, workdir_lock.LOCK_NAME))
  with workdir_lock.WorkdirLock(workdir) as lock:
    assert lock.took_over is None


def test_the_lock_of_a_killed_run_on_this_host_is_taken_over(tmp_path):
  workdir = str(tmp_path / 'run')
  old = _write_holder(workdir)
  with workdir_lock.WorkdirLock(workdir) as lock:
    assert lock.took_over == old
    with open(lock.path, encoding='utf-8') as f:
      assert json.load(f)['pid'] == os.getpid()


def test_a_lock_from_another_host_is_reported_not_broken(tmp_path):
  workdir = str(tmp_path / 'run')
  _write_holder(workdir, host='node-17', pid=4242)
  with pytest.raises(UserError, match='node-17.*another host.*remove'):
    workdir_lock.WorkdirLock(workdir).acquire()
  with open(os.path.join(workdir, workdir_lock.LOCK_NAME),
            encoding='utf-8') as f:
    assert json.load(f)['host'] == 'node-17'  # left as it was


def test_other_processes_of_a_multi_host_run_take_no_lock(tmp_path):
  workdir = str(tmp_path / 'run')
  with workdir_lock.WorkdirLock(workdir):
    with workdir_lock.WorkdirLock(workdir, enabled=False):
      pass  # process k > 0 of the same run


def test_training_on_a_workdir_in_use_stops_with_one_line(tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  config = train_helpers.load_config('rhp', 'tiny')
  with workdir_lock.WorkdirLock(workdir):
    rc = train_lib.run(config, workdir, train_helpers.memory_source())
  assert rc == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: ') and 'in use by' in (
      err[0])
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))


def test_a_lock_the_disk_will_not_take_is_one_line_and_nothing_held(
    tmp_path, monkeypatch):
  def full(*args):
    del args
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(os, 'pwrite', full)
  lock = workdir_lock.WorkdirLock(str(tmp_path))
  with pytest.raises(UserError) as info:
    lock.acquire()
  assert str(info.value) == (f'cannot write the run lock {lock.path}: '
                             'No space left on device')
  assert info.value.exit_code == 3
  assert not os.path.exists(lock.path)
