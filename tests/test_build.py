"""`prepare build` (data_prep.build): manifest, resume, skips, date split.

The logic tests run in-process (``--workers 1``) with stand-ins for the
per-file calibration and patch extraction; ``test_build_integration`` runs
the real pipeline on SYNTHETIC full-disk files in subprocesses.
"""

import argparse
import json
import types

import numpy as np
import pytest
from astropy.time import Time, TimeDelta

from data_prep import build, calibrate, fitsio, manifest, pairing, patches
from data_prep import splits as splits_lib

T0 = Time('2012-03-01T00:00:00', scale='utc')


def _obs(kind, path, t):
  return pairing.Observation(path, kind, t)


def _at(day, seconds=0.0):
  return Time(day, scale='utc') + TimeDelta(seconds, format='sec')


class _StandIns:
  """Stand-ins for load_calibrated / extract_patch; counts calls per file.

  A source path containing 'corrupt' raises DataError, 'boom' a
  RuntimeError (unless ``healed``), as the real functions would for bad data
  and for an unexpected failure.
  """

  def __init__(self):
    self.calls = []
    self.healed = False

  def load_calibrated(self, path, **_):
    self.calls.append(path)
    if 'corrupt' in path:
      raise fitsio.DataError(f'{path}: truncated file (2880 of 8640 bytes)')
    if 'boom' in path and not self.healed:
      raise RuntimeError('worker ran out of luck\nsecond line')
    return path

  @staticmethod
  def extract_patch(path):
    value = float(len(path))
    return types.SimpleNamespace(
        data=np.full((4, 5), value, np.float32),
        meta={'exptime': 2.9 if '/aia/' in path else None,
              'synthetic': True, 'src_file': path})


@pytest.fixture
def world(monkeypatch, tmp_path):
  """A raw tree described by observations; stand-in per-file functions."""
  fake = _StandIns()
  monkeypatch.setattr(calibrate, 'load_calibrated', fake.load_calibrated)
  monkeypatch.setattr(patches, 'extract_patch', fake.extract_patch)
  monkeypatch.setattr(patches, 'patch_header',
                      lambda m: {'SRC': m.meta['src_file'][-60:]})
  raw = tmp_path / 'raw'
  (raw / 'aia').mkdir(parents=True)
  (raw / 'hmi').mkdir()
  obs = [
      _obs('aia', '/r/aia/a1.fits', _at('2012-01-05T00:00:00')),
      _obs('hmi', '/r/hmi/h1.fits', _at('2012-01-05T00:00:00', 5)),
      _obs('aia', '/r/aia/a2_corrupt.fits', _at('2012-02-01T00:00:00')),
      _obs('hmi', '/r/hmi/h2.fits', _at('2012-02-01T00:00:00', 5)),
      _obs('aia', '/r/aia/a3_boom.fits', _at('2012-09-10T00:00:00')),
      _obs('hmi', '/r/hmi/h3.fits', _at('2012-09-10T00:00:00', 5)),
      _obs('aia', '/r/aia/a4.fits', _at('2012-08-31T00:00:00')),  # no split
      _obs('hmi', '/r/hmi/h4.fits', _at('2012-08-31T00:00:00', 5)),
      _obs('aia', '/r/aia/a5.fits', _at('2012-11-11T00:00:00')),
      _obs('hmi', '/r/hmi/h5.fits', _at('2012-11-11T00:00:00', 5)),
      _obs('aia', '/r/aia/lonely.fits', _at('2012-12-01T00:00:00')),
  ]
  bad = [pairing.Unpaired('/r/hmi/junk.fits', 'hmi',
                          'unreadable header: junk.fits: not a FITS file')]
  monkeypatch.setattr(pairing, 'scan',
                      lambda raw_dir, map_fn=map: (list(obs), list(bad)))
  out = tmp_path / 'out'
  fake.args = argparse.Namespace(raw=str(raw), out=str(out), workers=1,
                                 tolerance=60.0, splits=None)
  fake.out = out
  return fake


def _latest(out):
  return manifest.latest_by_pair(
      manifest.read_manifest(str(out / 'manifest.jsonl')))


def test_batch_records_ok_skips_and_unpaired(world, capsys):
  assert build.run(world.args) == 0
  latest = _latest(world.out)
  assert {k: (r['status'], r['split']) for k, r in latest.items()} == {
      '20120105T000000': ('ok', 'train'),
      '20120201T000000': ('skipped', 'train'),
      '20120910T000000': ('skipped', 'validation'),
      '20120831T000000': ('skipped', None),
      '20121111T000000': ('ok', 'test'),
  }
  ok = latest['20120105T000000']
  assert ok['aia_patch'] == 'train/20120105T000000_aia.fits'
  assert ok['hmi_patch'] == 'train/20120105T000000_hmi.fits'
  assert (world.out / ok['aia_patch']).exists()
  assert (world.out / ok['hmi_patch']).exists()
  assert ok['t_aia'] == '2012-01-05T00:00:00.000'
  assert ok['t_hmi'] == '2012-01-05T00:00:05.000'
  assert ok['dt'] == pytest.approx(5.0)
  assert ok['exposure'] == 2.9 and ok['synthetic'] is True
  assert ok['aia'] == '/r/aia/a1.fits' and ok['hmi'] == '/r/hmi/h1.fits'
  corrupt = latest['20120201T000000']
  assert corrupt['error'] == 'DataError'
  assert 'truncated file' in corrupt['reason']
  boom = latest['20120910T000000']
  assert boom['error'] == 'RuntimeError'
  assert boom['reason'] == 'RuntimeError: worker ran out of luck second line'
  assert latest['20120831T000000']['error'] == 'NoSplit'
  assert not (world.out / 'validation').exists()
  unpaired = [r for r in manifest.read_manifest(
      str(world.out / 'manifest.jsonl')) if r['status'] == 'unpaired']
  assert {(r['aia'] or r['hmi'], r['reason']) for r in unpaired} == {
      ('/r/aia/lonely.fits', 'no HMI file within 60 s'),
      ('/r/hmi/junk.fits', 'unreadable header: junk.fits: not a FITS file')}
  out = capsys.readouterr().out
  assert 'summary: (none): 0 ok, 1 skipped; test: 1 ok, 0 skipped; ' \
      'train: 1 ok, 1 skipped; validation: 0 ok, 1 skipped; ' \
      'unpaired files: 2' in out
  assert '[1/4]' in out and '[4/4]' in out


def test_resume_skips_settled_pairs_and_retries_unexpected_failures(world):
  assert build.run(world.args) == 0
  first = world.calls[:]
  world.calls.clear()
  world.healed = True
  assert build.run(world.args) == 0
  # Only the pair that failed unexpectedly is processed again.
  assert world.calls == ['/r/aia/a3_boom.fits', '/r/hmi/h3.fits']
  assert len(first) == 6
  latest = _latest(world.out)
  assert latest['20120910T000000']['status'] == 'ok'
  assert latest['20120201T000000']['status'] == 'skipped'
  # Unpaired files are not recorded twice.
  lines = manifest.read_manifest(str(world.out / 'manifest.jsonl'))
  assert sum(r['status'] == 'unpaired' for r in lines) == 2
  # A third run has nothing left to do.
  world.calls.clear()
  assert build.run(world.args) == 0 and world.calls == []


def test_resume_redoes_ok_pair_whose_patch_vanished(world):
  assert build.run(world.args) == 0
  (world.out / 'test' / '20121111T000000_hmi.fits').unlink()
  world.calls.clear()
  world.healed = True
  assert build.run(world.args) == 0
  assert '/r/aia/a5.fits' in world.calls
  assert (world.out / 'test' / '20121111T000000_hmi.fits').exists()


def test_resume_redoes_a_pair_whose_source_file_changed(world, monkeypatch):
  """A raw file rewritten since its patch was made (a new synthetic Sun, a
  re-download): its pair is processed again, the others are not."""
  stamps = {'/r/aia/a1.fits': '100:1'}
  monkeypatch.setattr(build, '_stamp', lambda path: stamps.get(path, ''))
  assert build.run(world.args) == 0
  world.calls.clear()
  stamps['/r/aia/a1.fits'] = '100:2'
  assert build.run(world.args) == 0
  assert world.calls[:2] == ['/r/aia/a1.fits', '/r/hmi/h1.fits']
  assert '/r/aia/a5.fits' not in world.calls


def test_torn_manifest_line_is_ignored_and_repaired(world):
  assert build.run(world.args) == 0
  path = world.out / 'manifest.jsonl'
  good = path.read_bytes()
  path.write_bytes(good + b'{"pair_id": "20120105T0000')  # killed mid-write
  assert len(manifest.read_manifest(str(path))) == good.count(b'\n')
  world.calls.clear()
  assert build.run(world.args) == 0
  assert world.calls == ['/r/aia/a3_boom.fits']  # fails again, recorded
  text = path.read_bytes()
  assert text.startswith(good) and text.endswith(b'\n')
  assert all(json.loads(line) for line in text.splitlines())


def test_second_aia_of_the_same_second_cannot_shadow_the_first(
    world, monkeypatch):
  obs = [_obs('aia', '/r/aia/a1.fits', _at('2012-01-05T00:00:00')),
         _obs('hmi', '/r/hmi/h1.fits', _at('2012-01-05T00:00:00', -5)),
         _obs('aia', '/r/aia/a1_copy.fits', _at('2012-01-05T00:00:00', 0.5)),
         _obs('hmi', '/r/hmi/h1b.fits', _at('2012-01-05T00:00:00', 50))]
  monkeypatch.setattr(pairing, 'scan',
                      lambda raw_dir, map_fn=map: (list(obs), []))
  for _ in range(2):
    assert build.run(world.args) == 0
  lines = manifest.read_manifest(str(world.out / 'manifest.jsonl'))
  dup = [r for r in lines if r['error'] == 'DuplicatePairId']
  assert len(dup) == 1 and dup[0]['pair_id'] is None
  assert dup[0]['aia'] == '/r/aia/a1_copy.fits'
  assert 'already taken by /r/aia/a1.fits' in dup[0]['reason']
  latest = _latest(world.out)
  assert latest['20120105T000000']['status'] == 'ok'
  assert latest['20120105T000000']['aia'] == '/r/aia/a1.fits'
  assert world.calls == ['/r/aia/a1.fits', '/r/hmi/h1.fits']  # done once


def test_unwritable_out_is_a_one_line_error(world, tmp_path, capsys):
  blocker = tmp_path / 'file'
  blocker.write_text('not a directory')
  world.args.out = str(blocker / 'out')
  assert build.run(world.args) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and err.count('\n') == 1


def test_manifest_corruption_inside_is_an_error(tmp_path):
  path = tmp_path / 'manifest.jsonl'
  path.write_text('{"pair_id": "a"}\nnot json\n{"pair_id": "b"}\n')
  with pytest.raises(ValueError, match='line 2 is not JSON'):
    manifest.read_manifest(str(path))


def test_executor_path_gives_the_same_records(world):
  # Spawned workers cannot see monkeypatches: run the executor plumbing with
  # an in-process executor of the concurrent.futures API.
  serial = list(build.run_tasks(_tasks(world)))
  with _InlineExecutor() as executor:
    pooled = list(build.run_tasks(_tasks(world), executor))
  key = lambda r: r['pair_id']
  assert sorted(serial, key=key) == sorted(pooled, key=key)


def test_a_dead_worker_becomes_a_retryable_skip(world):
  class Dying(_InlineExecutor):
    def submit(self, fn, *args):
      from concurrent.futures import Future
      from concurrent.futures.process import BrokenProcessPool
      future = Future()
      future.set_exception(BrokenProcessPool('a child process terminated'))
      return future

  records = list(build.run_tasks(_tasks(world), Dying()))
  assert len(records) == 4
  assert all(r['status'] == 'skipped' and r['error'] == 'BrokenProcessPool'
             for r in records)
  assert 'BrokenProcessPool' not in build.FINAL_ERRORS


def test_scan_reads_headers_through_the_given_map(tmp_path):
  from data_prep import pairing as real_pairing
  for kind in ('aia', 'hmi'):
    (tmp_path / kind / '2012').mkdir(parents=True)
    (tmp_path / kind / '2012' / f'{kind}.fits').write_text('junk')
  calls = []

  def recording_map(fn, *iterables):
    calls.append([list(i) for i in iterables])
    return map(fn, *calls[-1])

  observations, bad = real_pairing.scan(str(tmp_path), recording_map)
  assert not observations and [b.kind for b in bad] == ['aia', 'hmi']
  assert calls[0][1] == ['aia', 'hmi']


def _tasks(world):
  obs, _ = pairing.scan('unused')
  pairs, _ = pairing.pair_observations(obs)
  splits = splits_lib.parse_splits(splits_lib.DEFAULT_SPECS)
  tasks, _, _ = build.plan(pairs, splits, str(world.out), [])
  return tasks


class _InlineExecutor:
  """concurrent.futures executor that runs each call at submit time."""

  def submit(self, fn, *args):
    from concurrent.futures import Future
    future = Future()
    future.set_result(fn(*args))
    return future

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False


@pytest.mark.parametrize('day,split', [
    ('2012-01-01T00:00:00', 'train'), ('2012-08-30T23:59:59', 'train'),
    ('2012-08-31T12:00:00', None), ('2012-09-01T00:00:00', 'validation'),
    ('2012-09-30T23:59:59', 'validation'), ('2012-10-01T00:00:00', 'test'),
    ('2012-12-31T23:59:59', 'test'), ('2016-02-29T00:00:00', 'train')])
def test_default_split_is_the_papers(day, split):
  splits = splits_lib.parse_splits(splits_lib.DEFAULT_SPECS)
  assert splits_lib.assign_split(Time(day, scale='utc'), splits) == split


def test_split_uses_utc_day_of_a_tai_time():
  # 2012-09-01T00:00:20 TAI is 2012-08-31T23:59:46 UTC: no split.
  splits = splits_lib.parse_splits(splits_lib.DEFAULT_SPECS)
  t = Time('2012-09-01T00:00:20', scale='tai')
  assert splits_lib.assign_split(t, splits) is None


def test_custom_splits_and_their_errors():
  splits = splits_lib.parse_splits(['a=01-01:06-30', 'b=07-01:12-31'])
  assert splits_lib.assign_split(Time('2012-07-01'), splits) == 'b'
  for bad, message in [(['x=1-1:2-2'], 'NAME=MM-DD:MM-DD'),
                       (['x=02-30:03-01'], 'not a calendar day'),
                       (['x=03-01:02-01'], 'start after end'),
                       (['x=01-01:06-30', 'y=06-30:12-31'], 'overlap'),
                       (['x=01-01:01-02', 'x=02-01:02-02'], 'repeat')]:
    with pytest.raises(ValueError, match=message):
      splits_lib.parse_splits(bad)


def test_cli_split_option_and_bad_arguments(world, capsys):
  world.args.splits = ['all=01-01:12-31']
  assert build.run(world.args) == 0
  latest = _latest(world.out)
  assert {r['split'] for r in latest.values()} == {'all'}
  for field, value, message in [
      ('splits', ['oops'], 'bad split'), ('workers', 0, '--workers'),
      ('tolerance', -1.0, '--tolerance'), ('raw', '/no/such/dir', 'not found')]:
    args = argparse.Namespace(**vars(world.args))
    setattr(args, field, value)
    assert build.run(args) == 2
    err = capsys.readouterr().err
    assert err.startswith('error: ') and message in err
    assert err.count('\n') == 1


def test_add_arguments_defaults():
  parser = argparse.ArgumentParser()
  build.add_arguments(parser)
  args = parser.parse_args(['--raw', 'r', '--out', 'o'])
  assert (args.workers, args.tolerance, args.splits) == (2, 60.0, None)
  args = parser.parse_args(['--raw', 'r', '--out', 'o', '--split',
                            'train=01-01:06-30', '--split', 'test=07-01:12-31',
                            '--tolerance', '30', '--workers', '3'])
  assert args.splits == ['train=01-01:06-30', 'test=07-01:12-31']
  assert (args.workers, args.tolerance) == (3, 30.0)


# --- integration: the real pipeline on SYNTHETIC full-disk files ------------

import os
import signal
import subprocess
import sys
import time as _time
import warnings

from astropy.io import fits

INTEGRATION_TIMES = ['2012-04-20T06:00:00', '2012-09-15T12:00:00',
                     '2012-10-20T18:00:00']
CORRUPT_HMI_TIME = '2012-05-05T00:00:00'     # readable header, all-NaN data
TRUNCATED_AIA_TIME = '2012-06-06T00:00:00'   # truncated file


@pytest.fixture(scope='module')
def synthetic_raw(tmp_path_factory):
  """SYNTHETIC 256^2 full-disk pairs, one with NaN data, one truncated."""
  from data_prep.synthesize import synthesize_pair
  raw = tmp_path_factory.mktemp('raw')
  for t in INTEGRATION_TIMES + [CORRUPT_HMI_TIME, TRUNCATED_AIA_TIME]:
    synthesize_pair(t, 256, 0, str(raw), bad_fraction=0)
  _, hmi = synthesize_pair(CORRUPT_HMI_TIME, 256, 0, str(raw), bad_fraction=0)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', fits.verify.VerifyWarning)  # BLANK
    with fits.open(hmi, mode='update') as hdul:
      hdu = next(h for h in hdul if h.data is not None)
      hdu.data[:] = np.nan
  aia, _ = synthesize_pair(TRUNCATED_AIA_TIME, 256, 0, str(raw),
                           bad_fraction=0)
  with open(aia, 'r+b') as f:
    f.truncate(os.path.getsize(aia) // 2)
  return raw


def _cli(raw, out, workers):
  return [sys.executable, '-m', 'data_prep.prepare', 'build', '--raw',
          str(raw), '--out', str(out), '--workers', str(workers)]


def _snapshot(out):
  """Manifest content (latest per pair, unpaired lines) and patch data."""
  records = manifest.read_manifest(str(out / 'manifest.jsonl'))
  unpaired = sorted(json.dumps(r, sort_keys=True) for r in records
                    if r['status'] == 'unpaired')
  files = {}
  for path in sorted(out.glob('*/*.fits')):
    with fits.open(path) as hdul:
      files[str(path.relative_to(out))] = (hdul[0].data.copy(),
                                           dict(hdul[0].header))
  return manifest.latest_by_pair(records), unpaired, files


def _run_build(raw, out, pool, capsys):
  """(exit code, stdout): in this process with 1 worker, or as the CLI
  in a subprocess with a pool of 2 spawned workers."""
  if not pool:
    capsys.readouterr()
    rc = build.run(argparse.Namespace(raw=str(raw), out=str(out), workers=1,
                                      tolerance=60.0, splits=None))
    return rc, capsys.readouterr().out
  done = subprocess.run(_cli(raw, out, 2), capture_output=True, text=True,
                        timeout=300)
  return done.returncode, done.stdout + done.stderr


# Both slow (11 s and more): make faults kills prepare build 10 times.
@pytest.mark.slow
@pytest.mark.parametrize('pool', [False, True])
def test_build_integration_kill_and_resume(synthetic_raw, tmp_path, pool,
                                           capsys):
  # Reference: one uninterrupted run.
  ref_out = tmp_path / 'ref'
  rc, stdout = _run_build(synthetic_raw, ref_out, pool, capsys)
  assert rc == 0, stdout
  latest, unpaired, files = _snapshot(ref_out)
  ok = {k for k, r in latest.items() if r['status'] == 'ok'}
  assert len(ok) == 3 and len(files) == 6
  assert {latest[k]['split'] for k in ok} == {'train', 'validation', 'test'}
  assert all(latest[k]['synthetic'] is True for k in ok)
  assert all(latest[k]['exposure'] > 0 for k in ok)
  assert all(abs(latest[k]['dt']) <= 60 for k in latest)
  # The all-NaN HMI: a skip with its reason; the batch went on.
  bad = [r for r in latest.values() if r['status'] == 'skipped']
  assert len(bad) == 1 and bad[0]['error'] == 'DataError'
  assert 'all NaN' in bad[0]['reason']
  # The truncated AIA: unpaired with the reason, and so is its HMI.
  assert len(unpaired) == 2
  reasons = [json.loads(u)['reason'] for u in unpaired]
  assert any(r.startswith('unreadable header: ') for r in reasons)
  assert 'no AIA file within 60 s' in reasons
  assert 'summary: test: 1 ok, 0 skipped; train: 1 ok, 1 skipped; ' \
      'validation: 1 ok, 0 skipped; unpaired files: 2' in stdout
  for path, (data, header) in files.items():
    assert data.shape == (800, 900) and data.dtype.newbyteorder('=') == np.float32
    assert path.split('/')[0] in ('train', 'validation', 'test')

  # Killed run: SIGKILL after the first pair is recorded, then resume.
  out = tmp_path / 'killed'
  proc = subprocess.Popen(_cli(synthetic_raw, out, 1),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  manifest_path = out / 'manifest.jsonl'
  deadline = _time.monotonic() + 240
  try:
    while _time.monotonic() < deadline:
      if manifest_path.exists() and b'"status": "ok"' in \
          manifest_path.read_bytes():
        break
      assert proc.poll() is None, 'build finished before it could be killed'
      _time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
  finally:
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  partial, _, _ = _snapshot(out)
  assert 1 <= sum(r['status'] == 'ok' for r in partial.values()) < 3
  # A torn line, as a kill during the write would leave it.
  with open(manifest_path, 'ab') as f:
    f.write(b'{"pair_id": "20121020T18')
  rc, stdout = _run_build(synthetic_raw, out, pool, capsys)
  assert rc == 0, stdout
  assert 'already done' in stdout
  latest2, unpaired2, files2 = _snapshot(out)
  assert latest2 == latest and unpaired2 == unpaired
  assert files2.keys() == files.keys()
  for path, (data, header) in files.items():
    np.testing.assert_array_equal(files2[path][0], data)
    assert files2[path][1] == header
  assert not list(out.glob('*/.*.tmp'))


def _files_bytes(out):
  return {str(p.relative_to(out)): p.read_bytes()
          for p in sorted(out.glob('*/*.fits'))}


@pytest.mark.slow  # 10 s
def test_dask_build_equals_the_serial_build(synthetic_raw, tmp_path, capsys):
  """--scheduler local (a LocalCluster of 2 workers) vs --workers 1."""
  serial_out, dask_out = tmp_path / 'serial', tmp_path / 'dask'
  started = _time.monotonic()
  rc, stdout = _run_build(synthetic_raw, serial_out, False, capsys)
  serial_s = _time.monotonic() - started
  assert rc == 0, stdout
  started = _time.monotonic()
  done = subprocess.run(_cli(synthetic_raw, dask_out, 2)
                        + ['--scheduler', 'local'],
                        capture_output=True, text=True, timeout=300)
  dask_s = _time.monotonic() - started
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'with dask (local, 2 worker(s))' in done.stdout
  assert '[4/4] ' in done.stdout  # the progress line reaches the end
  print(f'serial build {serial_s:.1f} s, dask build {dask_s:.1f} s')
  serial, dask = _snapshot(serial_out), _snapshot(dask_out)
  assert dask[0] == serial[0] and dask[1] == serial[1]  # manifest content
  assert _files_bytes(dask_out) == _files_bytes(serial_out)
  assert len(_files_bytes(serial_out)) == 6


def test_unreachable_dask_scheduler_is_a_one_line_error(tmp_path, capsys,
                                                        monkeypatch):
  monkeypatch.setattr(build, 'DASK_CONNECT_TIMEOUT', 2)
  raw = tmp_path / 'raw'
  raw.mkdir()
  capsys.readouterr()
  rc = build.run(argparse.Namespace(
      raw=str(raw), out=str(tmp_path / 'out'), workers=1, tolerance=60.0,
      splits=None, scheduler='tcp://127.0.0.1:9'))
  err = capsys.readouterr().err
  assert rc == 2, err
  assert err.startswith('error: --scheduler tcp://127.0.0.1:9: ')
  assert len(err.strip().splitlines()) == 1, err
