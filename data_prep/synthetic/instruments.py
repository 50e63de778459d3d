"""Instruments: the header conventions, pixel scales and counts of each
304 A imager, of HMI, and of the ground-truth magnetogram.

Each header is what sunpy keys its map class on, so every file opens as
its instrument's own map (`AIAMap`, `HMIMap`, `EUVIMap`, `EITMap`,
`EUIMap`) and sunpy places it where its observer keywords say. Counts per
pixel of each EUV imager are its factor x the 304 radiance in AIA 304 DN/s
units: EUVI's 7.27 is ITI's quiet-Sun baseline ratio (EUVI 335.7 against
AIA 46.2, Jarolim et al. 2025); EIT's 0.40 and FSI's 3.0 are ASSUMED
orders of magnitude (labelled in the headers, CNTFACT), enough for an
intensity calibration to recover, which is what they are for.

Every header says SYNTHETIC; approximate spacecraft positions say so
(OBS_APPR).
"""
import dataclasses

import numpy as np
from astropy.io import fits
from astropy.time import Time, TimeDelta

from data_prep.synthetic import observers as observers_lib
from data_prep.synthetic import sun

GENERATOR = 'magjax data_prep.synthetic'
GENERATOR_VERSION = '2.0'
TAI_MINUS_UTC_2012 = 34.0  # s, until the 2012-07-01 leap second (then 35)
AIA_DEGRADATION_PER_YEAR = 0.15  # slow loss of 304 sensitivity
AIA_SATURATION_DN = 16383
# HMI 720 s noise per native 0.504" pixel (Liu et al. 2012, Sol. Phys. 279,
# 295); it averages down as 1 / (pixel size / native) in a coarser pixel.
HMI_NOISE_NATIVE_G = 6.0
HMI_NATIVE_CDELT = 0.504


@dataclasses.dataclass(frozen=True)
class Imager:
  """A 304 A imager: name, spacecraft, native detector, counts."""
  key: str  # file name prefix and directory, e.g. 'euvi-a'
  observer: str  # observers.NAMES
  native_size: int
  native_cdelt: float  # arcsec per pixel at native_size
  counts_factor: float  # DN/s per pixel for 1 AIA 304 DN/s of radiance
  exposure: tuple  # (min, max) s
  saturation: int


IMAGERS = {
    'sdo': Imager('aia', 'sdo', 4096, 0.6, 1.0, (2.0, 3.0), 16383),
    'stereo-a': Imager('euvi-a', 'stereo-a', 2048, 1.5877, 7.27, (6.0, 16.0),
                       16383),
    'stereo-b': Imager('euvi-b', 'stereo-b', 2048, 1.5877, 7.27, (6.0, 16.0),
                       16383),
    'soho': Imager('eit', 'soho', 1024, 2.627, 0.40, (12.0, 33.0), 16383),
    'solo': Imager('fsi', 'solo', 3072, 4.44, 3.0, (3.0, 10.0), 65535),
}


# ------------------------------------------------------------------ times

@dataclasses.dataclass(frozen=True)
class FrameTimes:
  """Times of one SDO pair (UTC astropy Times) and the AIA exposure (s)."""
  nominal: Time
  aia_date_obs: Time
  aia_t_obs: Time
  exptime: float
  hmi_t_obs: Time
  hmi_date_obs: Time


def frame_times(t, seed):
  """The SDO instruments' times around the nominal time `t` (UTC).

  AIA: DATE-OBS 5-9 s after `t`, exposure 2-3 s, T_OBS mid-exposure.
  HMI: T_OBS (whole TAI seconds) within 6 s of AIA's T_OBS; DATE-OBS 11-33 s
  before it, so the T_OBS (TAI) and DATE-OBS (UTC) strings are 45-67 s
  apart in 2012 (TAI - UTC = 34 s, 35 s after 2012-07-01).
  """
  t = Time(t, scale='utc')
  rng = np.random.default_rng([seed, 2, int(round(t.unix))])
  exptime = round(float(rng.uniform(2.0, 3.0)), 6)
  aia_date_obs = t + TimeDelta(round(rng.uniform(5.0, 9.0), 2), format='sec')
  aia_t_obs = aia_date_obs + TimeDelta(exptime / 2, format='sec')
  hmi_tai = (aia_t_obs + TimeDelta(rng.uniform(-6.0, 6.0), format='sec')).tai
  hmi_tai = Time(hmi_tai.strftime('%Y-%m-%dT%H:%M:%S'), scale='tai')
  hmi_t_obs = hmi_tai.utc
  hmi_date_obs = hmi_t_obs - TimeDelta(round(rng.uniform(11.0, 33.0), 2),
                                       format='sec')
  return FrameTimes(t, aia_date_obs, aia_t_obs, exptime, hmi_t_obs,
                    hmi_date_obs)


def exposure(imager, t, seed):
  """(DATE-OBS start, exposure s, mid-exposure time) of an imager's frame
  at nominal time `t` (SDO: frame_times)."""
  t = Time(t, scale='utc')
  rng = np.random.default_rng([seed, 12, int(round(t.unix))])
  xpos = round(float(rng.uniform(*imager.exposure)), 4)
  start = t + TimeDelta(round(rng.uniform(0.0, 5.0), 3), format='sec')
  return start, xpos, start + TimeDelta(xpos / 2, format='sec')


def _isot(t, digits=2):
  return Time(t, precision=digits).utc.isot


def tai_string(t):
  """JSOC TAI time string, e.g. '2012.01.01_00:00:45_TAI'."""
  return Time(t).tai.strftime('%Y.%m.%d_%H:%M:%S') + '_TAI'


# --------------------------------------------------------------- headers

def _synthetic_cards(header, seed, kind, observer=None):
  header['HIERARCH SYNTHETIC'] = (True, 'SYNTHETIC data, not an observation')
  header['ORIGIN'] = ('magjax SYNTHETIC', 'not a mission archive')
  header['HISTORY'] = f'SYNTHETIC {kind}, seed {seed}'
  header['HISTORY'] = f'made by {GENERATOR} v{GENERATOR_VERSION}'
  header['COMMENT'] = ('SYNTHETIC: physically motivated model Sun '
                       '(data_prep.synthetic.sun), not an observation.')
  if observer is not None and observer.approximation:
    header['OBS_APPR'] = (True, 'APPROXIMATE observer position (HISTORY)')
    header['HISTORY'] = f'observer {observer.name}: {observer.approximation}'


def _wcs_cards(header, cdelt, crpix, rotation, rotation_key='CROTA2'):
  header['CTYPE1'] = 'HPLN-TAN'
  header['CTYPE2'] = 'HPLT-TAN'
  header['CUNIT1'] = 'arcsec'
  header['CUNIT2'] = 'arcsec'
  header['CDELT1'] = cdelt
  header['CDELT2'] = cdelt
  header['CRPIX1'] = crpix[0]
  header['CRPIX2'] = crpix[1]
  header['CRVAL1'] = 0.0
  header['CRVAL2'] = 0.0
  header[rotation_key] = rotation


def _pc_cards(header, rotation_deg):
  """The PC matrix of a roll (square pixels), which EUVI, EIT and FSI
  level-1 headers carry beside CROTA (sunpy 7.0's EUIMap fails on CROTA
  alone)."""
  c, s = np.cos(np.radians(rotation_deg)), np.sin(np.radians(rotation_deg))
  header['PC1_1'] = float(c)
  header['PC1_2'] = float(-s)
  header['PC2_1'] = float(s)
  header['PC2_2'] = float(c)


def _pointing(rng, size):
  """Reference pixel with a small pointing offset, as in level-1 data."""
  off = rng.uniform(-4.0, 4.0, 2) * size / 4096
  return [round(float((size + 1) / 2 + o), 4) for o in off]


def observer_cards(h, observer, stonyhurst=True):
  h['RSUN_REF'] = (sun.RSUN_REF_M, 'm')
  h['RSUN_OBS'] = (round(observer.rsun_arcsec, 6), 'arcsec')
  h['DSUN_OBS'] = (round(observer.dsun, 3), 'm')
  if stonyhurst:
    h['HGLN_OBS'] = (round(observer.hgln, 9), 'deg')
    h['HGLT_OBS'] = (round(observer.hglt, 9), 'deg')
  h['CRLN_OBS'] = (round(observer.crln, 9), 'deg')
  h['CRLT_OBS'] = (round(observer.crlt, 9), 'deg')


def aia_header(times, observer, size, seed):
  """A level-1-like AIA 304 header (fits.Header) for a size^2 image."""
  rng = np.random.default_rng([seed, 5, int(round(times.nominal.unix))])
  h = fits.Header()
  h['TELESCOP'] = 'SDO/AIA'
  h['INSTRUME'] = 'AIA_4'
  h['DETECTOR'] = 'AIA'
  h['OBSRVTRY'] = 'SDO'
  h['WAVELNTH'] = 304
  h['WAVEUNIT'] = 'angstrom'
  h['WAVE_STR'] = '304_THIN'
  h['LVL_NUM'] = 1.0
  h['QUALITY'] = 0
  h['BUNIT'] = 'DN'
  h['PIXLUNIT'] = 'DN'
  h['EXPTIME'] = (times.exptime, 's')
  h['DATE-OBS'] = (_isot(times.aia_date_obs), 'UTC, exposure start')
  h['T_OBS'] = (_isot(times.aia_t_obs) + 'Z', 'UTC, mid exposure')
  _wcs_cards(h, round(0.6 * 4096 / size, 6), _pointing(rng, size),
             round(float(rng.uniform(0.0, 0.1)), 5))
  observer_cards(h, observer, stonyhurst=True)
  _synthetic_cards(h, seed, 'AIA 304', observer)
  return h


def hmi_header(times, observer, size, seed, quality):
  """An hmi.M_720s-like header (fits.Header) for a size^2 magnetogram.

  HGLN_OBS/HGLT_OBS are left out, as in some real HMI files: sunpy then
  takes the observer from CRLN_OBS/CRLT_OBS/DSUN_OBS, computed here with
  sunpy's own Carrington transformation (the same observer as the AIA
  header's HGLN_OBS/HGLT_OBS to numerical precision).
  """
  rng = np.random.default_rng([seed, 6, int(round(times.nominal.unix))])
  h = fits.Header()
  h['TELESCOP'] = 'SDO/HMI'
  h['INSTRUME'] = 'HMI_FRONT2'
  h['CONTENT'] = 'MAGNETOGRAM'
  h['BUNIT'] = 'Mx/cm^2'
  h['QUALITY'] = (int(quality), 'non-zero: flagged frame')
  h['T_OBS'] = (tai_string(times.hmi_t_obs), 'TAI')
  h['DATE-OBS'] = (_isot(times.hmi_date_obs), 'UTC')
  _wcs_cards(h, round(0.504 * 4096 / size, 6), _pointing(rng, size),
             round(float(179.93 + rng.uniform(-0.02, 0.02)), 5))
  observer_cards(h, observer, stonyhurst=False)
  _synthetic_cards(h, seed, 'HMI LOS magnetogram', observer)
  return h


def imager_header(imager, t, observer, size, seed):
  """The header of a non-SDO 304 A imager's size^2 frame at nominal `t`
  (see the module docstring for what each instrument's sunpy map needs)."""
  start, xpos, mid = exposure(imager, t, seed)
  rng = np.random.default_rng([seed, 13, int(round(Time(t).unix))])
  cdelt = round(imager.native_cdelt * imager.native_size / size, 6)
  h = fits.Header()
  if imager.key.startswith('euvi'):
    craft = imager.observer[-1].upper()
    h['TELESCOP'] = 'STEREO'
    h['OBSRVTRY'] = f'STEREO_{craft}'
    h['INSTRUME'] = 'SECCHI'
    h['DETECTOR'] = 'EUVI'
    h['EXPTIME'] = (xpos, 's')
    h['BUNIT'] = 'DN'
    h['RSUN'] = (round(observer.rsun_arcsec, 6), 'arcsec')
    rotation_key, time_key = 'CROTA', 'DATE-OBS'
  elif imager.key == 'eit':
    h['OBSRVTRY'] = 'Solar and Heliospheric Observatory (SOHO)'
    h['TELESCOP'] = 'Extreme-ultraviolet Imaging Telescope (EIT)'
    h['LEVEL'] = 'L1'
    h['XPOSURE'] = (xpos, 's')
    h['BUNIT'] = 'DN/s'
    rotation_key, time_key = 'CROTA', 'DATE-OBS'
  else:  # FSI
    h['OBSRVTRY'] = 'Solar Orbiter'
    h['TELESCOP'] = 'SOLO/EUI/FSI'
    h['INSTRUME'] = 'EUI'
    h['DETECTOR'] = 'FSI'
    h['LEVEL'] = 'L1'
    h['XPOSURE'] = (xpos, 's')
    h['BUNIT'] = 'DN'
    rotation_key, time_key = 'CROTA', 'DATE-OBS'
  h['WAVELNTH'] = 304
  h['WAVEUNIT'] = 'Angstrom'
  h[time_key] = (_isot(start, 3), 'UTC, exposure start')
  h['DATE-AVG'] = (_isot(mid, 3), 'UTC, mid exposure')
  rotation = round(float(rng.uniform(-1.0, 1.0)), 5)
  _wcs_cards(h, cdelt, _pointing(rng, size), rotation, rotation_key)
  _pc_cards(h, rotation)
  observer_cards(h, observer, stonyhurst=True)
  h['CNTFACT'] = (imager.counts_factor, 'DN/s per AIA 304 DN/s (assumed)')
  _synthetic_cards(h, seed, f'{imager.key.upper()} 304', observer)
  return h, xpos, mid


def truth_header(image_header, observer, seed, instrument):
  """The ground-truth LOS magnetogram's header: the EUV image's geometry
  and observer, in gauss, labelled SYNTHETIC ground truth."""
  h = fits.Header()
  h['TELESCOP'] = 'SYNTHETIC'
  h['INSTRUME'] = 'TRUTH'
  h['CONTENT'] = 'GROUND-TRUTH LOS MAGNETOGRAM'
  h['BUNIT'] = 'G'
  h['BTYPE'] = 'LOS magnetic field (synthetic truth, no noise)'
  h['OBSERVER'] = (observer.name, 'the observer it is seen from')
  h['TRUTHFOR'] = (instrument, 'the 304 A image it belongs to')
  for key in ('DATE-OBS', 'DATE-AVG', 'T_OBS'):
    if key in image_header:
      h[key] = image_header[key]
  for key in ('CTYPE1', 'CTYPE2', 'CUNIT1', 'CUNIT2', 'CDELT1', 'CDELT2',
              'CRPIX1', 'CRPIX2', 'CRVAL1', 'CRVAL2'):
    h[key] = image_header[key]
  rotation = image_header.get('CROTA2', image_header.get('CROTA', 0.0))
  h['CROTA2'] = rotation
  observer_cards(h, observer, stonyhurst=True)
  _synthetic_cards(h, seed, f'ground-truth LOS field for {instrument}',
                   observer)
  return h


# ----------------------------------------------------------------- counts

def aia_degradation(days):
  """Fraction of the 2012-01-01 304 A sensitivity left at `days`."""
  return max(0.3, 1.0 - AIA_DEGRADATION_PER_YEAR * days / 365.25)


def counts(radiance, factor, exptime, rng, saturation, noise=True):
  """Detector counts (DN) with Poisson noise, clipped to the saturation."""
  expected = radiance * (factor * exptime)
  if noise:
    expected = rng.poisson(expected).astype(np.float64)
  return np.clip(np.round(expected), 0, saturation)


def magnetogram_noise(shape, cdelt, rng):
  """HMI's photon noise (G) for pixels of `cdelt` arcsec."""
  sigma = HMI_NOISE_NATIVE_G * min(HMI_NATIVE_CDELT / cdelt, 1.0)
  return (sigma * rng.standard_normal(shape)).astype(np.float32)


IMAGER_KEYS = tuple(i.key for i in IMAGERS.values())
OBSERVER_NAMES = observers_lib.NAMES
