"""A training workdir belongs to one run at a time.

`WorkdirLock(workdir)` is held by training for its whole run:
`<workdir>/run.lock` holds the holder's host, process id, start time and
command line, and the holder keeps an exclusive `fcntl.flock` on it, which
the kernel releases when the process dies however it dies. A second run
meets the lock with one line naming the holder (UserError, exit 2). A lock
file left by a killed run is taken over: on the same host when no live
process holds its flock; the file of a run on another host (shared
storage) is only ever reported, since its process cannot be checked from
here (remove the file once that run is known to be gone). Multi-host runs
hold it once, from process 0. Read-only users (eval.py, predict, the
report) take no lock: checkpoints are committed atomically by orbax.
"""

import datetime
import errno
import fcntl
import json
import os
import socket
import sys

from magjax_common.errors import UserError, WriteError, write_reason

LOCK_NAME = 'run.lock'


def _holder(path):
  try:
    with open(path, encoding='utf-8') as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


def describe(holder):
  return (f"{holder.get('command', 'a run')!r} on {holder.get('host', '?')} "
          f"(pid {holder.get('pid', '?')}, since {holder.get('start', '?')})")


class WorkdirLock:
  """Context manager: the workdir's run lock (see the module docstring)."""

  def __init__(self, workdir, enabled=True):
    self.path = os.path.join(workdir, LOCK_NAME)
    self.enabled = enabled
    self._fd = None
    self.took_over = None  # the stale holder replaced, if any

  def __enter__(self):
    if self.enabled:
      self.acquire()
    return self

  def __exit__(self, *exc):
    self.release()

  def _locked_fd(self):
    """An fd of the lock file holding its flock; the file is re-opened
    when a releasing holder removed it between our open and our lock."""
    for _ in range(5):
      fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except OSError as e:
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES):
          raise UserError(f'{self.path}: cannot lock ({e.strerror})') from e
        raise UserError(f'{os.path.dirname(self.path)} is in use by '
                        f'{describe(_holder(self.path))}: one run per '
                        'workdir') from None
      try:
        if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
          return fd
      except FileNotFoundError:
        pass
      os.close(fd)  # locked a removed file: try the new one
    raise UserError(f'{self.path}: the lock keeps changing hands')

  def acquire(self):
    try:
      os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
    except OSError as e:
      raise WriteError(f'cannot create the workdir {os.path.dirname(self.path)}'
                       f': {write_reason(e)}') from e
    fd = self._locked_fd()
    holder = _holder(self.path)
    host = socket.gethostname()
    if holder and holder.get('host') not in (None, host):
      fcntl.flock(fd, fcntl.LOCK_UN)
      os.close(fd)
      raise UserError(f'{os.path.dirname(self.path)} is in use by '
                      f'{describe(holder)} (another host; if that run is '
                      f'gone, remove {self.path})')
    self.took_over = holder or None
    record = {'host': host, 'pid': os.getpid(),
              'start': datetime.datetime.now(datetime.timezone.utc)
              .isoformat(timespec='seconds'),
              'command': ' '.join(sys.argv) or 'python'}
    try:
      os.ftruncate(fd, 0)
      os.pwrite(fd, (json.dumps(record) + '\n').encode(), 0)
      os.fsync(fd)
    except OSError as e:  # a full disk: nothing started, nothing held
      self._fd = fd
      self.release()
      raise WriteError(f'cannot write the run lock {self.path}: '
                       f'{write_reason(e)}') from e
    self._fd = fd

  def release(self):
    """Removes the lock file and releases the lock (idempotent)."""
    if self._fd is None:
      return
    try:
      os.remove(self.path)
    except OSError:
      pass
    fcntl.flock(self._fd, fcntl.LOCK_UN)
    os.close(self._fd)
    self._fd = None
