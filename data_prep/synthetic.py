"""A physically grounded SYNTHETIC Sun: AIA 304 A images and HMI LOS magnetograms.

Everything this module makes is SYNTHETIC (no SDO data); headers say so.

Model (pure functions, no I/O; `data_prep.synthesize` writes the files):
- Active regions live on the heliographic sphere (Carrington longitude,
  latitude). They emerge at a Poisson rate in the activity belts (|lat| 5-35
  deg), obey Hale's law (cycle 24, the 2012 case: northern leading polarity
  negative, southern positive; a few per cent anti-Hale) and Joy's law (tilt
  ~ 32 deg sin|lat|, leading lobe nearer the equator), grow for days, decay
  over days to weeks while spreading, and drift in Carrington longitude at
  the Howard et al. (1990) differential rotation rate of magnetic features
  (sunpy.sun.models.differential_rotation) minus the Carrington rate.
  The catalogue is drawn per 27-day block from (seed, block), so the content
  of a timestamp depends only on (seed, time), never on the requested range.
- The radial field Br on a Carrington (lon, lat) grid is the sum of
  Gaussian flux concentrations: plage lobes, sunspot umbrae (1.8-3 kG peaks)
  and flux fragments, plus a mixed-polarity network on the zero contours of
  a supergranular-scale random field (new pattern each day).
- AIA 304 emission: quiet chromosphere with its own pattern (not tied to B),
  plus a saturating function of the smoothed |Br|, darkened by filaments.
- Observer geometry: Earth ephemeris from sunpy (B0, L0, distance) plus an
  approximate geosynchronous SDO offset. Pixels are turned into rays from
  the header's own WCS (CRPIX, CDELT, PC/CROTA2, TAN projection), intersected
  with the sphere of radius RSUN_REF, and the grids are sampled there, so
  the rendered Sun sits exactly where the header says it is. HMI records
  Br * mu (mostly radial field), NaN off the disk; AIA gets limb brightening,
  an off-limb falloff, exposure scaling and Poisson noise.
"""
import dataclasses
import functools
import math
import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time, TimeDelta
from astropy.wcs import WCS
from scipy import ndimage
from sunpy.coordinates import HeliographicCarrington, HeliographicStonyhurst
from sunpy.coordinates import get_earth
from sunpy.sun import constants as sun_constants
from sunpy.sun.models import differential_rotation

GENERATOR = 'magjax data_prep.synthetic'
GENERATOR_VERSION = '1.0'
EPOCH = Time('2012-01-01T00:00:00', scale='utc')  # day 0 of the model clock
RSUN_REF_M = 696.0e6  # the solar radius SDO headers carry (RSUN_REF)
RSUN_CM = RSUN_REF_M * 100.0
TAI_MINUS_UTC_2012 = 34.0  # s, until the 2012-07-01 leap second (then 35)

# Active-region statistics (cycle 24 near maximum).
BLOCK_DAYS = 27.0  # catalogue block length (about one Carrington rotation)
EMERGENCE_RATE = 1.0  # regions per day over the whole Sun
MAX_LIFE_DAYS = 120.0  # a region is gone this long after emerging
ANTI_HALE_FRACTION = 0.04
LEADING_SIGN_NORTH = -1.0  # cycle 24: northern leading polarity negative
JOY_COEFF_DEG = 32.1  # tilt = 32.1 deg * sin|lat| (Stenflo & Kosovichev 2012)
UMBRA_MIN_FLUX = 3e21  # Mx per lobe needed to form a sunspot

# Rendering.
NETWORK_PEAK_G = 90.0
HMI_NOISE_G = 8.0  # per pixel at disk centre, growing towards the limb
AIA_QUIET_DN_S = 60.0
AIA_PLAGE_DN_S = 80.0
AIA_B0_G, AIA_BS_G, AIA_P = 50.0, 400.0, 1.6
AIA_LIMB_A = 0.15  # limb brightening ((1 + a) / (mu + a)) ** 0.5
AIA_OFFLIMB_SCALE_RSUN = 0.04  # e-folding height of off-limb 304 emission
AIA_DEGRADATION_PER_YEAR = 0.15  # slow loss of 304 sensitivity
AIA_SATURATION_DN = 16383
SDO_ORBIT_KM = 42164.0  # geosynchronous orbit radius
SDO_INCLINATION_DEG = 28.5
SIDEREAL_DAY_DAYS = 0.99726958  # SDO's orbital period


# ----------------------------------------------------------------- clock

def model_days(t):
  """Days since EPOCH (2012-01-01T00:00 UTC) of an astropy Time."""
  return float((Time(t) - EPOCH).to_value(u.day))


# -------------------------------------------------------------- observer

@dataclasses.dataclass(frozen=True)
class Observer:
  """SDO as seen from the Sun at one time (angles in degrees, distance m)."""
  time: Time
  hgln: float
  hglt: float
  dsun: float
  crln: float
  crlt: float

  @property
  def rsun_arcsec(self):
    return math.degrees(math.asin(RSUN_REF_M / self.dsun)) * 3600.0

  @property
  def carrington_offset(self):
    """Carrington minus Stonyhurst longitude of any point, for this observer."""
    return (self.crln - self.hgln) % 360.0


def observer_at(t):
  """SDO's position: sunpy's Earth ephemeris + a geosynchronous offset.

  The offset (42164 km orbit, 28.5 deg inclination, one sidereal day) is an
  approximation that only makes HGLN_OBS wobble by ~0.016 deg as real SDO's
  does; CRLN_OBS/CRLT_OBS come from sunpy's own Carrington transformation,
  so sunpy recovers the same observer from either key set.
  """
  t = Time(t)
  earth = get_earth(t)
  d_earth = earth.radius.to_value(u.m)
  phase = 2 * math.pi * (model_days(t) / SIDEREAL_DAY_DAYS % 1.0)
  r = SDO_ORBIT_KM * 1e3
  west = r * math.cos(phase)
  north = r * math.sin(phase) * math.sin(math.radians(SDO_INCLINATION_DEG))
  toward_sun = r * math.sin(phase) * math.cos(math.radians(SDO_INCLINATION_DEG))
  dsun = d_earth - toward_sun
  hgln = math.degrees(west / dsun)
  hglt = earth.lat.to_value(u.deg) + math.degrees(north / dsun)
  coord = SkyCoord(hgln * u.deg, hglt * u.deg, dsun * u.m,
                   frame=HeliographicStonyhurst, obstime=t)
  hgc = coord.transform_to(HeliographicCarrington(observer='self',
                                                  obstime=t))
  return Observer(time=t, hgln=hgln, hglt=hglt, dsun=dsun,
                  crln=hgc.lon.to_value(u.deg) % 360.0,
                  crlt=hgc.lat.to_value(u.deg))


# ------------------------------------------------------- active regions

@dataclasses.dataclass(frozen=True)
class Region:
  """One bipolar active region, in model days and Carrington degrees."""
  t_emerge: float
  lat: float
  lon0: float  # Carrington longitude of the centre at emergence
  flux: float  # Mx per polarity at full development
  leading_sign: float  # +1 or -1
  tilt: float  # deg, > 0: leading lobe nearer the equator
  separation: float  # deg, great-circle lobe distance when developed
  sigma0: float  # deg, plage lobe width when developed
  tau_grow: float  # days
  tau_decay: float  # days
  drift: float  # deg/day, Carrington-frame drift (differential rotation)
  seed: int  # for the fragment pattern

  def amplitude(self, days):
    """Flux fraction present at `days`: smooth growth, exponential decay."""
    age = days - self.t_emerge
    if age <= 0 or age > MAX_LIFE_DAYS:
      return 0.0
    if age < self.tau_grow:
      x = age / self.tau_grow
      return x * x * (3 - 2 * x)
    return math.exp(-(age - self.tau_grow) / self.tau_decay)

  def centre(self, days):
    """(Carrington lon, lat) of the region centre at `days`."""
    return ((self.lon0 + self.drift * (days - self.t_emerge)) % 360.0,
            self.lat)

  def lobes(self, days):
    """((lon, lat) leading, (lon, lat) following) at `days` (degrees)."""
    age = max(days - self.t_emerge, 0.0)
    grown = min(1.0, age / self.tau_grow)
    sep = self.separation * (0.3 + 0.7 * grown) + 0.05 * max(
        0.0, age - self.tau_grow)
    lon, lat = self.centre(days)
    half = 0.5 * sep
    tilt = math.radians(self.tilt)
    dlat = half * math.sin(tilt) * math.copysign(1.0, self.lat)
    dlon = half * math.cos(tilt) / math.cos(math.radians(lat))
    return (lon + dlon, lat - dlat), (lon - dlon, lat + dlat)


@functools.lru_cache(maxsize=256)
def _sidereal_rate(lat_deg):
  """Howard et al. (1990) sidereal rotation rate (deg/day) at a latitude."""
  return differential_rotation(1 * u.day, lat_deg * u.deg, model='howard',
                               frame_time='sidereal').to_value(u.deg)


def carrington_drift(lat_deg):
  """deg/day a magnetic feature at `lat_deg` moves in Carrington longitude."""
  carr = sun_constants.sidereal_rotation_rate.to_value(u.deg / u.day)
  return _sidereal_rate(round(float(lat_deg), 3)) - carr


@functools.lru_cache(maxsize=64)
def catalogue_block(seed, block):
  """The regions that emerge in 27-day block `block` (any integer)."""
  rng = np.random.default_rng([seed, 100, block + 1_000_000])
  n = rng.poisson(EMERGENCE_RATE * BLOCK_DAYS)
  regions = []
  for i in range(n):
    t_emerge = (block + rng.random()) * BLOCK_DAYS
    north = rng.random() < 0.5
    abs_lat = float(np.clip(rng.normal(15.0, 7.0), 5.0, 35.0))
    lat = abs_lat if north else -abs_lat
    hale = LEADING_SIGN_NORTH if north else -LEADING_SIGN_NORTH
    if rng.random() < ANTI_HALE_FRACTION:
      hale = -hale
    flux = float(np.clip(10 ** rng.normal(21.7, 0.4), 3e20, 5e22))
    big = math.sqrt(flux / 1e22)
    tilt = JOY_COEFF_DEG * math.sin(math.radians(abs_lat)) + rng.normal(0, 8)
    regions.append(Region(
        t_emerge=t_emerge, lat=lat, lon0=360.0 * rng.random(), flux=flux,
        leading_sign=hale, tilt=tilt,
        separation=float(np.clip(3.0 + 4.0 * big * rng.uniform(0.7, 1.3),
                                 2.0, 12.0)),
        sigma0=float(np.clip(0.8 + 0.8 * big, 0.6, 3.0)),
        tau_grow=rng.uniform(1.0, 4.0),
        tau_decay=float(np.clip((4.0 + 16.0 * big) * rng.uniform(0.6, 1.4),
                                3.0, 40.0)),
        drift=carrington_drift(lat), seed=int(rng.integers(2**31))))
  return tuple(regions)


def regions_at(seed, days):
  """All regions of `seed` with flux present at model time `days`."""
  first = math.floor((days - MAX_LIFE_DAYS) / BLOCK_DAYS)
  last = math.floor(days / BLOCK_DAYS)
  out = []
  for block in range(first, last + 1):
    out.extend(r for r in catalogue_block(seed, block)
               if r.amplitude(days) > 0.01)
  return out


# -------------------------------------------------------------- kernels

@dataclasses.dataclass
class Kernels:
  """Gaussian concentrations on the sphere: lon, lat, sigma (deg), peak."""
  lon: np.ndarray
  lat: np.ndarray
  sigma: np.ndarray
  peak: np.ndarray

  @staticmethod
  def concat(parts):
    parts = list(parts)
    if not parts:
      e = np.zeros(0)
      return Kernels(e, e, e, e)
    return Kernels(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in ('lon', 'lat', 'sigma', 'peak')))


def peak_for_flux(flux_mx, sigma_deg):
  """Peak field (G) of a Gaussian concentration carrying `flux_mx`."""
  s = math.radians(sigma_deg) * RSUN_CM
  return flux_mx / (2 * math.pi * s * s)


def region_kernels(region, days):
  """Flux concentrations of one region at `days` (Br in gauss)."""
  amp = region.amplitude(days)
  if amp <= 0:
    return Kernels.concat([])
  rows = []  # (lon, lat, sigma, peak) of each concentration
  age = days - region.t_emerge
  spread = math.sqrt(1.0 + max(0.0, age - region.tau_grow) / region.tau_decay)
  rng = np.random.default_rng(region.seed)
  lobes = region.lobes(days)
  for k, ((lo, la), sign) in enumerate(zip(
      lobes, (region.leading_sign, -region.leading_sign))):
    lobe_flux = region.flux * amp
    # following lobes are more diffuse and rarely hold a big spot
    width = region.sigma0 * spread * (1.0 if k == 0 else 1.3)
    spot_frac = 0.0
    if region.flux > UMBRA_MIN_FLUX:
      spot_frac = (0.25 if k == 0 else 0.1) * math.exp(
          -max(0.0, age - region.tau_grow) / (0.5 * region.tau_decay))
    frag_frac = 0.25
    plage_flux = lobe_flux * (1 - spot_frac - frag_frac)
    rows.append((lo, la, width, sign * peak_for_flux(plage_flux, width)))
    if spot_frac > 0:
      b_umbra = rng.uniform(1800.0, 3000.0)
      s_umbra = math.degrees(math.sqrt(
          lobe_flux * spot_frac / (2 * math.pi * b_umbra)) / RSUN_CM)
      rows.append((lo, la, s_umbra, sign * b_umbra))
    n_frag = 12
    offs = rng.normal(0.0, 1.2 * width, size=(n_frag, 2))
    polarity = np.where(rng.random(n_frag) < 0.85, sign, -sign)
    weights = rng.dirichlet(np.ones(n_frag)) * lobe_flux * frag_frac
    fsig = rng.uniform(0.2, 0.5, n_frag) * math.sqrt(spread)
    coslat = math.cos(math.radians(la))
    for j in range(n_frag):
      rows.append((lo + offs[j, 0] / coslat, la + offs[j, 1], fsig[j],
                   polarity[j] * peak_for_flux(weights[j], fsig[j])))
  lon, lat, sig, peak = (np.array(c, dtype=np.float64) for c in zip(*rows))
  return Kernels(lon % 360.0, np.clip(lat, -89.9, 89.9), sig, peak)


@functools.lru_cache(maxsize=64)
def filament_block(seed, block):
  """Filaments (dark 304 channels, not tied to |B| here) of one block."""
  rng = np.random.default_rng([seed, 300, block + 1_000_000])
  out = []
  for _ in range(rng.poisson(8)):
    lat = rng.choice([-1, 1]) * rng.uniform(10.0, 60.0)
    out.append(dict(t0=(block + rng.random()) * BLOCK_DAYS,
                    life=rng.uniform(5.0, 20.0), lat=lat,
                    lon0=360.0 * rng.random(),
                    length=rng.uniform(5.0, 25.0),
                    angle=rng.normal(0.0, 25.0),
                    width=rng.uniform(0.3, 0.7), depth=rng.uniform(0.4, 0.9),
                    drift=carrington_drift(lat)))
  return tuple(out)


def filament_kernels(seed, days):
  """Optical depth kernels of the filaments present at `days`."""
  parts = []
  first = math.floor((days - 25.0) / BLOCK_DAYS)
  for block in range(first, math.floor(days / BLOCK_DAYS) + 1):
    for f in filament_block(seed, block):
      age = days - f['t0']
      if not 0 < age < f['life']:
        continue
      strength = f['depth'] * math.sin(math.pi * age / f['life'])
      s = np.linspace(-0.5, 0.5, 9) * f['length']
      a = math.radians(f['angle'])
      clat = f['lat'] + s * math.sin(a)
      clon = (f['lon0'] + f['drift'] * age
              + s * math.cos(a) / math.cos(math.radians(f['lat'])))
      parts.append(Kernels(clon % 360.0, clat, np.full(9, f['width']),
                           np.full(9, strength)))
  return Kernels.concat(parts)


def active_kernels(seed, days):
  """All active-region flux concentrations of `seed` at `days`."""
  return Kernels.concat(region_kernels(r, days) for r in regions_at(seed, days))


# ---------------------------------------------------- surface (lon, lat) grid

@dataclasses.dataclass(frozen=True)
class Grid:
  """A Carrington CAR grid, cell centres at (i + 0.5) * res."""
  res: float

  @property
  def shape(self):
    return (int(round(180 / self.res)), int(round(360 / self.res)))

  @property
  def lat(self):
    return -90.0 + (np.arange(self.shape[0]) + 0.5) * self.res

  @property
  def lon(self):
    return (np.arange(self.shape[1]) + 0.5) * self.res


def grid_for_size(size):
  """Surface grid resolution for a detector of size^2 pixels."""
  return Grid(0.25 if size <= 1024 else 0.125)


def render_kernels(grid, kernels, out=None):
  """Adds Gaussian kernels (great-circle distance) onto `grid`, in place.

  Each kernel is evaluated only in its +-4 sigma box. Widths below the grid
  cell are broadened flux-conservingly (anti-aliasing).
  """
  nlat, nlon = grid.shape
  if out is None:
    out = np.zeros(grid.shape)
  lat_axis = grid.lat
  for lo, la, sg, pk in zip(kernels.lon, kernels.lat, kernels.sigma,
                            kernels.peak):
    s_eff2 = sg * sg + (0.5 * grid.res) ** 2
    pk = pk * sg * sg / s_eff2
    s_eff = math.sqrt(s_eff2)
    half = 4 * s_eff
    j0 = max(0, int((la - half + 90) / grid.res))
    j1 = min(nlat, int((la + half + 90) / grid.res) + 2)
    if j0 >= j1:
      continue
    lats = lat_axis[j0:j1]
    maxlat = min(89.0, max(abs(lats[0]), abs(lats[-1])))
    hw = min(180.0, half / math.cos(math.radians(maxlat)))
    i0 = int(math.floor((lo - hw) / grid.res))
    cols = np.arange(i0, int((lo + hw) / grid.res) + 2)
    lons = (cols + 0.5) * grid.res
    cols %= nlon
    if len(cols) > nlon:
      cols, lons = cols[:nlon], lons[:nlon]
    rl, rla = math.radians(lo), math.radians(la)
    phi = np.radians(lats)[:, None]
    cosang = (np.sin(phi) * math.sin(rla) + np.cos(phi) * math.cos(rla)
              * np.cos(np.radians(lons)[None, :] - rl))
    d2 = 2.0 * (1.0 - cosang)  # chord^2, = angle^2 for small angles
    out[j0:j1, cols] += pk * np.exp(-d2 / (2 * math.radians(s_eff) ** 2))
  return out


def _smooth(field, sigma_deg, res):
  """Gaussian smoothing on the CAR grid, periodic in longitude."""
  return ndimage.gaussian_filter(field, sigma_deg / res,
                                 mode=('nearest', 'wrap'), truncate=3.0)


@functools.lru_cache(maxsize=4)
def network_day(seed, day, res):
  """(Br network in G, quiet 304 pattern) of one day, Carrington frame.

  Mixed-polarity elements concentrated on the zero contours of a
  supergranular-scale random field (a cell-boundary web); the quiet 304
  pattern is an independent field, so 304 is not a function of B alone.
  """
  grid = Grid(res)
  coarse = Grid(2 * res)  # the smooth fields are drawn at half resolution
  rng = np.random.default_rng([seed, 200, day + 1_000_000])

  def smooth_field(g, sigma_deg):
    f = _smooth(rng.standard_normal(g.shape, dtype=np.float32), sigma_deg,
                g.res)
    f /= f.std()
    return _upsample2(f) if g is coarse else f

  web = np.exp(-(smooth_field(coarse, 0.8) / 0.35) ** 2)
  network = (NETWORK_PEAK_G / 2.5) * web * smooth_field(grid, 0.2)
  quiet = smooth_field(coarse, 1.2)
  return network.astype(np.float32), quiet.astype(np.float32)


def _upsample2(f):
  """Bilinear 2x upsampling of a CAR grid (periodic in lon, edge in lat).

  Written out because scipy.ndimage.zoom takes ~10x longer for this case.
  """
  def axis(g, ax, wrap):
    prev = np.roll(g, 1, axis=ax)
    nxt = np.roll(g, -1, axis=ax)
    if not wrap:  # repeat the edge rows instead of wrapping
      prev[0], nxt[-1] = g[0], g[-1]
    out = np.empty(g.shape[:ax] + (2 * g.shape[ax],) + g.shape[ax + 1:],
                   g.dtype)
    even = [slice(None)] * g.ndim
    odd = [slice(None)] * g.ndim
    even[ax], odd[ax] = slice(0, None, 2), slice(1, None, 2)
    out[tuple(even)] = 0.75 * g + 0.25 * prev
    out[tuple(odd)] = 0.75 * g + 0.25 * nxt
    return out
  return axis(axis(f, 0, wrap=False), 1, wrap=True)


@dataclasses.dataclass
class Surface:
  """Carrington grids at one time: Br (G) and 304 emission at mu = 1 (DN/s)."""
  grid: Grid
  br: np.ndarray
  emission: np.ndarray


def aia_brightening(b_abs):
  """Saturating chromospheric brightening (DN/s) for |B| in gauss."""
  x = (b_abs / AIA_B0_G) ** AIA_P
  return AIA_PLAGE_DN_S * x / (1.0 + (b_abs / AIA_BS_G) ** AIA_P)


def surface_at(seed, days, grid, kernels=None, network=True):
  """The Sun's surface fields at model time `days`.

  kernels: override the active-region kernels (tests place one region).
  network: False leaves out network, quiet pattern and filaments.
  """
  if kernels is None:
    kernels = active_kernels(seed, days)
  br = render_kernels(grid, kernels)
  if network:
    net, quiet = network_day(seed, math.floor(days), grid.res)
    br += net
    # quiet pattern fading towards the poles (less CAR-grid anisotropy
    # there), and darker polar coronal holes
    polar = np.clip((np.abs(grid.lat) - 55.0) / 20.0, 0.0, 1.0)[:, None]
    emission = AIA_QUIET_DN_S * np.exp(0.2 * quiet * (1 - polar)) * (
        1 - 0.3 * polar)
    tau = render_kernels(grid, filament_kernels(seed, days))
  else:
    emission = np.full(grid.shape, AIA_QUIET_DN_S)
    tau = 0.0
  emission = (emission + aia_brightening(_smooth(np.abs(br), 0.4, grid.res))
              ) * np.exp(-tau)
  return Surface(grid, br.astype(np.float32), emission.astype(np.float32))


# ------------------------------------------------------ detector geometry

@dataclasses.dataclass
class DiskGeometry:
  """Per-pixel geometry of a full-disk image (arrays of the image shape)."""
  on_disk: np.ndarray  # bool
  lon_carr: np.ndarray  # deg, NaN off disk
  lat: np.ndarray  # deg, NaN off disk
  mu: np.ndarray  # cos(heliocentric angle), 0 off disk
  height: np.ndarray  # off-limb height above the limb in solar radii, 0 on disk


def disk_geometry(header, observer, shape, rows=None):
  """Ray-traces the pixels of `header` onto the sphere of radius RSUN_REF.

  shape: (ny, nx) of the image; rows: optional (start, stop) row range (the
  geometry of that band only, to bound memory at 4096^2).

  Uses the header's own WCS (CRPIX, CDELT, PC from CROTA2; TAN projection
  about CRVAL = (0, 0)), so the Sun lands where the WCS says it is. Done by
  hand because sunpy's pixel -> HGS transform of a 1024^2 grid costs seconds.
  """
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')  # datfix notes about MJD-OBS
    w = WCS(header)
  ny, nx = shape
  r0, r1 = rows if rows is not None else (0, ny)
  pc = w.wcs.get_pc()
  to_rad = [u.Unit(c).to(u.rad) for c in w.wcs.cunit]  # wcslib may use deg
  cdelt = np.asarray(w.wcs.cdelt) * to_rad
  crval = np.asarray(w.wcs.crval) * to_rad
  if np.any(np.abs(crval) > 1e-9):
    raise ValueError('disk_geometry expects CRVAL1 = CRVAL2 = 0')
  px = np.arange(nx) + 1.0 - w.wcs.crpix[0]
  py = np.arange(r0, r1) + 1.0 - w.wcs.crpix[1]
  x = cdelt[0] * (pc[0, 0] * px[None, :] + pc[0, 1] * py[:, None])
  y = cdelt[1] * (pc[1, 0] * px[None, :] + pc[1, 1] * py[:, None])
  sin2 = (x * x + y * y) / (1.0 + x * x + y * y)  # sin^2 of angle to centre
  d, r = observer.dsun, RSUN_REF_M
  disc = r * r - d * d * sin2
  on = disc >= 0
  off = ~on
  height = np.zeros(on.shape)  # off-limb height (solar radii)
  height[off] = d * np.sqrt(sin2[off]) / r - 1.0
  x, y, disc = x[on], y[on], disc[on]
  norm = np.sqrt(1.0 + x * x + y * y)
  vx, vy, vz = 1.0 / norm, x / norm, y / norm  # toward Sun, west, north
  s = d * vx - np.sqrt(disc)
  # heliocentric (HCC): X west, Y north, Z toward the observer
  hx, hy, hz = s * vy, s * vz, d - s * vx
  b, l = math.radians(observer.hglt), math.radians(observer.hgln)
  sb, cb, sl, cl = math.sin(b), math.cos(b), math.sin(l), math.cos(l)
  gx = -sl * hx - sb * cl * hy + cb * cl * hz
  gy = cl * hx - sb * sl * hy + cb * sl * hz
  gz = cb * hy + sb * hz
  lat = np.full(on.shape, np.nan)
  lon = np.full(on.shape, np.nan)
  mu = np.zeros(on.shape)
  lat[on] = np.degrees(np.arcsin(np.clip(gz / r, -1.0, 1.0)))
  lon[on] = (np.degrees(np.arctan2(gy, gx)) + observer.carrington_offset
             ) % 360.0
  # mu: cosine between the local normal and the direction to the observer
  mu[on] = np.clip((hz * (d - hz) - hx * hx - hy * hy) / (
      r * np.sqrt(hx * hx + hy * hy + (d - hz) ** 2)), 0.0, 1.0)
  return DiskGeometry(on, lon, lat, mu, height)


def sample_surface(field, grid, geometry):
  """Bilinear samples of a CAR grid field at the on-disk pixels (else 0)."""
  on = geometry.on_disk
  rows = np.clip((geometry.lat[on] + 90.0) / grid.res - 0.5, 0,
                 grid.shape[0] - 1)
  cols = geometry.lon_carr[on] / grid.res - 0.5
  vals = ndimage.map_coordinates(field, [rows, cols], order=1,
                                 mode='grid-wrap')
  out = np.zeros(on.shape, dtype=np.float32)
  out[on] = vals
  return out


# ---------------------------------------------------------------- images

def render_hmi(surface, geometry, rng, noise=True):
  """HMI LOS field (G): Br * mu + noise on disk, NaN off disk (float32)."""
  blos = sample_surface(surface.br, surface.grid, geometry) * geometry.mu
  if noise:
    sigma = HMI_NOISE_G * (1.0 + 0.5 * (1.0 - geometry.mu))
    blos += (sigma * rng.standard_normal(blos.shape)).astype(np.float32)
  return np.where(geometry.on_disk, blos, np.nan).astype(np.float32)


def aia_degradation(days):
  """Fraction of the 2012-01-01 304 A sensitivity left at `days`."""
  return max(0.3, 1.0 - AIA_DEGRADATION_PER_YEAR * days / 365.25)


def render_aia(surface, geometry, exptime, days, rng, noise=True):
  """AIA 304 level-1-like counts (DN, int16) with Poisson noise."""
  on, off = geometry.on_disk, ~geometry.on_disk
  a = AIA_LIMB_A
  rate = sample_surface(surface.emission, surface.grid, geometry).astype(
      np.float64)
  rate[on] *= np.sqrt((1 + a) / (geometry.mu[on] + a))
  rate[off] = AIA_QUIET_DN_S * math.sqrt((1 + a) / a) * np.exp(
      -geometry.height[off] / AIA_OFFLIMB_SCALE_RSUN)
  counts = rate * (exptime * aia_degradation(days))
  if noise:
    counts = rng.poisson(counts).astype(np.float64)
  return np.clip(np.round(counts), 0, AIA_SATURATION_DN).astype(np.int16)


# --------------------------------------------------------------- headers

@dataclasses.dataclass(frozen=True)
class FrameTimes:
  """Times of one pair (UTC astropy Times) and the AIA exposure (s)."""
  nominal: Time
  aia_date_obs: Time
  aia_t_obs: Time
  exptime: float
  hmi_t_obs: Time
  hmi_date_obs: Time


def frame_times(t, seed):
  """The instruments' times around the nominal time `t` (UTC).

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


def _isot(t, digits=2):
  return Time(t, precision=digits).utc.isot


def tai_string(t):
  """JSOC TAI time string, e.g. '2012.01.01_00:00:45_TAI'."""
  return Time(t).tai.strftime('%Y.%m.%d_%H:%M:%S') + '_TAI'


def _synthetic_cards(header, seed, kind):
  header['HIERARCH SYNTHETIC'] = (True, 'SYNTHETIC data, not an SDO observation')
  header['ORIGIN'] = ('magjax SYNTHETIC', 'not SDO/JSOC data')
  header['HISTORY'] = f'SYNTHETIC {kind}, seed {seed}'
  header['HISTORY'] = f'made by {GENERATOR} v{GENERATOR_VERSION}'
  header['COMMENT'] = ('SYNTHETIC: physically motivated model Sun '
                       '(Hale/Joy active regions, differential rotation), '
                       'not an observation.')


def _wcs_cards(header, size, cdelt, crpix, crota2):
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
  header['CROTA2'] = crota2


def _pointing(rng, size):
  """Reference pixel with a small pointing offset, as in level-1 data."""
  off = rng.uniform(-4.0, 4.0, 2) * size / 4096
  return [round(float((size + 1) / 2 + o), 4) for o in off]


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
  _wcs_cards(h, size, round(0.6 * 4096 / size, 6), _pointing(rng, size),
             round(float(rng.uniform(0.0, 0.1)), 5))
  _observer_cards(h, observer, stonyhurst=True)
  _synthetic_cards(h, seed, 'AIA 304')
  return h


def hmi_header(times, observer, size, seed, quality):
  """An hmi.M_720s-like header (fits.Header) for a size^2 magnetogram.

  HGLN_OBS/HGLT_OBS are left out, as in some real HMI files: sunpy then
  takes the observer from CRLN_OBS/CRLT_OBS/DSUN_OBS, which this module
  computes with sunpy's own Carrington transformation (same observer as
  the AIA header's HGLN_OBS/HGLT_OBS to numerical precision).
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
  _wcs_cards(h, size, round(0.504 * 4096 / size, 6), _pointing(rng, size),
             round(float(179.93 + rng.uniform(-0.02, 0.02)), 5))
  _observer_cards(h, observer, stonyhurst=False)
  _synthetic_cards(h, seed, 'HMI LOS magnetogram')
  return h


def _observer_cards(h, observer, stonyhurst):
  h['RSUN_REF'] = (RSUN_REF_M, 'm')
  h['RSUN_OBS'] = (round(observer.rsun_arcsec, 6), 'arcsec')
  h['DSUN_OBS'] = (round(observer.dsun, 3), 'm')
  if stonyhurst:
    h['HGLN_OBS'] = (round(observer.hgln, 9), 'deg')
    h['HGLT_OBS'] = (round(observer.hglt, 9), 'deg')
  h['CRLN_OBS'] = (round(observer.crln, 9), 'deg')
  h['CRLT_OBS'] = (round(observer.crlt, 9), 'deg')


def _rounded_observer(observer):
  """The observer exactly as the header (rounded cards) states it."""
  return dataclasses.replace(
      observer, dsun=round(observer.dsun, 3), hgln=round(observer.hgln, 9),
      hglt=round(observer.hglt, 9), crln=round(observer.crln, 9),
      crlt=round(observer.crlt, 9))


# ------------------------------------------------------------------ pair

HMI_BAD_QUALITY = (0x00000400, 0x00010000, 0x00020000, 0x80000000)


def hmi_quality(t, seed, bad_fraction):
  """QUALITY of the HMI frame at `t`: 0, or a flag for `bad_fraction`."""
  rng = np.random.default_rng([seed, 4, int(round(Time(t).unix))])
  bad = rng.random() < bad_fraction
  flag = int(rng.choice(HMI_BAD_QUALITY))
  return flag if bad else 0


@dataclasses.dataclass
class Pair:
  """One synthetic pair: headers (fits.Header) and data arrays."""
  aia_header: fits.Header
  aia_data: np.ndarray  # int16 DN
  hmi_header: fits.Header
  hmi_data: np.ndarray  # float32 G, NaN off disk


def make_pair(t, size, seed, bad_fraction=0.02, kernels=None, network=True,
              noise=True):
  """Renders the AIA 304 / HMI LOS pair at nominal UTC time `t` (pure).

  kernels/network/noise: test hooks (place one region, switch off the
  quiet Sun or the noise). The surface is computed once at the AIA T_OBS;
  the HMI frame is a few seconds away (<0.001 deg of rotation), while each
  instrument's geometry uses its own T_OBS.
  """
  times = frame_times(t, seed)
  days = model_days(times.aia_t_obs)
  surface = surface_at(seed, days, grid_for_size(size), kernels, network)
  unix = int(round(times.nominal.unix))

  aia_obs = observer_at(times.aia_t_obs)
  a_head = aia_header(times, aia_obs, size, seed)
  a_rng = np.random.default_rng([seed, 3, unix])
  aia = _render_bands(
      a_head, aia_obs, size, np.int16,
      lambda geo: render_aia(surface, geo, times.exptime, days, a_rng, noise))

  hmi_obs = observer_at(times.hmi_t_obs)
  quality = hmi_quality(times.nominal, seed, bad_fraction)
  h_head = hmi_header(times, hmi_obs, size, seed, quality)
  h_rng = np.random.default_rng([seed, 7, unix])
  hmi = _render_bands(h_head, hmi_obs, size, np.float32,
                      lambda geo: render_hmi(surface, geo, h_rng, noise))
  return Pair(a_head, aia, h_head, hmi)


BAND_ROWS = 512  # rows rendered at a time (fixed: the noise stream uses it)


def _render_bands(header, observer, size, dtype, render):
  """Renders a size^2 image in bands of BAND_ROWS rows (bounded memory)."""
  observer = _rounded_observer(observer)
  out = np.empty((size, size), dtype=dtype)
  for r0 in range(0, size, BAND_ROWS):
    r1 = min(size, r0 + BAND_ROWS)
    out[r0:r1] = render(disk_geometry(header, observer, (size, size),
                                      rows=(r0, r1)))
  return out
