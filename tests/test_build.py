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
  monkeypatch.setattr(pairing, 'scan', lambda raw_dir: (list(obs), list(bad)))
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


def test_manifest_corruption_inside_is_an_error(tmp_path):
  path = tmp_path / 'manifest.jsonl'
  path.write_text('{"pair_id": "a"}\nnot json\n{"pair_id": "b"}\n')
  with pytest.raises(ValueError, match='line 2 is not JSON'):
    manifest.read_manifest(str(path))


def test_workers_pool_gives_the_same_records(world, monkeypatch):
  # The pool path: spawn workers cannot see monkeypatches, so run the
  # executor plumbing with an in-process stand-in executor of the same API.
  serial = list(build.run_tasks(_tasks(world), workers=1))
  monkeypatch.setattr(build.concurrent.futures, 'ProcessPoolExecutor',
                      _InlineExecutor)
  pooled = list(build.run_tasks(_tasks(world), workers=2))
  key = lambda r: r['pair_id']
  assert sorted(serial, key=key) == sorted(pooled, key=key)


def _tasks(world):
  obs, _ = pairing.scan('unused')
  pairs, _ = pairing.pair_observations(obs)
  splits = splits_lib.parse_splits(splits_lib.DEFAULT_SPECS)
  tasks, _, _ = build.plan(pairs, splits, str(world.out), [])
  return tasks


class _InlineExecutor:
  """concurrent.futures executor that runs each call at submit time."""

  def __init__(self, *args, **kwargs):
    pass

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
