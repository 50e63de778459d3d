"""The bad-input corpus through the real command lines, in subprocesses
(slow): `python -m data_prep.prepare patch` and `python -m magjax.predict`
(a fast fake :tiny checkpoint) answer each file with exactly one stderr
line `error: ...`, exit code 2 and no output file. tests/test_bad_inputs.py
does the same in process (default suite).

Issue 20's inputs that cannot be real also go through the batch commands
(`prepare build --workers 2`, a predict batch), which record each and go
on; every refusing process's peak resident memory stays under
`data_prep.limits.MAX_FILE_MEMORY`, and that of the oversized ones goes to
the ledger's peak-memory table."""

import concurrent.futures
import json
import os
import subprocess
import sys
import tempfile

import pytest

import eval_helpers
import ledger
from data_prep import limits

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  sys.path.insert(0, os.path.join(ROOT, 'tests'))
  import test_bad_inputs  # pylint: disable=g-import-not-at-top
  return test_bad_inputs.load_corpus_module().make_corpus(
      str(tmp_path_factory.mktemp('bad')))


BOUND_MIB = limits.MAX_FILE_MEMORY / 2 ** 20
PEAK_RSS = os.path.join(ROOT, 'tests', 'faults', 'peak_rss.py')


def _run(args, timeout=300):
  """subprocess.run of `python -m args`, with the peak resident memory of
  the command (and of the workers it waited for) in MiB as `.peak_mib`
  (tests/faults/peak_rss.py)."""
  with tempfile.TemporaryDirectory() as tmp:
    peak_file = os.path.join(tmp, 'peak')
    done = subprocess.run(
        [sys.executable, PEAK_RSS, '-m', *args], cwd=ROOT,
        capture_output=True, text=True, timeout=timeout,
        env=dict(os.environ, JAX_PLATFORMS='cpu', PEAK_RSS_FILE=peak_file))
    with open(peak_file) as f:
      done.peak_mib = int(f.read()) / 1024  # Linux: KiB
  return done


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
  for name in jobs:
    if corpus[name].impossible == 'oversized':
      ledger.record(f'{command}: {name}', peak_mib=procs[name].peak_mib,
                    bound_mib=BOUND_MIB)
  assert not failed, failed
  heavy = {n: round(p.peak_mib) for n, p in procs.items()
           if p.peak_mib >= BOUND_MIB}
  assert not heavy, heavy


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


def _impossible(corpus):
  return {name: case for name, case in corpus.items() if case.impossible}


def _ledger_batch(command, reasons, names, proc):
  """Records a batch command's answers to issue 20's inputs and its peak
  memory; returns how many got a one-line reason naming the file."""
  names = list(names)
  clear = sum(n in reasons.get(n, '') and '\n' not in reasons[n]
              for n in names)
  ledger.record(f'impossible inputs: {command} (CLI)',
                bad_inputs=len(names), clear_errors=clear)
  ledger.record(f'{command}: oversized + implausible inputs',
                peak_mib=proc.peak_mib, bound_mib=BOUND_MIB)
  return clear


def _partner(path, kind, where):
  """A good file of the other instrument at the time of `path` (None when
  its header is refused: then it is reported unpaired, with the reason),
  so that a build reads its pixels."""
  from data_prep import fitsio  # pylint: disable=g-import-not-at-top
  from data_prep.synthesize import synthesize_pair  # pylint: disable=g-import-not-at-top
  try:
    _, header = fitsio.read_sdo_header(path)
  except fitsio.DataError:
    return None
  when = fitsio.observation_time(kind, header).utc.datetime.replace(
      second=0, microsecond=0)
  aia, hmi = synthesize_pair(when.isoformat(), 256, 0, str(where),
                             bad_fraction=0)
  return hmi if kind == 'aia' else aia


def test_build_records_each_impossible_input_and_goes_on(corpus, tmp_path):
  """`prepare build --workers 2` over issue 20's files (each readable one
  with a good partner) and a good pair: a one-line reason for each, no
  patch of theirs, the good pair made."""
  from data_prep.synthesize import synthesize_pair  # pylint: disable=g-import-not-at-top
  raw, out = tmp_path / 'raw', tmp_path / 'out'
  synthesize_pair('2012-04-20T06:00:00', 256, 0, str(raw), bad_fraction=0)
  placed = {}
  for name, case in _impossible(corpus).items():
    target = raw / case.kind / 'bad' / name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(case.path, target)
    placed[str(target)] = name
    partner = _partner(case.path, case.kind, tmp_path / 'partners' / name)
    if partner:
      other = 'hmi' if case.kind == 'aia' else 'aia'
      (raw / other / 'partners').mkdir(parents=True, exist_ok=True)
      os.link(partner, raw / other / 'partners' / f'for_{name}')
  proc = _run(['data_prep.prepare', 'build', '--raw', str(raw), '--out',
               str(out), '--workers', '2'])
  assert proc.returncode == 0, proc.stderr[-2000:]
  with open(out / 'manifest.jsonl') as f:
    records = [json.loads(line) for line in f]
  reasons = {placed[r[k]]: r['reason'] for r in records
             for k in ('aia', 'hmi') if r.get(k) in placed
             and r['status'] != 'ok'}
  clear = _ledger_batch('prepare build --workers 2', reasons,
                        placed.values(), proc)
  patches = sorted(p.name for p in out.glob('*/*.fits'))
  assert clear == len(placed), (reasons, proc.stdout[-2000:])
  assert len(patches) == 2 and all(
      p.startswith('20120420T06') for p in patches), patches
  assert proc.peak_mib < BOUND_MIB


def test_predict_batch_records_each_impossible_input_and_goes_on(
    corpus, tmp_path):
  """A predict batch over issue 20's files and a good patch: a 'failed'
  line with its reason for each, their outputs absent, the good one made,
  exit 1."""
  workdir = str(tmp_path / 'rhp')
  eval_helpers.save_checkpoint(workdir, eval_helpers.tiny_config('rhp'),
                               step=1)
  inputs = tmp_path / 'in'
  inputs.mkdir()
  chosen = dict(_impossible(corpus), **{'aia_patch.fits':
                                        corpus['aia_patch.fits']})
  for name, case in chosen.items():
    os.link(case.path, inputs / name)
  out = tmp_path / 'out'
  proc = _run(['magjax.predict', '--workdir', workdir, '--input',
               str(inputs), '--output', str(out)])
  with open(out / 'predictions.jsonl') as f:
    lines = [json.loads(line) for line in f]
  failed = {os.path.basename(r['input']): r['reason'] for r in lines
            if r['status'] == 'failed'}
  bad = [n for n in chosen if n != 'aia_patch.fits']
  clear = _ledger_batch('predict batch', failed, bad, proc)
  written = sorted(p.name for p in out.glob('*.fits'))
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert clear == len(bad), (failed, proc.stderr[-2000:])
  assert written == ['aia_patch_magjax.fits'], written
  assert proc.peak_mib < BOUND_MIB
