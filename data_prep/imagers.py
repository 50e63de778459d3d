"""The 304 A imagers a magnetogram can be generated from, as real files
label them: which one a header is, and whether it is a usable full-disk
image of it.

  SDO/AIA 304            TELESCOP 'SDO/AIA'          exposure EXPTIME (s)
  STEREO-A/B SECCHI/EUVI DETECTOR 'EUVI', OBSRVTRY 'STEREO_A'|'STEREO_B'
                                                     exposure EXPTIME
  SOHO/EIT               INSTRUME 'EIT' or TELESCOP 'Extreme-ultraviolet
                         Imaging Telescope (EIT)'    exposure XPOSURE|EXPTIME
  Solar Orbiter EUI/FSI  OBSRVTRY 'Solar Orbiter', INSTRUME 'EUI',
                         DETECTOR 'FSI' (levels 1 and 2)
                                                     exposure XPOSURE

These are the keys sunpy's map sources (AIAMap, EUVIMap, EITMap, EUIMap)
select on, so a file accepted here opens as its instrument's own map. Data
are counts (BUNIT 'DN') or already a count rate ('DN/s': EIT level 1,
EUI level 2); `calibrate.load_304` brings both to DN/s.

AIA goes through the SDO checks of `fitsio.validate_header` (T_OBS,
QUALITY, ...). The others need: WAVELNTH 304, a positive exposure, a
helioprojective full-disk image, the observer's position and distance
(Solar Orbiter comes to 0.28 AU of the Sun), and an observation time
(DATE-AVG, else DATE-OBS). All of them: an image no larger than the
instrument writes, a date in its operating life and statistics keywords
of a complete frame (`data_prep.limits`).
"""
import dataclasses

from astropy.time import Time
from sunpy.time import parse_time

from data_prep import fitsio, limits
from magjax_common.errors import one_line

WAVELENGTH = 304
AU_M = 1.495978707e11
MAX_EXPOSURE_S = 300.0  # EIT 304 exposures reach ~60 s; more is corrupt
MIN_IMAGE_PX = 64  # a full-disk image smaller than this cannot hold a patch
# The FITS keywords of a calibration to the AIA 304 scale
# (data_prep.calibrate writes them; predict copies them to its outputs).
CALIBRATION_KEYS = {
    'CALMODE': 'calibration: auto, quiet-sun or none',
    'CALEXPT': 'exposure time divided out, s',
    'CALDFAC': '(DSUN_OBS / 1 AU)^2 applied',
    'CALQSIN': 'input quiet-Sun median, DN/s at 1 AU',
    'CALQSREF': 'AIA 304 quiet-Sun reference, DN/s',
    'CALGAIN': 'quiet-Sun gain applied',
    'SRC_INST': 'input instrument and wavelength',
}


@dataclasses.dataclass(frozen=True)
class Imager:
  key: str  # 'aia' | 'euvi' | 'eit' | 'fsi'
  name: str  # e.g. 'SDO/AIA 304'
  exposure_keys: tuple  # header keys of the exposure time, first found wins
  dsun_range: tuple  # possible Sun-observer distances, m


IMAGERS = {
    'aia': Imager('aia', 'SDO/AIA 304', ('EXPTIME',), (1.0e11, 2.0e11)),
    'euvi': Imager('euvi', 'STEREO/SECCHI/EUVI 304', ('EXPTIME', 'XPOSURE'),
                   (1.0e11, 2.0e11)),
    'eit': Imager('eit', 'SOHO/EIT 304', ('XPOSURE', 'EXPTIME'),
                  (1.0e11, 2.0e11)),
    'fsi': Imager('fsi', 'SolO/EUI/FSI 304', ('XPOSURE', 'EXPTIME'),
                  (0.25 * AU_M, 1.2 * AU_M)),
}


def _upper(header, key):
  return str(header.get(key, '')).strip().upper()


def detect(header):
  """'aia', 'hmi', 'euvi', 'eit', 'fsi' or None, by sunpy's own keys."""
  kind = fitsio.detect_kind(header)
  if kind:
    return kind
  if _upper(header, 'DETECTOR') == 'EUVI':
    return 'euvi'
  if (_upper(header, 'INSTRUME') == 'EIT'
      or 'EIT' in _upper(header, 'TELESCOP').replace('(', ' ').replace(
          ')', ' ').split()):
    return 'eit'
  if (_upper(header, 'INSTRUME').startswith('EUI')
      and _upper(header, 'DETECTOR') == 'FSI'):
    return 'fsi'
  return None


def label(header):
  """'SDO/AIA 304', 'STEREO-A/EUVI 304', ... for headers and messages."""
  kind = detect(header)
  if kind == 'euvi':
    craft = _upper(header, 'OBSRVTRY').replace('STEREO_', '')
    return f'STEREO-{craft}/EUVI 304' if craft in ('A', 'B') else (
        IMAGERS['euvi'].name)
  if kind in IMAGERS:
    return IMAGERS[kind].name
  return 'SDO/HMI' if kind == 'hmi' else 'unknown'


def exposure(header, kind):
  """(key, seconds) of the exposure time; DataError-free: None if absent."""
  for key in IMAGERS[kind].exposure_keys:
    if key in header:
      return key, header[key]
  return None, None


def observation_time(header, path='<header>'):
  """Mid-exposure time if the header gives it (DATE-AVG), else DATE-OBS;
  AIA: T_OBS, as `fitsio.observation_time`."""
  if detect(header) == 'aia':
    return fitsio.observation_time('aia', header, path)
  for key in ('DATE-AVG', 'DATE-OBS'):
    value = header.get(key)
    if value is None or str(value).strip() == '':
      continue
    try:
      t = parse_time(str(value).strip().rstrip('Z'))
    except Exception as exc:  # sunpy raises ValueError and others
      fitsio.fail(path, f'unreadable {key} {value!r} ({one_line(exc)})')
    if isinstance(t, Time) and t.isscalar:
      return t
    fitsio.fail(path, f'unreadable {key} {value!r}')
  fitsio.fail(path, 'header lacks DATE-AVG and DATE-OBS')


def validate(path, header):
  """The imager key of a usable full-disk 304 A image, or DataError."""
  kind = detect(header)
  if kind == 'aia':
    return fitsio.validate_header(path, header)
  if kind == 'hmi':
    fitsio.fail(path, f'an SDO/HMI file (CONTENT={header.get("CONTENT")!r}),'
                ' expected a 304 A image')
  if kind is None:
    fitsio.fail(path, 'not a 304 A image of SDO/AIA, STEREO/EUVI, SOHO/EIT '
                f'or SolO/EUI/FSI (TELESCOP={header.get("TELESCOP")!r}, '
                f'INSTRUME={header.get("INSTRUME")!r}, DETECTOR='
                f'{header.get("DETECTOR")!r})')
  mission = limits.mission_key(kind, header)
  fitsio.check_size(path, header, mission)
  name = label(header)
  fitsio.require(path, header, ('WAVELNTH',) + fitsio.WCS_KEYS, name)
  wavelength = fitsio.number(path, header, 'WAVELNTH')
  if wavelength != WAVELENGTH:
    fitsio.fail(path, f'{name[:-4]} WAVELNTH is {wavelength:g} A, expected '
                f'{WAVELENGTH} A')
  key, seconds = exposure(header, kind)
  if key is None:
    fitsio.fail(path, f'{name} header lacks the exposure time '
                f'({" or ".join(IMAGERS[kind].exposure_keys)})')
  seconds = fitsio.number(path, header, key)
  if not 0 < seconds <= MAX_EXPOSURE_S:
    fitsio.fail(path, f'{name} {key} {seconds:g} s is not in (0, '
                f'{MAX_EXPOSURE_S:g}] s')
  fitsio.check_projection(path, header)
  size = min(int(header.get('NAXIS1', 0)), int(header.get('NAXIS2', 0)))
  if size < MIN_IMAGE_PX:
    fitsio.fail(path, f'the {header.get("NAXIS1")}x{header.get("NAXIS2")} '
                f'image is too small to hold a patch (at least '
                f'{MIN_IMAGE_PX}x{MIN_IMAGE_PX} px)')
  fitsio.check_observer(path, header, name, IMAGERS[kind].dsun_range)
  fitsio.check_date(path, header, mission,
                    observation_time(header, path))
  fitsio.check_keywords(path, header)
  fitsio.check_full_disk(path, header)
  return kind


def distance_factor(header):
  """(DSUN_OBS / 1 AU)^2."""
  return (float(header['DSUN_OBS']) / AU_M) ** 2


def is_rate(header):
  """True when BUNIT says the data are already counts per second."""
  unit = str(header.get('BUNIT', '')).strip().lower().replace(' ', '')
  return unit in ('dn/s', 'dns-1', 'dn/s/pix', 'counts/s', 'ct/s')

