"""data_prep.patches / calibrate / prepare patch on sunpy's real AIA file.

The geometry is checked against a hand-written spherical-trigonometry
mapping (Thompson 2006, FITS TAN with CROTA2) that shares no code with
sunpy's coordinate frames.
"""
import subprocess
import sys
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.io import fits

from data_prep import calibrate, fitsio, patches, prepare
from data_prep.fitsio import DataError
from test_fitsio import AIA_FILE, aia_variant


def independent_source_pixels(header, lon_deg, lat_deg, observer, rsun_m):
  """0-based source pixels of HGS (lon, lat) without sunpy frames.

  header: the source FITS header (CRPIX, CDELT, CRVAL ~ 0, CROTA2);
  observer: (lon, lat, distance) in (deg, deg, m), the Stonyhurst observer.
  Returns (x, y, visible).
  """
  lon, lat = np.radians(lon_deg), np.radians(lat_deg)
  l0, b0, dist = np.radians(observer[0]), np.radians(observer[1]), observer[2]
  dl = lon - l0
  x = rsun_m * np.cos(lat) * np.sin(dl)
  y = rsun_m * (np.sin(lat) * np.cos(b0) - np.cos(lat) * np.cos(dl)
                * np.sin(b0))
  z = rsun_m * (np.sin(lat) * np.sin(b0) + np.cos(lat) * np.cos(dl)
                * np.cos(b0))
  visible = z > rsun_m ** 2 / dist  # in front of the limb plane
  d = np.sqrt(x ** 2 + y ** 2 + (dist - z) ** 2)
  tx = np.arctan2(x, dist - z)
  ty = np.arcsin(y / d)
  # TAN projection about (CRVAL1, CRVAL2) = (0, 0), in degrees.
  u_ = np.degrees(np.tan(tx)) * 3600 - header['CRVAL1']
  v_ = np.degrees(np.tan(ty) / np.cos(tx)) * 3600 - header['CRVAL2']
  rho = np.radians(header.get('CROTA2', 0.0))
  # Intermediate = CDELT * R(rho) @ (p - CRPIX)  =>  p = CRPIX + R^T @ (.)
  a, b = u_ / header['CDELT1'], v_ / header['CDELT2']
  px = np.cos(rho) * a + np.sin(rho) * b + header['CRPIX1'] - 1
  py = -np.sin(rho) * a + np.cos(rho) * b + header['CRPIX2'] - 1
  return px, py, visible


@pytest.fixture(scope='module')
def aia_map():
  return calibrate.load_calibrated(AIA_FILE, wavelength=None)


@pytest.fixture(scope='module')
def aia_patch(aia_map):
  return patches.extract_patch(aia_map)


def test_target_grid_is_symmetric(aia_map):
  header = patches.target_header(aia_map)
  pmap = sunpy.map.Map(np.zeros((800, 900), np.float32), header)
  corners = pmap.wcs.pixel_to_world([0, 899, 449.5], [0, 799, 399.5])
  np.testing.assert_allclose(corners.lon.to_value(u.deg), [-44.95, 44.95, 0],
                             atol=1e-9)
  np.testing.assert_allclose(corners.lat.to_value(u.deg), [-39.95, 39.95, 0],
                             atol=1e-9)
  assert header['ctype1'] == 'HGLN-CAR' and header['ctype2'] == 'HGLT-CAR'
  assert header['rsun_ref'] == aia_map.meta['rsun_ref']
  assert header['date-avg'] == aia_map.reference_date.utc.isot


def test_aia_calibration_divides_by_exposure(aia_map):
  with fits.open(AIA_FILE) as hdul:
    raw = hdul[0].data
    exptime = hdul[0].header['EXPTIME']
  np.testing.assert_allclose(aia_map.data, raw / exptime, rtol=1e-6)
  assert aia_map.meta['bunit'] == 'DN/s'
  assert aia_map.meta['exptime'] == exptime


def test_source_pixels_match_spherical_trigonometry(aia_map):
  header = patches.target_header(aia_map)
  x, y = patches._source_pixels(aia_map, header)
  lon = (np.arange(900) - 449.5) * 0.1
  lat = (np.arange(800) - 399.5) * 0.1
  lon, lat = np.meshgrid(lon, lat)
  obs = (header['hgln_obs'], header['hglt_obs'], header['dsun_obs'])
  with fits.open(AIA_FILE) as hdul:
    src_header = hdul[0].header
  px, py, visible = independent_source_pixels(src_header, lon, lat, obs,
                                              header['rsun_ref'])
  assert visible.all() and np.isfinite(x).all()
  np.testing.assert_allclose(x, px, atol=1e-3)
  np.testing.assert_allclose(y, py, atol=1e-3)


def test_patch_values_and_metadata(aia_map, aia_patch):
  assert aia_patch.data.shape == (800, 900)
  assert aia_patch.data.dtype == np.float32
  assert np.isfinite(aia_patch.data).all()  # the belt is on the disk
  assert aia_patch.meta['bunit'] == 'DN/s'
  assert aia_patch.meta['src_file'] == 'aia_171_level1.fits'
  assert aia_patch.meta['exptime'] == aia_map.meta['exptime']
  assert 'magjax' in aia_patch.meta['history']
  # A smooth source gives the same mean brightness in the patch centre
  # (+-2 deg around disk centre) as at the disk centre of the source.
  h = aia_map.meta
  cx = int(round(h['crpix1'] - 1 - h['crval1'] / h['cdelt1']))
  cy = int(round(h['crpix2'] - 1 - h['crval2'] / h['cdelt2']))
  src = np.median(aia_map.data[cy - 2:cy + 3, cx - 2:cx + 3])
  lat0 = 399.5 + aia_patch.meta['hglt_obs'] / 0.1
  ptc = np.median(aia_patch.data[int(lat0) - 20:int(lat0) + 20, 430:470])
  assert abs(ptc - src) < 0.25 * abs(src)


def test_disk_centre_lands_at_observer_latitude(aia_map):
  # A Gaussian blob at the disk centre (CRPIX - CRVAL/CDELT, from the
  # header) must appear at HGS (HGLN_OBS, HGLT_OBS) of the patch.
  with fits.open(AIA_FILE) as hdul:
    h = hdul[0].header
  cx = h['CRPIX1'] - 1 - h['CRVAL1'] / h['CDELT1']
  cy = h['CRPIX2'] - 1 - h['CRVAL2'] / h['CDELT2']
  yy, xx = np.mgrid[0:128, 0:128]
  blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 1.5 ** 2))
  pmap = patches.extract_patch(sunpy.map.Map(blob.astype(np.float32),
                                             aia_map.meta))
  weight = np.where(pmap.data > 0.1, pmap.data, 0.0)
  py, px = np.mgrid[0:800, 0:900]
  lon = ((px * weight).sum() / weight.sum() - 449.5) * 0.1
  lat = ((py * weight).sum() / weight.sum() - 399.5) * 0.1
  # 1 source px ~ 1.15 deg here; the centroid lands within 0.2 deg.
  assert abs(lon - pmap.meta['hgln_obs']) < 0.2
  assert abs(lat - pmap.meta['hglt_obs']) < 0.2
  assert abs(pmap.meta['hglt_obs'] - (-6.82)) < 0.01  # B0 of 2011-02-15


def test_far_side_is_nan(aia_map):
  pmap = patches.extract_patch(aia_map, shape=(90, 360), scale_deg=1.0)
  lon = np.arange(360) - 179.5
  lat = np.arange(90) - 44.5
  lon2, lat2 = np.meshgrid(lon, lat)
  obs_lat = np.radians(pmap.meta['hglt_obs'])
  cosc = (np.sin(np.radians(lat2)) * np.sin(obs_lat)
          + np.cos(np.radians(lat2)) * np.cos(obs_lat)
          * np.cos(np.radians(lon2 - pmap.meta['hgln_obs'])))
  # Well in front of the limb: valid; behind it: NaN.
  assert np.isfinite(pmap.data[cosc > 0.1]).all()
  assert np.isnan(pmap.data[cosc < 0.0]).all()


def test_missing_source_pixels_stay_local(aia_map):
  data = aia_map.data.copy()
  data[60:68, 60:68] = np.nan  # a hole near disk centre
  holed = sunpy.map.Map(data, aia_map.meta)
  pmap = patches.extract_patch(holed)
  nan = np.isnan(pmap.data)
  assert nan.any()
  rows, cols = np.nonzero(nan)
  # 8 source px of 19.2" ~ 10 deg across; the NaN area is comparably small.
  assert np.ptp(rows) < 150 and np.ptp(cols) < 150
  assert nan.mean() < 0.05


def test_register_route_matches_wcs_route(aia_patch):
  registered = calibrate.load_calibrated(AIA_FILE, wavelength=None,
                                         register=True)
  other = patches.extract_patch(registered).data
  ok = np.isfinite(aia_patch.data) & np.isfinite(other)
  assert ok.mean() > 0.99
  a, b = aia_patch.data[ok], other[ok]
  assert np.corrcoef(a, b)[0, 1] > 0.999
  # Two cubic interpolations vs one: differences of interpolation size.
  assert np.median(np.abs(a - b)) < 0.01 * np.median(np.abs(a))


def test_patch_file_roundtrip_and_synthetic_flag(tmp_path):
  src = aia_variant(tmp_path, updates={'SYNTHETIC': True})
  smap = calibrate.load_calibrated(src, wavelength=None)
  pmap = patches.extract_patch(smap)
  out = tmp_path / 'p.fits'
  fitsio.write_fits_atomic(out, pmap.data, patches.patch_header(pmap))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    back = sunpy.map.Map(out)
  np.testing.assert_array_equal(back.data, pmap.data)
  pix = ([0, 123.4, 899], [0, 456.7, 799])
  w1, w2 = pmap.wcs.pixel_to_world(*pix), back.wcs.pixel_to_world(*pix)
  np.testing.assert_allclose(w1.lon.deg, w2.lon.deg, atol=1e-10)
  np.testing.assert_allclose(w1.lat.deg, w2.lat.deg, atol=1e-10)
  header = fits.getheader(out)
  assert header['SYNTHETIC'] is True
  assert any('SYNTHETIC' in str(h) for h in header['HISTORY'])
  assert header['SRC_FILE'] == 'aia.fits' and header['BUNIT'] == 'DN/s'
  # A patch given where a full disk is expected.
  with pytest.raises(DataError, match='heliographic patch'):
    fitsio.read_sdo_header(out, wavelength=None)


def test_cli_one_line_error_and_no_output(tmp_path, capsys):
  out = tmp_path / 'out.fits'
  rc = prepare.main(['patch', AIA_FILE, '--out', str(out)])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and not out.exists()
  assert err == ['error: aia_171_level1.fits: AIA WAVELNTH is 171, '
                 'expected 304']


def test_cli_garbage_in_a_subprocess(tmp_path):
  bad = tmp_path / 'garbage.fits'
  bad.write_bytes(b'not fits at all' * 100)
  out = tmp_path / 'out.fits'
  proc = subprocess.run(
      [sys.executable, '-m', 'data_prep.prepare', 'patch', str(bad),
       '--out', str(out)], capture_output=True, text=True, check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      'error: garbage.fits: not a FITS file (no SIMPLE card at the start)']
  assert not out.exists() and list(tmp_path.iterdir()) == [bad]
