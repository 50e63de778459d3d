"""Fault injection into data preparation (slow).

`prepare build` is SIGKILLed (its whole process group, workers included)
at 10 seeded random moments over a small SYNTHETIC raw tree and restarted
each time; every restart completes or is killed again, the final patches
and manifest equal an uninterrupted build's, and while the runs go on the
out dir is polled: every .fits under its final name opens completely.
`prepare patch` into a read-only dir and onto a full disk: one clear
line, no file left. The corpus CLIs run in subprocesses too.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits

import ledger
from data_prep import manifest

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TIMES = ['2012-04-20T06:00:00', '2012-09-15T12:00:00', '2012-10-20T18:00:00',
         '2012-11-02T03:00:00']
KILLS = 10
_TIMING = ('elapsed', 'seconds', 'duration', 'started', 'finished', 'time',
           'host', 'worker', 'pid')


@pytest.fixture(scope='module')
def raw(tmp_path_factory):
  from data_prep.synthesize import synthesize_pair
  root = tmp_path_factory.mktemp('raw')
  for t in TIMES:
    synthesize_pair(t, 256, 0, str(root), bad_fraction=0)
  return root


def _cli(raw_dir, out):
  return [sys.executable, '-m', 'data_prep.prepare', 'build', '--raw',
          str(raw_dir), '--out', str(out), '--workers', '1']


def _start(raw_dir, out, log):
  with open(log, 'ab') as f:
    return subprocess.Popen(_cli(raw_dir, out), cwd=ROOT, stdout=f,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _kill_group(proc, sig=signal.SIGKILL):
  try:
    os.killpg(proc.pid, sig)
  except ProcessLookupError:
    pass


def _check_visible_files(out, seen):
  """Opens every .fits under its final name completely; returns the count
  of files that did not (a partial file visible under its final name)."""
  bad = 0
  for dirpath, _, names in os.walk(out):
    for name in names:
      if not name.endswith('.fits') or name.startswith('.'):
        continue
      path = os.path.join(dirpath, name)
      try:
        with warnings.catch_warnings():
          warnings.simplefilter('ignore')
          with fits.open(path, memmap=False) as hdul:
            data = np.asarray(hdul[0].data)
        if data.shape != (800, 900):
          bad += 1
      except FileNotFoundError:
        continue  # replaced or removed between listing and opening
      except Exception:  # pylint: disable=broad-except
        bad += 1
      seen.add(path)
  return bad


def _snapshot(out):
  records = manifest.read_manifest(str(out / 'manifest.jsonl'))
  def clean(r):
    return {k: v for k, v in r.items() if k not in _TIMING}
  latest = {k: clean(r) for k, r in manifest.latest_by_pair(records).items()}
  unpaired = sorted(json.dumps(clean(r), sort_keys=True) for r in records
                    if r['status'] == 'unpaired')
  files = {}
  for path in sorted(out.glob('*/*.fits')):
    with fits.open(path) as hdul:
      files[str(path.relative_to(out))] = (
          hdul[0].data.copy(),
          {k: v for k, v in hdul[0].header.items() if k != 'DATE'})
  return latest, unpaired, files


def test_sigkill_build_at_random_moments(raw, tmp_path):
  ref = tmp_path / 'ref'
  t0 = time.monotonic()
  done = subprocess.run(_cli(raw, ref), cwd=ROOT, capture_output=True,
                        text=True, timeout=600)
  duration = time.monotonic() - t0
  assert done.returncode == 0, done.stdout + done.stderr
  reference = _snapshot(ref)
  assert sum(r['status'] == 'ok' for r in reference[0].values()) == len(TIMES)

  # Startup alone: a rerun over the finished build does no work.
  t0 = time.monotonic()
  subprocess.run(_cli(raw, ref), cwd=ROOT, capture_output=True, timeout=600)
  startup = time.monotonic() - t0
  work = max(duration - startup, 1.0)

  rng = random.Random(10)
  rounds, out = 1, tmp_path / 'out1'
  log = tmp_path / 'build.log'
  seen, partial, injected, recovered, lost = set(), 0, 0, 0, 0
  pending = False
  while True:
    proc = _start(raw, out, log)
    hit = False
    try:
      limit = rng.uniform(0.5 * startup, startup + work / 6)
      deadline = time.monotonic() + (limit if injected < KILLS else 600)
      while time.monotonic() < deadline and proc.poll() is None:
        partial += _check_visible_files(out, seen)
        time.sleep(0.005)
      if proc.poll() is None:
        _kill_group(proc)
        hit = True
      proc.wait(timeout=60)
    finally:
      _kill_group(proc)
      proc.wait()
    partial += _check_visible_files(out, seen)
    if pending:  # the restart after a kill completed or was killed again
      recovered += 1
      pending = False
    if hit:
      injected += 1
      pending = True
      continue
    assert proc.returncode == 0, log.read_text()[-3000:]
    final = _snapshot(out)   # a round completed: compare it
    for path, (data, header) in reference[2].items():
      got = final[2].get(path)
      if got is None or not np.array_equal(got[0], data, equal_nan=True) \
          or got[1] != header:
        lost += 1
    assert final[0] == reference[0]
    assert final[1] == reference[1]
    assert final[2].keys() == reference[2].keys()
    assert not [p for p in out.rglob('*') if p.name.endswith('.tmp')]
    if injected >= KILLS:
      break
    rounds += 1
    out = tmp_path / f'out{rounds}'
  ledger.record(f'prepare build: SIGKILL ({rounds} rounds)', faults=injected,
                recovered=recovered, lost=lost + partial)
  assert injected == KILLS and recovered == injected
  assert partial == 0, f'{partial} partial files visible under final names'
  assert lost == 0
  assert seen  # the poll saw files while runs went on


# --- read-only dir and full disk -------------------------------------------

def _mount_tmpfs(path, options):
  """Mounts a tmpfs at `path` (root only); False where that is refused."""
  path.mkdir(parents=True, exist_ok=True)
  done = subprocess.run(['mount', '-t', 'tmpfs', '-o', options, 'tmpfs',
                         str(path)], capture_output=True)
  return done.returncode == 0


def _umount(path):
  subprocess.run(['umount', str(path)], capture_output=True)


def _limit_file_size():
  """In the child: files may not grow past 64 KiB (EFBIG, not SIGXFSZ)."""
  import resource  # pylint: disable=g-import-not-at-top
  signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))


def _patch_cli(src, out, preexec_fn=None):
  return subprocess.run(
      [sys.executable, '-m', 'data_prep.prepare', 'patch', str(src), '--out',
       str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
      preexec_fn=preexec_fn)


def _clear(proc):
  lines = proc.stderr.strip().splitlines()
  return (proc.returncode == 2 and len(lines) == 1
          and lines[0].startswith('error: ') and 'cannot write' in lines[0])


def test_read_only_dir_and_full_disk_give_one_line(raw, tmp_path):
  src = sorted((raw / 'aia').rglob('*.fits'))[0]
  results = {}
  # Read-only output directory: a read-only tmpfs as root, else chmod.
  ro = tmp_path / 'ro'
  mounted = _mount_tmpfs(ro, 'ro,size=1M')
  try:
    if not mounted:
      ro.chmod(0o555)
    proc = _patch_cli(src, ro / 'p.fits')
    results['read-only dir'] = (proc, list(ro.iterdir()))
  finally:
    if mounted:
      _umount(ro)
    else:
      ro.chmod(0o755)
  # A full disk: a 1 MiB tmpfs (a patch is 2.9 MB) as root; else a file
  # size limit (RLIMIT_FSIZE -> EFBIG), the same error path.
  full = tmp_path / 'full'
  mounted = _mount_tmpfs(full, 'size=1M')
  try:
    (full / 'keep.txt').write_text('existing file\n')
    proc = _patch_cli(src, full / 'p.fits',
                      None if mounted else _limit_file_size)
    results['disk full'] = (proc, sorted(p.name for p in full.iterdir()))
    kept = (full / 'keep.txt').read_text() == 'existing file\n'
  finally:
    if mounted:
      _umount(full)
  # The same through the file size limit in any case (EFBIG).
  big = tmp_path / 'big'
  big.mkdir()
  proc = _patch_cli(src, big / 'p.fits', _limit_file_size)
  results['file size limit'] = (proc, list(big.iterdir()))
  clear = sum(_clear(p) for p, _ in results.values())
  leftovers = sum(len([n for n in names if n != 'keep.txt'])
                  for _, names in results.values())
  ledger.record('prepare patch: read-only / disk full / EFBIG',
                faults=len(results), recovered=clear,
                lost=leftovers + int(not kept), bad_inputs=0)
  for name, (proc, names) in results.items():
    assert _clear(proc), (name, proc.returncode, proc.stderr)
    assert [n for n in names if n != 'keep.txt'] == [], (name, names)
  assert kept
