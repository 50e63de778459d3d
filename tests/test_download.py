"""data_prep.download: Fido query construction, resume and retries.

No network here: a local stand-in transport copies sunpy's real AIA test
file and fails on purpose (connection errors, truncated transfers).
"""
import shutil
from pathlib import Path

import astropy.units as u
import pytest
import sunpy.data.test
from sunpy.net import attrs as a

from data_prep import download, manifest
from data_prep.download import Record

SOURCE = Path(sunpy.data.test.get_test_filepath('aia_171_level1.fits'))


class StandIn:
  """Offers `per_day` records per instrument and day; fails on request.

  fail_fetch: key -> number of leading fetch attempts that raise
  ConnectionError (-1: always). truncate: keys whose first transfer is cut.
  """

  def __init__(self, per_day=2, fail_fetch=None, truncate=(),
               fail_search=0):
    self.per_day = per_day
    self.fail_fetch = dict(fail_fetch or {})
    self.truncate = set(truncate)
    self.fail_search = fail_search
    self.searches, self.fetches = [], []

  def search(self, start, end, instrument, cadence):
    self.searches.append((start.date().isoformat(), instrument))
    if self.fail_search:
      self.fail_search -= 1
      raise ConnectionError('Name or service not known')
    day = start.strftime('%Y-%m-%d')
    return [Record(f'{instrument}:{day}:{i}', instrument,
                   f'{day}T{i:02d}:00:00.000') for i in range(self.per_day)]

  def fetch(self, record, dest_dir):
    self.fetches.append(record.key)
    left = self.fail_fetch.get(record.key, 0)
    if left:
      self.fail_fetch[record.key] = left - 1 if left > 0 else -1
      raise ConnectionError(f'reset while fetching {record.key}')
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = record.key.replace(':', '_') + '.fits'
    path = dest_dir / name
    if record.key in self.truncate:
      self.truncate.discard(record.key)
      path.write_bytes(SOURCE.read_bytes()[:20000])
    else:
      shutil.copyfile(SOURCE, path)
    return path


def run(tmp_path, transport, start='2012-01-01', end='2012-01-02', **kw):
  sleeps = []
  summary = download.download(start, end, '12min', tmp_path / 'raw',
                              transport=transport, retries=3, backoff=0.5,
                              sleep=sleeps.append, log=lambda line: None,
                              **kw)
  return summary, sleeps


def test_query_construction():
  q = download.build_query('2012-01-01', '2012-01-02', 'aia', '12min')
  attrs = {type(x).__name__: x for x in q.attrs}
  assert set(attrs) == {'Time', 'Sample', 'Instrument', 'Wavelength'}
  assert attrs['Instrument'].value == 'AIA'
  assert attrs['Wavelength'].min == 304 * u.angstrom
  assert attrs['Wavelength'].max == 304 * u.angstrom
  assert attrs['Sample'].value == 720
  assert attrs['Time'].start.isot == '2012-01-01T00:00:00.000'
  q = download.build_query('2012-01-01', '2012-01-02', 'hmi', '45s')
  attrs = {type(x).__name__: x for x in q.attrs}
  assert set(attrs) == {'Time', 'Sample', 'Instrument', 'Physobs'}
  assert attrs['Instrument'].value == 'HMI'
  assert attrs['Physobs'] == a.Physobs.los_magnetic_field
  assert attrs['Sample'].value == 45
  with pytest.raises(ValueError, match='not aia or hmi'):
    download.build_query('2012-01-01', '2012-01-02', 'eit', '12min')


@pytest.mark.parametrize('text, seconds', [('12min', 720), ('45s', 45),
                                           ('1h', 3600), ('720 s', 720)])
def test_parse_cadence(text, seconds):
  assert download.parse_cadence(text).to_value(u.s) == seconds


@pytest.mark.parametrize('text', ['', 'fast', '0min', '-3s', '12 parsecs'])
def test_parse_cadence_rejects(text):
  with pytest.raises(ValueError, match='cadence'):
    download.parse_cadence(text)


def test_days_cover_the_range_inclusively():
  assert len(download.days('2012-01-01', '2012-12-31')) == 366
  (t0, t1), = download.days('2012-02-29', '2012-02-29')
  assert (t1 - t0).days == 1
  with pytest.raises(ValueError, match='before'):
    download.days('2012-02-02', '2012-02-01')


def test_fido_transport_searches_the_built_query(monkeypatch):
  from sunpy.net import Fido
  seen = []
  monkeypatch.setattr(Fido, 'search', lambda *q: seen.append(q) or [])
  records = download.FidoTransport().search('2012-01-01', '2012-01-02',
                                            'hmi', '12min')
  assert records == []
  (query,), = seen
  assert query == download.build_query('2012-01-01', '2012-01-02', 'hmi',
                                       '12min')


def test_download_tree_retries_and_resume(tmp_path):
  flaky = 'aia:2012-01-01:1'   # fails twice, then succeeds
  broken = 'hmi:2012-01-02:0'  # always fails
  first = StandIn(fail_fetch={flaky: 2, broken: -1})
  summary, sleeps = run(tmp_path, first)
  assert summary['downloaded'] == 7 and summary['failed'] == 1
  assert first.fetches.count(flaky) == 3
  assert first.fetches.count(broken) == 4  # 1 try + 3 retries
  assert sleeps == [0.5, 1.0] + [0.5, 1.0, 2.0]  # exponential backoff
  raw = tmp_path / 'raw'
  assert (raw / 'aia/2012/01/01/aia_2012-01-01_1.fits').is_file()
  assert (raw / 'hmi/2012/01/02/hmi_2012-01-02_1.fits').is_file()
  assert not (raw / 'hmi/2012/01/02/hmi_2012-01-02_0.fits').exists()
  records = manifest.read_manifest(str(raw / download.MANIFEST_NAME))
  failed = [r for r in records if r.get('status') == 'failed']
  assert [r['key'] for r in failed] == [broken]
  assert 'ConnectionError' in failed[0]['reason']

  # Re-run: finished days are not searched again, fetched files not
  # fetched again; only the failed file is tried (and now succeeds).
  second = StandIn()
  summary, _ = run(tmp_path, second)
  assert second.searches == [('2012-01-02', 'hmi')]
  assert second.fetches == [broken]
  assert summary['downloaded'] == 1 and summary['already'] == 1
  assert summary['days_skipped'] == 3
  third = StandIn()
  summary, _ = run(tmp_path, third, end='2012-01-03')
  assert third.searches == [('2012-01-03', 'aia'), ('2012-01-03', 'hmi')]
  assert summary['downloaded'] == 4 and summary['days_skipped'] == 4


def test_deleted_file_is_fetched_again(tmp_path):
  run(tmp_path, StandIn(per_day=2), end='2012-01-01')
  target = tmp_path / 'raw/aia/2012/01/01/aia_2012-01-01_0.fits'
  target.unlink()
  again = StandIn(per_day=2)
  summary, _ = run(tmp_path, again, end='2012-01-01')
  assert again.searches == [('2012-01-01', 'aia')]  # hmi day intact
  assert again.fetches == ['aia:2012-01-01:0']
  assert target.is_file() and summary['already'] == 1


def test_truncated_transfer_is_fetched_again(tmp_path):
  key = 'aia:2012-01-01:0'
  stand_in = StandIn(per_day=1, truncate={key})
  summary, sleeps = run(tmp_path, stand_in, end='2012-01-01')
  assert stand_in.fetches.count(key) == 2 and sleeps == [0.5]
  path = tmp_path / 'raw/aia/2012/01/01/aia_2012-01-01_0.fits'
  assert path.read_bytes() == SOURCE.read_bytes()
  assert summary['downloaded'] == 2 and summary['failed'] == 0


def test_network_unreachable_is_one_line(tmp_path):
  stand_in = StandIn(fail_search=100)
  with pytest.raises(download.NetworkUnreachable) as exc:
    run(tmp_path, stand_in)
  message = str(exc.value)
  assert '\n' not in message
  assert message.startswith('network unreachable: aia search for 2012-01-01')
  assert len(stand_in.searches) == 4  # 1 try + 3 retries, then stop


def test_search_failure_after_contact_is_recorded(tmp_path):
  # The network answered before: a failing day is recorded, not fatal.
  stand_in = StandIn(per_day=1)
  original = stand_in.search

  def search(start, end, instrument, cadence):
    if start.day == 2 and instrument == 'hmi':
      raise TimeoutError('read timed out')
    return original(start, end, instrument, cadence)

  stand_in.search = search
  summary, _ = run(tmp_path, stand_in)
  assert summary['days_failed'] == 1 and summary['downloaded'] == 3
  again = StandIn(per_day=1)
  run(tmp_path, again)
  assert again.searches == [('2012-01-02', 'hmi')]


def test_cli_errors(tmp_path, capsys, monkeypatch):
  rc = download.main(['--start', '2012-02-02', '--end', '2012-02-01',
                      '--out', str(tmp_path)])
  assert rc == 2
  assert capsys.readouterr().err.strip().startswith('error: --end')

  def no_network(self, *args):
    raise ConnectionError('No online VSO mirrors could be found.')

  monkeypatch.setattr(download.FidoTransport, 'search', no_network)
  rc = download.main(['--start', '2012-01-01', '--end', '2012-01-01',
                      '--out', str(tmp_path), '--retries', '0'])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 1 and len(err) == 1
  assert err[0].startswith('error: network unreachable')
