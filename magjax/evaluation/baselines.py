"""Baselines every reader needs to judge a generated magnetogram.

- `zero`: B = 0 G everywhere. Its PSNR and SSIM are real numbers; its
  correlations are undefined (a constant field), counted as 0.
- `hale`: the physics baseline a solar physicist would try first, without
  any learning:
  - |B| from the 304 A brightness by the monotone relation of the training
    data (`BrightnessMap`: the AIA value at each quantile of the AIA
    distribution maps to |B| at the same quantile of the |B| distribution;
    chromospheric emission grows monotonically with |B|, Schrijver et al.
    1989), so no model of the chromosphere is assumed;
  - the sign by Hale's law: in each bright region (connected pixels where
    the smoothed |B| estimate exceeds `config.baseline_region_gauss`), the
    part west of its flux-weighted centroid gets its hemisphere's leading
    polarity (`config.baseline_north_leading_sign` in the north, its
    opposite in the south; cycle 24: negative in the north), the part east
    of it the following polarity; weak field outside regions is left at
    0 G (its sign is unknown).

Both work on the whole (binned) patch, on the paper's heliographic grid:
latitude and the west direction come from the grid (`patch_lonlat`).
"""

import numpy as np
from scipy import ndimage

from data_prep import grid as grid_lib

NAMES = ('zero', 'hale')
QUANTILES = np.linspace(0.0, 1.0, 1001)


def patch_lonlat(shape, binning=1):
  """(lon, lat) in degrees of every pixel of a patch of `shape` on the
  paper's grid (binned `binning` x `binning`): 0 at the centre, west +."""
  scale = grid_lib.PATCH_SCALE_DEG * binning
  ny, nx = shape
  lat = (np.arange(ny) - (ny - 1) / 2.0) * scale
  lon = (np.arange(nx) - (nx - 1) / 2.0) * scale
  return np.meshgrid(lon, lat)


class BrightnessMap:
  """The monotone AIA 304 (DN/s) -> |B| (G) map of a set of examples."""

  def __init__(self, aia_quantiles, b_quantiles):
    self.aia = np.asarray(aia_quantiles, np.float64)
    self.b = np.asarray(b_quantiles, np.float64)

  @staticmethod
  def fit(examples, saturation):
    """From (aia, hmi, mask) triples: their valid pixels' quantiles."""
    aia, b = [], []
    for a, h, m in examples:
      m = np.asarray(m, bool) & np.isfinite(a) & np.isfinite(h)
      aia.append(np.asarray(a)[m])
      b.append(np.clip(np.abs(np.asarray(h)[m]), 0.0, saturation))
    aia, b = np.concatenate(aia), np.concatenate(b)
    if aia.size < 2:
      raise ValueError('no valid pixel to fit the brightness map on')
    return BrightnessMap(np.quantile(aia, QUANTILES), np.quantile(b, QUANTILES))

  def __call__(self, aia):
    return np.interp(np.asarray(aia, np.float64), self.aia, self.b)


def zero_field(shape):
  return np.zeros(shape)


def hale_field(aia, mask, bmap, config, binning=1):
  """The Hale-signed |B| estimate (G) of a whole patch (module docstring)."""
  mask = np.asarray(mask, bool)
  b_abs = np.where(mask, bmap(np.where(mask, aia, 0.0)), 0.0)
  pixels = config.baseline_smooth_deg / (grid_lib.PATCH_SCALE_DEG * binning)
  smooth = ndimage.gaussian_filter(b_abs, pixels)
  labels, count = ndimage.label(smooth > config.baseline_region_gauss)
  if count == 0:
    return np.zeros(b_abs.shape)
  lon, lat = patch_lonlat(b_abs.shape, binning)
  index = np.arange(1, count + 1)
  weight = ndimage.sum(b_abs, labels, index)
  safe = np.where(weight > 0, weight, 1.0)
  lon_c = ndimage.sum(b_abs * lon, labels, index) / safe
  lat_c = ndimage.sum(b_abs * lat, labels, index) / safe
  leading = np.where(lat_c >= 0, 1.0, -1.0) * float(
      config.baseline_north_leading_sign)
  region = labels > 0
  sign = np.zeros(b_abs.shape)
  k = labels[region] - 1
  sign[region] = np.where(lon[region] >= lon_c[k], leading[k], -leading[k])
  return sign * b_abs
