"""data_prep.download: queries, routes, resume and retries.

No network here: stand-in transports (and a stand-in drms client behind the
real JSOC transport) copy sunpy's real AIA test file and fail on purpose
(connection errors, truncated transfers, failed or late JSOC exports).
"""
import json
import shutil
import urllib.error
from pathlib import Path

import astropy.units as u
import drms
import pandas as pd
import pytest
import sunpy.data.test
import sunpy_soar
from astropy.table import Table
from sunpy.net import Fido
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
  with pytest.raises(ValueError, match='not one of aia, hmi, euvi-a'):
    download.build_query('2012-01-01', '2012-01-02', 'lasco', '12min')


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


# --- The new instruments (Fido: VSO and SOAR) --------------------------------

T0, T1 = '2012-01-01', '2012-01-02'
HE304 = a.Wavelength(304 * u.angstrom)


def typed(query):
  """A query's attrs with their types: sunpy's Attr equality ignores the
  type (Source('X') == Instrument('X')), this comparison does not."""
  return {(type(attr), attr) for attr in query.attrs}


@pytest.mark.parametrize('instrument, attrs', [
    ('euvi-a', [a.Source('STEREO_A'), a.Instrument('SECCHI'),
                a.Detector('EUVI'), HE304]),
    ('euvi-b', [a.Source('STEREO_B'), a.Instrument('SECCHI'),
                a.Detector('EUVI'), HE304]),
    ('eit', [a.Instrument('EIT'), HE304]),
])
def test_stereo_and_soho_queries_go_to_the_vso(instrument, attrs):
  from sunpy.net.vso import VSOClient
  query = download.build_query(T0, T1, instrument, '12min')
  expected = a.Time(T0, T1) & a.Sample(720 * u.s)
  for attr in attrs:
    expected = expected & attr
  assert typed(query) == typed(expected)
  assert Fido._check_registered_widgets(*query.attrs) == [VSOClient]


@pytest.mark.parametrize('level', [2, 1])
def test_fsi_query_goes_to_the_soar_at_the_level_asked(level):
  query = download.build_query(T0, T1, 'fsi', '12min', level=level)
  expected = (a.Time(T0, T1) & a.Instrument('EUI') & a.Level(level)
              & sunpy_soar.attrs.Product('eui-fsi304-image'))
  assert typed(query) == typed(expected)  # no Sample: the SOAR refuses it
  assert Fido._check_registered_widgets(*query.attrs) == [
      sunpy_soar.SOARClient]
  (params,) = sunpy_soar.attrs.walker.create(query)  # SOAR's ADQL terms
  assert {"instrument='EUI'", f"level='L{level}'",
          "descriptor='eui-fsi304-image'"} <= set(params)


class Results(list):
  """Fido's UnifiedResponse stand-in: blocks indexable as [block, rows]."""

  def __getitem__(self, key):
    if isinstance(key, tuple):
      block, rows = key
      return list.__getitem__(self, block)[rows]
    return list.__getitem__(self, key)


def fake_fido(monkeypatch, columns, rows):
  """Fido.search answers `rows` (time, id, file name) under `columns`;
  Fido.fetch writes SOURCE under the row's name. Returns the fetch log."""
  block = Table(rows=rows, names=(*columns, 'name'))
  fetched = []

  def fetch(rows, path, **_):
    (row,) = rows
    dest = Path(path.format(file=row['name']))
    shutil.copyfile(SOURCE, dest)
    fetched.append(row['name'])
    return [str(dest)]

  monkeypatch.setattr(Fido, 'search', lambda *q: Results([block]))
  monkeypatch.setattr(Fido, 'fetch', fetch)
  return fetched


def test_fsi_search_keeps_the_first_file_of_each_cadence_interval(
    monkeypatch):
  minutes = [56, 0, 4, 8, 11, 12, 16, 20, 24, 28, 32, 36, 40, 44, 48, 52]
  fake_fido(monkeypatch, ('Start time', 'Data item ID'),
            [(f'2022-03-01 00:{m:02d}:00.000', f'fsi{m}', f'{m}.fits')
             for m in minutes])
  records = download.FidoTransport().search('2022-03-01', '2022-03-02',
                                            'fsi', '12min')
  assert [r.key for r in records] == [
      'fsi:fsi0', 'fsi:fsi12', 'fsi:fsi24', 'fsi:fsi36', 'fsi:fsi48']
  assert records[1].time == '2022-03-01T00:12:00.000'


@pytest.mark.parametrize('instrument, name, stored', [
    ('euvi-a', '20120101_000615_n4euA.fts', '20120101_000615_n4euA.fits'),
    ('euvi-b', '20120101_000615_n4euB.fts', '20120101_000615_n4euB.fits'),
    ('eit', 'efz20120101.000010', 'efz20120101.000010.fits'),
    ('fsi', 'solo_L2_eui-fsi304-image_20120101T000010_V01.fits',
     'solo_L2_eui-fsi304-image_20120101T000010_V01.fits'),
])
def test_fido_files_land_as_fits_in_the_instrument_tree_once(
    tmp_path, monkeypatch, instrument, name, stored):
  columns = (('Start time', 'Data item ID') if instrument == 'fsi' else
             ('Start Time', 'fileid'))
  fetched = fake_fido(monkeypatch, columns,
                      [('2012-01-01 00:00:10.000', 'f1', name)])
  summary, _ = run(tmp_path, download.FidoTransport(), end='2012-01-01',
                   instruments=(instrument,))
  assert summary['downloaded'] == 1 and fetched == [name]
  day = tmp_path / 'raw' / instrument / '2012/01/01'
  assert [p.name for p in day.iterdir()] == [stored]  # no temporary left
  ok = [r for r in manifest.read_manifest(
      str(tmp_path / 'raw' / download.MANIFEST_NAME)) if r.get('path')]
  assert [(r['key'], r['route']) for r in ok] == [(f'{instrument}:f1',
                                                   'fido')]
  summary, _ = run(tmp_path, download.FidoTransport(), end='2012-01-01',
                   instruments=(instrument,))
  assert fetched == [name] and summary['days_skipped'] == 1


# --- SDO through JSOC (drms) ------------------------------------------------

HMI_DAY = ('hmi.M_720s[2012.01.01_00:00:00_TAI-2012.01.01_23:59:59_TAI@12m]'
           '{magnetogram}')
AIA_DAY = ('aia.lev1_euv_12s[2012-01-01T00:00:00Z-2012-01-01T23:59:59Z@12m]'
           '[304]{image}')


def test_jsoc_record_sets_name_the_papers_series():
  (t0, t1), = download.days('2012-01-01', '2012-01-01')
  assert download.jsoc_recordset(t0, t1, 'hmi', '12min') == HMI_DAY
  assert download.jsoc_recordset(t0, t1, 'aia', '12min') == AIA_DAY
  hmi_45s = download.jsoc_recordset(t0, t1, 'hmi', '45s')
  assert hmi_45s.endswith('@45s]{magnetogram}')
  assert '@1h][304]' in download.jsoc_recordset(t0, t1, 'aia', '60min')
  with pytest.raises(ValueError, match='JSOC serves aia and hmi'):
    download.jsoc_recordset(t0, t1, 'eit', '12min')


@pytest.mark.parametrize('record, utc', [
    ('hmi.M_720s[2012.01.01_01:00:00_TAI][3]', '2012-01-01T00:59:26.000'),
    ('hmi.M_720s[2012.01.01_00:00:00_TAI][3]', '2011-12-31T23:59:26.000'),
    ('aia.lev1_euv_12s[2012-01-01T00:00:08Z][304]', '2012-01-01T00:00:08.000'),
])
def test_jsoc_record_times_become_utc(record, utc):
  assert download.jsoc_time(record) == utc


class FakeExport:
  """drms.ExportRequest stand-in: the staged records, each file SOURCE."""

  def __init__(self, client, records, ready):
    self.client, self.ready, self.id = client, ready, 'JSOC_20120101_001'
    names = [FakeJsoc.filename(r) for r in records]
    self.urls = pd.DataFrame({'record': records, 'filename': names,
                              'url': ['http://jsoc/' + n for n in names]})

  def wait(self, timeout=None):
    return self.ready

  def download(self, directory, index=None):
    row = self.urls.iloc[index]
    path = Path(directory) / row.filename
    if self.client.fail_download:  # drms returns None for a failed file
      self.client.fail_download -= 1
      path = None
    else:
      shutil.copyfile(SOURCE, path)
    self.client.downloads.append(row.record)
    return pd.DataFrame({'record': [row.record], 'url': [row.url],
                         'download': [None if path is None else str(path)]})


class FakeJsoc:
  """drms.Client stand-in: each export stages `per_day` hourly records of
  the day asked; the first `fail` exports fail, the next `late` are not
  ready in time, the first `fail_download` downloads fail."""

  def __init__(self, per_day=2, fail=0, late=0, fail_download=0):
    self.per_day, self.fail, self.late = per_day, fail, late
    self.fail_download = fail_download
    self.exports, self.downloads = [], []

  @staticmethod
  def filename(record):
    when = record[record.index('[') + 1:record.index(']')]
    if record.startswith('hmi'):  # as JSOC names them
      return f"hmi.m_720s.{when.replace('.', '').replace(':', '')}." \
          '3.magnetogram.fits'
    return f"aia.lev1_euv_12s.{when.replace(':', '')}.304.image_lev1.fits"

  def export(self, ds, method, protocol):
    self.exports.append((ds, method, protocol))
    if self.fail:
      self.fail -= 1
      raise drms.DrmsExportError('Export failed [status=4]')
    ready = self.late == 0
    self.late = max(self.late - 1, 0)
    day = ds[ds.index('[') + 1:][:10]
    if ds.startswith('hmi'):
      records = [f'hmi.M_720s[{day}_{h:02d}:00:00_TAI][3]'
                 for h in range(1, self.per_day + 1)]
    else:
      records = [f'aia.lev1_euv_12s[{day}T{h:02d}:00:08Z][304]'
                 for h in range(1, self.per_day + 1)]
    return FakeExport(self, records, ready)


def jsoc(client, emails=None):
  """The real JSOC transport, its drms client a stand-in."""
  emails = [] if emails is None else emails

  def connect(email):
    emails.append(email)
    return client
  return download.JsocTransport('me@example.org', connect=connect)


def test_jsoc_route_exports_each_day_once_and_resumes(tmp_path):
  client, emails = FakeJsoc(per_day=2), []
  summary, sleeps = run(tmp_path, jsoc(client, emails), end='2012-01-01')
  assert emails == ['me@example.org']  # one client for the whole run
  assert client.exports == [(AIA_DAY, 'url', 'fits'),
                            (HMI_DAY, 'url', 'fits')]
  assert summary['downloaded'] == 4 and sleeps == []
  raw = tmp_path / 'raw'
  assert (raw / 'hmi/2012/01/01/hmi.m_720s.20120101_010000_TAI.3.magnetogram'
          '.fits').read_bytes() == SOURCE.read_bytes()
  assert (raw / 'aia/2012/01/01/aia.lev1_euv_12s.2012-01-01T020008Z.304.'
          'image_lev1.fits').is_file()
  ok = [r for r in manifest.read_manifest(str(raw / download.MANIFEST_NAME))
        if r.get('event') == 'file']
  assert {r['route'] for r in ok} == {'jsoc'}
  assert 'hmi:hmi.M_720s[2012.01.01_01:00:00_TAI][3]' in {r['key'] for r in ok}

  again = FakeJsoc()
  summary, _ = run(tmp_path, jsoc(again), end='2012-01-01')
  assert again.exports == [] and again.downloads == []
  assert summary['days_skipped'] == 2


def test_jsoc_failed_or_late_exports_and_lost_files_are_retried(tmp_path):
  client = FakeJsoc(per_day=1, fail=1, late=1, fail_download=1)
  summary, sleeps = run(tmp_path, jsoc(client), end='2012-01-01',
                        instruments=('hmi',))
  assert len(client.exports) == 3  # failed, not staged in time, staged
  assert client.downloads == ['hmi.M_720s[2012.01.01_01:00:00_TAI][3]'] * 2
  assert summary['downloaded'] == 1 and summary['failed'] == 0
  assert sleeps == [0.5, 1.0] + [0.5]  # two exports, then one download


def test_jsoc_unreachable_stops_with_one_line(tmp_path):
  tries = []

  def connect(email):
    tries.append(email)
    raise urllib.error.URLError('[Errno -3] Temporary failure in name '
                                'resolution')
  with pytest.raises(download.NetworkUnreachable) as exc:
    run(tmp_path, download.JsocTransport('me@example.org', connect=connect))
  assert '\n' not in str(exc.value) and len(tries) == 4
  assert str(exc.value).startswith('network unreachable: aia search for '
                                   '2012-01-01 failed after 4 tries')


def argv(out, *extra):
  return ['--start', '2012-01-01', '--end', '2012-01-01', '--out', str(out),
          '--retries', '0', *extra]


def test_cli_jsoc_down_is_one_line_and_unregistered_email_exit_2(
    tmp_path, capsys, monkeypatch):
  def html_page(email):
    raise json.JSONDecodeError('Expecting value', '<html>', 0)
  monkeypatch.setattr(drms, 'Client', html_page)
  rc = download.main(argv(tmp_path / 'raw', '--jsoc-email', 'me@example.org'))
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 1 and len(err) == 1
  assert err[0].startswith('error: network unreachable: aia search for '
                           '2012-01-01')

  def unregistered(email):
    raise ValueError('Email address is invalid or not registered')
  monkeypatch.setattr(drms, 'Client', unregistered)
  out = tmp_path / 'raw2'
  rc = download.main(argv(out, '--jsoc-email', 'me@example.org'))
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1
  assert err[0].startswith('error: --jsoc-email me@example.org: JSOC says it '
                           'is not registered')
  assert manifest.read_manifest(str(out / download.MANIFEST_NAME)) == []


@pytest.mark.parametrize('flags, message', [
    (['--route', 'jsoc'], '--route jsoc needs --jsoc-email ADDRESS'),
    (['--route', 'jsoc', '--jsoc-email', ''],
     '--route jsoc needs --jsoc-email ADDRESS'),
    (['--jsoc-email', 'me-at-example.org'], 'is not an e-mail address'),
    (['--jsoc-email', 'me@example'], 'is not an e-mail address'),
    (['--jsoc-email', 'me@example.org', '--instrument', 'fsi'],
     '--route jsoc serves SDO only'),
    (['--route', 'fido', '--jsoc-email', 'me@example.org'],
     '--jsoc-email is for --route jsoc only'),
])
def test_cli_missing_or_bad_jsoc_email_is_one_line_exit_2(
    tmp_path, capsys, monkeypatch, flags, message):
  monkeypatch.setattr(drms, 'Client', None)  # never reached
  rc = download.main(argv(tmp_path / 'raw', *flags))
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1
  assert err[0].startswith('error: ') and message in err[0]
  assert not (tmp_path / 'raw').exists()  # nothing written


def test_cli_rejects_an_unknown_instrument(tmp_path, capsys):
  with pytest.raises(SystemExit) as exc:
    download.main(argv(tmp_path / 'raw', '--instrument', 'lasco'))
  assert exc.value.code == 2
  assert "invalid choice: 'lasco'" in capsys.readouterr().err
  assert not (tmp_path / 'raw').exists()


def test_one_out_holds_one_route_per_instrument(tmp_path):
  run(tmp_path, StandIn(per_day=1), end='2012-01-01', instruments=('hmi',))
  client = FakeJsoc()
  with pytest.raises(download.UserError, match='hmi files came through '
                     '--route fido; give --route jsoc another --out'):
    run(tmp_path, jsoc(client), end='2012-01-01')
  assert client.exports == []
  summary, _ = run(tmp_path, jsoc(client), end='2012-01-01',
                   instruments=('aia',))  # aia has no files from Fido here
  assert summary['downloaded'] == 2
