"""What a real solar image can be: its size, its date and its pixels.

Every bound on an input file lives here with its reason (they are tabled
in docs/FARSIDE.md, "Inputs that cannot be real"). The functions are pure:
each returns None for a possible input or a one-line problem, which the
readers (`data_prep.fitsio`, `data_prep.imagers`, `magjax.predict`) raise
as a DataError naming the file. The order of the checks:

1. size, from the header, before any pixel is read or decompressed: each
   instrument's largest image (per axis: binned and sub-sampled products
   are smaller) and the memory one file may cost (`MAX_FILE_MEMORY`);
2. date: an observation inside the instrument's operating life;
3. the instrument's own statistics keywords (PERCENTD, MISSVALS, SATVALS,
   DATAMIN/DATAMAX), still before any pixel is read;
4. the pixels of the solar disk (a sample of ~1e6): missing, near-constant,
   saturated.
"""
import dataclasses
import math

import numpy as np
from astropy.time import Time, TimeDelta

GIB = 2 ** 30
# What one input file may make a command allocate, its data included (a
# `prepare build` of N workers: N times this). A 4096^2 image: ~0.6 GiB.
MAX_FILE_MEMORY = 2 * GIB
# Bytes allocated per pixel while a file is read, calibrated, patched and
# put back on its disk, on top of its stored pixels: 21.5 B/px measured
# with tracemalloc on a 4096^2 AIA file (load_304, extract_patch, to_disk).
WORK_BYTES_PER_PIXEL = 24
# Bytes allocated whatever the image's size: the patch grid's 800 x 900
# points through astropy's frames (~155 MB measured on a 1024^2 file).
FIXED_WORK_BYTES = 192 * 2 ** 20
# Largest image axis of any other 2-D input (a prepared patch: 800 x 900):
# the largest of the imagers below.
GENERAL_MAX_PX = 4096


@dataclasses.dataclass(frozen=True)
class Instrument:
  name: str
  max_px: int  # largest image axis (full resolution)
  start: str  # launch (UTC date): no observation before it
  end: str = ''  # end of the mission ('' = still observing)


INSTRUMENTS = {
    # SDO launched 2010-02-11; level-1 images 4096^2 (synoptic 1024^2).
    'aia': Instrument('SDO/AIA', 4096, '2010-02-11'),
    'hmi': Instrument('SDO/HMI', 4096, '2010-02-11'),
    # STEREO launched 2006-10-26; full frames 2048^2 (beacon: binned).
    'euvi': Instrument('STEREO/EUVI', 2048, '2006-10-26'),
    # STEREO-B: contact lost on 2014-10-01, no image since.
    'euvi-b': Instrument('STEREO-B/EUVI', 2048, '2006-10-26', '2014-10-02'),
    # SOHO launched 1995-12-02; 1024^2 full frames (512^2 binned).
    'eit': Instrument('SOHO/EIT', 1024, '1995-12-02'),
    # Solar Orbiter launched 2020-02-10; FSI 3072^2 (L1 also 3040 x 3072).
    'fsi': Instrument('SolO/EUI/FSI', 3072, '2020-02-10'),
}

# -- pixels of the disk (fractions of the sampled disk, radius x 0.95 so
# that a pixel or two of error in the centre never reaches the limb)
DISK_RADIUS_FRACTION = 0.95
SAMPLE_PIXELS = 1_000_000
# No data: NaN (BLANK) or exactly 0. A 304 disk is never 0 DN (its quiet
# Sun is ~100 DN); an HMI pixel is exactly 0 G in ~1 % of the disk (real
# and synthetic); a zero-filled frame (what archives serve for missing
# data) is 100 %, a partial one loses a block of the disk.
MAX_MISSING_FRACTION = 0.10
# AIA's own PERCENTD (% of the image with data; AIA sees the corona, so
# the whole frame has data): the same bound, 100 x (1 - 0.10).
MIN_PERCENTD = 100.0 * (1.0 - MAX_MISSING_FRACTION)
# Near-constant 304 image: (99th - 1st percentile) of the disk under 5 %
# of its median (the synthetic disks: 230-350 %; the chromospheric
# network alone varies by tens of %).
MIN_RELATIVE_SPREAD = 0.05
# Near-constant magnetogram: 99th - 1st percentile of the disk under 1 G
# (HMI's noise alone is ~7 G; real disks: 50-160 G).
MIN_FIELD_SPREAD_G = 1.0
# Saturated: more than 5 % of the disk at the image's maximum (or, for a
# magnetogram, its minimum) value, or SATVALS / TOTVALS above it. A large
# flare saturates well under 1 % of the disk; 5 % is clipping.
MAX_SATURATED_FRACTION = 0.05


def _integer(value):
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return int(value) if math.isfinite(value) else None


def _gib(nbytes):
  return f'{nbytes / GIB:.2g} GiB'


def memory_estimate(nx, ny, bitpix):
  """Bytes one image of nx x ny pixels (FITS BITPIX) costs to process."""
  return FIXED_WORK_BYTES + nx * ny * (abs(bitpix) // 8
                                      + WORK_BYTES_PER_PIXEL)


def size_problem(header, key=None):
  """Whether the image the header declares is too large to be `key`'s
  (an INSTRUMENTS key; None: any other input) or to fit the memory bound.
  """
  nx, ny = _integer(header.get('NAXIS1')), _integer(header.get('NAXIS2'))
  bitpix = _integer(header.get('BITPIX')) or -32
  if nx is None or ny is None:
    return None  # no 2-D image: the reader says so
  instrument = INSTRUMENTS.get(key)
  most = instrument.max_px if instrument else GENERAL_MAX_PX
  what = f'{instrument.name} images are' if instrument else 'an input is'
  if nx > most or ny > most:
    return (f'the header declares a {nx}x{ny} image; {what} at most '
            f'{most}x{most} px (refused before reading its pixels)')
  need = memory_estimate(nx, ny, bitpix)
  if need > MAX_FILE_MEMORY:
    return (f'the header declares a {nx}x{ny} image (BITPIX {bitpix}) '
            f'that would need ~{_gib(need)}; one file may use at most '
            f'{_gib(MAX_FILE_MEMORY)}')
  return None


def span_problem(nbytes):
  """Whether a data section of `nbytes` (compressed or not) is too large
  to be read at all."""
  if nbytes > MAX_FILE_MEMORY:
    return (f'a data section of {_gib(nbytes)}; one file may use at most '
            f'{_gib(MAX_FILE_MEMORY)} (refused before reading it)')
  return None


def mission_key(kind, header):
  """The INSTRUMENTS key of a file of `kind` ('euvi-b' for STEREO-B)."""
  observatory = str(header.get('OBSRVTRY', '')).strip().upper()
  return 'euvi-b' if kind == 'euvi' and observatory == 'STEREO_B' else kind


def date_problem(key, when, synthetic=False, now=None):
  """Whether observation time `when` (astropy Time) is impossible for the
  instrument `key`: before its launch, after its end, or in the future.
  SYNTHETIC files place any observer at any date (data_prep.synthesize):
  only the future is refused for them."""
  now = Time.now() if now is None else now
  date = when.utc.isot[:19]
  if when > now + TimeDelta(1.0, format='jd'):  # a day: clocks, zones
    return f'observation time {date} is in the future'
  instrument = INSTRUMENTS.get(key)
  if instrument is None or synthetic:
    return None
  life = f'{instrument.start} to {instrument.end or "now"}'
  if when < Time(instrument.start, scale='utc') or (
      instrument.end and when >= Time(instrument.end, scale='utc')):
    return (f'observation time {date} is outside {instrument.name}\'s '
            f'operating life ({life})')
  return None


def _number(header, key):
  value = header.get(key)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return None
  return float(value) if math.isfinite(value) else None


def keyword_problem(header):
  """Whether the instrument's own statistics keywords (JSOC: PERCENTD,
  MISSVALS, SATVALS and TOTVALS; any: DATAMIN and DATAMAX) say the image
  is mostly missing, saturated or constant. Ratios of counts only: a
  resampled file keeps the counts of its original."""
  percent = _number(header, 'PERCENTD')
  if percent is not None and percent < MIN_PERCENTD:
    return (f'PERCENTD {percent:g}: only {percent:g} % of the image has '
            f'data, at least {MIN_PERCENTD:g} % is needed')
  total = _number(header, 'TOTVALS')
  for key, limit, what in (('MISSVALS', MAX_MISSING_FRACTION, 'missing'),
                           ('SATVALS', MAX_SATURATED_FRACTION, 'saturated')):
    count = _number(header, key)
    if total and count is not None and count / total > limit:
      return (f'{key}/TOTVALS = {count:g}/{total:g}: {100 * count / total:.1f}'
              f' % of the image {what}, at most {100 * limit:g} %')
  low, high = _number(header, 'DATAMIN'), _number(header, 'DATAMAX')
  if low is not None and high is not None and low == high:
    return f'DATAMIN = DATAMAX = {low:g}: a constant image'
  return None


def disk_sample(data, centre, radius, target=SAMPLE_PIXELS):
  """Every k-th pixel of the inner disk (about `target` of them; NaN kept),
  `centre` (x, y) and `radius` in 0-based pixels."""
  ny, nx = data.shape
  step = max(1, int(round(math.sqrt(nx * ny / target))))
  yy, xx = np.ogrid[0:ny:step, 0:nx:step]
  inside = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
            < (DISK_RADIUS_FRACTION * radius) ** 2)
  return data[::step, ::step][inside]


def pixel_problem(values, field=False):
  """Whether a sample of the solar disk (`disk_sample`; NaN = no data) is
  mostly missing, near-constant or saturated. `field`: a magnetogram (G),
  else a 304 A intensity."""
  if values.size == 0:
    return 'no pixel on the solar disk'
  present = values[np.isfinite(values) & (values != 0)]
  missing = 1.0 - present.size / values.size
  if missing > MAX_MISSING_FRACTION:
    return (f'{100 * missing:.1f} % of the solar disk has no data (NaN or '
            f'0), at most {100 * MAX_MISSING_FRACTION:g} %')
  low, median, high = np.percentile(present, [1, 50, 99])
  spread = high - low
  if field and spread < MIN_FIELD_SPREAD_G:
    return (f'a near-constant magnetogram (99th - 1st percentile of the '
            f'disk {spread:.3g} G, a real one spans more than '
            f'{MIN_FIELD_SPREAD_G:g} G)')
  if not field and spread < MIN_RELATIVE_SPREAD * abs(median):
    return (f'a near-constant image (99th - 1st percentile of the disk '
            f'{spread:.3g}, median {median:.4g}: under '
            f'{100 * MIN_RELATIVE_SPREAD:g} % of the median)')
  ends = (present.max(), present.min()) if field else (present.max(),)
  for end in ends:
    at_end = np.count_nonzero(present == end) / present.size
    if at_end > MAX_SATURATED_FRACTION:
      return (f'saturated: {100 * at_end:.1f} % of the solar disk at '
              f'{end:.6g}, at most {100 * MAX_SATURATED_FRACTION:g} %')
  return None
