"""The SYNTHETIC Sun on the sphere: its magnetic field and 304 A emission.

Pure functions of (seed, model time); nothing here knows an observer. One
physical choice per line, with its source:

- Active regions emerge at a Poisson rate in the activity belts |lat| 5-35
  deg, near the cycle-24 maximum of 2012 (Hathaway 2015, LRSP 12, 4).
- Region fluxes are log-normal around 5e21 Mx (Schrijver & Harvey 1994,
  Sol. Phys. 150, 1).
- Hale's polarity law, cycle 24: northern leading polarity negative, a few
  per cent anti-Hale (Hale et al. 1919, ApJ 49, 153; Stenflo & Kosovichev
  2012, ApJ 745, 129).
- Joy's law: tilt 32.1 deg sin|lat|, leading lobe nearer the equator
  (Stenflo & Kosovichev 2012).
- Leading/following asymmetry: a compact leading polarity holding the main
  spot, a dispersed following polarity of plage (van Driel-Gesztelyi &
  Green 2015, LRSP 12, 1), and the leading flux decays faster (it cancels
  across the equator, Babcock-Leighton; Wang & Sheeley 1991, ApJ 375, 761).
- Umbral fields of 1.5-2.5 kG (Solanki 2003, A&ARv 11, 153).
- Plage is made of small flux concentrations (kG tubes unresolved at 1"),
  not a smooth sheet: most of a lobe's flux is in elements of ~5e18 Mx
  (Schrijver & Zwaan 2000, Solar and Stellar Magnetic Activity, ch. 4).
- Differential rotation of magnetic features (Howard et al. 1990 via
  sunpy.sun.models.differential_rotation) minus the Carrington rate.
- Decayed flux (remnants) spreads by supergranular diffusion, eta = 250
  km^2/s (Wang, Nash & Sheeley 1989, ApJ 347, 529), and drifts poleward
  with the meridional flow, 11 m/s (Hathaway & Rightmire 2010, Sci 327,
  1350), so decayed regions leave unipolar patches of following polarity.
- The network: flux elements on supergranular cell boundaries (cells of
  ~30 Mm living ~1 day; Simon & Leighton 1964, ApJ 140, 1120), element
  fluxes log-normal around 2e18 Mx (Thornton & Parnell 2011, Sol. Phys.
  269, 13), the dominant polarity that of the remnant flux beneath
  (unipolar network; Schrijver & Zwaan 2000, Solar and Stellar Magnetic
  Activity, ch. 5).
- Between the network, a weak mixed-polarity internetwork field of a few
  gauss at ~1 Mm scales (Lites et al. 2008, ApJ 672, 1237).
- Chromospheric emission grows with the magnetic flux density as a
  saturating power law, the same relation for network and plage
  (Schrijver et al. 1989, ApJ 337, 964; Skumanich, Smythe & Frazier 1975,
  ApJ 200, 747), spread over the chromospheric canopy (~2 Mm).
- Filaments lie along polarity inversion lines of the large-scale field
  (Martin 1998, Sol. Phys. 182, 107) and darken 304 A.

Fields are radial Br in gauss on a Carrington CAR grid (the smooth parts:
diffuse plage, umbrae, remnants) plus the network and the fragmented plage
as discrete elements (lon, lat, flux), which the renderer projects into
each image so that they keep their size at any pixel scale. The rendered
magnetograms are measured against real HMI by `data_prep.realism`
(tests/test_realism.py). The catalogue of regions is
drawn per 27-day block from (seed, block), so the content of a timestamp
depends only on (seed, time), never on the requested range.
"""
import dataclasses
import functools
import math

import astropy.units as u
import numpy as np
from astropy.time import Time
from scipy import ndimage
from sunpy.sun import constants as sun_constants
from sunpy.sun.models import differential_rotation

EPOCH = Time('2012-01-01T00:00:00', scale='utc')  # day 0 of the model clock
RSUN_REF_M = 696.0e6  # the solar radius SDO headers carry (RSUN_REF)
RSUN_CM = RSUN_REF_M * 100.0
DEG_CM = math.radians(1.0) * RSUN_CM  # 1 heliographic degree on the Sun

# Active regions (cycle 24 near maximum).
BLOCK_DAYS = 27.0  # catalogue block length (about one Carrington rotation)
EMERGENCE_RATE = 1.0  # regions per day over the whole Sun
MAX_LIFE_DAYS = 120.0  # a region's own flux is gone this long after emerging
REMNANT_DAYS = 240.0  # ... and its remnants this long
ANTI_HALE_FRACTION = 0.04
LEADING_SIGN_NORTH = -1.0  # cycle 24: northern leading polarity negative
JOY_COEFF_DEG = 32.1  # tilt = 32.1 deg * sin|lat| (Stenflo & Kosovichev 2012)
UMBRA_MIN_FLUX = 3e21  # Mx per lobe needed to form a sunspot
LEAD_WIDTH, FOLLOW_WIDTH = 0.75, 1.6  # x sigma0: compact leading, dispersed
LEAD_DECAY_FASTER = 1.5  # the leading lobe decays this much faster
SPOT_FRACTION_LEAD, SPOT_FRACTION_FOLLOW = 0.12, 0.02  # of a lobe's flux
UMBRA_G = (1500.0, 2500.0)
# Plage: a diffuse part, and the rest in small concentrations.
DIFFUSE_PLAGE_FRACTION = 0.3
PLAGE_ELEMENT_MX = 5e18
# Remnants: the flux a lobe loses stays as a diffusing, drifting patch.
ETA_KM2_S = 250.0  # supergranular diffusion
MERIDIONAL_M_S = 11.0  # poleward meridional flow
REMNANT_CANCEL_DAYS = {'lead': 10.0, 'follow': 30.0}

# The network.
NETWORK_ELEMENTS = 100_000  # flux elements over the whole Sun, each day
NETWORK_FLUX_MX = 2e18  # median element flux
NETWORK_FLUX_DEX = 0.4  # log-normal spread (dex)
NETWORK_REMNANT_G = 4.0  # remnant field that makes the network unipolar
NETWORK_REMNANT_DENSITY_G = 15.0  # remnant field that doubles its density
# The internetwork: a random field at ~1 Mm (0.1 deg).
INTERNETWORK_G = 2.0
INTERNETWORK_GRID_RES = 0.1

# Chromospheric 304 emission at mu = 1 (DN/s in AIA 304 units): a quiet
# level, plus A (|B| / 100 G)^p / (1 + (|B| / Bs)^p) over magnetic flux.
AIA_QUIET_DN_S = 30.0
AIA_EXCESS_100G = 70.0
AIA_P = 1.2
AIA_BS_G = 1000.0
CANOPY_DEG = 0.15  # chromospheric spreading of the photospheric flux
# A network element's size with the instrument's resolution (HMI's ~1"
# PSF): its flux spreads over a Gaussian of this sigma.
ELEMENT_SIGMA_DEG = 0.08
# Filaments along polarity inversion lines of the large-scale field.
FILAMENT_SMOOTH_DEG = 1.5
FILAMENT_WIDTH_G = 1.5  # |Br_smooth| below ~this marks the inversion line
FILAMENT_MIN_BIPOLAR_G = 6.0  # both polarities at least this strong nearby
FILAMENT_DEPTH = 1.2  # optical depth at the line's centre
FILAMENT_MAX_PLAGE_G = 60.0  # no filament inside strong plage


# ----------------------------------------------------------------- clock

def model_days(t):
  """Days since EPOCH (2012-01-01T00:00 UTC) of an astropy Time."""
  return float((Time(t) - EPOCH).to_value(u.day))


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
    """Flux fraction present at `days`: smooth growth, exponential decay
    (the following lobe's; the leading lobe decays faster, `lobe_amplitudes`)."""
    age = days - self.t_emerge
    if age <= 0 or age > MAX_LIFE_DAYS:
      return 0.0
    if age < self.tau_grow:
      x = age / self.tau_grow
      return x * x * (3 - 2 * x)
    return math.exp(-(age - self.tau_grow) / self.tau_decay)

  def lobe_amplitudes(self, days):
    """(leading, following) flux fractions at `days`."""
    amp = self.amplitude(days)
    age = days - self.t_emerge
    if age <= self.tau_grow:
      return amp, amp
    return amp ** LEAD_DECAY_FASTER, amp

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
  for _ in range(n):
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


def _regions_since(seed, days, lookback):
  first = math.floor((days - lookback) / BLOCK_DAYS)
  last = math.floor(days / BLOCK_DAYS)
  for block in range(first, last + 1):
    for r in catalogue_block(seed, block):
      if r.t_emerge < days and days - r.t_emerge <= lookback:
        yield r


def regions_at(seed, days):
  """All regions of `seed` with flux present at model time `days`."""
  return [r for r in _regions_since(seed, days, MAX_LIFE_DAYS)
          if r.amplitude(days) > 0.01]


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


@dataclasses.dataclass
class Elements:
  """Flux elements: Carrington lon, lat (deg) and signed flux (Mx)."""
  lon: np.ndarray
  lat: np.ndarray
  flux: np.ndarray

  @staticmethod
  def concat(parts):
    parts = list(parts)
    if not parts:
      return no_elements()
    return Elements(*(np.concatenate([getattr(p, f) for p in parts])
                      for f in ('lon', 'lat', 'flux')))


def no_elements():
  e = np.zeros(0)
  return Elements(e, e, e)


def peak_for_flux(flux_mx, sigma_deg):
  """Peak field (G) of a Gaussian concentration carrying `flux_mx`."""
  s = math.radians(sigma_deg) * RSUN_CM
  return flux_mx / (2 * math.pi * s * s)


def _lobe_parts(region, days):
  """[(lon, lat, sign, flux, width, spot_fraction)] of the two lobes at
  `days`, leading first (module docstring: compact leading lobe holding the
  main spot, dispersed following lobe)."""
  amp_lead, amp_follow = region.lobe_amplitudes(days)
  if amp_follow <= 0:
    return []
  age = days - region.t_emerge
  spread = math.sqrt(1.0 + max(0.0, age - region.tau_grow) / region.tau_decay)
  parts = []
  for k, ((lo, la), sign, amp) in enumerate(zip(
      region.lobes(days), (region.leading_sign, -region.leading_sign),
      (amp_lead, amp_follow))):
    width = region.sigma0 * spread * (LEAD_WIDTH if k == 0 else FOLLOW_WIDTH)
    spot_frac = 0.0
    if region.flux > UMBRA_MIN_FLUX:
      spot_frac = (SPOT_FRACTION_LEAD if k == 0 else SPOT_FRACTION_FOLLOW
                   ) * math.exp(-max(0.0, age - region.tau_grow)
                                / (0.5 * region.tau_decay))
    parts.append((lo, la, sign, region.flux * amp, width, spot_frac))
  return parts


def region_kernels(region, days):
  """The smooth part of one region at `days` (Br in gauss): per lobe a
  diffuse plage Gaussian and, in big regions, an umbra; the rest of the
  flux is in `region_elements`."""
  rows = []
  rng = np.random.default_rng(region.seed)
  for lo, la, sign, flux, width, spot_frac in _lobe_parts(region, days):
    diffuse = flux * DIFFUSE_PLAGE_FRACTION
    rows.append((lo, la, width, sign * peak_for_flux(diffuse, width)))
    b_umbra = rng.uniform(*UMBRA_G)
    if spot_frac > 0:
      s_umbra = math.degrees(math.sqrt(
          flux * spot_frac / (2 * math.pi * b_umbra)) / RSUN_CM)
      rows.append((lo, la, s_umbra, sign * b_umbra))
  if not rows:
    return Kernels.concat([])
  lon, lat, sig, peak = (np.array(c, dtype=np.float64) for c in zip(*rows))
  return Kernels(lon % 360.0, np.clip(lat, -89.9, 89.9), sig, peak)


def region_elements(region, days):
  """The fragmented plage of one region at `days`: flux elements (of
  PLAGE_ELEMENT_MX on average) scattered over each lobe, mostly of the
  lobe's sign; the pattern is redrawn each day, like the network."""
  parts = _lobe_parts(region, days)
  rng = np.random.default_rng([region.seed, 1, math.floor(days)])
  lon, lat, flux = [], [], []
  for k, (lo, la, sign, lobe_flux, width, spot_frac) in enumerate(parts):
    total = lobe_flux * (1.0 - DIFFUSE_PLAGE_FRACTION - spot_frac)
    n = int(np.clip(total / PLAGE_ELEMENT_MX, 4, 4000))
    scatter = (0.8 if k == 0 else 1.3) * width
    offs = rng.normal(0.0, scatter, size=(n, 2))
    weights = 10 ** rng.normal(0.0, 0.3, n)
    f = total * weights / weights.sum()
    polarity = np.where(rng.random(n) < 0.9, sign, -sign)
    lat.append(np.clip(la + offs[:, 1], -89.9, 89.9))
    lon.append((lo + offs[:, 0] / math.cos(math.radians(la))) % 360.0)
    flux.append(polarity * f)
  if not flux:
    return no_elements()
  return Elements(np.concatenate(lon), np.concatenate(lat),
                  np.concatenate(flux))


def active_kernels(seed, days):
  """The smooth part of all active regions of `seed` at `days`."""
  return Kernels.concat(region_kernels(r, days) for r in regions_at(seed, days))


def active_elements(seed, days):
  """The fragmented plage of all active regions of `seed` at `days`."""
  return Elements.concat(region_elements(r, days)
                         for r in regions_at(seed, days))


def remnant_kernels(seed, days):
  """The decayed flux of every region (module docstring): per lobe, the
  flux it has lost, still uncancelled, spread by diffusion and moved
  poleward by the meridional flow since the lobe began to decay."""
  rows = []
  for region in _regions_since(seed, days, REMNANT_DAYS):
    start = region.t_emerge + region.tau_grow
    age = days - start
    if age <= 0:
      continue
    amps = region.lobe_amplitudes(min(days, region.t_emerge + MAX_LIFE_DAYS))
    lobes = region.lobes(start)
    signs = (region.leading_sign, -region.leading_sign)
    for (lo, la), sign, amp, kind, width in zip(
        lobes, signs, amps, ('lead', 'follow'), (LEAD_WIDTH, FOLLOW_WIDTH)):
      lost = region.flux * (1.0 - amp)
      flux = lost * math.exp(-age / REMNANT_CANCEL_DAYS[kind])
      if flux < 1e19:
        continue
      spread_m = math.sqrt(2.0 * ETA_KM2_S * 1e6 * age * 86400.0)
      sigma = math.hypot(region.sigma0 * width,
                         math.degrees(spread_m / RSUN_REF_M))
      poleward = math.degrees(MERIDIONAL_M_S * age * 86400.0 / RSUN_REF_M)
      lat = float(np.clip(la + math.copysign(poleward, la), -85.0, 85.0))
      lon = lo + region.drift * (days - region.t_emerge)
      rows.append((lon % 360.0, lat, sigma, sign * peak_for_flux(flux, sigma)))
  if not rows:
    return Kernels.concat([])
  lon, lat, sig, peak = (np.array(c, dtype=np.float64) for c in zip(*rows))
  return Kernels(lon, lat, sig, peak)


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

  def sample(self, field, lon, lat):
    """Bilinear samples of a field of this grid at (lon, lat) degrees."""
    rows = np.clip((np.asarray(lat) + 90.0) / self.res - 0.5, 0,
                   self.shape[0] - 1)
    cols = np.asarray(lon) / self.res - 0.5
    return ndimage.map_coordinates(field, [rows, cols], order=1,
                                   mode='grid-wrap')


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


def smooth(field, sigma_deg, res):
  """Gaussian smoothing on the CAR grid, periodic in longitude."""
  return ndimage.gaussian_filter(field, sigma_deg / res,
                                 mode=('nearest', 'wrap'), truncate=3.0)


# -------------------------------------------------------------- network

WEB_GRID = Grid(0.25)  # the supergranular pattern's grid
SUPERGRANULE_DEG = 0.45  # smoothing of the random field whose zeros are lanes
LANE_WIDTH = 0.2  # of the field's std


@functools.lru_cache(maxsize=4)
def network_day(seed, day):
  """(Elements, quiet 304 mottling on WEB_GRID) of one day.

  Elements sit on the boundaries of a supergranular-scale random pattern (a
  cell-boundary web; new each day), denser and of one dominant polarity
  over the remnant flux of decayed regions. The mottling is an independent
  weak pattern of the quiet chromosphere.
  """
  rng = np.random.default_rng([seed, 200, day + 1_000_000])
  grid = WEB_GRID
  f = smooth(rng.standard_normal(grid.shape), SUPERGRANULE_DEG, grid.res)
  web = np.exp(-(f / (LANE_WIDTH * f.std())) ** 2)
  remnant = render_kernels(grid, remnant_kernels(seed, float(day)))
  remnant = smooth(remnant, 1.0, grid.res)
  weight = web * (1.0 + np.abs(remnant) / NETWORK_REMNANT_DENSITY_G) * np.cos(
      np.radians(grid.lat))[:, None]
  p = weight.ravel() / weight.sum()
  cells = rng.choice(p.size, size=NETWORK_ELEMENTS, p=p)
  row, col = np.divmod(cells, grid.shape[1])
  lat = grid.lat[row] + rng.uniform(-0.5, 0.5, cells.size) * grid.res
  lon = (grid.lon[col] + rng.uniform(-0.5, 0.5, cells.size) * grid.res
         ) % 360.0
  r = remnant[row, col]
  positive = rng.random(cells.size) < 0.5 * (
      1.0 + np.tanh(r / NETWORK_REMNANT_G))
  flux = NETWORK_FLUX_MX * 10 ** rng.normal(0.0, NETWORK_FLUX_DEX,
                                            cells.size)
  mottling = smooth(rng.standard_normal(grid.shape), 0.4, grid.res)
  mottling /= mottling.std()
  return (Elements(lon, lat, np.where(positive, flux, -flux)),
          mottling.astype(np.float32))


@functools.lru_cache(maxsize=2)
def internetwork_day(seed, day):
  """The internetwork's radial field (G) of one day on a fine grid."""
  grid = Grid(INTERNETWORK_GRID_RES)
  rng = np.random.default_rng([seed, 400, day + 1_000_000])
  f = ndimage.gaussian_filter(rng.standard_normal(grid.shape,
                                                  dtype=np.float32), 1.0)
  return (f * (INTERNETWORK_G / f.std())).astype(np.float32)


# ------------------------------------------------------------- surface

@dataclasses.dataclass
class Surface:
  """The Sun at one time: Br (G) of regions and remnants on a Carrington
  grid, the network elements, the internetwork (its own grid), the quiet
  mottling and the filaments' optical depth (grids)."""
  grid: Grid
  br: np.ndarray
  elements: Elements
  internetwork: np.ndarray  # on Grid(INTERNETWORK_GRID_RES), G
  mottling: np.ndarray  # on WEB_GRID, zero mean, unit std
  tau: np.ndarray  # filament optical depth on `grid`


def surface_at(seed, days, grid, kernels=None, network=True):
  """The Sun's surface at model time `days`.

  kernels: override the active-region kernels (tests place one region);
    the remnants are then left out too.
  network: False leaves out network, remnants, mottling and filaments.
  """
  own = kernels is None
  if own:
    kernels = active_kernels(seed, days)
  br = render_kernels(grid, kernels)
  if network and own:
    render_kernels(grid, remnant_kernels(seed, days), out=br)
  if network:
    elements, mottling = network_day(seed, math.floor(days))
    if own:
      elements = Elements.concat([elements, active_elements(seed, days)])
    internetwork = internetwork_day(seed, math.floor(days))
    tau = filament_depth(br + elements_on_grid(elements, grid), grid)
  else:
    elements, mottling = no_elements(), np.zeros(WEB_GRID.shape, np.float32)
    internetwork = np.zeros((1, 1), np.float32)
    tau = np.zeros(grid.shape, np.float32)
  return Surface(grid, br.astype(np.float32), elements, internetwork,
                 mottling, tau)


def elements_on_grid(elements, grid):
  """The elements' flux as a mean Br (G) per cell of `grid`."""
  rows = np.clip(((elements.lat + 90.0) / grid.res).astype(int), 0,
                 grid.shape[0] - 1)
  cols = (elements.lon / grid.res).astype(int) % grid.shape[1]
  out = np.zeros(grid.shape)
  np.add.at(out, (rows, cols), elements.flux)
  cell_cm2 = (grid.res * DEG_CM) ** 2 * np.cos(np.radians(grid.lat))
  return out / cell_cm2[:, None]


def filament_depth(br, grid):
  """Optical depth of filaments: along the polarity inversion lines of the
  large-scale field (Br smoothed over FILAMENT_SMOOTH_DEG) where both
  polarities are present on either side (not around an isolated
  concentration), outside strong plage."""
  s = smooth(br, FILAMENT_SMOOTH_DEG, grid.res)
  both = np.minimum(smooth(np.clip(br, 0, None), 2 * FILAMENT_SMOOTH_DEG,
                           grid.res),
                    smooth(np.clip(-br, 0, None), 2 * FILAMENT_SMOOTH_DEG,
                           grid.res))
  line = np.exp(-(s / FILAMENT_WIDTH_G) ** 2)
  bipolar = np.clip(both / FILAMENT_MIN_BIPOLAR_G - 1.0, 0.0, 1.0)
  plage = smooth(np.abs(br), 0.5, grid.res)
  outside = np.clip(1.0 - plage / FILAMENT_MAX_PLAGE_G, 0.0, 1.0)
  return (FILAMENT_DEPTH * line * bipolar * outside).astype(np.float32)


def brightening(b_abs):
  """Chromospheric 304 brightening (DN/s at mu = 1) for |Br| in gauss: a
  power law that saturates in strong plage (module docstring)."""
  x = (np.asarray(b_abs, np.float64) / 100.0) ** AIA_P
  c = (100.0 / AIA_BS_G) ** AIA_P
  return AIA_EXCESS_100G * x / (1.0 + c * x)


def brightening_inverse(excess):
  """|Br| (G) whose brightening is `excess` DN/s: the inverse of
  `brightening`, inf at and beyond its saturated level."""
  y = np.asarray(excess, np.float64) / AIA_EXCESS_100G
  c = (100.0 / AIA_BS_G) ** AIA_P
  with np.errstate(divide='ignore', invalid='ignore'):
    x = np.where(c * y < 1.0, y / (1.0 - c * y), np.inf)
  return 100.0 * np.clip(x, 0.0, None) ** (1.0 / AIA_P)
