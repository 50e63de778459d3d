"""The bad-input corpus through the real command lines, in subprocesses
(slow): `python -m data_prep.prepare patch` and `python -m magjax.predict`
(a fast fake :tiny checkpoint) answer each file with exactly one stderr
line `error: ...`, exit code 2 and no output file. tests/test_bad_inputs.py
does the same in process (default suite)."""

import concurrent.futures
import os
import subprocess
import sys

import pytest

import eval_helpers
import ledger

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  sys.path.insert(0, os.path.join(ROOT, 'tests'))
  import test_bad_inputs  # pylint: disable=g-import-not-at-top
  return test_bad_inputs.load_corpus_module().make_corpus(
      str(tmp_path_factory.mktemp('bad')))


def _run(args):
  return subprocess.run([sys.executable, '-m', *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=300,
                        env=dict(os.environ, JAX_PLATFORMS='cpu'))


def _clear(proc, fragment, output):
  lines = proc.stderr.strip().splitlines()
  return (proc.returncode == 2 and len(lines) == 1
          and lines[0].startswith('error: ') and fragment in lines[0]
          and not os.path.exists(output))


@pytest.mark.parametrize('command', ['prepare patch', 'predict'])
def test_each_bad_file_gets_one_error_line(corpus, tmp_path, command):
  jobs = {}
  if command == 'predict':
    workdir = str(tmp_path / 'rhp')
    eval_helpers.save_checkpoint(workdir, eval_helpers.tiny_config('rhp'),
                                 step=1)
  for name, case in corpus.items():
    out = str(tmp_path / f'out_{name}')
    if command == 'prepare patch':
      jobs[name] = (['data_prep.prepare', 'patch', case.path, '--out', out],
                    case.fragment, out)
    elif not case.predict_ok:
      jobs[name] = (['magjax.predict', '--workdir', workdir, '--input',
                     case.path, '--output', out], case.predict_fragment, out)
  with concurrent.futures.ThreadPoolExecutor(3) as pool:
    procs = dict(zip(jobs, pool.map(_run, [j[0] for j in jobs.values()])))
  failed = {name: procs[name].stderr[-500:] for name, (_, fragment, out)
            in jobs.items() if not _clear(procs[name], fragment, out)}
  ledger.record(f'bad inputs: {command} (CLI)', bad_inputs=len(jobs),
                clear_errors=len(jobs) - len(failed))
  assert not failed, failed


def _limit_file_size():
  """In the child: files may not grow past 64 KiB (EFBIG, not SIGXFSZ)."""
  import resource  # pylint: disable=g-import-not-at-top
  import signal  # pylint: disable=g-import-not-at-top
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


def test_predict_output_that_cannot_be_written(corpus, tmp_path):
  """A full disk (file size limit) under predict: one line, no file."""
  workdir = str(tmp_path / 'rhp')
  eval_helpers.save_checkpoint(workdir, eval_helpers.tiny_config('rhp'),
                               step=1)
  out = tmp_path / 'out' / 'm.fits'
  out.parent.mkdir()
  proc = subprocess.run(
      [sys.executable, '-m', 'magjax.predict', '--workdir', workdir,
       '--input', corpus['aia_patch.fits'].path, '--output', str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      preexec_fn=_limit_file_size,
      env=dict(os.environ, JAX_PLATFORMS='cpu', PYTHONDONTWRITEBYTECODE='1'))
  clear = _clear(proc, 'cannot write', str(out))
  left = list(out.parent.iterdir())
  ledger.record('predict: output file size limit (EFBIG)', faults=1,
                recovered=int(clear), lost=len(left))
  assert clear, (proc.returncode, proc.stderr[-2000:])
  assert left == []
