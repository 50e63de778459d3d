"""Download 304 A images and LOS magnetograms, resumably (needs the network).

  python -m data_prep.download --start 2012-01-01 --end 2012-12-31 \\
      --cadence 12min --out data/raw \\
      [--instrument aia|hmi|both|euvi-a|euvi-b|eit|fsi] [--level 1|2] \\
      [--route fido|jsoc] [--jsoc-email ADDRESS]

Files land in the per-instrument tree that ``prepare build`` reads (and the
synthetic generator writes): ``OUT/<instrument>/YYYY/MM/DD/<file>.fits``
with ``<instrument>`` one of aia, hmi, euvi-a, euvi-b, eit, fsi (a name
ending .fts, or with no FITS ending as EIT's, gets .fits). The range is
processed one day at a time, so a failure loses at most a day's search;
``OUT/download_manifest.jsonl`` (JSON lines, fsynced) records every file
fetched and every day searched, so a re-run resumes: finished days are not
searched again and files already fetched are never fetched again (a
finished day whose file has vanished is searched again, and only the
missing file fetched). Each file is written under a temporary name, moved
into place in one rename and checked as a complete FITS file before it is
recorded. Transient failures (connection errors, timeouts, truncated
transfers, a JSOC export that fails or is not ready in time) are retried
with exponential backoff; a file that still fails is recorded and tried
again by the next run. When no network call succeeds at all, the command
stops with one line. One OUT holds one route per instrument: a run that
would mix them (VSO's hmi.M_45s beside JSOC's hmi.M_720s) is refused.

Routes (``Transport``: ``search(start, end, instrument, cadence) ->
[Record]`` and ``fetch(record, dest_dir) -> Path``, injectable for tests):

* ``fido`` (default), ``FidoTransport``: sunpy's Fido, no account. The VSO
  serves aia (Instrument AIA, Wavelength 304 A), hmi (Instrument HMI,
  Physobs LOS_MAGNETIC_FIELD: the hmi.M_45s series), euvi-a / euvi-b
  (Source STEREO_A / STEREO_B, Instrument SECCHI, Detector EUVI, 304 A)
  and eit (Instrument EIT, 304 A), each with Sample(cadence). The SOAR,
  through sunpy-soar, serves fsi (Instrument EUI, Level 2 or ``--level 1``,
  soar.Product eui-fsi304-image); the SOAR takes no Sample, so its files
  are thinned here to the first of each cadence interval. Downloads go
  through parfive.
* ``jsoc``, ``JsocTransport``: SDO from JSOC with drms, the paper's series:
  hmi = hmi.M_720s{magnetogram}, aia = aia.lev1_euv_12s[304]{image}, one
  export (method url, protocol fits) per instrument and day, e.g.
  ``hmi.M_720s[2012.01.01_00:00:00_TAI-2012.01.01_23:59:59_TAI@12m]``.
  JSOC exports need an e-mail address registered with JSOC
  (``--jsoc-email``; giving it selects this route).
"""
import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

from data_prep import fitsio, manifest
from magjax_common.errors import UserError, fail, one_line

MANIFEST_NAME = 'download_manifest.jsonl'
INSTRUMENTS = ('aia', 'hmi')  # --instrument both
CHOICES = ('aia', 'hmi', 'both', 'euvi-a', 'euvi-b', 'eit', 'fsi')
_STEREO = {'euvi-a': 'STEREO_A', 'euvi-b': 'STEREO_B'}
FSI_PRODUCT = 'eui-fsi304-image'
JSOC_REGISTER = 'http://jsoc.stanford.edu/ajax/register_email.html'
_EMAIL = re.compile(r'[^@\s]+@[^@\s]+\.[^@\s.]+')
_UNITS = {'s': 'second', 'sec': 'second', 'min': 'minute', 'm': 'minute',
          'h': 'hour', 'hr': 'hour', 'd': 'day'}
# Result columns naming a file and its start time: VSO's, then SOAR's.
_ID_COLUMNS = ('fileid', 'Data item ID')
_TIME_COLUMNS = ('Start Time', 'Start time')
# A JSOC record's time: 2012.01.01_00:12:00_TAI (HMI) or 2012-01-01T00:00:08Z.
_JSOC_TIME = re.compile(r'\[(\d{4})[.-](\d\d)[.-](\d\d)[_T]'
                        r'(\d\d:\d\d:\d\d(?:\.\d*)?)(_TAI|_UTC|Z)?\]')


class TransientError(RuntimeError):
  """A failure worth retrying (network hiccup, incomplete transfer)."""


class NetworkUnreachable(RuntimeError):
  """No network call of this run succeeded; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Record:
  """One file offered by a search."""
  key: str          # unique and stable across searches (e.g. VSO fileid)
  instrument: str   # one of CHOICES but 'both'; the directory under OUT
  time: str         # observation start, ISO UTC
  handle: object = dataclasses.field(default=None, compare=False, repr=False)


def parse_cadence(text):
  """'12min', '45s', '1h' -> astropy Quantity."""
  import astropy.units as u
  match = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*', str(text).lower())
  if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
    raise ValueError(f'cadence {text!r} is not like 12min, 45s or 1h')
  return float(match.group(1)) * u.Unit(_UNITS[match.group(2)])


def build_query(start, end, instrument, cadence, level=2):
  """The Fido attrs for one instrument and time range (AttrAnd).

  fsi asks the SOAR (sunpy-soar), which takes no Sample; the others the VSO.
  """
  import astropy.units as u
  from sunpy.net import attrs as a
  if instrument == 'fsi':
    import sunpy_soar  # noqa: F401  registers the SOAR client and a.soar
    return (a.Time(start, end) & a.Instrument('EUI') & a.Level(level)
            & a.soar.Product(FSI_PRODUCT))
  query = a.Time(start, end) & a.Sample(parse_cadence(cadence))
  he304 = a.Wavelength(304 * u.angstrom)
  if instrument == 'aia':
    return query & a.Instrument.aia & he304
  if instrument == 'hmi':
    return query & a.Instrument.hmi & a.Physobs.los_magnetic_field
  if instrument in _STEREO:
    return (query & a.Source(_STEREO[instrument]) & a.Instrument('SECCHI')
            & a.Detector('EUVI') & he304)
  if instrument == 'eit':
    return query & a.Instrument('EIT') & he304
  raise ValueError(f'instrument {instrument!r} is not one of '
                   f'{", ".join(c for c in CHOICES if c != "both")}')


def thin(records, start, cadence):
  """The first record of each cadence interval from ``start`` on."""
  from astropy.time import Time
  step = parse_cadence(cadence).to_value('s')
  t0 = Time(start)
  kept = {}
  for record in sorted(records, key=lambda r: r.time):
    seconds = round((Time(record.time) - t0).sec, 3)  # 1440 s, not 1439.99
    kept.setdefault(int(seconds // step), record)
  return list(kept.values())


def fits_name(name):
  """``name`` ending in .fits (VSO serves EUVI as .fts, EIT with no ending)."""
  if name.lower().endswith('.fits'):
    return name
  if name.lower().endswith(('.fts', '.fit')):
    name = name[:-4]
  return name + '.fits'


def _fetch_atomically(dest_dir, get):
  """``get(tmp_dir)`` -> a file there; moved into dest_dir in one rename."""
  dest_dir = Path(dest_dir)
  dest_dir.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(prefix='.dl-', dir=dest_dir) as tmp:
    src = Path(get(tmp))
    final = dest_dir / fits_name(src.name)
    os.replace(src, final)
  return final


def _first_column(block, names):
  return next((name for name in names if name in block.colnames), None)


class FidoTransport:
  """Search with sunpy's Fido (VSO; SOAR for fsi), fetch one row at a time
  with parfive."""
  route = 'fido'

  def __init__(self, level=2):
    self.level = level  # EUI/FSI data level

  def search(self, start, end, instrument, cadence):
    from astropy.time import Time
    from sunpy.net import Fido
    results = Fido.search(build_query(start, end, instrument, cadence,
                                      self.level))
    records = []
    for i, block in enumerate(results):
      ident = _first_column(block, _ID_COLUMNS)
      start_col = _first_column(block, _TIME_COLUMNS)
      for j, row in enumerate(block):
        t = Time(row[start_col]).utc.isot
        records.append(Record(f'{instrument}:{row[ident] if ident else t}',
                              instrument, t, handle=(results, i, j)))
    return thin(records, start, cadence) if instrument == 'fsi' else records

  def fetch(self, record, dest_dir):
    from sunpy.net import Fido
    results, i, j = record.handle

    def get(tmp):
      files = Fido.fetch(results[i, j:j + 1], path=os.path.join(tmp, '{file}'),
                         progress=False, overwrite=True)
      if getattr(files, 'errors', None):
        raise TransientError(f'{record.key}: {files.errors[0]}')
      if len(files) != 1:
        raise TransientError(f'{record.key}: fetched {len(files)} files')
      return files[0]
    return _fetch_atomically(dest_dir, get)


def _jsoc_step(cadence):
  """'12min' -> '12m', '45s' -> '45s', '1h' -> '1h' (a record-set step)."""
  seconds = parse_cadence(cadence).to_value('s')
  for unit, size in (('d', 86400), ('h', 3600), ('m', 60)):
    if seconds % size == 0:
      return f'{seconds / size:g}{unit}'
  return f'{seconds:g}s'


def jsoc_recordset(start, end, instrument, cadence):
  """The JSOC record set of one instrument and day (datetimes start, end)."""
  last = end - dt.timedelta(seconds=1)
  step = _jsoc_step(cadence)
  if instrument == 'hmi':
    fmt = '%Y.%m.%d_%H:%M:%S_TAI'
    return f'hmi.M_720s[{start:{fmt}}-{last:{fmt}}@{step}]{{magnetogram}}'
  if instrument == 'aia':
    fmt = '%Y-%m-%dT%H:%M:%SZ'
    return (f'aia.lev1_euv_12s[{start:{fmt}}-{last:{fmt}}@{step}][304]'
            '{image}')
  raise ValueError(f'JSOC serves aia and hmi here, not {instrument!r}')


def jsoc_time(record):
  """The ISO UTC time of a JSOC record string (its first bracket)."""
  from astropy.time import Time
  match = _JSOC_TIME.search(record)
  if not match:
    raise TransientError(f'JSOC record {record!r} names no time')
  year, month, day, hms, zone = match.groups()
  scale = 'tai' if zone == '_TAI' else 'utc'
  return Time(f'{year}-{month}-{day}T{hms}', scale=scale).utc.isot


@contextlib.contextmanager
def _jsoc_errors(what):
  """drms failures (a failed export, a page that is no JSON) as transient."""
  import drms
  try:
    yield
  except (drms.DrmsError, json.JSONDecodeError) as exc:
    raise TransientError(f'{what}: {one_line(exc, with_type=True)}') from exc


def _drms_client(email):
  """drms.Client, which asks JSOC whether ``email`` is registered."""
  import drms
  try:
    return drms.Client(email=email)
  except json.JSONDecodeError:
    raise  # a page that is no JSON: JSOC is down (transient, see search)
  except ValueError as exc:  # 'Email address is invalid or not registered'
    raise UserError(f'--jsoc-email {email}: JSOC says it is not registered '
                    f'for exports (register it at {JSOC_REGISTER})') from exc


class JsocTransport:
  """SDO from JSOC with drms: a search is one export (method url, protocol
  fits) of an instrument's day, a fetch one of its files."""
  route = 'jsoc'

  def __init__(self, email, *, wait_timeout=3600.0, connect=_drms_client):
    self.email = email
    self.wait_timeout = wait_timeout  # seconds for JSOC to stage an export
    self._connect = connect           # email -> drms.Client (or a stand-in)
    self._client = None

  def search(self, start, end, instrument, cadence):
    ds = jsoc_recordset(start, end, instrument, cadence)
    with _jsoc_errors(ds):
      if self._client is None:
        self._client = self._connect(self.email)
      request = self._client.export(ds, method='url', protocol='fits')
      if not request.wait(timeout=self.wait_timeout):
        raise TransientError(f'{ds}: export {request.id} not ready after '
                             f'{self.wait_timeout:g} s')
      names = list(request.urls.record)
    return [Record(f'{instrument}:{name}', instrument, jsoc_time(name),
                   handle=(request, index))
            for index, name in enumerate(names)]

  def fetch(self, record, dest_dir):
    request, index = record.handle

    def get(tmp):
      with _jsoc_errors(record.key):
        path = request.download(tmp, index=index)['download'].iloc[0]
      if not path:  # drms swallows HTTP and URL errors
        raise TransientError(f'{record.key}: download from JSOC failed')
      return path
    return _fetch_atomically(dest_dir, get)


def days(start, end):
  """[(day_start, day_end)] datetimes covering start .. end (inclusive)."""
  first = dt.date.fromisoformat(start)
  last = dt.date.fromisoformat(end)
  if last < first:
    raise ValueError(f'--end {end} is before --start {start}')
  out = []
  day = first
  while day <= last:
    t0 = dt.datetime.combine(day, dt.time())
    out.append((t0, t0 + dt.timedelta(days=1)))
    day += dt.timedelta(days=1)
  return out


def with_retries(fn, *, retries, backoff, sleep=time.sleep):
  """fn() with up to ``retries`` retries on transient errors (2^n backoff)."""
  for attempt in range(retries + 1):
    try:
      return fn()
    except (TransientError, OSError) as exc:  # ConnectionError, TimeoutError
      if attempt == retries:
        raise
      sleep(backoff * 2 ** attempt)


def _load_state(path):
  """(fetched key -> path, finished (instrument, day) -> its file paths,
  instrument -> the routes its records came through)."""
  fetched, done_days, day_of, routes = {}, {}, {}, {}
  for rec in manifest.read_manifest(str(path)):
    if rec.get('status') in ('ok', 'done'):  # older records: through Fido
      routes.setdefault(rec['instrument'], set()).add(rec.get('route', 'fido'))
    if rec.get('event') == 'file':
      if rec.get('status') == 'ok':
        fetched[rec['key']] = rec['path']
        day_of[rec['key']] = (rec['instrument'], rec['day'])
      else:
        fetched.pop(rec['key'], None)
    elif rec.get('event') == 'day' and rec.get('status') == 'done':
      done_days[(rec['instrument'], rec['day'])] = []
  for key, where in day_of.items():
    if where in done_days and key in fetched:
      done_days[where].append(fetched[key])
  return fetched, done_days, routes


def _check_one_route(out, instruments, route, routes):
  """UserError if OUT holds an instrument's files from another route."""
  for inst in instruments:
    other = sorted(routes.get(inst, set()) - {route})
    if other:
      raise UserError(f'{out}: its {inst} files came through --route '
                      f'{other[0]}; give --route {route} another --out')


def _fetch_checked(transport, record, dest_dir):
  path = Path(transport.fetch(record, dest_dir))
  try:
    fitsio.check_complete_fits(path)
  except fitsio.DataError as exc:
    path.unlink(missing_ok=True)
    raise TransientError(str(exc)) from exc
  return path


def download(start, end, cadence, out, instruments=INSTRUMENTS, *,
             transport=None, retries=4, backoff=2.0, sleep=time.sleep,
             log=print):
  """Downloads the range; returns a summary dict. See the module doc."""
  transport = transport or FidoTransport()
  route = getattr(transport, 'route', 'fido')
  parse_cadence(cadence)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  mpath = out / MANIFEST_NAME
  fetched, done_days, routes = _load_state(mpath)
  _check_one_route(out, instruments, route, routes)
  summary = {'downloaded': 0, 'already': 0, 'failed': 0, 'days_searched': 0,
             'days_skipped': 0, 'days_failed': 0}
  reached = False
  with manifest.ManifestWriter(str(mpath)) as writer:

    def note(event, **fields):
      writer.append({'event': event, 'route': route, **fields})
    for t0, t1 in days(start, end):
      day = t0.date().isoformat()
      for inst in instruments:
        # A finished day is skipped unless one of its files has vanished.
        if (inst, day) in done_days and all(
            (out / p).is_file() for p in done_days[(inst, day)]):
          summary['days_skipped'] += 1
          continue
        try:
          records = with_retries(
              lambda: transport.search(t0, t1, inst, cadence),
              retries=retries, backoff=backoff, sleep=sleep)
        except (TransientError, OSError) as exc:
          if not reached:
            raise NetworkUnreachable(
                f'network unreachable: {inst} search for {day} failed after '
                f'{retries + 1} tries ({one_line(exc, with_type=True)})') from exc
          summary['days_failed'] += 1
          note('day', instrument=inst, day=day, status='failed',
               reason=one_line(exc, with_type=True))
          continue
        reached = True
        summary['days_searched'] += 1
        complete = True
        for record in records:
          old = fetched.get(record.key)
          if old is not None and (out / old).is_file():
            summary['already'] += 1
            continue
          dest = out / inst / record.time[:4] / record.time[5:7] / \
              record.time[8:10]
          try:
            path = with_retries(
                lambda: _fetch_checked(transport, record, dest),
                retries=retries, backoff=backoff, sleep=sleep)
          except (TransientError, OSError) as exc:
            complete = False
            summary['failed'] += 1
            note('file', key=record.key, instrument=inst, time=record.time,
                 status='failed', reason=one_line(exc, with_type=True))
            continue
          rel = str(path.relative_to(out))
          fetched[record.key] = rel
          summary['downloaded'] += 1
          note('file', key=record.key, instrument=inst, day=day,
               time=record.time, status='ok', path=rel)
        # A day with no record may be a silent search failure: search again
        # next run rather than trusting it.
        if complete and records:
          note('day', instrument=inst, day=day, status='done',
               files=len(records))
      log(f'{day}: {summary}')
  return summary


def _transport(args):
  """The route the flags ask for; UserError for a bad combination."""
  route = args.route or ('jsoc' if args.jsoc_email is not None else 'fido')
  if route == 'fido':
    if args.jsoc_email is not None:
      raise UserError('--jsoc-email is for --route jsoc only')
    return FidoTransport(level=args.level)
  if args.instrument not in ('aia', 'hmi', 'both'):
    raise UserError(f'--route jsoc serves SDO only (--instrument aia, hmi or '
                    f'both), not {args.instrument}')
  if not args.jsoc_email:
    raise UserError('--route jsoc needs --jsoc-email ADDRESS, an address '
                    f'registered with JSOC ({JSOC_REGISTER})')
  if not _EMAIL.fullmatch(args.jsoc_email):
    raise UserError(f'--jsoc-email {args.jsoc_email!r} is not an e-mail '
                    'address')
  return JsocTransport(args.jsoc_email)


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m data_prep.download',
      description='Download full-disk 304 A images (SDO/AIA, STEREO/EUVI, '
      'SOHO/EIT, Solar Orbiter/FSI) and HMI LOS magnetograms (needs the '
      'network); resumable.')
  parser.add_argument('--start', required=True, help='first day, YYYY-MM-DD')
  parser.add_argument('--end', required=True, help='last day, YYYY-MM-DD')
  parser.add_argument('--cadence', default='12min')
  parser.add_argument('--out', type=Path, default=Path('data/raw'))
  parser.add_argument('--instrument', choices=CHOICES, default='both',
                      help='both = aia and hmi')
  parser.add_argument('--level', type=int, choices=(1, 2), default=2,
                      help='EUI/FSI data level (fsi only)')
  parser.add_argument('--route', choices=('fido', 'jsoc'),
                      help='fido: VSO and SOAR, no account (the default); '
                      'jsoc: hmi.M_720s and aia.lev1_euv_12s through drms '
                      '(the default with --jsoc-email)')
  parser.add_argument('--jsoc-email', metavar='ADDRESS',
                      help='an address registered with JSOC for exports')
  parser.add_argument('--retries', type=int, default=4)
  parser.add_argument('--backoff', type=float, default=2.0,
                      help='seconds before the first retry (doubles)')
  args = parser.parse_args(argv)
  instruments = INSTRUMENTS if args.instrument == 'both' else (
      args.instrument,)
  try:
    days(args.start, args.end)
    parse_cadence(args.cadence)
    transport = _transport(args)
  except (ValueError, UserError) as exc:
    return fail(exc)
  # sunpy logs every mirror it tries; the summary and errors say enough.
  warnings.simplefilter('ignore')
  from sunpy import log as sunpy_log
  sunpy_log.setLevel('ERROR')
  try:
    summary = download(args.start, args.end, args.cadence, args.out,
                       instruments, transport=transport, retries=args.retries,
                       backoff=args.backoff,
                       log=lambda line: print(line, flush=True))
  except NetworkUnreachable as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 1
  except UserError as exc:
    return fail(exc)
  except OSError as exc:
    print(f'error: {args.out}: {exc.strerror or exc}', file=sys.stderr)
    return 2
  print(f'done: {summary}')
  return 1 if summary['failed'] or summary['days_failed'] else 0


if __name__ == '__main__':
  sys.exit(main())
