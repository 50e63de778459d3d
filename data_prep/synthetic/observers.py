"""Where the SYNTHETIC Sun is seen from: spacecraft positions in time.

No ephemeris service is reachable offline (sunpy's get_horizons_coord needs
the network), so every spacecraft but the Earth follows a documented
APPROXIMATION, and headers say so (OBS_APPR):

- `sdo`: Earth (sunpy's built-in ephemeris) plus a geosynchronous offset
  (42164 km, 28.5 deg inclination, one sidereal day), which makes HGLN_OBS
  wobble by ~0.016 deg as real SDO's does.
- `soho`: the L1 point, 1.5e9 m sunward of the Earth (its halo orbit,
  ~0.2 deg, left out).
- `stereo-a`, `stereo-b`: circular orbits in the ecliptic at 0.96 and
  1.04 AU, drifting from the Earth at +22.5 and -22.5 deg/yr from +-45 deg
  on 2009-02-06 (the published separations: 45 deg in 2009-02, 180 deg
  apart in 2011-02; STEREO-A near +108 deg and STEREO-B near -110 deg in
  2012).
- `solo`: a Keplerian ellipse in the ecliptic, perihelion 0.30 AU and
  aphelion 1.00 AU (Solar Orbiter's nominal 2020s orbit, period 191 days),
  anchored to the position in the real EUI/FSI 304 header of 2020-10-21
  (HGLN_OBS +125.26 deg, 0.985 AU, in sunpy's test data).
- any heliographic position: `fixed_observer(t, hgln, hglt, dsun_au)`.
"""
import dataclasses
import functools
import math

import astropy.units as u
from astropy.coordinates import HeliocentricMeanEcliptic, SkyCoord
from astropy.time import Time
from sunpy.coordinates import (HeliocentricEarthEcliptic,
                               HeliographicCarrington,
                               HeliographicStonyhurst, get_earth)

from data_prep.synthetic import sun

AU_M = 1.495978707e11
SDO_ORBIT_KM = 42164.0  # geosynchronous orbit radius
SDO_INCLINATION_DEG = 28.5
SIDEREAL_DAY_DAYS = 0.99726958  # SDO's orbital period
L1_SUNWARD_M = 1.5e9
STEREO = {'a': dict(anchor=+45.0, rate=+22.5, au=0.96),
          'b': dict(anchor=-45.0, rate=-22.5, au=1.04)}
STEREO_ANCHOR = Time('2009-02-06T00:00:00', scale='utc')
SOLO_PERIHELION_AU, SOLO_APHELION_AU = 0.30, 1.00
SOLO_ANCHOR = dict(time='2020-10-21T14:55:13', hgln=125.2574809848614,
                   hglt=-6.677299920579563, au=0.9848445206937874)
NAMES = ('sdo', 'soho', 'stereo-a', 'stereo-b', 'solo')


@dataclasses.dataclass(frozen=True)
class Observer:
  """An observer seen from the Sun at one time (deg, m)."""
  time: Time
  hgln: float
  hglt: float
  dsun: float
  crln: float
  crlt: float
  name: str = 'sdo'
  approximation: str = ''

  @property
  def rsun_arcsec(self):
    return math.degrees(math.asin(sun.RSUN_REF_M / self.dsun)) * 3600.0

  @property
  def carrington_offset(self):
    """Carrington minus Stonyhurst longitude of any point, for this observer."""
    return (self.crln - self.hgln) % 360.0


def _observer(t, hgln, hglt, dsun, name, approximation):
  coord = SkyCoord(hgln * u.deg, hglt * u.deg, dsun * u.m,
                   frame=HeliographicStonyhurst, obstime=t)
  hgc = coord.transform_to(HeliographicCarrington(observer='self',
                                                  obstime=t))
  return Observer(time=t, hgln=float(hgln), hglt=float(hglt),
                  dsun=float(dsun), crln=hgc.lon.to_value(u.deg) % 360.0,
                  crlt=hgc.lat.to_value(u.deg), name=name,
                  approximation=approximation)


def _from_coord(t, coord, name, approximation):
  hgs = coord.transform_to(HeliographicStonyhurst(obstime=t))
  return _observer(t, hgs.lon.to_value(u.deg), hgs.lat.to_value(u.deg),
                   hgs.radius.to_value(u.m), name, approximation)


def observer_at(t):
  """SDO: the Earth's ephemeris plus a geosynchronous offset."""
  t = Time(t)
  earth = get_earth(t)
  d_earth = earth.radius.to_value(u.m)
  phase = 2 * math.pi * (sun.model_days(t) / SIDEREAL_DAY_DAYS % 1.0)
  r = SDO_ORBIT_KM * 1e3
  west = r * math.cos(phase)
  north = r * math.sin(phase) * math.sin(math.radians(SDO_INCLINATION_DEG))
  toward_sun = r * math.sin(phase) * math.cos(math.radians(SDO_INCLINATION_DEG))
  dsun = d_earth - toward_sun
  return _observer(t, math.degrees(west / dsun),
                   earth.lat.to_value(u.deg) + math.degrees(north / dsun),
                   dsun, 'sdo', 'Earth ephemeris + geosynchronous orbit')


def soho_at(t):
  """SOHO at L1: on the Sun-Earth line, L1_SUNWARD_M closer to the Sun."""
  t = Time(t)
  earth = get_earth(t)
  return _observer(t, 0.0, earth.lat.to_value(u.deg),
                   earth.radius.to_value(u.m) - L1_SUNWARD_M, 'soho',
                   'L1 on the Sun-Earth line, halo orbit neglected')


def stereo_at(t, which):
  """STEREO-A or -B on a circular ecliptic orbit drifting from the Earth."""
  t = Time(t)
  p = STEREO[which]
  years = (t - STEREO_ANCHOR).to_value(u.day) / 365.25
  lon = p['anchor'] + p['rate'] * years
  coord = SkyCoord(lon * u.deg, 0 * u.deg, p['au'] * AU_M * u.m,
                   frame=HeliocentricEarthEcliptic(obstime=t))
  return _from_coord(t, coord, f'stereo-{which}',
                     f'circular ecliptic orbit at {p["au"]} AU, '
                     f'{p["rate"]:+g} deg/yr from the Earth')


@functools.lru_cache(maxsize=1)
def _solo_elements():
  """(a, e, period_days, t_perihelion, longitude of perihelion) of the
  approximate Solar Orbiter ellipse (module docstring)."""
  a = 0.5 * (SOLO_PERIHELION_AU + SOLO_APHELION_AU)
  e = (SOLO_APHELION_AU - SOLO_PERIHELION_AU) / (2 * a)
  period = 365.25 * a ** 1.5
  ref = SOLO_ANCHOR
  t_ref = Time(ref['time'], scale='utc')
  # eccentric anomaly of the anchor's distance, on the outbound leg
  big_e = math.acos((1 - ref['au'] / a) / e)
  mean = big_e - e * math.sin(big_e)
  t_peri = t_ref - (mean / (2 * math.pi)) * period * u.day
  nu = 2 * math.atan2(math.sqrt(1 + e) * math.sin(big_e / 2),
                      math.sqrt(1 - e) * math.cos(big_e / 2))
  coord = SkyCoord(ref['hgln'] * u.deg, ref['hglt'] * u.deg,
                   ref['au'] * AU_M * u.m, frame=HeliographicStonyhurst,
                   obstime=t_ref)
  ecl = coord.transform_to(HeliocentricMeanEcliptic(obstime=t_ref,
                                                    equinox=t_ref))
  varpi = ecl.lon.to_value(u.rad) - nu
  return a, e, period, t_peri, varpi


def solo_at(t):
  """Solar Orbiter on the approximate ellipse (module docstring)."""
  t = Time(t)
  a, e, period, t_peri, varpi = _solo_elements()
  mean = 2 * math.pi * (((t - t_peri).to_value(u.day) / period) % 1.0)
  big_e = mean
  for _ in range(30):  # Kepler's equation by Newton's method
    big_e -= (big_e - e * math.sin(big_e) - mean) / (1 - e * math.cos(big_e))
  r = a * (1 - e * math.cos(big_e))
  nu = 2 * math.atan2(math.sqrt(1 + e) * math.sin(big_e / 2),
                      math.sqrt(1 - e) * math.cos(big_e / 2))
  coord = SkyCoord((varpi + nu) * u.rad, 0 * u.rad, r * AU_M * u.m,
                   frame=HeliocentricMeanEcliptic(obstime=t, equinox=t))
  return _from_coord(t, coord, 'solo',
                     f'Kepler ellipse {SOLO_PERIHELION_AU}-'
                     f'{SOLO_APHELION_AU} AU in the ecliptic, anchored '
                     'to the 2020-10-21 FSI header')


def fixed_observer(t, hgln, hglt, dsun_au, name='custom'):
  """An observer at a given Stonyhurst position (deg, deg, AU)."""
  return _observer(Time(t), hgln, hglt, dsun_au * AU_M, name,
                   'position given by the user')


def observer_for(name, t):
  """The observer called `name` (one of NAMES) at time `t`."""
  if name == 'sdo':
    return observer_at(t)
  if name == 'soho':
    return soho_at(t)
  if name in ('stereo-a', 'stereo-b'):
    return stereo_at(t, name[-1])
  if name == 'solo':
    return solo_at(t)
  raise ValueError(f'unknown observer {name!r} (expected one of {NAMES})')


def rounded(observer):
  """The observer exactly as a header (rounded cards) states it."""
  return dataclasses.replace(
      observer, dsun=round(observer.dsun, 3), hgln=round(observer.hgln, 9),
      hglt=round(observer.hglt, 9), crln=round(observer.crln, 9),
      crlt=round(observer.crlt, 9))
