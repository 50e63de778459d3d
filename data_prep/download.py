"""Download SDO AIA 304 A and HMI LOS magnetograms (needs the network).

  python -m data_prep.download --start 2012-01-01 --end 2012-12-31 \\
      --cadence 12min --out data/raw [--instrument aia|hmi|both]

Files land in the per-instrument tree that ``prepare build`` reads (and the
synthetic generator writes): ``OUT/aia/YYYY/MM/DD/<file>``,
``OUT/hmi/YYYY/MM/DD/<file>``. The range is processed one day at a time, so
a failure loses at most a day's search; ``OUT/download_manifest.jsonl``
(JSON lines, fsynced) records every file fetched and every day searched, so
a re-run resumes: finished days are not searched again and files already
fetched are never fetched again (a finished day whose file has vanished is
searched again, and only the missing file fetched). Transient failures
(connection errors, timeouts, truncated transfers) are retried with
exponential backoff; a file that still fails is recorded and tried again by
the next run. When no network call succeeds at all, the command stops with
one line.

The transport is injectable (``Transport``: ``search(start, end,
instrument, cadence) -> [Record]`` and ``fetch(record, dest_dir) -> Path``).
The default, ``FidoTransport``, queries the VSO through sunpy's Fido (AIA:
Instrument AIA, Wavelength 304 A, Sample(cadence); HMI: Instrument HMI,
Physobs LOS_MAGNETIC_FIELD, Sample(cadence), i.e. the hmi.M_45s series the
VSO serves) and downloads with parfive. JSOC's hmi.M_720s needs a
registered e-mail (``a.jsoc.Notify``) and is not the default.
"""
import argparse
import dataclasses
import datetime as dt
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

from data_prep import fitsio, manifest
from magjax_common.errors import one_line

MANIFEST_NAME = 'download_manifest.jsonl'
INSTRUMENTS = ('aia', 'hmi')
_UNITS = {'s': 'second', 'sec': 'second', 'min': 'minute', 'm': 'minute',
          'h': 'hour', 'hr': 'hour', 'd': 'day'}


class TransientError(RuntimeError):
  """A failure worth retrying (network hiccup, incomplete transfer)."""


class NetworkUnreachable(RuntimeError):
  """No network call of this run succeeded; the message is one line."""


@dataclasses.dataclass(frozen=True)
class Record:
  """One file offered by a search."""
  key: str          # unique and stable across searches (e.g. VSO fileid)
  instrument: str   # 'aia' | 'hmi'
  time: str         # observation start, ISO UTC
  handle: object = dataclasses.field(default=None, compare=False, repr=False)


def parse_cadence(text):
  """'12min', '45s', '1h' -> astropy Quantity."""
  import astropy.units as u
  match = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*', str(text).lower())
  if not match or match.group(2) not in _UNITS or float(match.group(1)) <= 0:
    raise ValueError(f'cadence {text!r} is not like 12min, 45s or 1h')
  return float(match.group(1)) * u.Unit(_UNITS[match.group(2)])


def build_query(start, end, instrument, cadence):
  """The Fido attrs for one instrument and time range (AttrAnd)."""
  import astropy.units as u
  from sunpy.net import attrs as a
  query = a.Time(start, end) & a.Sample(parse_cadence(cadence))
  if instrument == 'aia':
    return query & a.Instrument.aia & a.Wavelength(304 * u.angstrom)
  if instrument == 'hmi':
    return query & a.Instrument.hmi & a.Physobs.los_magnetic_field
  raise ValueError(f'instrument {instrument!r} is not aia or hmi')


class FidoTransport:
  """Search with sunpy's Fido (VSO), fetch one row at a time with parfive."""

  def search(self, start, end, instrument, cadence):
    from astropy.time import Time
    from sunpy.net import Fido
    results = Fido.search(build_query(start, end, instrument, cadence))
    records = []
    for i, block in enumerate(results):
      for j, row in enumerate(block):
        t = Time(row['Start Time']).utc.isot
        ident = row['fileid'] if 'fileid' in block.colnames else t
        records.append(Record(f'{instrument}:{ident}', instrument, t,
                              handle=(results, i, j)))
    return records

  def fetch(self, record, dest_dir):
    from sunpy.net import Fido
    results, i, j = record.handle
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.dl-', dir=dest_dir) as tmp:
      files = Fido.fetch(results[i, j:j + 1], path=os.path.join(tmp, '{file}'),
                         progress=False, overwrite=True)
      if getattr(files, 'errors', None):
        raise TransientError(f'{record.key}: {files.errors[0]}')
      if len(files) != 1:
        raise TransientError(f'{record.key}: fetched {len(files)} files')
      src = Path(files[0])
      final = dest_dir / src.name
      os.replace(src, final)
    return final


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
  """(fetched key -> path, finished (instrument, day) -> its file paths)."""
  fetched, done_days, day_of = {}, {}, {}
  for rec in manifest.read_manifest(str(path)):
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
  return fetched, done_days


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
  parse_cadence(cadence)
  out = Path(out)
  out.mkdir(parents=True, exist_ok=True)
  mpath = out / MANIFEST_NAME
  fetched, done_days = _load_state(mpath)
  summary = {'downloaded': 0, 'already': 0, 'failed': 0, 'days_searched': 0,
             'days_skipped': 0, 'days_failed': 0}
  reached = False
  with manifest.ManifestWriter(str(mpath)) as writer:
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
          writer.append({'event': 'day', 'instrument': inst, 'day': day,
                         'status': 'failed', 'reason': one_line(exc, with_type=True)})
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
            writer.append({'event': 'file', 'key': record.key,
                           'instrument': inst, 'time': record.time,
                           'status': 'failed', 'reason': one_line(exc, with_type=True)})
            continue
          rel = str(path.relative_to(out))
          fetched[record.key] = rel
          summary['downloaded'] += 1
          writer.append({'event': 'file', 'key': record.key,
                         'instrument': inst, 'day': day,
                         'time': record.time, 'status': 'ok', 'path': rel})
        # A day with no record may be a silent search failure: search again
        # next run rather than trusting it.
        if complete and records:
          writer.append({'event': 'day', 'instrument': inst, 'day': day,
                         'status': 'done', 'files': len(records)})
      log(f'{day}: {summary}')
  return summary


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m data_prep.download',
      description='Download SDO AIA 304 / HMI LOS full-disk files (needs '
      'the network); resumable.')
  parser.add_argument('--start', required=True, help='first day, YYYY-MM-DD')
  parser.add_argument('--end', required=True, help='last day, YYYY-MM-DD')
  parser.add_argument('--cadence', default='12min')
  parser.add_argument('--out', type=Path, default=Path('data/raw'))
  parser.add_argument('--instrument', choices=('aia', 'hmi', 'both'),
                      default='both')
  parser.add_argument('--retries', type=int, default=4)
  parser.add_argument('--backoff', type=float, default=2.0,
                      help='seconds before the first retry (doubles)')
  args = parser.parse_args(argv)
  instruments = INSTRUMENTS if args.instrument == 'both' else (
      args.instrument,)
  try:
    days(args.start, args.end)
    parse_cadence(args.cadence)
  except ValueError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  # sunpy logs every mirror it tries; the summary and errors say enough.
  warnings.simplefilter('ignore')
  from sunpy import log as sunpy_log
  sunpy_log.setLevel('ERROR')
  try:
    summary = download(args.start, args.end, args.cadence, args.out,
                       instruments, retries=args.retries,
                       backoff=args.backoff,
                       log=lambda line: print(line, flush=True))
  except NetworkUnreachable as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 1
  except OSError as exc:
    print(f'error: {args.out}: {exc.strerror or exc}', file=sys.stderr)
    return 2
  print(f'done: {summary}')
  return 1 if summary['failed'] or summary['days_failed'] else 0


if __name__ == '__main__':
  sys.exit(main())
