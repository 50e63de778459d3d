"""Full-disk map -> the paper's heliographic active-region-belt patch.

The patch is 90 deg (E-W) x 80 deg (N-S) of Stonyhurst heliographic (HGS)
longitude/latitude centred on the observer's own central meridian
(`centre_longitude`, whole degrees: 0 for SDO and SOHO, as in the paper;
the far side for STEREO-A near +130 deg), sampled at 0.1 deg/px on a plate carree (CAR) grid
of shape (800, 900) (lat x lon): the centre crop of the paper's 180 x 160
deg map. Pixel centres are symmetric about the centre (lon0 -44.95 ...
lon0 +44.95, lat -39.95 ... +39.95).

Conventions (the same for AIA and HMI):
- obstime = the map's reference date (T_OBS for SDO maps, UTC), written as
  DATE-AVG; the source DATE-OBS is kept as DATE-OBS.
- rsun = the header's RSUN_REF (not sunpy's default radius).
- observer = ``smap.observer_coordinate``: sunpy takes it from HGLN_OBS /
  HGLT_OBS / DSUN_OBS when present (AIA), else from CRLN_OBS / CRLT_OBS /
  DSUN_OBS (HMI files often lack HGLN_OBS), which is ~0.07 deg off SDO's true
  Stonyhurst longitude; both instruments go through the same sunpy rule, and
  the observer used is written to the patch (HGLN_OBS, HGLT_OBS, DSUN_OBS).

Method: every patch pixel goes pixel -> HGS world -> the source map's
helioprojective frame (sunpy coordinates; the source WCS carries CROTA2,
CDELT, CRPIX, so AIA registration and HMI's 180 deg roll happen here) ->
source pixel. Points on the far side of the Sun are NaN (sunpy's
``Helioprojective.is_visible``). The source is cropped to the bounding box
of the needed pixels (+ margin for the cubic kernel), NaN filled with 0 and
interpolated with ``scipy.ndimage.map_coordinates(order=3)``; a validity
mask interpolated with order 1 makes every patch pixel that touches missing
source data NaN. ``reproject_interp`` is not used: with NaN in the input its
bicubic mode returns all NaN (reproject #464). HMI is clipped to +-200 G
after interpolation; AIA arrives already divided by exposure (calibrate.py).
"""
import warnings

import astropy.units as u
import numpy as np
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.wcs import WCS
from scipy import ndimage
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header
from sunpy.util import MetaDict

from data_prep import calibrate, fitsio
from data_prep.fitsio import DataError
from data_prep.grid import HMI_CLIP_GAUSS, PATCH_SCALE_DEG, PATCH_SHAPE
import magjax_common
from magjax_common.errors import one_line

# A patch pixel is valid where the bilinear mask of valid source pixels is
# at least this (i.e. every neighbour used by the interpolation is valid).
MASK_THRESHOLD = 0.999
_CUBIC_MARGIN = 4  # source pixels kept around the needed box (cubic kernel)

_PROVENANCE_KEYS = ('TELESCOP', 'INSTRUME', 'WAVELNTH', 'WAVEUNIT', 'CONTENT',
                    'T_OBS', 'EXPTIME', 'QUALITY', 'SYNTHETIC', 'ORIGIN',
                    'LVL_NUM')


def _rsun_ref(smap):
  """The header's RSUN_REF as a Quantity (not sunpy's default radius)."""
  rsun = smap.meta.get('rsun_ref')
  if rsun is None:
    raise DataError(f'{smap.meta.get("magjax_src", "map")}: RSUN_REF is '
                    'needed for the heliographic patch')
  return float(rsun) * u.m


def centre_longitude(observer_lon):
  """The patch's central longitude: the observer's own central meridian
  rounded to whole degrees. Every near-Earth observer then gives the
  Earth's meridian 0 of the training data (SDO within 0.02 deg, SOHO's
  halo orbit within 0.3 deg, HMI files whose observer sunpy takes from
  CRLN_OBS ~0.07 deg off); STEREO-A at +130.2 gives +130."""
  lon = float(round(float(observer_lon)))
  return ((lon + 180.0) % 360.0) - 180.0


def target_header(smap, shape=PATCH_SHAPE, scale_deg=PATCH_SCALE_DEG):
  """The CAR patch header of a map (HGS, centred at latitude 0 on the
  observer's central meridian, `centre_longitude`; the map's time, solar
  radius and observer)."""
  obstime = smap.reference_date
  observer = smap.observer_coordinate.transform_to(
      frames.HeliographicStonyhurst(obstime=obstime))
  lon0 = centre_longitude(observer.lon.to_value(u.deg))
  centre = SkyCoord(lon0 * u.deg, 0 * u.deg,
                    frame=frames.HeliographicStonyhurst(
                        obstime=obstime, rsun=_rsun_ref(smap)))
  ny, nx = shape
  header = make_fitswcs_header(
      shape, centre,
      reference_pixel=[(nx - 1) / 2, (ny - 1) / 2] * u.pix,
      scale=[scale_deg, scale_deg] * u.deg / u.pix,
      projection_code='CAR')
  header['date-avg'] = obstime.utc.isot
  header['hgln_obs'] = observer.lon.to_value(u.deg)
  header['hglt_obs'] = observer.lat.to_value(u.deg)
  header['dsun_obs'] = observer.radius.to_value(u.m)
  return header


def _source_pixels(smap, header):
  """Source (x, y) pixel coordinates of every patch pixel; NaN if hidden."""
  patch_wcs = WCS(fits.Header(header))
  ny, nx = header['naxis2'], header['naxis1']
  yy, xx = np.mgrid[0:ny, 0:nx]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    world = patch_wcs.pixel_to_world(xx, yy)
    # Points on the sphere of radius RSUN_REF (the frame's rsun).
    hgs = SkyCoord(world.lon, world.lat, header['rsun_ref'] * u.m,
                   frame=world.frame)
    hpc = hgs.transform_to(smap.coordinate_frame)
    visible = hpc.is_visible()
    x, y = smap.wcs.world_to_pixel(hpc)
  x = np.where(visible, x, np.nan)
  y = np.where(visible, y, np.nan)
  return x, y


def _interpolate(data, x, y):
  """Cubic values and validity of ``data`` at pixel coordinates (x, y)."""
  finite = np.isfinite(x) & np.isfinite(y)
  out = np.full(x.shape, np.nan, dtype=np.float32)
  if not finite.any():
    return out, np.zeros(x.shape, bool)
  ny, nx = data.shape
  x0 = max(int(np.floor(x[finite].min())) - _CUBIC_MARGIN, 0)
  x1 = min(int(np.ceil(x[finite].max())) + _CUBIC_MARGIN + 1, nx)
  y0 = max(int(np.floor(y[finite].min())) - _CUBIC_MARGIN, 0)
  y1 = min(int(np.ceil(y[finite].max())) + _CUBIC_MARGIN + 1, ny)
  if x0 >= x1 or y0 >= y1:
    return out, np.zeros(x.shape, bool)
  crop = data[y0:y1, x0:x1]
  valid = np.isfinite(crop)
  filled = np.where(valid, crop, np.float32(0)).astype(np.float32)
  # Far outside the crop -> the constant mode marks the mask invalid.
  coords = np.stack([np.where(finite, y - y0, -10.0),
                     np.where(finite, x - x0, -10.0)]).astype(np.float32)
  values = ndimage.map_coordinates(filled, coords, order=3, mode='nearest',
                                   output=np.float32)
  weight = ndimage.map_coordinates(valid.astype(np.float32), coords, order=1,
                                   mode='constant', cval=0.0,
                                   output=np.float32)
  ok = finite & (weight >= MASK_THRESHOLD)
  out[ok] = values[ok]
  return out, ok


def extract_patch(smap, shape=PATCH_SHAPE, scale_deg=PATCH_SCALE_DEG):
  """The (800, 900) heliographic CAR patch of a calibrated full-disk map.

  Args:
    smap: a map from ``calibrate.load_calibrated`` (AIA DN/s or HMI gauss).
    shape, scale_deg: patch grid; defaults are the paper's.

  Returns:
    A sunpy map, float32, NaN where the Sun is hidden or the source has no
    data, HMI clipped to +-200 G, with provenance keywords copied from the
    source header and HISTORY lines naming the steps.
  """
  try:
    header = target_header(smap, shape, scale_deg)
    x, y = _source_pixels(smap, header)
  except (ValueError, TypeError) as exc:  # sunpy/astropy on odd headers
    raise DataError(f'{smap.meta.get("magjax_src", "map")}: cannot place '
                    f'the map on the Sun ({one_line(exc)})') from exc
  data = np.asarray(smap.data, dtype=np.float32)
  values, ok = _interpolate(data, x, y)
  kind = smap.meta.get('magjax_kind') or fitsio.detect_kind(smap.meta)
  if kind == 'hmi':
    np.clip(values, -HMI_CLIP_GAUSS, HMI_CLIP_GAUSS, out=values)
  if not ok.any():
    raise DataError(f'{smap.meta.get("magjax_src", "map")}: the patch holds '
                    'no valid pixel')
  return _patch_map(values, header, smap, kind)


def _patch_map(values, header, smap, kind):
  """The patch as a sunpy map: WCS header + provenance + HISTORY."""
  meta = dict(header)
  src = smap.meta
  for key in _PROVENANCE_KEYS:
    if key.lower() in src:
      meta[key.lower()] = src[key.lower()]
  if 'date-obs' in src:
    meta['date-obs'] = src['date-obs']
  meta['src_file'] = src.get('magjax_src', '')
  for key, value in src.get('magjax_cal', {}).items():
    meta[key.lower()] = value
  meta['bunit'] = src.get('bunit', 'G' if kind == 'hmi' else 'DN/s')
  meta['patchver'] = 1
  meta['btype'] = 'LOS magnetic field' if kind == 'hmi' else 'intensity'
  history = [f'magjax {magjax_common.version()} data_prep: '
             f'{step}' for step in src.get('magjax_steps', [])]
  history.append(
      f'magjax {magjax_common.version()} data_prep.patches: HGS CAR '
      f'{header["naxis2"]}x{header["naxis1"]} at '
      f'{header["cdelt1"]:g} deg/px, one cubic interpolation from the '
      'source WCS (rotation, scale, centring), NaN off-disk/missing')
  if kind == 'hmi':
    history.append(f'magjax data_prep.patches: clipped to +-'
                   f'{HMI_CLIP_GAUSS:g} G after interpolation')
  if src.get('synthetic'):
    history.append('SYNTHETIC data: not an SDO observation')
  meta['history'] = '\n'.join(history)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(values, MetaDict(meta))


def patch_header(pmap):
  """FITS header of a patch map (HISTORY as separate cards)."""
  header = fits.Header()
  for key, value in pmap.meta.items():
    if key in ('history', 'comment', 'keycomments'):
      continue
    if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
      name = key.upper()
      header['HIERARCH ' + name if len(name) > 8 else name] = value
  for line in str(pmap.meta.get('history', '')).splitlines():
    header.add_history(line)
  return header


def patch_file(in_path, out_path, *, allow_bad_quality=False, register=False,
               wavelength=fitsio.AIA_WAVELENGTH):
  """Calibrates one full-disk file and writes its patch atomically.

  Returns the patch map. Raises DataError for bad input; no file is written
  then. Keyword arguments as ``calibrate.load_calibrated``.
  """
  smap = calibrate.load_calibrated(in_path,
                                   allow_bad_quality=allow_bad_quality,
                                   register=register, wavelength=wavelength)
  pmap = extract_patch(smap)
  fitsio.write_fits_atomic(out_path, pmap.data.astype(np.float32),
                           patch_header(pmap))
  return pmap


# ------------------------------------------------- patch -> full-disk frame

def disk_header(smap):
  """The FITS WCS of a full-disk map's own helioprojective frame (its
  reference coordinate, pixel, scale and rotation), with its observer
  (HGLN_OBS, HGLT_OBS, DSUN_OBS), RSUN_REF and times, as ITI rebuilds
  headers with sunpy's `make_fitswcs_header`."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    meta = make_fitswcs_header(
        smap.data.shape, smap.reference_coordinate,
        reference_pixel=u.Quantity(smap.reference_pixel),
        scale=u.Quantity(smap.scale),
        rotation_matrix=smap.rotation_matrix)
  header = fits.Header()
  for key, value in meta.items():
    if key not in ('keycomments', 'comment', 'history'):
      header[key.upper()] = value
  header['DATE-AVG'] = smap.reference_date.utc.isot
  header['RSUN_REF'] = smap.rsun_meters.to_value(u.m)
  return header


def to_disk(values, header, smap, rows=256):
  """A patch (`values` on the CAR grid of `header`) resampled onto the
  pixels of the full-disk map `smap`: each disk pixel -> its point on the
  sphere of radius RSUN_REF (sunpy; NaN off the disk) -> patch pixel ->
  the same interpolation as `extract_patch` (cubic, bilinear validity).
  NaN off the disk, outside the patch, on its far side and where the patch
  is NaN. Done `rows` image rows at a time to bound memory."""
  patch_wcs = WCS(fits.Header(header))
  ny, nx = smap.data.shape
  out = np.full((ny, nx), np.nan, dtype=np.float32)
  hgs = frames.HeliographicStonyhurst(obstime=smap.reference_date,
                                      rsun=_rsun_ref(smap))
  values = np.asarray(values, dtype=np.float32)
  for y0 in range(0, ny, rows):
    yy, xx = np.mgrid[y0:min(ny, y0 + rows), 0:nx]
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      world = smap.wcs.pixel_to_world(xx, yy).transform_to(hgs)
      px, py = patch_wcs.world_to_pixel_values(world.lon.to_value(u.deg),
                                               world.lat.to_value(u.deg))
    px, py = np.asarray(px, float), np.asarray(py, float)
    band, ok = _interpolate(values, px, py)
    out[y0:y0 + rows] = np.where(ok, band, np.nan)
  return out
