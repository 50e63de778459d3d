"""Validated, calibrated full-disk SDO maps (AIA 304 in DN/s, HMI in gauss).

AIA: pixels to float32, divided by EXPTIME (kept in the header, BUNIT 'DN/s').
Registration (rotation to solar north, 0.6"/px, disk centring) is by default
not a separate resampling: the level-1 WCS (CROTA2, CDELT, CRPIX) already
describes it exactly, and ``patches.extract_patch`` maps every patch pixel
through that WCS to the source pixel, so rotation, scale and centring happen
inside ONE cubic interpolation. ``aiapy.calibrate.register`` followed by the
patch mapping would interpolate twice; ``register=True`` still runs it
explicitly (float data in: aiapy keeps the input dtype), and the tests show
both routes give the same patch within interpolation error.

Not applied at run time: aiapy 0.10's ``update_pointing`` and
``correct_degradation`` need their pointing / degradation tables, which are
downloaded from JSOC; the pipeline runs offline. The 304 A degradation is a
slow multiplicative drift over the year that the per-data-set normalisation
of the training pipeline absorbs to first order.

HMI: float32 gauss; QUALITY != 0 rejected unless ``allow_bad_quality``; the
~180 deg CROTA2 is handled by the same WCS mapping (no rotation here).
"""
import warnings
from pathlib import Path

import numpy as np
import sunpy.map
from sunpy.util import MetaDict

from data_prep import fitsio, imagers
from data_prep.fitsio import DataError
from magjax_common.errors import one_line

CALIBRATIONS = ('auto', 'quiet-sun', 'none')
QUIET_SUN_MU = 0.5
# AIA 304's quiet-Sun level (DN/s, `quiet_sun_level`) in the data a model is
# trained on: the SYNTHETIC Sun's median over 2012 (31.7-38.8 as AIA
# degrades), measured by `python -m data_prep.calibrate data/raw/aia`; for
# real data measure yours the same way (ITI's real AIA 304 quiet-Sun mean
# is 46.2 DN/s). A model's own value is config.aia_quiet_sun.
AIA_QUIET_SUN_DN_S = 35.4


def _to_map(data, header):
  """A sunpy map from validated data and header, warnings silenced."""
  meta = dict(header)
  for key in ('BLANK', 'BSCALE', 'BZERO', 'CHECKSUM', 'DATASUM'):
    meta.pop(key, None)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(data, MetaDict(meta))


def _register_aia(smap):
  """aiapy level-1 -> 1.5 registration on float data (NaN where missing)."""
  from aiapy.calibrate import register
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    out = register(smap, missing=np.nan, order=3)
  return _to_map(out.data.astype(np.float32), out.meta)


def load_calibrated(path, *, allow_bad_quality=False, register=False,
                    wavelength=fitsio.AIA_WAVELENGTH):
  """Reads, validates and calibrates one full-disk SDO file.

  Args:
    path: AIA 304 level-1 or HMI LOS magnetogram FITS file.
    allow_bad_quality: accept frames with QUALITY != 0.
    register: AIA only: run aiapy's registration explicitly (a second
      interpolation) instead of leaving it to the patch's WCS mapping.
    wavelength: required AIA wavelength (None: any; used by tests on sunpy's
      AIA 171 A test file).

  Returns:
    A sunpy map: AIA in DN/s (EXPTIME kept), HMI in gauss, float32, NaN where
    the source has no data. Its meta holds 'magjax_src' (the file name),
    'magjax_kind' ('aia' | 'hmi') and 'magjax_steps' (list of strings).

  Raises:
    DataError: with a one-line message for any bad input.
  """
  kind, data, header = fitsio.read_sdo(path, wavelength=wavelength,
                                       allow_bad_quality=allow_bad_quality)
  smap = _map_of(path, data, header)
  if kind == 'aia':
    steps = []
    if register:
      smap = _register_aia(smap)
      steps.append('aiapy.calibrate.register (order 3)')
    smap = _per_second(smap, header, 'EXPTIME', steps)
  else:
    smap.meta['bunit'] = 'G'
    steps = ['HMI LOS field in gauss, float32']
  return _labelled(smap, path, kind, steps)


def _map_of(path, data, header):
  try:
    return _to_map(data, header)
  except Exception as exc:
    raise DataError(f'{Path(path).name}: sunpy cannot build a map '
                    f'({one_line(exc)})') from exc


def _per_second(smap, header, key, steps):
  """The map divided by its exposure time `header[key]` (BUNIT DN/s)."""
  seconds = float(header[key])
  smap = _to_map((smap.data / np.float32(seconds)).astype(np.float32),
                 smap.meta)
  smap.meta['bunit'] = 'DN/s'
  smap.meta['exptime'] = seconds
  steps.append(f'divided by {key} {seconds:g} s -> DN/s')
  return smap


def _labelled(smap, path, kind, steps, calibration=None):
  smap.meta['magjax_src'] = Path(path).name
  smap.meta['magjax_kind'] = kind
  smap.meta['magjax_steps'] = steps
  smap.meta['magjax_cal'] = calibration or {}
  return smap


# ------------------------------------------------- any 304 A imager -> AIA

def mu_of_pixels(smap, step=1):
  """mu = cos(angle between the line of sight and the local vertical) of
  every `step`-th pixel, NaN off the disk.

  Exact for a sphere seen from distance D: a ray at angle theta from disk
  centre passes the Sun's centre at b = D sin(theta), and hits the surface
  where sin(incidence) = b / R, so mu = sqrt(1 - (D sin(theta) / R)^2).
  """
  ny, nx = smap.data.shape
  yy, xx = np.mgrid[0:ny:step, 0:nx:step]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    tx, ty = smap.wcs.pixel_to_world_values(xx, yy)  # degrees
    dsun = smap.dsun.to_value('m')
    rsun = smap.rsun_meters.to_value('m')
  cos_theta = np.cos(np.radians(tx)) * np.cos(np.radians(ty))
  sin_theta = np.sqrt(np.clip(1.0 - cos_theta ** 2, 0.0, 1.0))
  rho2 = (dsun * sin_theta / rsun) ** 2
  return np.where(rho2 < 1.0, np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0)), np.nan)


def quiet_sun_level(smap):
  """Median of the inner disk (mu > QUIET_SUN_MU), where the quiet Sun
  dominates (active regions cover a few % of it and move a median little);
  about 1e6 pixels are sampled."""
  step = max(1, int(round(np.sqrt(smap.data.size / 1.0e6))))
  mu = mu_of_pixels(smap, step)
  values = smap.data[::step, ::step]
  inner = (mu > QUIET_SUN_MU) & np.isfinite(values)
  if inner.sum() < 100:
    raise DataError(f'{smap.meta.get("magjax_src", "map")}: fewer than 100 '
                    f'valid pixels on the inner disk (mu > {QUIET_SUN_MU})')
  return float(np.median(values[inner]))


def load_304(path, calibration='auto', reference=AIA_QUIET_SUN_DN_S):
  """Any 304 A imager's full-disk file on the AIA 304 DN/s scale.

  Args:
    path: a SDO/AIA, STEREO/EUVI, SOHO/EIT or SolO/EUI/FSI 304 A file
      (`imagers.validate`).
    calibration: 'auto' (AIA: counts per second only, as the training data;
      other imagers: 'quiet-sun'), 'quiet-sun' (for any imager) or 'none'
      (counts per second only).
    reference: AIA 304's quiet-Sun level in DN/s (`quiet_sun_level`) on the
      scale the model was trained on.

  'quiet-sun' = (1) counts per second (divided by the exposure unless
  BUNIT is already DN/s), (2) x (DSUN_OBS / 1 AU)^2, as ITI does for FSI,
  (3) x reference / the image's own quiet-Sun level: a gain, no offset.
  EUV detectors are linear after dark subtraction, so a gain is the
  physical model of a different instrument's throughput; a mean-and-sigma
  match (ITI's baseline) also adds an offset and depends on resolution
  (sigma falls as pixels grow). Step 3 absorbs step 2 exactly (the
  surface brightness of the resolved disk does not depend on distance);
  step 2 is kept so that `CALDFAC` documents it. The gain per image also
  absorbs the instrument's degradation.

  Returns:
    A sunpy map (its instrument's class) in DN/s with meta 'magjax_steps'
    and 'magjax_cal' (the FITS keywords of the calibration, see
    `imagers.CALIBRATION_KEYS`).

  Raises:
    DataError: a one-line message for any bad or unsupported input.
  """
  if calibration not in CALIBRATIONS:
    raise DataError(f'calibration {calibration!r} is not one of '
                    f'{", ".join(CALIBRATIONS)}')
  kind, data, header = fitsio.read_image(
      path, lambda h: imagers.validate(path, h))
  smap = _map_of(path, data, header)
  name = imagers.label(header)
  steps = []
  key, seconds = imagers.exposure(header, kind)
  if imagers.is_rate(header):
    smap.meta['bunit'] = 'DN/s'
    steps.append(f'{name}: BUNIT {header.get("BUNIT")!r}, already DN/s')
  else:
    smap = _per_second(smap, header, key, steps)
  cal = {'CALMODE': calibration, 'CALEXPT': float(seconds),
         'SRC_INST': name}
  if calibration == 'quiet-sun' or (calibration == 'auto' and kind != 'aia'):
    factor = imagers.distance_factor(header)
    level = quiet_sun_level(smap) * factor
    if not level > 0:
      raise DataError(f'{Path(path).name}: the quiet-Sun disk has no '
                      f'positive signal (median {level:g} DN/s)')
    gain = reference / level
    smap = _to_map((smap.data * np.float32(factor * gain)).astype(
        np.float32), smap.meta)
    steps.append(f'x (DSUN_OBS / 1 AU)^2 = {factor:.6g}')
    steps.append(f'x quiet-Sun gain {gain:.6g} (quiet-Sun median '
                 f'{level:.6g} -> AIA 304 reference {reference:g} DN/s)')
    cal.update(CALDFAC=factor, CALQSIN=level, CALQSREF=float(reference),
               CALGAIN=gain)
  else:
    steps.append(f'{name}: no intensity match (calibration {calibration!r})')
  return _labelled(smap, path, kind, steps, cal)


def main(argv=None):
  """`python -m data_prep.calibrate DIR|FILE...`: the quiet-Sun level of
  304 A files (median, min, max), for config.aia_quiet_sun."""
  import argparse  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top
  parser = argparse.ArgumentParser(
      prog='python -m data_prep.calibrate',
      description='Quiet-Sun level (DN/s, mu > 0.5 median) of 304 A files.')
  parser.add_argument('paths', nargs='+', help='FITS files or directories')
  args = parser.parse_args(argv)
  files = []
  for path in map(Path, args.paths):
    files += sorted(path.rglob('*.fits')) if path.is_dir() else [path]
  levels = []
  for path in files:
    try:
      smap = load_304(path, 'none')
    except DataError as e:
      print(f'skip: {e}', file=sys.stderr)
      continue
    levels.append(quiet_sun_level(smap))
  if not levels:
    print('error: no usable 304 A file', file=sys.stderr)
    return 2
  print(f'{len(levels)} files: quiet-Sun level median '
        f'{np.median(levels):.4g} DN/s (min {min(levels):.4g}, max '
        f'{max(levels):.4g})')
  return 0


if __name__ == '__main__':
  raise SystemExit(main())
