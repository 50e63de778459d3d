"""A synchronic whole-Sun magnetogram: observed HMI + generated far side.

  python -m magjax.synchronic --observed hmi_m.fits \
      --generated gen_stereo_a.fits [gen_stereo_b.fits ...] --out map.fits \
      [--carrington] [--scale 0.2] [--figure map.png] [--min-mu 0.1] \
      [--max-hours 6] [--clip 200]

Output: one plate carree (CAR) map of the whole Sun at one time, the time
of the observed HMI magnetogram: Stonyhurst longitude -180..180 (default)
or, with --carrington, Carrington longitude 0..360 (the frame of the HMI
observer), latitude -90..90, --scale deg/px in (0, 5] (default 0.2:
1800 x 900; a scale that does not divide 180 is rounded to the nearest one
that does; at most 10^8 pixels, i.e. about 0.025 deg/px, near HMI's own
resolution at disk centre). Memory: the map, plus blocks of 2^20 points.

Inputs:
- --observed: a full-disk SDO/HMI LOS magnetogram (hmi.M_*), read and
  validated by the data preparation (`data_prep.calibrate.load_calibrated`,
  gauss); its time is the map's time and its observer the map's observer.
- --generated: magnetograms written by `magjax.predict` (TELESCOP 'magjax',
  CONTENT 'GENERATED LOS MAGNETOGRAM', gauss): Stonyhurst CAR patches
  (HGLN/HGLT) or full-disk helioprojective images (HPLN/HPLT), each with
  its observer (HGLN_OBS/HGLT_OBS/DSUN_OBS or the like) and time.

Method:
1. The output grid's pixel centres (lon, lat), on a sphere of radius
   RSUN_REF (the HMI header's), as Stonyhurst coordinates (a Carrington
   map's longitudes minus the Carrington-Stonyhurst offset that sunpy gives
   at the map time for the HMI observer).
2. For each source, mu = the cosine of the angle between the local surface
   normal and the direction from the point to the source's observer
   (heliocentric Cartesian vectors of the point and of
   `smap.observer_coordinate`). mu > 0 is exactly sunpy's `is_visible()`.
   Only points with mu > --min-mu (default 0.1) are sampled.
3. Those points go to source pixel coordinates: a Stonyhurst patch's WCS
   takes the longitude/latitude as they are (`world_to_pixel_values`); for a
   helioprojective source the points are transformed with sunpy into the
   map's helioprojective frame (its observer, its roll: HMI's CROTA2 ~180
   deg) and then through its WCS (`world_to_pixel`). Only the output grid
   points are transformed, never a source image (a 4096^2 HMI costs one
   interpolation at the needed points).
4. Bilinear interpolation with a validity mask
   (`scipy.ndimage.map_coordinates` of the NaN-filled data and of the mask,
   order 1): a point is valid where the interpolated mask is >= 0.999, i.e.
   every pixel used is finite; the value is the interpolated data divided by
   the interpolated mask.
5. Weight = mu x preference: 100 for the observed HMI, 1 for a generated
   file (as ITI's build_map weights HMI 100x), so observed data win wherever
   they are valid. Each map pixel takes the value of the valid source with
   the largest weight (ties: the earlier source); no averaging. NaN where no
   source is valid.

Time: no differential rotation (nor any rotation) is applied. Every source
is sampled at the same Stonyhurst longitude/latitude as the map pixel, its
Stonyhurst coordinates taken at its own time. A generated file more than
--max-hours (default 6 h) from the HMI time is refused: the Sun rotates
~3.3 deg in 6 h (synodic, at the equator), which is the largest position
error accepted.

Output FITS (written atomically, `magjax_common.fileio`):
- primary HDU: float32 gauss (BUNIT 'G'), NaN where no source sees the Sun;
  WCS CTYPE 'HGLN-CAR'/'HGLT-CAR' (Stonyhurst) or 'CRLN-CAR'/'CRLT-CAR'
  (Carrington), CUNIT deg, DATE-OBS (the HMI time, UTC), RSUN_REF, the HMI
  observer (HGLN_OBS, HGLT_OBS, DSUN_OBS; Carrington frames need it);
  GENERATD (true when any pixel is generated), HIERARCH SYNTHETIC (true when
  any input is synthetic: SYNTHETIC true in its header, or TRAINSYN true for
  a generated file from a model trained on synthetic data), NSRC, HISTORY
  lines saying how the map was built and which parts are generated or
  synthetic.
- image HDU 'SOURCE': int16, the index of the source of each pixel (-1
  none, 0 the observed HMI, 1.. the generated files in the order given), the
  same WCS, and per source i: SRCi_FIL (file name), SRCi_KND (observed |
  generated), SRCi_LON / SRCi_LAT (its observer's Stonyhurst longitude /
  latitude, deg), SRCi_INS (instrument), SRCi_SYN (synthetic), SRCi_DT (its
  time minus the map time, s), SRCi_PCT (% of the map's pixels it gives).
  Keys longer than 8 characters (i >= 10) are HIERARCH cards.

`sunpy.map.Map(path, hdus=0)` opens the magnetogram (`sunpy.map.Map(path)`
gives [magnetogram, source index map]).

Figure (PNG; default: --out with .png): the map with sunpy's 'hmimag'
colormap clipped to +-200 G (--clip), longitude / latitude axes, grey where
no source sees the Sun, a black contour around generated pixels, a dashed
vertical line at each observer's longitude labelled with its instrument and
file, and GENERATED / SYNTHETIC in the title when they apply (Agg, no
display).

Errors (missing or non-FITS file, an --observed that is not an SDO/HMI
magnetogram, a --generated that is not a magjax generated magnetogram, no
observer position, a time too far from the HMI's, a bad flag, an
unwritable output): one line `error: ...` on stderr, exit code 2, and
neither the map nor the figure is written.
"""

import argparse
import dataclasses
import io
import os
import sys
import textwrap
import warnings

import astropy.units as u
import matplotlib
import numpy as np
import sunpy.map
import sunpy.visualization.colormaps  # noqa: F401  # registers 'hmimag'
from astropy.coordinates import SkyCoord
from astropy.io import fits
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage
from sunpy.coordinates import frames
from sunpy.util import MetaDict

from data_prep import calibrate, fitsio
import magjax_common
from magjax_common import fileio
from magjax_common.errors import UserError, fail, one_line

OBSERVED_PREFERENCE = 100.0  # ITI's build_map: HMI weighted 100x
GENERATED_PREFERENCE = 1.0
DEFAULT_SCALE_DEG = 0.2
MAX_SCALE_DEG = 5.0
MAX_MAP_PIXELS = 100_000_000  # ~0.025 deg/px; HMI resolves ~0.03 deg
DEFAULT_MIN_MU = 0.1
DEFAULT_MAX_HOURS = 6.0
DEFAULT_CLIP_GAUSS = 200.0
MASK_THRESHOLD = 0.999  # bilinear mask: every pixel used is finite
BLOCK_POINTS = 1 << 20  # output pixels per block (bounds memory)
GENERATED_TELESCOP = 'MAGJAX'
GENERATED_CONTENT = 'GENERATED LOS MAGNETOGRAM'
# Observer keyword sets sunpy can place an observer from (else it silently
# assumes Earth, which would be wrong for a far-side view).
_OBSERVER_KEYSETS = (('HGLN_OBS', 'HGLT_OBS', 'DSUN_OBS'),
                     ('CRLN_OBS', 'CRLT_OBS', 'DSUN_OBS'),
                     ('HAEX_OBS', 'HAEY_OBS', 'HAEZ_OBS'),
                     ('HEQX_OBS', 'HEQY_OBS', 'HEQZ_OBS'))


@dataclasses.dataclass
class Source:
  """One input map, ready to be sampled."""
  path: str
  kind: str  # 'observed' | 'generated'
  instrument: str
  synthetic: bool
  smap: object  # sunpy map
  projection: str  # 'heliographic' (Stonyhurst) | 'helioprojective'
  time: object  # astropy Time (the map's reference date)
  observer_lon: float  # Stonyhurst, deg
  observer_lat: float
  observer_xyz: np.ndarray  # heliocentric Stonyhurst Cartesian, m
  filled: np.ndarray = None  # float32 data, NaN -> 0
  valid: np.ndarray = None  # float32 1 where finite
  dt_s: float = 0.0  # its time - the map time, s

  @property
  def name(self):
    return os.path.basename(self.path)

  @property
  def preference(self):
    return (OBSERVED_PREFERENCE if self.kind == 'observed'
            else GENERATED_PREFERENCE)


@dataclasses.dataclass
class Grid:
  """The output map's pixel grid."""
  nx: int
  ny: int
  cdelt: float
  carrington: bool
  offset: float = 0.0  # Carrington lon - Stonyhurst lon at the map time

  @property
  def crval1(self):
    return 180.0 if self.carrington else 0.0

  def lon(self):
    """Map longitudes of the pixel centres (nx,), deg."""
    return self.crval1 + (np.arange(self.nx) - (self.nx - 1) / 2) * self.cdelt

  def lat(self):
    """Latitudes of the pixel centres (ny,), deg."""
    return (np.arange(self.ny) - (self.ny - 1) / 2) * self.cdelt

  def to_stonyhurst(self, lon):
    """Stonyhurst longitude in [-180, 180) of map longitudes."""
    return _wrap180(lon - self.offset) if self.carrington else lon

  def map_longitude(self, stonyhurst_lon):
    """The map longitude of a Stonyhurst longitude (lines in the figure)."""
    if self.carrington:
      return float(np.mod(stonyhurst_lon + self.offset, 360.0))
    return float(_wrap180(stonyhurst_lon))


def _wrap180(lon):
  return np.mod(np.asarray(lon, dtype=np.float64) + 180.0, 360.0) - 180.0


# ------------------------------------------------------------------ inputs

def _check_file(path):
  """UserError unless `path` is an existing file that starts as FITS."""
  name = os.path.basename(path)
  if os.path.isdir(path):
    raise UserError(f'{path}: is a directory, expected a FITS file')
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such file')
  with open(path, 'rb') as f:
    if f.read(9) != b'SIMPLE  =':
      raise UserError(f'{name}: not a FITS file (no SIMPLE card at the '
                      'start)')


def _observer(name, smap, header):
  """(lon, lat, xyz) of the map's observer in Stonyhurst at its time."""
  keys = {k.upper() for k in header}
  if not any(all(k in keys for k in keyset) for keyset in _OBSERVER_KEYSETS):
    raise UserError(f'{name}: no observer position (HGLN_OBS/HGLT_OBS/'
                    'DSUN_OBS, CRLN_OBS/CRLT_OBS/DSUN_OBS or HAE*_OBS)')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      observer = smap.observer_coordinate
      if observer is None:
        raise ValueError('sunpy cannot place the observer')
      hgs = observer.transform_to(
          frames.HeliographicStonyhurst(obstime=observer.obstime))
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # sunpy: many kinds
    raise UserError(f'{name}: unusable observer position '
                    f'({one_line(e)})') from e
  xyz = hgs.cartesian.xyz.to_value(u.m)
  rsun = float(smap.rsun_meters.to_value(u.m))
  if not np.all(np.isfinite(xyz)) or np.linalg.norm(xyz) < 1.5 * rsun:
    raise UserError(f'{name}: observer distance {np.linalg.norm(xyz):g} m '
                    'is not outside the Sun')
  return float(_wrap180(hgs.lon.to_value(u.deg))), float(
      hgs.lat.to_value(u.deg)), np.asarray(xyz, dtype=np.float64)


def _with_arrays(source, data):
  data = np.asarray(data, dtype=np.float32)
  valid = np.isfinite(data)
  if not valid.any():
    raise UserError(f'{source.name}: the image holds no finite pixel')
  source.filled = np.where(valid, data, np.float32(0)).astype(np.float32)
  source.valid = valid.astype(np.float32)
  return source


def load_observed(path):
  """The observed HMI magnetogram as a Source (UserError if it is not)."""
  _check_file(path)
  name = os.path.basename(path)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    kind, header = fitsio.read_sdo_header(path, wavelength=None)
    if kind != 'hmi':
      raise UserError(
          f'{name}: an SDO/{kind.upper()} image (TELESCOP='
          f'{header.get("TELESCOP")!r}), --observed takes an SDO/HMI '
          'line-of-sight magnetogram')
    smap = calibrate.load_calibrated(path)  # DataError is a UserError
  lon, lat, xyz = _observer(name, smap, header)
  telescop = str(header.get('TELESCOP', 'SDO/HMI')).strip() or 'SDO/HMI'
  source = Source(path=path, kind='observed', instrument=telescop,
                  synthetic=_flag(smap.meta.get('synthetic')), smap=smap,
                  projection='helioprojective', time=smap.reference_date,
                  observer_lon=lon, observer_lat=lat, observer_xyz=xyz)
  return _with_arrays(source, smap.data)


def _flag(value):
  """A FITS boolean card's value (also 'T' / 'true' strings) as bool."""
  if isinstance(value, str):
    return value.strip().upper() in ('T', 'TRUE', '1', 'YES')
  return bool(value)


def _read_image(path):
  """(data, header) of the first 2-D image HDU of a FITS file; cards of an
  empty primary HDU (TELESCOP, CONTENT, SYNTHETIC...) fill in missing ones."""
  name = os.path.basename(path)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      with fits.open(path, memmap=False) as hdul:
        for hdu in hdul[:2]:
          if (isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU,
                               fits.CompImageHDU))
              and hdu.header.get('NAXIS', 0) == 2):
            fitsio.check_cards(path, hdu.header)
            header = hdu.header.copy()
            if hdu is not hdul[0]:
              fitsio.check_cards(path, hdul[0].header)
              for card in hdul[0].header.cards:
                if card.keyword in ('TELESCOP', 'INSTRUME', 'CONTENT',
                                    'SYNTHETIC', 'TRAINSYN') \
                    and card.keyword not in header:
                  header[card.keyword] = card.value
            data = np.asarray(hdu.data, dtype=np.float32)
            return data, header
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # astropy: many kinds
    raise UserError(f'{name}: corrupt FITS file ({one_line(e)})') from e
  raise UserError(f'{name}: no 2-D image in HDU 0 or 1')


def _generated_projection(name, header):
  """'heliographic' or 'helioprojective' from CTYPE1/2 (else UserError)."""
  ctype1 = str(header.get('CTYPE1', '')).strip().upper()
  ctype2 = str(header.get('CTYPE2', '')).strip().upper()
  if ctype1.startswith('HGLN-') and ctype2.startswith('HGLT-'):
    for axis in ('1', '2'):
      unit = str(header.get('CUNIT' + axis, 'deg')).strip().lower()
      if unit not in ('deg', 'degree', 'degrees'):
        raise UserError(f'{name}: CUNIT{axis} is {unit!r}, expected deg for '
                        'a Stonyhurst patch')
    return 'heliographic'
  if ctype1.startswith('HPLN-') and ctype2.startswith('HPLT-'):
    return 'helioprojective'
  raise UserError(f'{name}: unsupported coordinates CTYPE1={ctype1!r} '
                  f'CTYPE2={ctype2!r}, expected a Stonyhurst patch '
                  '(HGLN/HGLT) or a full-disk image (HPLN/HPLT)')


def check_generated_header(path, header):
  """UserError unless `header` is a magjax generated magnetogram's."""
  name = os.path.basename(path)
  telescop = str(header.get('TELESCOP', '')).strip()
  content = str(header.get('CONTENT', '')).strip()
  if (telescop.upper() != GENERATED_TELESCOP
      or content.upper() != GENERATED_CONTENT):
    raise UserError(
        f'{name}: not a magjax generated magnetogram (TELESCOP='
        f'{telescop!r}, CONTENT={content!r}; expected \'magjax\', '
        f'{GENERATED_CONTENT!r} as magjax.predict writes)')
  unit = str(header.get('BUNIT', '')).strip()
  if unit.lower() not in ('g', 'gauss'):
    raise UserError(f'{name}: BUNIT is {unit!r}, expected G')
  if not any(str(header.get(k, '')).strip() for k in ('DATE-AVG',
                                                       'DATE-OBS')):
    raise UserError(f'{name}: no observation time (DATE-AVG or DATE-OBS)')
  return _generated_projection(name, header)


def _generated_instrument(header):
  src = str(header.get('SRC_INST', '')).strip()
  return f'magjax from {src}' if src else 'magjax'


def load_generated(path):
  """A generated magnetogram (magjax.predict output) as a Source."""
  _check_file(path)
  name = os.path.basename(path)
  data, header = _read_image(path)
  projection = check_generated_header(path, header)
  meta = {k: v for k, v in header.items()
          if k not in ('BSCALE', 'BZERO', 'BLANK', 'CHECKSUM', 'DATASUM',
                       'HISTORY', 'COMMENT', '')}
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      smap = sunpy.map.Map(data, MetaDict(meta))
      time = smap.reference_date
      smap.wcs  # pylint: disable=pointless-statement
  except Exception as e:  # pylint: disable=broad-except  # sunpy: many kinds
    raise UserError(f'{name}: sunpy cannot build a map ({one_line(e)})') from e
  lon, lat, xyz = _observer(name, smap, header)
  synthetic = _flag(header.get('SYNTHETIC')) or _flag(header.get('TRAINSYN'))
  source = Source(path=path, kind='generated',
                  instrument=_generated_instrument(header),
                  synthetic=synthetic, smap=smap, projection=projection,
                  time=time, observer_lon=lon, observer_lat=lat,
                  observer_xyz=xyz)
  return _with_arrays(source, data)


def check_time(source, map_time, max_hours):
  """UserError when `source` is more than `max_hours` from the map time."""
  hours = float((source.time - map_time).to_value('hour'))
  if abs(hours) > max_hours:
    raise UserError(
        f'{source.name}: taken {hours:+.2f} h from the HMI time '
        f'{map_time.utc.isot[:19]}, more than --max-hours {max_hours:g}: '
        'no differential rotation is applied and the Sun turns ~3.3 deg '
        'per 6 h')
  return hours


# -------------------------------------------------------------------- grid

def make_grid(scale, carrington, map_time=None, observer=None, rsun_m=None):
  """The output Grid; the Carrington offset from sunpy at `map_time` for
  `observer` (the HMI's) when `carrington`."""
  ny = max(1, int(round(180.0 / scale)))
  grid = Grid(nx=2 * ny, ny=ny, cdelt=180.0 / ny, carrington=carrington)
  if grid.nx * grid.ny > MAX_MAP_PIXELS:
    raise UserError(f'--scale {scale:g}: a {grid.nx} x {grid.ny} map is '
                    f'more than {MAX_MAP_PIXELS:,} pixels')
  if carrington:
    grid.offset = carrington_offset(map_time, observer, rsun_m)
  return grid


def carrington_offset(map_time, observer, rsun_m):
  """Carrington minus Stonyhurst longitude (deg, [0, 360)) at `map_time` in
  the Carrington frame of `observer` (sunpy; light travel time included)."""
  point = SkyCoord(0 * u.deg, 0 * u.deg, rsun_m * u.m,
                   frame=frames.HeliographicStonyhurst(obstime=map_time,
                                                       rsun=rsun_m * u.m))
  hgc = point.transform_to(frames.HeliographicCarrington(
      obstime=map_time, observer=observer, rsun=rsun_m * u.m))
  return float(np.mod(hgc.lon.to_value(u.deg), 360.0))


# ---------------------------------------------------------------- sampling

def cos_incidence(lon, lat, radius_m, observer_xyz):
  """mu: cosine between the surface normal at (lon, lat) (deg, Stonyhurst,
  sphere of `radius_m`) and the direction from there to the observer."""
  lon, lat = np.radians(lon), np.radians(lat)
  normal = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon),
                     np.sin(lat)])
  observer = np.asarray(observer_xyz, np.float64).reshape(
      (3,) + (1,) * (normal.ndim - 1))
  to_observer = observer - radius_m * normal
  distance = np.sqrt(np.sum(to_observer ** 2, axis=0))
  return np.sum(normal * to_observer, axis=0) / distance


def source_pixels(source, lon, lat, radius_m):
  """0-based (x, y) source pixel coordinates of surface points (1-D deg
  arrays, Stonyhurst); NaN where the projection has none."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    if source.projection == 'heliographic':
      x, y = source.smap.wcs.world_to_pixel_values(lon, lat)
    else:
      frame = frames.HeliographicStonyhurst(obstime=source.time,
                                            rsun=radius_m * u.m)
      points = SkyCoord(lon * u.deg, lat * u.deg, radius_m * u.m, frame=frame)
      x, y = source.smap.wcs.world_to_pixel(
          points.transform_to(source.smap.coordinate_frame))
  return np.asarray(x, np.float64), np.asarray(y, np.float64)


def bilinear(filled, valid, x, y):
  """Bilinear values of an image at (x, y); NaN unless every image pixel
  used is valid (the interpolated mask >= MASK_THRESHOLD).

  Args:
    filled: float32 image with invalid pixels set to 0.
    valid: float32 image, 1 where the pixel is valid, else 0.
    x, y: 0-based column / row coordinates (1-D), NaN allowed.
  """
  finite = np.isfinite(x) & np.isfinite(y)
  coords = np.stack([np.where(finite, y, -10.0), np.where(finite, x, -10.0)])
  weight = ndimage.map_coordinates(valid, coords, order=1, mode='constant',
                                   cval=0.0, output=np.float32)
  total = ndimage.map_coordinates(filled, coords, order=1, mode='constant',
                                  cval=0.0, output=np.float32)
  ok = finite & (weight >= MASK_THRESHOLD)
  out = np.full(x.shape, np.nan, dtype=np.float32)
  out[ok] = total[ok] / weight[ok]
  return out


def sample(source, lon, lat, radius_m, min_mu):
  """(values float32, mu) of `source` at surface points (1-D deg arrays);
  values NaN where mu <= min_mu or the source has no valid data."""
  mu = cos_incidence(lon, lat, radius_m, source.observer_xyz)
  values = np.full(lon.shape, np.nan, dtype=np.float32)
  seen = mu > min_mu
  if seen.any():
    try:
      x, y = source_pixels(source, lon[seen], lat[seen], radius_m)
    except Exception as e:  # pylint: disable=broad-except  # odd WCS
      raise UserError(f'{source.name}: cannot place the image on the Sun '
                      f'({one_line(e)})') from e
    values[seen] = bilinear(source.filled, source.valid, x, y)
  return values, mu


def compose(sources, grid, radius_m, min_mu):
  """(map float32 (ny, nx), source index int16 (ny, nx)): each pixel from
  the valid source of the largest mu x preference; NaN / -1 where none."""
  lon = grid.to_stonyhurst(grid.lon())
  lat = grid.lat()
  values = np.full((grid.ny, grid.nx), np.nan, dtype=np.float32)
  index = np.full((grid.ny, grid.nx), -1, dtype=np.int16)
  rows = max(1, BLOCK_POINTS // grid.nx)
  for start in range(0, grid.ny, rows):
    stop = min(start + rows, grid.ny)
    lon2, lat2 = np.meshgrid(lon, lat[start:stop])
    lon2, lat2 = lon2.ravel(), lat2.ravel()
    best = np.zeros(lon2.shape)
    block_values = np.full(lon2.shape, np.nan, dtype=np.float32)
    block_index = np.full(lon2.shape, -1, dtype=np.int16)
    for i, source in enumerate(sources):
      v, mu = sample(source, lon2, lat2, radius_m, min_mu)
      weight = mu * source.preference
      take = np.isfinite(v) & (weight > best)
      best[take] = weight[take]
      block_values[take] = v[take]
      block_index[take] = i
    values[start:stop] = block_values.reshape(stop - start, grid.nx)
    index[start:stop] = block_index.reshape(stop - start, grid.nx)
  return values, index


# ------------------------------------------------------------------ output

def _card(name):
  """A header key: HIERARCH for names longer than 8 characters."""
  return name if len(name) <= 8 else 'HIERARCH ' + name


def wcs_header(grid, map_time, observed, rsun_m):
  """The map's WCS and observer cards (astropy Header)."""
  header = fits.Header()
  lon_type, lat_type = (('CRLN-CAR', 'CRLT-CAR') if grid.carrington
                        else ('HGLN-CAR', 'HGLT-CAR'))
  header['WCSAXES'] = 2
  frame = 'Carrington' if grid.carrington else 'Stonyhurst'
  header['CTYPE1'] = (lon_type, f'{frame} longitude, plate carree')
  header['CTYPE2'] = lat_type
  header['CUNIT1'] = 'deg'
  header['CUNIT2'] = 'deg'
  header['CDELT1'] = grid.cdelt
  header['CDELT2'] = grid.cdelt
  header['CRPIX1'] = (grid.nx + 1) / 2  # FITS pixels are 1-based
  header['CRPIX2'] = (grid.ny + 1) / 2
  header['CRVAL1'] = grid.crval1
  header['CRVAL2'] = 0.0
  header['LONPOLE'] = 0.0
  header['LATPOLE'] = 90.0
  header['DATE-OBS'] = (map_time.utc.isot, 'map time = the observed HMI time '
                        '(UTC)')
  header['RSUN_REF'] = (rsun_m, 'm, sphere the map is sampled on')
  header['HGLN_OBS'] = (observed.observer_lon, 'deg, HMI observer')
  header['HGLT_OBS'] = (observed.observer_lat, 'deg, HMI observer')
  header['DSUN_OBS'] = (float(np.linalg.norm(observed.observer_xyz)),
                        'm, HMI observer')
  if grid.carrington:
    header['CAR_OFFS'] = (grid.offset, 'deg, Carrington - Stonyhurst lon')
  return header


def source_cards(header, sources, index):
  """SRCi_* cards of every source (file, kind, observer, instrument...)."""
  header['NSRC'] = (len(sources), 'sources; SOURCE index -1: none')
  for i, source in enumerate(sources):
    pct = 100.0 * float(np.mean(index == i))
    header[_card(f'SRC{i}_FIL')] = (source.name, 'file')
    header[_card(f'SRC{i}_KND')] = (source.kind, 'observed | generated')
    header[_card(f'SRC{i}_LON')] = (round(source.observer_lon, 6),
                                    'deg, observer Stonyhurst lon')
    header[_card(f'SRC{i}_LAT')] = (round(source.observer_lat, 6),
                                    'deg, observer Stonyhurst lat')
    header[_card(f'SRC{i}_INS')] = (source.instrument[:60], 'instrument')
    header[_card(f'SRC{i}_SYN')] = (bool(source.synthetic), 'SYNTHETIC input')
    header[_card(f'SRC{i}_DT')] = (round(source.dt_s, 3),
                                   's, source time - map time')
    header[_card(f'SRC{i}_PCT')] = (round(pct, 3), '% of map pixels')
  return header


def history(grid, sources, index, settings):
  """HISTORY lines: how the map was built, what is generated / synthetic."""
  frame = 'Carrington' if grid.carrington else 'Stonyhurst'
  lines = [
      f'magjax {magjax_common.version()} synchronic: {frame} plate carree '
      f'{grid.nx}x{grid.ny} at {grid.cdelt:g} deg/px, time of the observed '
      f'HMI {sources[0].name}',
      'each pixel from the one source of largest weight mu x preference '
      f'(observed {OBSERVED_PREFERENCE:g}, generated '
      f'{GENERATED_PREFERENCE:g}), mu > {settings["min_mu"]:g}, bilinear '
      'sampling with a validity mask; no averaging; NaN: no source',
      'no differential rotation: each source sampled at the same Stonyhurst '
      f'lon/lat at its own time; sources within {settings["max_hours"]:g} h '
      'of the map time (the Sun turns ~3.3 deg per 6 h)',
  ]
  for i, source in enumerate(sources):
    pct = 100.0 * float(np.mean(index == i))
    what = 'GENERATED' if source.kind == 'generated' else 'observed'
    lines.append(
        f'source {i}: {what} {source.name} ({source.instrument}), observer '
        f'Stonyhurst lon {source.observer_lon:.2f} deg, dt '
        f'{source.dt_s:+.0f} s, {pct:.1f}% of the map'
        + (', SYNTHETIC' if source.synthetic else ''))
  if np.any(index >= 1):
    lines.append('GENERATED: pixels of sources of kind generated (SOURCE '
                 'index >= 1) are a neural network\'s output, not observed')
  synthetic = [s.name for s in sources if s.synthetic]
  if synthetic:
    lines.append(f'SYNTHETIC inputs (not observations, or a model trained '
                 f'on SYNTHETIC data): {", ".join(synthetic)}')
  return lines


def build_hdulist(values, index, grid, sources, map_time, rsun_m, settings):
  """The output FITS: the gauss map and the 'SOURCE' index HDU."""
  base = wcs_header(grid, map_time, sources[0], rsun_m)
  generated = bool(np.any(index >= 1))
  synthetic = any(s.synthetic for s in sources)
  header = base.copy()
  header['BUNIT'] = ('G', 'gauss')
  header['BTYPE'] = 'LOS magnetic field (synchronic)'
  header['CONTENT'] = 'SYNCHRONIC LOS MAGNETOGRAM'
  header['ORIGIN'] = 'magjax'
  header['GENERATD'] = (generated, 'map holds GENERATED (not observed) '
                        'pixels')
  header['HIERARCH SYNTHETIC'] = (synthetic, 'an input is SYNTHETIC')
  header['NSRC'] = (len(sources), 'sources (HDU SOURCE)')
  header['MINMU'] = (settings['min_mu'], 'minimum mu of a source pixel')
  header['MAXHOURS'] = (settings['max_hours'], 'h, source time tolerance')
  for line in history(grid, sources, index, settings):
    for part in textwrap.wrap(line, 72):
      header.add_history(part)
  source_header = source_cards(base.copy(), sources, index)
  source_header['BTYPE'] = 'source index (-1: none)'
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # HIERARCH notes
    return fits.HDUList([
        fits.PrimaryHDU(values.astype(np.float32), header=header),
        fits.ImageHDU(index.astype(np.int16), header=source_header,
                      name='SOURCE')])


def draw_figure(values, index, grid, sources, map_time, clip):
  """The map as a matplotlib Figure on the Agg canvas (no display), with
  sunpy's 'hmimag' colormap."""
  cmap = matplotlib.colormaps['hmimag'].with_extremes(bad='white')
  lon, lat = grid.lon(), grid.lat()
  half = grid.cdelt / 2
  extent = (lon[0] - half, lon[-1] + half, lat[0] - half, lat[-1] + half)
  fig = Figure(figsize=(12, 6.2), dpi=100, layout='constrained')
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  image = ax.imshow(values, origin='lower', extent=extent, cmap=cmap,
                    vmin=-clip, vmax=clip, interpolation='nearest')
  generated = index >= 1
  if generated.any() and not generated.all():
    ax.contour(lon, lat, generated.astype(np.float32), levels=[0.5],
               colors='k', linewidths=0.7)
  for i, source in enumerate(sources):
    x = grid.map_longitude(source.observer_lon)
    ax.axvline(x, color='tab:orange' if i == 0 else 'tab:purple',
               linestyle='--', linewidth=1.0)
    ax.text(x, 87, f'{source.instrument}\n{source.name}', rotation=90,
            va='top', ha='left', fontsize=7, color='k',
            bbox={'facecolor': 'white', 'alpha': 0.7, 'linewidth': 0})
  frame = 'Carrington' if grid.carrington else 'Stonyhurst'
  ax.set_xlabel(f'{frame} longitude [deg]')
  ax.set_ylabel('latitude [deg]')
  ax.set_xlim(extent[0], extent[1])
  ax.set_ylim(-90, 90)
  fig.colorbar(image, ax=ax, shrink=0.9, label=f'B_LOS [G], clipped at '
               f'+-{clip:g}')
  labels = []
  if generated.any():
    labels.append('GENERATED')
  if any(s.synthetic for s in sources):
    labels.append('SYNTHETIC')
  title = (f'Synchronic LOS magnetogram, {frame}, '
           f'{map_time.utc.isot[:19]} UTC')
  if labels:
    title += ' - ' + ' + '.join(labels)
  title += ('\nblack contour: generated pixels; white: no source'
            if generated.any() else '\nwhite: no source')
  ax.set_title(title, fontsize=10)
  return fig


def figure_png(*args):
  """PNG bytes of `draw_figure(*args)`."""
  buffer = io.BytesIO()
  draw_figure(*args).savefig(buffer, format='png')
  return buffer.getvalue()


def _check_writable(path, flag):
  """UserError when `path` cannot be created (checked before the work)."""
  directory = os.path.dirname(os.path.abspath(path))
  probe = directory
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    raise UserError(f'{flag} {path}: cannot write ({probe} is not a '
                    'directory)')
  if not os.access(probe, os.W_OK | os.X_OK):
    raise UserError(f'{flag} {path}: cannot write ({probe} is not '
                    'writable)')
  if os.path.isdir(path):
    raise UserError(f'{flag} {path}: is a directory')


def write_outputs(out_path, hdulist, figure_path, png):
  """Writes the FITS and the PNG atomically; both or neither (a figure
  that fails removes the map just written)."""
  try:
    fileio.write_hdulist_atomic(out_path, hdulist)
  except OSError as e:
    raise UserError(f'{out_path}: cannot write ({e.strerror or e})') from e
  try:
    fileio.write_bytes_atomic(figure_path, png)
  except BaseException as e:
    os.unlink(out_path)
    if isinstance(e, OSError):
      raise UserError(f'{figure_path}: cannot write '
                      f'({e.strerror or e})') from e
    raise


# --------------------------------------------------------------------- CLI

def check_settings(scale, min_mu, max_hours, clip):
  """UserError for a flag out of range."""
  if not (np.isfinite(scale) and 0 < scale <= MAX_SCALE_DEG):
    raise UserError(f'--scale {scale:g}: expected a value in (0, '
                    f'{MAX_SCALE_DEG:g}] deg/px')
  if not (np.isfinite(min_mu) and 0 <= min_mu < 1):
    raise UserError(f'--min-mu {min_mu:g}: expected a value in [0, 1)')
  if not (np.isfinite(max_hours) and max_hours > 0):
    raise UserError(f'--max-hours {max_hours:g}: expected a positive number '
                    'of hours')
  if not (np.isfinite(clip) and clip > 0):
    raise UserError(f'--clip {clip:g}: expected a positive value in G')


def _check_paths(observed, generated, out, figure):
  inputs = {os.path.abspath(p) for p in [observed, *generated]}
  for flag, path in (('--out', out), ('--figure', figure)):
    if os.path.abspath(path) in inputs:
      raise UserError(f'{flag} {path}: would overwrite an input')
  if os.path.abspath(out) == os.path.abspath(figure):
    raise UserError(f'--figure {figure}: the same path as --out')
  _check_writable(out, '--out')
  _check_writable(figure, '--figure')


def synchronic(observed_path, generated_paths, out_path, *, carrington=False,
               scale=DEFAULT_SCALE_DEG, figure_path=None,
               min_mu=DEFAULT_MIN_MU, max_hours=DEFAULT_MAX_HOURS,
               clip=DEFAULT_CLIP_GAUSS):
  """The whole command; returns a one-line summary. Raises UserError."""
  check_settings(scale, min_mu, max_hours, clip)
  if figure_path is None:
    figure_path = os.path.splitext(out_path)[0] + '.png'
  _check_paths(observed_path, generated_paths, out_path, figure_path)
  observed = load_observed(observed_path)
  map_time = observed.time
  sources = [observed]
  for path in generated_paths:
    source = load_generated(path)
    source.dt_s = 3600.0 * check_time(source, map_time, max_hours)
    sources.append(source)
  rsun_m = float(observed.smap.meta.get('rsun_ref')
                 or observed.smap.rsun_meters.value)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    grid = make_grid(scale, carrington, map_time,
                     observed.smap.observer_coordinate, rsun_m)
    values, index = compose(sources, grid, rsun_m, min_mu)
  settings = {'min_mu': min_mu, 'max_hours': max_hours}
  hdulist = build_hdulist(values, index, grid, sources, map_time, rsun_m,
                          settings)
  png = figure_png(values, index, grid, sources, map_time, clip)
  write_outputs(out_path, hdulist, figure_path, png)
  return _summary(out_path, figure_path, grid, sources, index, map_time)


def _summary(out_path, figure_path, grid, sources, index, map_time):
  parts = [f'{s.name} {100 * np.mean(index == i):.1f}%'
           for i, s in enumerate(sources)]
  labels = [w for w, on in (('GENERATED', np.any(index >= 1)),
                            ('SYNTHETIC', any(s.synthetic for s in sources)))
            if on]
  return (f'wrote {out_path} ({grid.nx}x{grid.ny} '
          f'{"Carrington" if grid.carrington else "Stonyhurst"}, '
          f'{grid.cdelt:g} deg/px, {map_time.utc.isot[:19]}): '
          f'{", ".join(parts)}, none {100 * np.mean(index < 0):.1f}%'
          f'{"; " + " ".join(labels) if labels else ""}; figure '
          f'{figure_path}')


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m magjax.synchronic',
      description='Observed HMI + generated magnetograms -> one synchronic '
      'whole-Sun plate carree map (FITS, gauss) and its figure.')
  parser.add_argument('--observed', required=True,
                      help='full-disk SDO/HMI LOS magnetogram FITS')
  parser.add_argument('--generated', required=True, nargs='+',
                      help='generated magnetograms written by magjax.predict')
  parser.add_argument('--out', required=True, help='output FITS path')
  parser.add_argument('--carrington', action='store_true',
                      help='Carrington longitude 0..360 (default: Stonyhurst '
                      '-180..180)')
  parser.add_argument('--scale', type=float, default=DEFAULT_SCALE_DEG,
                      help='deg per pixel, in (0, 5] (default 0.2: 1800 x '
                      '900)')
  parser.add_argument('--figure', default=None,
                      help='PNG path (default: --out with .png)')
  parser.add_argument('--min-mu', type=float, default=DEFAULT_MIN_MU,
                      help='a source pixel needs mu above this (default '
                      '0.1)')
  parser.add_argument('--max-hours', type=float, default=DEFAULT_MAX_HOURS,
                      help='refuse a generated file further than this from '
                      'the HMI time (default 6 h; no rotation is applied)')
  parser.add_argument('--clip', type=float, default=DEFAULT_CLIP_GAUSS,
                      help='figure colour range +-G (default 200)')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      message = synchronic(args.observed, args.generated, args.out,
                           carrington=args.carrington, scale=args.scale,
                           figure_path=args.figure, min_mu=args.min_mu,
                           max_hours=args.max_hours, clip=args.clip)
  except UserError as e:
    return fail(e)
  print(message)
  return 0


if __name__ == '__main__':
  sys.exit(main())
