"""CLI: write SYNTHETIC full-disk 304 A images (and HMI or the truth).

  python -m data_prep.synthesize --out data/raw --start 2012-01-01 \
      --end 2012-12-31 --every 6h --size 1024 --seed 0 [--workers 2] \
      [--observer sdo|stereo-a|stereo-b|soho|solo] [--truth]

The same SYNTHETIC Sun (data_prep.synthetic) seen from a spacecraft:
`sdo` (the default) writes the AIA 304 / HMI LOS pairs the data set is
built from; `stereo-a`, `stereo-b`, `soho` and `solo` write SECCHI/EUVI,
EIT or EUI/FSI 304 frames with their own headers, pixel scales and counts
(positions are approximations, labelled OBS_APPR). --truth also writes, per
image, the ground-truth LOS magnetogram as that observer sees it (no
noise; for SDO, HMI's without noise).

Layout (the per-instrument tree the real downloader uses):
  OUT/aia/YYYY/MM/DD/aia_304_YYYYMMDDTHHMMSS.fits
  OUT/hmi/YYYY/MM/DD/hmi_m_YYYYMMDDTHHMMSS.fits
  OUT/<euvi-a|euvi-b|eit|fsi>/YYYY/MM/DD/<same>_304_YYYYMMDDTHHMMSS.fits
  OUT/truth/<instrument>/YYYY/MM/DD/<instrument>_truth_blos_<time>.fits
named by the nominal (UTC) time. AIA and HMI are tile-compressed as JSOC
exports them (empty primary HDU, RICE image in HDU 1): AIA int16 DN, HMI
int32 with BSCALE 0.1 and BLANK off the disk; the other imagers and the
truth are plain images (truth float32 G, NaN off the disk). Every header
says SYNTHETIC. The same seed and size give byte-identical files, and a
timestamp's content does not depend on --start/--every. Files are written
atomically; a re-run skips frames whose files exist, and refuses (one
line) a tree written by another version of the generator. A
reproducible fraction (--bad-fraction, default 2 %) of HMI frames has
QUALITY != 0.

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


def image_path(out_dir, when, instrument):
  """The 304 A frame of `instrument` (IMAGERS' keys: aia, euvi-a, ...)."""
  if instrument == 'aia':
    return pair_paths(out_dir, when)[0]
  return (Path(out_dir) / instrument / when.strftime('%Y/%m/%d')
          / f'{instrument}_304_{when.strftime("%Y%m%dT%H%M%S")}.fits')


def truth_path(out_dir, when, instrument):
  """The ground-truth LOS magnetogram for `instrument`'s frame."""
  return (Path(out_dir) / 'truth' / instrument / when.strftime('%Y/%m/%d')
          / f'{instrument}_truth_blos_{when.strftime("%Y%m%dT%H%M%S")}.fits')


def frame_paths(out_dir, when, observer, truth):
  """Every file one timestamp writes for `observer` (with `truth`)."""
  instrument = synthetic.IMAGERS[observer].key
  paths = ([*pair_paths(out_dir, when)] if observer == 'sdo'
           else [image_path(out_dir, when, instrument)])
  if truth:
    paths.append(truth_path(out_dir, when, instrument))
  return paths


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
  return synthesize_frame(time, size, seed, out_dir, 'sdo', False,
                          bad_fraction, overwrite)


def _write(path, hdulist, overwrite):
  if overwrite or not path.exists():
    fileio.write_hdulist_atomic(path, hdulist, output_verify='exception')


def synthesize_frame(time, size, seed, out_dir, observer='sdo', truth=False,
                     bad_fraction=0.02, overwrite=False):
  """Renders and writes one timestamp for `observer`; returns the paths
  (frame_paths). Existing files are kept unless `overwrite`."""
  when = _as_datetime(time)
  paths = frame_paths(out_dir, when, observer, truth)
  if not overwrite and all(p.exists() for p in paths):
    return paths
  if observer == 'sdo':
    pair = synthetic.make_pair(when.isoformat(), size, seed, bad_fraction)
    _write(paths[0], aia_hdulist(pair.aia_header, pair.aia_data), overwrite)
    _write(paths[1], hmi_hdulist(pair.hmi_header, pair.hmi_data), overwrite)
    if truth:
      clean = synthetic.make_pair(when.isoformat(), size, seed, bad_fraction,
                                  noise=False)
      header = synthetic.instruments.truth_header(
          clean.hmi_header, synthetic.observer_at(
              synthetic.frame_times(when.isoformat(), seed).hmi_t_obs),
          seed, 'hmi')
      _write(paths[2], plain_hdulist(header, clean.hmi_data), overwrite)
    return paths
  view = synthetic.make_view(observer, when.isoformat(), size, seed,
                             truth=truth)
  _write(paths[0], plain_hdulist(view.header, view.data), overwrite)
  if truth:
    _write(paths[1], plain_hdulist(view.truth_header, view.truth), overwrite)
  return paths


def plain_hdulist(header, data):
  """One image HDU (data as given: counts, DN/s or gauss)."""
  return fits.HDUList([fits.PrimaryHDU(data=data, header=header)])


def generator_version(path):
  """The generator version a synthetic file was written by ('' if none)."""
  try:
    with fits.open(path, memmap=False) as hdul:
      for hdu in hdul:
        for line in hdu.header.get('HISTORY', []):
          if str(line).startswith(f'made by {synthetic.GENERATOR} v'):
            return str(line).rsplit('v', 1)[-1]
  except (OSError, ValueError):
    return ''
  return ''


def check_tree_version(out_dir, observer, times, truth):
  """ValueError (one line) when the first existing file of the run was
  written by another generator version: resuming would mix two Suns."""
  for when in times:
    for path in frame_paths(out_dir, when, observer, truth):
      if path.exists():
        found = generator_version(path)
        if found != synthetic.GENERATOR_VERSION:
          raise ValueError(
              f'{out_dir} holds files of the synthetic generator v'
              f'{found or "?"} ({path.name}), this is v'
              f'{synthetic.GENERATOR_VERSION}: remove them first (for the '
              'data set: make rebuild-data)')
        return


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
  when, size, seed, out, bad_fraction, observer, truth = args
  try:
    synthesize_frame(when, size, seed, out, observer, truth, bad_fraction)
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
  p.add_argument('--observer', default='sdo', choices=synthetic.OBSERVERS,
                 help='the spacecraft (and so the 304 A imager): sdo (AIA + '
                 'HMI, the default), stereo-a, stereo-b (SECCHI/EUVI), '
                 'soho (EIT), solo (EUI/FSI)')
  p.add_argument('--truth', action='store_true',
                 help='also write the ground-truth LOS magnetogram as the '
                 'observer sees it, per image')
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
  try:
    check_tree_version(args.out, args.observer, times, args.truth)
  except ValueError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 2
  todo = [w for w in times if not all(
      p.exists() for p in frame_paths(args.out, w, args.observer, args.truth))]
  jobs = [(w, args.size, args.seed, args.out, args.bad_fraction,
           args.observer, args.truth) for w in todo]
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
  what = ('SDO pairs' if args.observer == 'sdo' else
          f'{synthetic.IMAGERS[args.observer].key.upper()} frames')
  print(f'SYNTHETIC {what}{" + truth" if args.truth else ""}: {done} '
        f'written, {len(times) - len(todo)} already present, {len(failed)} '
        f'failed; size {args.size}, seed {args.seed}, {elapsed:.1f} s '
        f'({elapsed / max(done, 1):.2f} s/frame with {args.workers} '
        f'worker(s)) -> {args.out}')
  return 1 if failed else 0


if __name__ == '__main__':
  sys.exit(main())
