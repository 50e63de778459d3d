"""CLI: write SYNTHETIC full-disk AIA 304 / HMI LOS FITS pairs.

  python -m data_prep.synthesize --out data/raw --start 2012-01-01 \
      --end 2012-12-31 --every 6h --size 1024 --seed 0 [--workers 2]

Layout (the same per-instrument tree the real downloader uses):
  OUT/aia/YYYY/MM/DD/aia_304_YYYYMMDDTHHMMSS.fits
  OUT/hmi/YYYY/MM/DD/hmi_m_YYYYMMDDTHHMMSS.fits
named by the nominal (UTC) time of the pair. Files are tile-compressed as
JSOC exports them (empty primary HDU, RICE image in HDU 1): AIA int16 DN,
HMI int32 with BSCALE 0.1 and BLANK off the disk. Every header says
SYNTHETIC. The same seed and size give byte-identical files, and a
timestamp's content does not depend on --start/--every. Files are written
atomically; a re-run skips pairs whose two files exist. A reproducible
fraction (--bad-fraction, default 2 %) of HMI frames has QUALITY != 0.

Observer keywords: AIA carries HGLN_OBS/HGLT_OBS and CRLN_OBS/CRLT_OBS; HMI
only CRLN_OBS/CRLT_OBS/DSUN_OBS (as some real HMI files), from which sunpy
derives the same observer (CRLN computed with sunpy's own Carrington frame,
so unlike real files there is no ~0.07 deg ephemeris disagreement).

Python API for tests: ``synthesize_pair(time, size, seed, out_dir)``.
"""
import argparse
import concurrent.futures
import datetime as dt
import os
import re
import sys
import time as _time
from pathlib import Path

import numpy as np
from astropy.io import fits

from data_prep import synthetic
from magjax_common import fileio

HMI_BSCALE = 0.1  # G per count, as hmi.M_720s
HMI_BLANK = -2147483648
_EVERY_UNITS = {'s': 1, 'sec': 1, 'm': 60, 'min': 60, 'h': 3600, 'd': 86400}


def pair_paths(out_dir, when):
  """(aia_path, hmi_path) of the pair at nominal UTC datetime `when`."""
  out_dir = Path(out_dir)
  day = when.strftime('%Y/%m/%d')
  stamp = when.strftime('%Y%m%dT%H%M%S')
  return (out_dir / 'aia' / day / f'aia_304_{stamp}.fits',
          out_dir / 'hmi' / day / f'hmi_m_{stamp}.fits')


def _primary(header):
  """Empty primary HDU that carries the SYNTHETIC flag and provenance."""
  h = fits.Header()
  for key in ('TELESCOP', 'INSTRUME'):
    h[key] = header[key]
  h['HIERARCH SYNTHETIC'] = (True, 'SYNTHETIC data, not an SDO observation')
  for card in header.cards:
    if card.keyword in ('HISTORY', 'COMMENT'):
      h.append(card)
  return fits.PrimaryHDU(header=h)


def aia_hdulist(header, data):
  """AIA: int16 DN, RICE-compressed image in HDU 1 (lossless)."""
  image = fits.CompImageHDU(data=np.asarray(data, dtype=np.int16),
                            header=header, compression_type='RICE_1')
  return fits.HDUList([_primary(header), image])


def hmi_hdulist(header, data):
  """HMI: int32 counts of 0.1 G (BSCALE), BLANK where NaN, RICE (lossless)."""
  data = np.asarray(data, dtype=np.float64)
  finite = np.isfinite(data)
  counts = np.full(data.shape, HMI_BLANK, dtype=np.int32)
  counts[finite] = np.round(data[finite] / HMI_BSCALE).astype(np.int32)
  image = fits.CompImageHDU(data=counts, header=header,
                            compression_type='RICE_1')
  # Set after construction, so astropy stores the counts as given and
  # readers apply the scaling (data back in gauss, NaN off the disk).
  image.header['BSCALE'] = HMI_BSCALE
  image.header['BZERO'] = 0.0
  image.header['BLANK'] = HMI_BLANK
  return fits.HDUList([_primary(header), image])


def _as_datetime(when):
  """A naive UTC datetime from a datetime, astropy Time or ISO string."""
  if isinstance(when, dt.datetime):
    return when.replace(tzinfo=None)
  if hasattr(when, 'to_datetime'):
    return when.utc.to_datetime()
  return dt.datetime.fromisoformat(str(when).replace('Z', ''))


def synthesize_pair(time, size, seed, out_dir, bad_fraction=0.02,
                    overwrite=False):
  """Renders and writes the pair at nominal UTC `time`; returns the paths.

  Existing files are kept unless `overwrite` (they are complete: writes
  are atomic).
  """
  when = _as_datetime(time)
  aia_path, hmi_path = pair_paths(out_dir, when)
  if not overwrite and aia_path.exists() and hmi_path.exists():
    return aia_path, hmi_path
  pair = synthetic.make_pair(when.isoformat(), size, seed, bad_fraction)
  if overwrite or not aia_path.exists():
    fileio.write_hdulist_atomic(
        aia_path, aia_hdulist(pair.aia_header, pair.aia_data),
        output_verify='exception')
  if overwrite or not hmi_path.exists():
    fileio.write_hdulist_atomic(
        hmi_path, hmi_hdulist(pair.hmi_header, pair.hmi_data),
        output_verify='exception')
  return aia_path, hmi_path


# -------------------------------------------------------------------- CLI

def parse_every(text):
  """'6h', '3d', '12min', '90s' -> datetime.timedelta (> 0)."""
  m = re.fullmatch(r'\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*', text.lower())
  if not m or m.group(2) not in _EVERY_UNITS:
    raise ValueError(f'--every {text!r}: expected a number and a unit '
                     '(s, min, h, d), e.g. 6h or 3d')
  seconds = float(m.group(1)) * _EVERY_UNITS[m.group(2)]
  if seconds < 1:
    raise ValueError(f'--every {text!r}: must be at least 1 s')
  return dt.timedelta(seconds=seconds)


def parse_when(text, end=False):
  """ISO date or datetime (UTC); a bare --end date includes its whole day."""
  try:
    when = dt.datetime.fromisoformat(text.strip().replace('Z', ''))
  except ValueError:
    raise ValueError(f'{text!r} is not an ISO date or datetime '
                     '(e.g. 2012-01-01 or 2012-01-01T06:00:00)') from None
  when = when.replace(tzinfo=None)
  if end and len(text.strip()) <= 10:
    when += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
  return when


def timestamps(start, end, every):
  """start, start + every, ... <= end (exact integer arithmetic)."""
  out = []
  k = 0
  while (when := start + k * every) <= end:
    out.append(when)
    k += 1
  return out


def _job(args):
  when, size, seed, out, bad_fraction = args
  try:
    synthesize_pair(when, size, seed, out, bad_fraction)
    return when, None
  except Exception as exc:  # one bad timestamp never stops the batch
    msg = str(exc).strip().splitlines()
    return when, f'{type(exc).__name__}: {msg[0] if msg else ""}'


def _parser():
  p = argparse.ArgumentParser(
      prog='python -m data_prep.synthesize',
      description='Write SYNTHETIC full-disk SDO/AIA 304 and SDO/HMI LOS '
                  'FITS pairs (a physically motivated model Sun).')
  p.add_argument('--out', required=True, help='output root (aia/, hmi/)')
  p.add_argument('--start', required=True, help='first time, ISO (UTC)')
  p.add_argument('--end', required=True,
                 help='last time, ISO (UTC); a bare date includes its day')
  p.add_argument('--every', default='6h', help='cadence, e.g. 12min, 6h, 3d')
  p.add_argument('--size', type=int, default=1024,
                 help='image side in pixels (4096 = SDO full resolution)')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--workers', type=int, default=1, help='processes')
  p.add_argument('--bad-fraction', type=float, default=0.02,
                 help='fraction of HMI frames flagged QUALITY != 0')
  return p


def _check_args(args):
  start = parse_when(args.start)
  end = parse_when(args.end, end=True)
  every = parse_every(args.every)
  if end < start:
    raise ValueError(f'--end {args.end} is before --start {args.start}')
  if not 64 <= args.size <= 8192:
    raise ValueError(f'--size {args.size}: expected 64..8192 pixels')
  if args.seed < 0:
    raise ValueError(f'--seed {args.seed}: expected a non-negative integer')
  if args.workers < 1:
    raise ValueError(f'--workers {args.workers}: expected >= 1')
  if not 0.0 <= args.bad_fraction <= 1.0:
    raise ValueError(f'--bad-fraction {args.bad_fraction}: expected 0..1')
  return timestamps(start, end, every)


def main(argv=None):
  args = _parser().parse_args(argv)
  try:
    times = _check_args(args)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if not os.access(args.out, os.W_OK):
      raise ValueError(f'--out {args.out} is not writable')
  except ValueError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  except OSError as exc:
    print(f'error: --out {args.out}: {exc.strerror or exc}', file=sys.stderr)
    return 2
  todo = [w for w in times
          if not all(p.exists() for p in pair_paths(args.out, w))]
  jobs = [(w, args.size, args.seed, args.out, args.bad_fraction)
          for w in todo]
  t0 = _time.time()
  failed = []
  if args.workers == 1 or len(jobs) <= 1:
    results = map(_job, jobs)
  else:
    pool = concurrent.futures.ProcessPoolExecutor(args.workers)
    results = pool.map(_job, jobs, chunksize=1)
  for when, err in results:
    if err:
      failed.append(when)
      print(f'skipped {when.isoformat()}: {err}', file=sys.stderr)
  if args.workers > 1 and len(jobs) > 1:
    pool.shutdown()
  elapsed = _time.time() - t0
  done = len(todo) - len(failed)
  print(f'SYNTHETIC SDO pairs: {done} written, {len(times) - len(todo)} '
        f'already present, {len(failed)} failed; size {args.size}, seed '
        f'{args.seed}, {elapsed:.1f} s ({elapsed / max(done, 1):.2f} s/pair '
        f'with {args.workers} worker(s)) -> {args.out}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
