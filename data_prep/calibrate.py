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

from data_prep import fitsio
from data_prep.fitsio import DataError
from magjax_common.errors import one_line


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
  steps = []
  try:
    smap = _to_map(data, header)
  except Exception as exc:
    raise DataError(f'{Path(path).name}: sunpy cannot build a map '
                    f'({one_line(exc)})') from exc
  if kind == 'aia':
    if register:
      smap = _register_aia(smap)
      steps.append('aiapy.calibrate.register (order 3)')
    exptime = float(header['EXPTIME'])
    smap = _to_map((smap.data / np.float32(exptime)).astype(np.float32),
                   smap.meta)
    smap.meta['bunit'] = 'DN/s'
    smap.meta['exptime'] = exptime
    steps.append(f'divided by EXPTIME {exptime:g} s -> DN/s')
  else:
    smap.meta['bunit'] = 'G'
    steps.append('HMI LOS field in gauss, float32')
  smap.meta['magjax_src'] = Path(path).name
  smap.meta['magjax_kind'] = kind
  smap.meta['magjax_steps'] = steps
  return smap
