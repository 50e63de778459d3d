"""Statistics of full-disk LOS magnetograms: the synthetic Sun measured
against real HMI.

`disk_statistics(data, header)` of one magnetogram (gauss, NaN off the
disk), over the disk where mu > MU_MIN (limb pixels are foreshortened and
noisier):

- `slope`: the log-log slope of the azimuthally averaged power spectrum
  between K_MIN and K_MAX cycles per native 4096-disk pixel (0.504"), on
  the largest square inside the mu > MU_MIN disk, mean removed, Hann
  window; a binned image counts its pixels as `bin` native ones;
- `noise`: robust sigma (1.4826 x median absolute deviation) of B over the
  pixels with |B| < NOISE_MAX_G;
- `frac_100g`, `frac_1kg`: fractions of pixels with |B| above 100 G and
  1 kG;
- `p9999`: the 99.99th percentile of |B|;
- `imbalance`: |sum B| / sum |B|.

`bin_to(data, header, size)` brings a 4096^2 HMI image to another size by
block means (a block with a NaN is NaN), as the comparison at one pixel
scale needs; the header's pixel scale and reference pixel follow.
"""

import math
import warnings

import numpy as np
from astropy.io import fits
from astropy.wcs import WCS

from data_prep import grid

MU_MIN = 0.5
NOISE_MAX_G = 50.0
K_MIN, K_MAX = 0.01, 0.1  # cycles per native HMI pixel (0.504")
NATIVE_CDELT = 0.504  # arcsec, HMI's pixel (4096^2)
STATISTICS = ('slope', 'noise', 'frac_100g', 'frac_1kg', 'p9999',
              'imbalance')


def disk_centre_and_radius(header):
  """(x0, y0, r) in 0-based pixels: where the WCS puts the Sun's centre
  and the photospheric radius RSUN_OBS / CDELT1."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    w = WCS(fits.Header(header), naxis=2)
  # Helioprojective (0, 0) arcsec is the Sun's centre; the WCS is in deg.
  x0, y0 = w.wcs_world2pix([[0.0, 0.0]], 0)[0]
  return float(x0), float(y0), float(header['RSUN_OBS']) / abs(
      float(header['CDELT1']))


def mu_map(header, shape):
  """cos(heliocentric angle) per pixel (orthographic), 0 off the disk."""
  x0, y0, r = disk_centre_and_radius(header)
  yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
  rho2 = ((xx - x0) ** 2 + (yy - y0) ** 2) / (r * r)
  return np.sqrt(np.clip(1.0 - rho2, 0.0, 1.0))


def bin_to(data, header, size):
  """(data, header) block-averaged to size^2 (a block holding NaN is NaN)."""
  n = data.shape[0]
  if data.shape != (n, n) or n % size:
    raise ValueError(f'cannot bin a {data.shape} image to {size}^2')
  f = n // size
  binned = data.reshape(size, f, size, f).mean(axis=(1, 3))
  return binned.astype(np.float32), grid.binned_header(header, f)


def power_spectrum_slope(data, header, k_min=K_MIN, k_max=K_MAX):
  """Slope of the azimuthally averaged power spectrum (see module doc)."""
  x0, y0, r = disk_centre_and_radius(header)
  half = int(r * math.sqrt(1.0 - MU_MIN ** 2) / math.sqrt(2.0))
  cx, cy = int(round(x0)), int(round(y0))
  square = np.asarray(data[cy - half:cy + half, cx - half:cx + half],
                      np.float64)
  square = np.where(np.isfinite(square), square, 0.0)
  square = square - square.mean()
  window = np.hanning(square.shape[0])
  power = np.abs(np.fft.fft2(square * np.outer(window, window))) ** 2
  n = square.shape[0]
  freq = np.fft.fftfreq(n)  # cycles per pixel of this image
  k = np.hypot(*np.meshgrid(freq, freq, indexing='ij'))
  native = abs(float(header['CDELT1'])) / NATIVE_CDELT  # native px / px
  k_native = k / native
  edges = np.geomspace(k_min, k_max, 16)
  centres, means = [], []
  for lo, hi in zip(edges[:-1], edges[1:]):
    ring = (k_native >= lo) & (k_native < hi)
    if ring.any():
      centres.append(math.sqrt(lo * hi))
      means.append(power[ring].mean())
  return float(np.polyfit(np.log(centres), np.log(means), 1)[0])


def disk_statistics(data, header):
  """{statistic: value} of one magnetogram (module docstring)."""
  data = np.asarray(data, np.float64)
  mu = mu_map(header, data.shape)
  sel = (mu > MU_MIN) & np.isfinite(data)
  b = data[sel]
  ab = np.abs(b)
  quiet = b[ab < NOISE_MAX_G]
  mad = np.median(np.abs(quiet - np.median(quiet)))
  return {
      'slope': power_spectrum_slope(data, header),
      'noise': float(1.4826 * mad),
      'frac_100g': float(np.mean(ab > 100.0)),
      'frac_1kg': float(np.mean(ab > 1000.0)),
      'p9999': float(np.percentile(ab, 99.99)),
      'imbalance': float(abs(b.sum()) / ab.sum()),
  }
