"""Reading and validating SDO full-disk FITS files, and atomic FITS writes.

Every bad input raises :class:`DataError` with a one-line message that names
the file and the problem; single-file commands print it as ``error: ...`` and
batch commands record it as a skip reason.

Accepted inputs: SDO/AIA level-1(.5) images at 304 A and SDO/HMI line-of-sight
magnetograms (``hmi.M_*``), full disk, helioprojective (``HPLN-TAN``), either
plain (image in HDU 0) or tile-compressed (RICE image in HDU 1, as JSOC
exports HMI).
"""
import gzip
import math
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS
from sunpy.time import parse_time

from data_prep import limits
from magjax_common import fileio
from magjax_common.errors import UserError, one_line


class DataError(UserError, ValueError):
  """A bad input file; the message is one line and names the file."""


AIA_WAVELENGTH = 304
# AIA EUV exposures are at most a few seconds (2.9 s nominal at 304 A,
# shorter in flare mode); a value above this is a corrupt header.
MAX_EXPTIME_S = 60.0
# Projection codes that mark a map-projected patch, not a full-disk image.
_PATCH_CTYPES = ('CRLN', 'CRLT', 'HGLN', 'HGLT', 'SOLX', 'SOLY')
WCS_KEYS = ('CDELT1', 'CDELT2', 'CRPIX1', 'CRPIX2', 'CRVAL1', 'CRVAL2')
# Keywords that sunpy reads as numbers when present.
_NUMERIC_KEYS = ('CROTA2', 'PC1_1', 'PC1_2', 'PC2_1', 'PC2_2', 'RSUN_REF',
                 'RSUN_OBS', 'HGLN_OBS', 'HGLT_OBS', 'CRLN_OBS', 'CRLT_OBS',
                 'HAEX_OBS', 'HAEY_OBS', 'HAEZ_OBS', 'HEQX_OBS', 'HEQY_OBS',
                 'HEQZ_OBS')
_OBSERVER_KEYSETS = (('HGLN_OBS', 'HGLT_OBS'), ('CRLN_OBS', 'CRLT_OBS'),
                     ('HAEX_OBS', 'HAEY_OBS', 'HAEZ_OBS'),
                     ('HEQX_OBS', 'HEQY_OBS', 'HEQZ_OBS'))


def fail(path, message):
  """Raises DataError('<file name>: message')."""
  raise DataError(f'{Path(path).name}: {message}')


def _is_gzip(path):
  with open(path, 'rb') as f:
    return f.read(2) == b'\x1f\x8b'


def _open(path):
  """Opens a FITS file lazily; DataError if it is missing or not FITS."""
  path = Path(path)
  if path.is_dir():
    fail(path, 'is a directory, expected a FITS file')
  if not path.is_file():
    fail(path, 'no such file')
  if path.stat().st_size == 0:
    fail(path, 'empty file, not a FITS file')
  try:
    opener = gzip.open if _is_gzip(path) else open
    with opener(path, 'rb') as f:
      start = f.read(9)
  except (OSError, EOFError) as exc:
    fail(path, f'corrupt gzip file ({one_line(exc)})')
  if start != b'SIMPLE  =':
    fail(path, 'not a FITS file (no SIMPLE card at the start)')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
  except Exception as exc:  # astropy raises OSError, ValueError, TypeError...
    fail(path, f'corrupt FITS file ({one_line(exc)})')
  return hdul


def _image_hdu(path, hdul):
  """The 2-D image HDU: HDU 0, or HDU 1 (often tile-compressed) after an
  empty primary HDU, as JSOC writes SDO files. Anything else is rejected."""
  def is_image(hdu):
    return (isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU,
                             fits.CompImageHDU))
            and hdu.header.get('NAXIS', 0) == 2)
  if is_image(hdul[0]):
    return hdul[0]
  if len(hdul) > 1 and is_image(hdul[1]) and hdul[0].header.get('NAXIS') == 0:
    return hdul[1]
  for index, hdu in enumerate(hdul[2:], start=2):
    if is_image(hdu):
      fail(path, f'image data in HDU {index}; SDO files hold it in HDU 0 '
            'or in HDU 1 after an empty primary HDU')
  fail(path, 'no 2-D image data in HDU 0 or 1')


def check_cards(path, header):
  """DataError for a card whose value astropy cannot parse (e.g. ``NaN`` or
  ``###`` as a value): astropy defers that to the first access, as a
  VerifyError that is no DataError."""
  for card in header.cards:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        card.value  # pylint: disable=pointless-statement
    except Exception as exc:  # astropy: VerifyError, ValueError
      fail(path, f'unparsable header card {card.keyword!r} '
            f'({one_line(exc)})')


def _image_header(path, hdul, hdu):
  """A checked copy of the image header; a SYNTHETIC flag kept only in an
  empty primary HDU is carried over, so it can never be lost downstream."""
  check_cards(path, hdu.header)
  if hdu is not hdul[0]:
    check_cards(path, hdul[0].header)
  header = hdu.header.copy()
  if hdu is not hdul[0] and 'SYNTHETIC' in hdul[0].header \
      and 'SYNTHETIC' not in header:
    header['HIERARCH SYNTHETIC'] = hdul[0].header['SYNTHETIC']
  return header


def _check_complete(path, hdu):
  """DataError if the file ends before the image HDU's data does."""
  info = hdu.fileinfo()
  if info is None or _is_gzip(path):  # gzip: astropy fails on read instead
    return
  size = Path(path).stat().st_size
  if info['datLoc'] + info['datSpan'] > size:
    fail(path, f'truncated FITS file ({size} bytes, data needs '
          f'{info["datLoc"] + info["datSpan"]})')


def _check_span(path, hdu):
  """DataError for a data section (compressed or not) over the memory
  bound, before it is read."""
  info = hdu.fileinfo()
  problem = info and limits.span_problem(info['datSpan'])
  if problem:
    fail(path, problem)


def detect_kind(header):
  """'aia', 'hmi' or None from TELESCOP / INSTRUME."""
  telescop = str(header.get('TELESCOP', '')).strip().upper()
  instrume = str(header.get('INSTRUME', '')).strip().upper()
  if telescop == 'SDO/AIA' or instrume.startswith('AIA'):
    return 'aia'
  if telescop == 'SDO/HMI' or instrume.startswith('HMI'):
    return 'hmi'
  return None


def number(path, header, key):
  value = header.get(key)
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    fail(path, f'keyword {key} is not a number ({value!r})')
  if not math.isfinite(value):
    fail(path, f'keyword {key} is not finite ({value!r})')
  return float(value)


def require(path, header, keys, kind):
  missing = [k for k in keys if k not in header]
  if missing:
    fail(path, f'{kind.upper()} header lacks required keyword(s) '
          f'{", ".join(missing)}')


def observation_time(kind, header, path='<header>'):
  """Observation time as an astropy Time (scale as written in the header).

  HMI: T_OBS, in TAI (``2012.01.01_00:00:45_TAI``). AIA: T_OBS (UTC, mid
  exposure), else DATE-OBS (UTC). Compare the results as Time objects: the
  TAI - UTC offset (34-37 s in the SDO era) is then handled.
  """
  keys = ('T_OBS',) if kind == 'hmi' else ('T_OBS', 'DATE-OBS')
  for key in keys:
    value = header.get(key)
    if value is None or str(value).strip() == '':
      continue
    try:
      t = parse_time(str(value).strip())
    except Exception as exc:
      fail(path, f'unreadable {key} {value!r} ({one_line(exc)})')
    if not isinstance(t, Time) or not t.isscalar:
      fail(path, f'unreadable {key} {value!r}')
    return t
  fail(path, f'{kind.upper()} header lacks {" or ".join(keys)}')


def check_projection(path, header):
  """DataError for a map-projected patch or non-helioprojective axes."""
  ctype1 = str(header.get('CTYPE1', 'HPLN-TAN')).upper()
  ctype2 = str(header.get('CTYPE2', 'HPLT-TAN')).upper()
  if ctype1.startswith(_PATCH_CTYPES) or ctype2.startswith(_PATCH_CTYPES):
    fail(path, f'is a heliographic patch (CTYPE1={ctype1!r}), expected a '
          'full-disk image')
  if not (ctype1.startswith('HPLN') and ctype2.startswith('HPLT')):
    fail(path, f'unsupported coordinates CTYPE1={ctype1!r} CTYPE2='
          f'{ctype2!r}, expected helioprojective HPLN-TAN/HPLT-TAN')


def disk_radius_px(path, header):
  """The solar radius in pixels (RSUN_OBS, else RSUN_REF / DSUN_OBS)."""
  cunit = str(header.get('CUNIT1', 'arcsec')).strip().lower()
  if cunit not in ('arcsec', 'arcsecs'):
    fail(path, f'CUNIT1={cunit!r}, expected arcsec for a full-disk image')
  cdelt = abs(number(path, header, 'CDELT1'))
  if cdelt == 0 or abs(number(path, header, 'CDELT2')) == 0:
    fail(path, 'CDELT1/CDELT2 is zero')
  if 'RSUN_OBS' in header:
    rsun_arcsec = number(path, header, 'RSUN_OBS')
  else:
    ratio = number(path, header, 'RSUN_REF') / number(path, header,
                                                          'DSUN_OBS')
    if not 0 < ratio < 1:
      fail(path, 'RSUN_REF/DSUN_OBS is not a valid angular radius')
    rsun_arcsec = math.degrees(math.asin(ratio)) * 3600
  if rsun_arcsec <= 0:
    fail(path, f'solar radius {rsun_arcsec} arcsec is not positive')
  return rsun_arcsec / cdelt


def disk_centre(header):
  """0-based pixel (x, y) of the Sun's centre, helioprojective (0, 0) by
  the header's WCS; the reference pixel if astropy cannot place it."""
  keys = ('CTYPE1', 'CTYPE2', 'CUNIT1', 'CUNIT2', 'CDELT1', 'CDELT2',
          'CRPIX1', 'CRPIX2', 'CRVAL1', 'CRVAL2', 'CROTA2', 'PC1_1',
          'PC1_2', 'PC2_1', 'PC2_2')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      wcs = WCS(fits.Header([(k, header[k]) for k in keys if k in header]))
      x, y = (float(v) for v in wcs.world_to_pixel_values(0.0, 0.0))
    if math.isfinite(x) and math.isfinite(y):
      return x, y
  except Exception:  # pylint: disable=broad-except  # astropy: many kinds
    pass
  return float(header['CRPIX1']) - 1, float(header['CRPIX2']) - 1


def check_full_disk(path, header):
  """DataError for a cut-out of the disk (the disk must fit the image)."""
  r_pix = disk_radius_px(path, header)
  cdelt = abs(number(path, header, 'CDELT1'))
  # Distance of disk centre (0, 0) from the reference pixel, in pixels.
  off = math.hypot(number(path, header, 'CRVAL1'),
                   number(path, header, 'CRVAL2')) / cdelt
  tolerance = 0.03 * r_pix
  for axis in (1, 2):
    crpix = number(path, header, f'CRPIX{axis}')
    n = number(path, header, f'NAXIS{axis}')
    if (crpix - off - r_pix < 0.5 - tolerance
        or crpix + off + r_pix > n + 0.5 + tolerance):
      fail(path, f'the solar disk (radius {r_pix:.0f} px) does not fit in '
            f'the {header.get("NAXIS1")}x{header.get("NAXIS2")} image: a '
            'cut-out, expected a full-disk image')


def is_synthetic(header):
  """True for a file of data_prep.synthesize (SYNTHETIC = T)."""
  flag = header.get('SYNTHETIC', False)
  return flag is True or str(flag).strip().upper() in ('T', 'TRUE', '1')


def check_size(path, header, key=None):
  """DataError, before any pixel is read, for an image larger than the
  instrument `key` writes (`limits.INSTRUMENTS`; None: any input) or than
  one file's memory bound."""
  problem = limits.size_problem(header, key)
  if problem:
    fail(path, problem)


def check_date(path, header, key, when):
  """DataError for an observation time outside `key`'s operating life."""
  problem = limits.date_problem(key, when, is_synthetic(header))
  if problem:
    fail(path, problem)


def check_keywords(path, header):
  """DataError when the file's own statistics keywords say it is mostly
  missing, saturated or constant (`limits.keyword_problem`)."""
  problem = limits.keyword_problem(header)
  if problem:
    fail(path, problem)


def check_pixels(path, data, header, kind):
  """DataError for a full disk mostly without data, near-constant or
  saturated (`limits.pixel_problem`); `kind` 'hmi' is a magnetogram."""
  sample = limits.disk_sample(data, disk_centre(header),
                              disk_radius_px(path, header))
  problem = limits.pixel_problem(sample, field=kind == 'hmi')
  if problem:
    fail(path, problem)


def check_patch_pixels(path, data):
  """DataError for a patch whose valid pixels are mostly 0, near-constant
  or saturated (NaN off the disk is normal in a patch)."""
  values = data[np.isfinite(data)]
  step = max(1, values.size // limits.SAMPLE_PIXELS)
  problem = limits.pixel_problem(values[::step])
  if problem:
    fail(path, problem)


def check_observer(path, header, label, dsun_range=(1.0e11, 2.0e11)):
  """DataError unless the header places its observer and the Sun: solar
  radius, observer position, a plausible distance (m, `dsun_range`; the
  default is the Earth's orbit) and numeric geometry keywords."""
  if 'RSUN_REF' not in header and 'RSUN_OBS' not in header:
    fail(path, f'{label} header lacks RSUN_REF and RSUN_OBS')
  if not any(all(k in header for k in keys) for keys in _OBSERVER_KEYSETS):
    fail(path, f'{label} header lacks the observer position '
         '(HGLN_OBS/HGLT_OBS, CRLN_OBS/CRLT_OBS or HAE*_OBS)')
  for key in _NUMERIC_KEYS:
    if key in header:
      number(path, header, key)
  if 'RSUN_REF' in header and not 6.0e8 < header['RSUN_REF'] < 8.0e8:
    fail(path, f'RSUN_REF {header["RSUN_REF"]:g} m is not a solar radius')
  if 'DSUN_OBS' not in header:
    fail(path, f'{label} header lacks DSUN_OBS (the observer distance)')
  dsun = number(path, header, 'DSUN_OBS')
  low, high = dsun_range
  if not low < dsun < high:
    fail(path, f'DSUN_OBS {dsun:g} m is not in ({low:g}, {high:g}) m, the '
         f'possible distances of {label}')


def validate_header(path, header, *, wavelength=AIA_WAVELENGTH,
                    allow_bad_quality=False):
  """Checks an SDO header; returns 'aia' or 'hmi' or raises DataError.

  wavelength: the required AIA WAVELNTH in angstrom (None accepts any; only
  tests on sunpy's AIA 171 file use that).
  """
  kind = detect_kind(header)
  if kind is None:
    fail(path, 'not an SDO AIA or HMI file (TELESCOP='
          f'{header.get("TELESCOP")!r}, INSTRUME={header.get("INSTRUME")!r})')
  check_size(path, header, kind)
  check_projection(path, header)
  # SDO level-1 headers always carry both times (T_OBS: mid exposure, the
  # pairing time; DATE-OBS: exposure start); one missing means a damaged file.
  common = ('T_OBS', 'DATE-OBS') + WCS_KEYS + ('DSUN_OBS',)
  if kind == 'aia':
    require(path, header, ('EXPTIME', 'WAVELNTH') + common, kind)
    wav = number(path, header, 'WAVELNTH')
    if wavelength is not None and wav != wavelength:
      fail(path, f'AIA WAVELNTH is {wav:g}, expected {wavelength}')
    exptime = number(path, header, 'EXPTIME')
    if not 0 < exptime <= MAX_EXPTIME_S:
      fail(path, f'AIA EXPTIME {exptime:g} s is not in (0, '
            f'{MAX_EXPTIME_S:g}] s')
  else:
    require(path, header, common, kind)
    content = str(header.get('CONTENT', '')).strip().upper()
    if content != 'MAGNETOGRAM':
      fail(path, f'HMI CONTENT is {header.get("CONTENT")!r}, expected a '
            "line-of-sight 'MAGNETOGRAM' (hmi.M_* series)")
    if 'CROTA2' not in header and 'PC1_1' not in header:
      fail(path, 'HMI header lacks CROTA2 (HMI is mounted rotated by ~180 '
            'deg; without it the image would be upside down)')
  check_observer(path, header, kind.upper())
  check_date(path, header, kind, observation_time(kind, header, path))
  if 'QUALITY' in header:
    quality = header['QUALITY']
    if not isinstance(quality, int) or isinstance(quality, bool):
      fail(path, f'QUALITY is not an integer ({quality!r})')
    if quality != 0 and not allow_bad_quality:
      fail(path, f'QUALITY is {quality} (0x{quality:08X}), a flagged '
            'frame')
  check_keywords(path, header)
  check_full_disk(path, header)
  return kind


def read_sdo_header(path, *, wavelength=AIA_WAVELENGTH,
                    allow_bad_quality=False):
  """Returns (kind, header) of a validated SDO file without reading data.

  Raises DataError for anything ``validate_header`` rejects, and for
  non-FITS, corrupt and truncated files.
  """
  return read_header(path, lambda header: validate_header(
      path, header, wavelength=wavelength,
      allow_bad_quality=allow_bad_quality))


def check_complete_fits(path):
  """DataError unless ``path`` is a readable, complete FITS image file.

  Used after downloads: a truncated or corrupt transfer is fetched again.
  """
  with _open(path) as hdul:
    _check_complete(path, _image_hdu(path, hdul))


def read_sdo(path, *, wavelength=AIA_WAVELENGTH, allow_bad_quality=False):
  """Returns (kind, float32 data, header) of a validated SDO file.

  Off-disk or missing pixels (BLANK) are NaN. DataError also for data that
  cannot be decoded, has the wrong shape or is entirely NaN.
  """
  return read_image(path, lambda header: validate_header(
      path, header, wavelength=wavelength,
      allow_bad_quality=allow_bad_quality))


def read_image(path, validate):
  """(validate(header), float32 data, header) of a full-disk image file.

  validate(header) raises DataError or returns the file's kind; it runs on
  the header before any pixel is read (it checks the declared size: see
  `check_size`). NaN where the data are missing; DataError for a disk
  mostly missing, near-constant or saturated (`check_pixels`).
  """
  with _open(path) as hdul:
    hdu = _image_hdu(path, hdul)
    _check_complete(path, hdu)
    header = _image_header(path, hdul, hdu)
    kind = validate(header)
    _check_span(path, hdu)
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        data = hdu.data
        if data is None:
          fail(path, 'image HDU holds no data')
        data = np.asarray(data, dtype=np.float32)
    except DataError:
      raise
    except Exception as exc:
      fail(path, f'corrupt image data ({one_line(exc)})')
  expected = (header.get('NAXIS2'), header.get('NAXIS1'))
  if data.ndim != 2 or data.shape != expected:
    fail(path, f'image shape {data.shape} does not match NAXIS {expected}')
  if not np.isfinite(data).any():
    fail(path, 'image data are all NaN or infinite')
  data[~np.isfinite(data)] = np.nan
  check_pixels(path, data, header, kind)
  return kind, data, header


def read_header(path, validate):
  """(validate(header), header) of an image file without reading data."""
  with _open(path) as hdul:
    hdu = _image_hdu(path, hdul)
    _check_complete(path, hdu)
    header = _image_header(path, hdul, hdu)
  return validate(header), header


def write_fits_atomic(path, data, header):
  """Writes one image HDU to ``path`` via a tmp file in the same directory.

  Either the complete file appears under ``path`` (os.replace is atomic on
  POSIX) or nothing does; the tmp file is removed on failure.
  """
  with warnings.catch_warnings():
    # The SYNTHETIC flag is a 9-character key: astropy writes it as the
    # intended HIERARCH card and warns once per file; the warning is noise.
    warnings.filterwarnings('ignore', message="Keyword name 'SYNTHETIC'",
                            category=fits.verify.VerifyWarning)
    hdu = fits.PrimaryHDU(data=np.asarray(data), header=fits.Header(header))
  fileio.write_hdulist_atomic(path, fits.HDUList([hdu]))
