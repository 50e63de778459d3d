"""The paper's patch grid, in one place (light: no sunpy import).

The patch is 90 deg (E-W) x 80 deg (N-S) of Stonyhurst heliographic
longitude / latitude at 0.1 deg/px on a plate carree (CAR) grid of shape
(800, 900) (lat x lon), lon = lat = 0 at the array centre: the centre crop
of Sun, Xu et al.'s 180 x 160 deg map. `patches.py` cuts it from full-disk
maps; the TFDS builder, evaluation and the figures read its shape and WCS
from here.
"""

from astropy.io import fits

PATCH_SHAPE = (800, 900)  # (lat, lon) pixels
PATCH_SCALE_DEG = 0.1
HMI_CLIP_GAUSS = 200.0  # the paper saturates HMI at +-200 G


def grid_header(obstime=None, shape=PATCH_SHAPE, scale_deg=PATCH_SCALE_DEG):
  """The patch grid's FITS WCS alone, without a map: Stonyhurst CAR,
  `scale_deg` deg/px, lon = lat = 0 at the array centre (the grid of
  `patches.target_header`), for figures of data-set examples, which carry
  no WCS."""
  ny, nx = shape
  header = fits.Header()
  header['WCSAXES'] = 2
  header['CTYPE1'] = 'HGLN-CAR'
  header['CTYPE2'] = 'HGLT-CAR'
  header['CUNIT1'] = 'deg'
  header['CUNIT2'] = 'deg'
  header['CDELT1'] = scale_deg
  header['CDELT2'] = scale_deg
  header['CRPIX1'] = (nx + 1) / 2  # FITS pixels are 1-based
  header['CRPIX2'] = (ny + 1) / 2
  header['CRVAL1'] = 0.0
  header['CRVAL2'] = 0.0
  header['LONPOLE'] = 0.0
  header['LATPOLE'] = 90.0
  if obstime:
    header['DATE-OBS'] = str(obstime)
  return header


def binned_header(header, k):
  """A copy of an image's FITS header for its k x k block means (rows and
  columns beyond a multiple of k dropped): NAXIS, CDELT and CRPIX follow."""
  header = fits.Header(header)
  for axis in ('1', '2'):
    if 'NAXIS' + axis in header:
      header['NAXIS' + axis] = int(header['NAXIS' + axis]) // k
    header['CDELT' + axis] = float(header['CDELT' + axis]) * k
    header['CRPIX' + axis] = (float(header['CRPIX' + axis]) - 0.5) / k + 0.5
  return header
