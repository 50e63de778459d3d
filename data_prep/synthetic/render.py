"""The SYNTHETIC Sun as one observer's detector sees it.

`disk_geometry(header, observer, shape)` ray-traces every pixel of a
helioprojective TAN image onto the sphere of radius RSUN_REF with the
header's own WCS (CRPIX, CDELT, PC or CROTA), so the Sun lands where the
WCS says it is; `project_elements` maps network elements the other way.
Done by hand because sunpy's pixel <-> world transforms of a 1024^2 grid
cost seconds.

Images (float arrays, before any instrument's counts and noise):
- `los_field`: the line-of-sight field in gauss, what a magnetograph at
  the observer would record without noise: the gridded field (regions,
  remnants) x mu, plus every visible network element's flux x mu^2 over
  the pixel's plane-of-sky area (a vertical tube's LOS field x its
  projected area), NaN off the disk;
- `emission_304`: He II 304 A radiance in AIA 304 DN/s units at this
  pixel: the quiet chromosphere and its mottling, plus the brightening of
  the photospheric |Br| spread over the chromospheric canopy, darkened by
  filaments, with limb brightening and an off-limb falloff.
"""
import dataclasses
import math
import warnings

import astropy.units as u
import numpy as np
from astropy.wcs import WCS
from scipy import ndimage

from data_prep.synthetic import sun

AIA_LIMB_A = 0.15  # limb brightening ((1 + a) / (mu + a)) ** 0.5
AIA_OFFLIMB_SCALE_RSUN = 0.04  # e-folding height of off-limb 304 emission
MOTTLING_CONTRAST = 0.15  # quiet-Sun 304 mottling, log amplitude
BAND_ROWS = 512  # rows rendered at a time (bounded memory at 4096^2)


@dataclasses.dataclass
class DiskGeometry:
  """Per-pixel geometry of a full-disk image (arrays of the image shape)."""
  on_disk: np.ndarray  # bool
  lon_carr: np.ndarray  # deg, NaN off disk
  lat: np.ndarray  # deg, NaN off disk
  mu: np.ndarray  # cos(heliocentric angle), 0 off disk
  height: np.ndarray  # off-limb height above the limb in solar radii, 0 on disk


@dataclasses.dataclass(frozen=True)
class Projection:
  """The TAN projection of a header: pixel <-> (x, y) tangent-plane rad."""
  crpix: tuple
  matrix: np.ndarray  # (x, y) = matrix @ (px, py), px 1-based minus CRPIX
  cdelt: tuple  # rad

  @staticmethod
  def of(header):
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # datfix notes about MJD-OBS
      w = WCS(header)
    to_rad = [u.Unit(c).to(u.rad) for c in w.wcs.cunit]  # wcslib may use deg
    cdelt = np.asarray(w.wcs.cdelt) * to_rad
    crval = np.asarray(w.wcs.crval) * to_rad
    if np.any(np.abs(crval) > 1e-9):
      raise ValueError('the renderer expects CRVAL1 = CRVAL2 = 0')
    matrix = np.diag(cdelt) @ w.wcs.get_pc()
    return Projection(tuple(w.wcs.crpix), matrix, tuple(np.abs(cdelt)))

  @property
  def pixel_solid_angle(self):
    return self.cdelt[0] * self.cdelt[1]


def disk_geometry(header, observer, shape, rows=None):
  """Ray-traces the pixels of `header` onto the sphere of radius RSUN_REF.

  shape: (ny, nx) of the image; rows: optional (start, stop) row range (the
  geometry of that band only, to bound memory at 4096^2).
  """
  proj = Projection.of(header)
  ny, nx = shape
  r0, r1 = rows if rows is not None else (0, ny)
  px = np.arange(nx) + 1.0 - proj.crpix[0]
  py = np.arange(r0, r1) + 1.0 - proj.crpix[1]
  m = proj.matrix
  x = m[0, 0] * px[None, :] + m[0, 1] * py[:, None]
  y = m[1, 0] * px[None, :] + m[1, 1] * py[:, None]
  sin2 = (x * x + y * y) / (1.0 + x * x + y * y)  # sin^2 of angle to centre
  d, r = observer.dsun, sun.RSUN_REF_M
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
  gx, gy, gz = _hcc_to_heliographic(observer, hx, hy, hz)
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


def _rotation(observer):
  b, l = math.radians(observer.hglt), math.radians(observer.hgln)
  return math.sin(b), math.cos(b), math.sin(l), math.cos(l)


def _hcc_to_heliographic(observer, hx, hy, hz):
  sb, cb, sl, cl = _rotation(observer)
  return (-sl * hx - sb * cl * hy + cb * cl * hz,
          cl * hx - sb * sl * hy + cb * sl * hz,
          cb * hy + sb * hz)


def project_elements(elements, observer, header):
  """(px, py, mu, area_cm2) of the visible elements, 0-based pixels.

  area: the plane-of-sky area of one pixel at the element's distance.
  """
  r, d = sun.RSUN_REF_M, observer.dsun
  lon = np.radians(elements.lon - observer.carrington_offset)
  lat = np.radians(elements.lat)
  gx = r * np.cos(lat) * np.cos(lon)
  gy = r * np.cos(lat) * np.sin(lon)
  gz = r * np.sin(lat)
  sb, cb, sl, cl = _rotation(observer)
  # the transpose of _hcc_to_heliographic (a rotation)
  hx = -sl * gx + cl * gy
  hy = -sb * cl * gx - sb * sl * gy + cb * gz
  hz = cb * cl * gx + cb * sl * gy + sb * gz
  visible = hz * d > r * r
  hx, hy, hz = hx[visible], hy[visible], hz[visible]
  depth = d - hz
  dist = np.sqrt(hx * hx + hy * hy + depth * depth)
  mu = np.clip((hz * d - r * r) / (r * dist), 0.0, 1.0)
  proj = Projection.of(header)
  x, y = hx / depth, hy / depth
  px, py = np.linalg.solve(proj.matrix, np.stack([x, y]))
  px = px + proj.crpix[0] - 1.0
  py = py + proj.crpix[1] - 1.0
  area = proj.pixel_solid_angle * (dist * 100.0) ** 2  # cm^2
  return px, py, mu, area, visible


def deposit(shape, px, py, values, rows=(0, None)):
  """Bilinear splat of point values onto an image band (sums)."""
  r0, r1 = rows[0], rows[1] if rows[1] is not None else shape[0]
  out = np.zeros((r1 - r0, shape[1]))
  x0 = np.floor(px).astype(int)
  y0 = np.floor(py).astype(int)
  fx, fy = px - x0, py - y0
  for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)),
                    (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
    xi, yi = x0 + dx, y0 + dy - r0
    ok = (xi >= 0) & (xi < shape[1]) & (yi >= 0) & (yi < r1 - r0)
    np.add.at(out, (yi[ok], xi[ok]), (values * w)[ok])
  return out


def sample_grid(field, grid, geometry):
  """Bilinear samples of a Carrington grid field at the on-disk pixels."""
  on = geometry.on_disk
  out = np.zeros(on.shape, dtype=np.float32)
  out[on] = grid.sample(field, geometry.lon_carr[on], geometry.lat[on])
  return out


def surface_pixels(degrees, header, observer):
  """`degrees` of the solar surface in pixels at disk centre."""
  proj = Projection.of(header)
  return degrees * sun.DEG_CM / ((observer.dsun - sun.RSUN_REF_M) * 100.0
                                 * math.sqrt(proj.pixel_solid_angle))


@dataclasses.dataclass
class View:
  """One observer's noiseless images: LOS field (G) and 304 radiance, and
  the geometry's mu (0 off the disk)."""
  mu: np.ndarray
  los: np.ndarray  # float32 G, NaN off disk
  emission: np.ndarray  # float64 DN/s (AIA 304 units), with the off-limb


def render_view(surface, observer, header, shape):
  """The LOS field and the 304 radiance of `surface` for one observer, in
  bands of BAND_ROWS rows (with a margin for the canopy smoothing)."""
  px, py, mu, area, visible = project_elements(surface.elements, observer,
                                               header)
  flux = surface.elements.flux[visible]
  los_values = flux * mu * mu / area
  abs_values = np.abs(flux) * mu / area
  sigma = surface_pixels(sun.CANOPY_DEG, header, observer)
  element = surface_pixels(sun.ELEMENT_SIGMA_DEG, header, observer)
  margin = int(math.ceil(3 * sigma)) + 2
  ny = shape[0]
  out_mu = np.empty(shape, np.float32)
  out_los = np.empty(shape, np.float32)
  out_emission = np.empty(shape)
  for r0 in range(0, ny, BAND_ROWS):
    r1 = min(ny, r0 + BAND_ROWS)
    b0, b1 = max(0, r0 - margin), min(ny, r1 + margin)
    geometry = disk_geometry(header, observer, shape, rows=(b0, b1))
    near = (py > b0 - 2) & (py < b1 + 1)
    band = (b0, b1)
    los, emission = _band_images(
        surface, geometry, sigma,
        ndimage.gaussian_filter(deposit(shape, px[near], py[near],
                                        los_values[near], band), element),
        deposit(shape, px[near], py[near], abs_values[near], band))
    keep = slice(r0 - b0, r0 - b0 + (r1 - r0))
    out_mu[r0:r1] = geometry.mu[keep]
    out_los[r0:r1] = los[keep]
    out_emission[r0:r1] = emission[keep]
  return View(out_mu, out_los, out_emission)


def _band_images(surface, geometry, sigma, los_points, abs_points):
  """(LOS field, 304 radiance) of one band (module docstring)."""
  on = geometry.on_disk
  br = sample_grid(surface.br, surface.grid, geometry)
  if surface.internetwork.size > 1:
    br_in = sample_grid(surface.internetwork,
                        sun.Grid(sun.INTERNETWORK_GRID_RES), geometry)
  else:
    br_in = 0.0
  los = np.where(on, (br + br_in) * geometry.mu + los_points, np.nan)
  # 304: |Br| (surface average per pixel) spread over the canopy
  b_abs = ndimage.gaussian_filter(np.abs(br) + abs_points, sigma,
                                  truncate=3.0)
  mottling = sample_grid(surface.mottling, sun.WEB_GRID, geometry)
  tau = sample_grid(surface.tau, surface.grid, geometry)
  rate = (sun.AIA_QUIET_DN_S * np.exp(MOTTLING_CONTRAST * mottling)
          + sun.brightening(b_abs)) * np.exp(-tau)
  a = AIA_LIMB_A
  emission = np.empty(on.shape)
  emission[on] = rate[on] * np.sqrt((1 + a) / (geometry.mu[on] + a))
  emission[~on] = sun.AIA_QUIET_DN_S * math.sqrt((1 + a) / a) * np.exp(
      -geometry.height[~on] / AIA_OFFLIMB_SCALE_RSUN)
  return los.astype(np.float32), emission
