"""A full disk under training, evaluation and the report (for
tests/faults/test_disk_faults.py).

  python tests/faults/disk_child.py scenario DISK RESULT.json
  python tests/faults/disk_child.py eval WORKDIR

`scenario` runs, with the workdir on DISK: train :tiny to step 3; fill the
disk to 300 kB free and resume (the step-6 checkpoint cannot be written);
fill it to one page free and resume (the run lock fits, the event file
does not); free it
and resume to the end; evaluate and write a report; fill it and evaluate
and report again. It writes what each run printed and left on disk to
RESULT.json (outside DISK).

DISK is a tmpfs of its own (the test runs this under `unshare -rm` with a
mount, so `fill` leaves a real ENOSPC); with `--rlimit` (no user
namespaces on the machine) DISK is a plain directory and `fill` makes the
children's writes fail with EFBIG past the free bytes (RLIMIT_FSIZE).
`eval` is evaluate.run on the :tiny workdir with an in-memory source.
"""

import glob
import json
import os
import resource
import signal
import subprocess
import sys

FAULTS = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(FAULTS)
ROOT = os.path.dirname(TESTS)
sys.path[:0] = [TESTS, ROOT]

SPEC = {'overrides': {'num_train_steps': 6, 'checkpoint_every_steps': 3,
                      'log_every_steps': 1}}


class Disk:
  """The disk under test: `fill(free)` leaves `free` bytes, `empty()`."""

  def __init__(self, root, rlimit):
    self.root, self.rlimit, self.limit = root, rlimit, None

  def fill(self, free):
    self.empty()
    if self.rlimit:
      self.limit = free
      return
    stat = os.statvfs(self.root)
    room = stat.f_bavail * stat.f_frsize - free
    with open(os.path.join(self.root, 'filler'), 'wb') as f:
      while room > 0:
        chunk = min(room, 1 << 20)
        f.write(b'\0' * chunk)
        room -= chunk

  def empty(self):
    self.limit = None
    if os.path.exists(os.path.join(self.root, 'filler')):
      os.unlink(os.path.join(self.root, 'filler'))

  def run(self, argv, cwd=TESTS):
    """(exit code, output lines) of a child under the disk's limits."""
    limit = self.limit

    def limits():
      if limit is not None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                          timeout=600, preexec_fn=limits, check=False)
    lines = (proc.stdout + proc.stderr).splitlines()
    return proc.returncode, lines


def _train(disk, workdir, overrides=None):
  spec = json.loads(json.dumps(SPEC))
  spec['overrides'].update(overrides or {})
  return disk.run([sys.executable, os.path.join(TESTS, 'train_child.py'),
                   workdir, json.dumps(spec)])


def _files(directory):
  """{relative path: bytes} of every file under `directory`."""
  out = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, directory)] = f.read()
  return out


def _run_record(code, lines):
  errors = [i for i, line in enumerate(lines) if line.startswith('error:')]
  return {'code': code, 'errors': [lines[i] for i in errors],
          'after_error': lines[errors[0] + 1:] if errors else [],
          'tracebacks': sum('Traceback' in line for line in lines),
          'tail': lines[-5:]}


def scenario(root, result_path, rlimit):
  from magjax import checkpoints  # pylint: disable=g-import-not-at-top
  from magjax.training import tb  # pylint: disable=g-import-not-at-top
  disk = Disk(root, rlimit)
  workdir = os.path.join(root, 'run')
  result = {'mode': 'rlimit (EFBIG)' if rlimit else 'tmpfs (ENOSPC)'}
  code, lines = _train(disk, workdir, {'stop_after_steps': 3})
  result['first'] = _run_record(code, lines)

  disk.fill(300_000)  # the events fit, a checkpoint does not
  result['save'] = _run_record(*_train(disk, workdir))
  result['save']['steps'] = checkpoints.list_steps(workdir)
  result['save']['tmp_dirs'] = glob.glob(os.path.join(
      workdir, 'checkpoints', '*tmp*'))
  result['save']['damage_3'] = checkpoints.damage(
      checkpoints.step_directory(workdir, 3))

  disk.fill(4096)  # one page: the run lock fits, the event file does not
  result['events'] = _run_record(*_train(disk, workdir))
  disk.empty()
  try:
    result['events']['readable'] = bool(tb.read_scalars(workdir))
  except Exception as e:  # pylint: disable=broad-except
    result['events']['readable'] = f'{type(e).__name__}: {e}'

  result['resume'] = _run_record(*_train(disk, workdir))
  result['resume']['steps'] = checkpoints.list_steps(workdir)

  evaluate = [sys.executable, os.path.abspath(__file__), 'eval', workdir]
  report = [sys.executable, '-m', 'magjax.evaluation.report', workdir,
            '--out', os.path.join(root, 'report')]
  result['eval_ok'] = _run_record(*disk.run(evaluate))
  result['report_ok'] = _run_record(*disk.run(report, cwd=ROOT))
  before = _files(os.path.join(workdir, 'eval'))
  before_report = _files(os.path.join(root, 'report'))
  disk.fill(0)
  result['eval_full'] = _run_record(*disk.run(evaluate))
  result['report_full'] = _run_record(*disk.run(report, cwd=ROOT))
  disk.empty()
  result['eval_full']['unchanged'] = (
      bool(before) and _files(os.path.join(workdir, 'eval')) == before)
  result['report_full']['unchanged'] = (
      bool(before_report)
      and _files(os.path.join(root, 'report')) == before_report)
  with open(result_path, 'w') as f:
    json.dump(result, f, indent=1)


def evaluate_workdir(workdir):
  import train_helpers  # pylint: disable=g-import-not-at-top
  from magjax.evaluation import evaluate  # pylint: disable=g-import-not-at-top
  return evaluate.run(None, workdir,
                      source=train_helpers.memory_source(2, seed=5))


if __name__ == '__main__':
  if sys.argv[1] == 'eval':
    sys.exit(evaluate_workdir(sys.argv[2]))
  scenario(sys.argv[2], sys.argv[3], '--rlimit' in sys.argv)
