"""Any 304 A imager: detection, calibration to the AIA scale, placement.

Real headers: sunpy's test data holds the real header-only files of an
EUI/FSI 304 image (2020-10-21, observer at Stonyhurst longitude +125.26)
and an EIT 304 image (2007-06-01); the tests fill them with a made disk
(limb-brightened, with one bright blob at a known heliographic position)
and check that each is read, calibrated and placed. Synthetic views of
the same Sun from every observer check the calibration's recovery of each
imager's counts.
"""
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.data.test
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.coordinates import frames

from data_prep import calibrate, fitsio, imagers, patches, synthesize
from data_prep.fitsio import DataError

FSI_HEADER = 'solo_L1_eui-fsi304-image_20201021T145510206_V03.header'
EIT_HEADER = 'EIT_header/SOHO_EIT_304_20070601T121937_L1.header'
EIT_195_HEADER = 'EIT_header/SOHO_EIT_195_20070601T121346_L1.header'


def _real_header(name):
  path = sunpy.data.test.get_test_filepath(name)
  header = fits.Header.fromtextfile(str(path))
  for key in ('BLANK', 'BSCALE', 'BZERO', 'BITPIX', 'CHECKSUM', 'DATASUM'):
    header.remove(key, ignore_missing=True)
  return header


def _blank_map(header):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    shape = (header['NAXIS2'], header['NAXIS1'])
    return sunpy.map.Map(np.zeros(shape, np.float32), header)


def _fill(header, blob, level):
  """A disk of quiet-Sun level `level` (limb-brightened), zero off the disk,
  with a blob 30 x brighter at Stonyhurst `blob` = (lon, lat) deg."""
  smap = _blank_map(header)
  mu = calibrate.mu_of_pixels(smap)
  data = np.where(np.isfinite(mu), level * (0.8 + 0.4 * (1 - np.nan_to_num(
      mu))), 0.0)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    point = SkyCoord(blob[0] * u.deg, blob[1] * u.deg,
                     frame=frames.HeliographicStonyhurst(
                         obstime=smap.reference_date, rsun=smap.rsun_meters))
    x, y = smap.wcs.world_to_pixel(point)
  yy, xx = np.mgrid[0:data.shape[0], 0:data.shape[1]]
  data = data + 30 * level * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4.0)
  return data.astype(np.float32)


def _write(tmp_path, name, header, data):
  path = tmp_path / name
  fits.PrimaryHDU(data, header).writeto(path)
  return path


def _blob_position(pmap):
  """(lon, lat) of the brightest patch pixels' centroid."""
  data = np.nan_to_num(pmap.data)
  top = data > 0.5 * data.max()
  yy, xx = np.nonzero(top)
  w = data[top]
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    world = pmap.wcs.pixel_to_world(np.average(xx, weights=w),
                                    np.average(yy, weights=w))
  return world.lon.wrap_at(180 * u.deg).deg, world.lat.deg


@pytest.mark.parametrize('name, kind, map_class, blob, centre', [
    (FSI_HEADER, 'fsi', 'EUIMap', (140.0, 20.0), 125.0),
    (EIT_HEADER, 'eit', 'EITL1Map', (-20.0, -15.0), 0.0),
])
def test_real_header_is_read_calibrated_and_placed(tmp_path, name, kind,
                                                    map_class, blob, centre):
  header = _real_header(name)
  path = _write(tmp_path, f'{kind}.fits', header, _fill(header, blob, 120.0))
  assert imagers.detect(header) == kind
  smap = calibrate.load_304(path)
  assert type(smap).__name__ == map_class
  cal = smap.meta['magjax_cal']
  assert cal['SRC_INST'] == imagers.IMAGERS[kind].name
  # the quiet Sun lands on the AIA reference; the gain says by how much
  assert calibrate.quiet_sun_level(smap) == pytest.approx(
      calibrate.AIA_QUIET_SUN_DN_S, rel=1e-3)
  assert cal['CALQSREF'] == calibrate.AIA_QUIET_SUN_DN_S
  assert cal['CALDFAC'] == pytest.approx(
      (header['DSUN_OBS'] / imagers.AU_M) ** 2)
  steps = ' '.join(smap.meta['magjax_steps'])
  if kind == 'eit':  # EIT level 1 is already DN/s (BUNIT), not divided
    assert 'already DN/s' in steps and cal['CALEXPT'] == header['XPOSURE']
  else:
    assert 'divided by XPOSURE 6 s' in steps
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    pmap = patches.extract_patch(smap)
  # centred on the observer's own central meridian
  assert pmap.meta['crval1'] == pytest.approx(centre)
  assert pmap.meta['hgln_obs'] == pytest.approx(
      smap.observer_coordinate.transform_to(
          frames.HeliographicStonyhurst(obstime=smap.reference_date)).lon.deg)
  lon, lat = _blob_position(pmap)
  assert abs(lon - blob[0]) < 1.0 and abs(lat - blob[1]) < 1.0, (lon, lat)
  assert pmap.meta['calgain'] == pytest.approx(cal['CALGAIN'])


def test_fsi_real_header_observer_is_at_plus_125(tmp_path):
  smap = _blank_map(_real_header(FSI_HEADER))
  lon = smap.observer_coordinate.transform_to(
      frames.HeliographicStonyhurst(obstime=smap.reference_date)).lon.deg
  assert lon == pytest.approx(125.26, abs=0.01)


@pytest.fixture(scope='module')
def views(tmp_path_factory):
  root = tmp_path_factory.mktemp('views')
  out = {}
  for observer in ('sdo', 'stereo-a', 'stereo-b', 'soho', 'solo'):
    paths = synthesize.synthesize_frame('2012-11-20T00:00:00', 256, 0,
                                        str(root), observer)
    out[observer] = paths[0]
  return out


@pytest.mark.parametrize('observer, kind, map_class', [
    ('sdo', 'aia', 'AIAMap'), ('stereo-a', 'euvi', 'EUVIMap'),
    ('stereo-b', 'euvi', 'EUVIMap'), ('soho', 'eit', 'EITL1Map'),
    ('solo', 'fsi', 'EUIMap')])
def test_every_synthetic_imager_is_brought_to_the_aia_scale(
    views, observer, kind, map_class):
  header = fitsio.read_header(views[observer],
                              lambda h: imagers.validate('x', h))[1]
  assert imagers.detect(header) == kind
  raw = calibrate.load_304(views[observer], 'none')
  cal = calibrate.load_304(views[observer])
  assert type(cal).__name__ == map_class
  aia = calibrate.load_304(views['sdo'], 'none')
  ratio = calibrate.quiet_sun_level(raw) / calibrate.quiet_sun_level(aia)
  if kind == 'aia':  # auto: AIA keeps its training scale (per second only)
    assert 'CALGAIN' not in cal.meta['magjax_cal']
    np.testing.assert_array_equal(cal.data, raw.data)
  else:
    # the counts differ by the imager's factor (EUVI 7.27 / AIA's
    # degradation), the calibrated quiet Sun sits on the reference
    assert abs(np.log(ratio)) > np.log(2.0)
    assert calibrate.quiet_sun_level(cal) == pytest.approx(
        calibrate.AIA_QUIET_SUN_DN_S, rel=1e-3)


def test_quiet_sun_mode_also_scales_aia(views):
  cal = calibrate.load_304(views['sdo'], 'quiet-sun', reference=50.0)
  assert calibrate.quiet_sun_level(cal) == pytest.approx(50.0, rel=1e-3)
  assert cal.meta['magjax_cal']['CALMODE'] == 'quiet-sun'


def test_mu_is_one_at_disk_centre_and_falls_to_the_limb():
  smap = _blank_map(_real_header(EIT_HEADER))
  mu = calibrate.mu_of_pixels(smap)
  assert np.nanmax(mu) == pytest.approx(1.0, abs=1e-4)
  assert np.nanmin(mu) < 0.1
  # the disk's radius in pixels is RSUN_OBS / CDELT
  radius = smap.meta['rsun_obs'] / smap.meta['cdelt1']
  area = np.isfinite(mu).sum()
  assert area == pytest.approx(np.pi * radius ** 2, rel=0.01)


def _bad(tmp_path, header, fragment, data=None):
  shape = (header['NAXIS2'], header['NAXIS1'])
  data = np.full(shape, 10.0, np.float32) if data is None else data
  path = _write(tmp_path, 'bad.fits', header, data)
  with pytest.raises(DataError, match=fragment) as info:
    calibrate.load_304(path)
  assert '\n' not in str(info.value)


def test_another_wavelength_is_refused(tmp_path):
  _bad(tmp_path, _real_header(EIT_195_HEADER), 'WAVELNTH is 195 A, expected 304')


def test_a_header_without_observer_is_refused(tmp_path):
  header = _real_header(FSI_HEADER)
  for key in list(header):
    if key.endswith('_OBS') and key[:2] in ('HG', 'CR', 'HA', 'HE', 'HC'):
      del header[key]
  _bad(tmp_path, header, 'lacks the observer position')


def test_an_image_too_small_for_a_patch_is_refused(tmp_path):
  header = _real_header(EIT_HEADER)
  header['NAXIS1'] = header['NAXIS2'] = 32
  header['CRPIX1'] = header['CRPIX2'] = 16.5
  header['CDELT1'] = header['CDELT2'] = 2.627 * 32
  _bad(tmp_path, header, 'too small to hold a patch')


def test_an_unknown_instrument_is_refused(tmp_path):
  header = _real_header(FSI_HEADER)
  header['DETECTOR'] = 'HRI_EUV'
  _bad(tmp_path, header, 'not a 304 A image of SDO/AIA')


def test_a_zero_exposure_is_refused(tmp_path):
  header = _real_header(FSI_HEADER)
  header['XPOSURE'] = 0.0
  _bad(tmp_path, header, r'XPOSURE 0 s is not in \(0, 300\]')


def test_a_zero_filled_image_is_refused_as_missing(tmp_path):
  header = _real_header(FSI_HEADER)
  shape = (header['NAXIS2'], header['NAXIS1'])
  _bad(tmp_path, header, '100.0 % of the solar disk has no data',
       np.zeros(shape, np.float32))


def test_a_dark_disk_cannot_be_calibrated(tmp_path):
  header = _real_header(FSI_HEADER)
  shape = (header['NAXIS2'], header['NAXIS1'])
  dark = np.random.default_rng(0).uniform(-10, -5, shape).astype(np.float32)
  _bad(tmp_path, header, 'no positive signal', dark)


def test_fsi_level_2_in_dn_per_second_is_not_divided_again(tmp_path):
  header = _real_header(FSI_HEADER)
  header['LEVEL'] = 'L2'
  header['BUNIT'] = 'DN/s'
  level1 = _fill(header, (140.0, 20.0), 120.0)
  path = _write(tmp_path, 'fsi_l2.fits', header, level1)
  smap = calibrate.load_304(path, 'none')
  assert 'already DN/s' in ' '.join(smap.meta['magjax_steps'])
  np.testing.assert_allclose(smap.data, level1)
