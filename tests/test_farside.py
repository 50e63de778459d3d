"""predict from a far-side imager: the patch on the observer's central
meridian, the observer in the output WCS, --frame disk, and a bright region
at a known far-side position coming out of predict where it is."""
import os
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.coordinates import frames

import eval_helpers
from data_prep import synthesize
from magjax import predict

STEP = 3


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('farside')
  workdir, _ = eval_helpers.predict_workdir(root, STEP)
  euvi = synthesize.synthesize_frame('2012-11-20T00:00:00', 256, 0,
                                     str(root / 'raw'), 'stereo-a')[0]
  return {'root': root, 'workdir': workdir, 'euvi': str(euvi)}


def _map(path):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(path)


def _observer_lon(smap):
  return smap.observer_coordinate.transform_to(
      frames.HeliographicStonyhurst(obstime=smap.reference_date)).lon.deg


def _predict(setup, path, out, *extra):
  assert predict.main(['--workdir', setup['workdir'], '--input', str(path),
                       '--output', str(out), *extra]) == 0


def test_stereo_a_patch_is_centred_on_its_longitude(setup):
  out = setup['root'] / 'euvi_a.fits'
  _predict(setup, setup['euvi'], out, '--frame', 'disk')
  source = _map(setup['euvi'])
  lon = _observer_lon(source)
  assert 100 < lon < 140  # STEREO-A in late 2012: the far side
  result = _map(out)
  assert result.center.lon.wrap_at(180 * u.deg).deg == round(lon)
  # the observer travels with the output, so sunpy places it
  assert _observer_lon(result) == pytest.approx(lon, abs=1e-6)
  header = fits.getheader(out)
  for key in ('HGLN_OBS', 'HGLT_OBS', 'DSUN_OBS', 'DATE-OBS'):
    assert key in header, key
  assert header['SRC_INST'] == 'STEREO-A/EUVI 304'
  assert header['CALMODE'] == 'auto' and header['CALGAIN'] > 0
  history = '\n'.join(header['HISTORY'])
  assert 'quiet-Sun gain' in history and 'SYNTHETIC' in history
  assert np.isfinite(result.data).mean() > 0.9


def test_frame_disk_writes_the_input_frame_with_nan_elsewhere(setup):
  out = setup['root'] / 'euvi_a.fits'
  if not out.exists():
    _predict(setup, setup['euvi'], out, '--frame', 'disk')
  disk = _map(setup['root'] / 'euvi_a_disk.fits')
  source, patch = _map(setup['euvi']), _map(out)
  assert disk.data.shape == source.data.shape
  assert disk.coordinate_frame.name == 'helioprojective'
  assert _observer_lon(disk) == pytest.approx(_observer_lon(source), abs=1e-6)
  assert disk.reference_coordinate.separation(
      source.reference_coordinate).arcsec < 0.01
  finite = np.isfinite(disk.data)
  assert 0.1 < finite.mean() < 0.6  # the patch's part of the disk only
  assert fits.getheader(setup['root'] / 'euvi_a_disk.fits')['BUNIT'] == 'G'
  # the patch centre's value, found again in the disk image
  centre = patch.center
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    x, y = disk.wcs.world_to_pixel(centre.transform_to(disk.coordinate_frame))
    px, py = patch.wcs.world_to_pixel(centre)
  value = disk.data[int(round(float(y))), int(round(float(x)))]
  near = patch.data[int(py) - 2:int(py) + 3, int(px) - 2:int(px) + 3]
  assert np.nanmin(near) - 1 <= value <= np.nanmax(near) + 1


def test_a_far_side_bright_region_comes_out_where_it_is(setup):
  """A bright region planted at a known Stonyhurst position behind the
  Earth's limb changes predict's output there, within 1 degree."""
  source = _map(setup['euvi'])
  lon0 = _observer_lon(source)
  target = (lon0 + 12.0, 18.0)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    point = SkyCoord(target[0] * u.deg, target[1] * u.deg,
                     frame=frames.HeliographicStonyhurst(
                         obstime=source.reference_date,
                         rsun=source.rsun_meters))
    x, y = source.wcs.world_to_pixel(point)
  with fits.open(setup['euvi']) as hdul:
    header, data = hdul[0].header.copy(), hdul[0].data.astype(np.float32)
  yy, xx = np.mgrid[0:data.shape[0], 0:data.shape[1]]
  blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.0 ** 2))
  data = data + 20 * np.nanmedian(data[data > 0]) * blob
  planted = setup['root'] / 'planted.fits'
  fits.PrimaryHDU(data, header).writeto(planted)
  base, bright = setup['root'] / 'base.fits', setup['root'] / 'bright.fits'
  # calibration off: the planted flux must not move the gain
  _predict(setup, setup['euvi'], base, '--calibration', 'none')
  _predict(setup, planted, bright, '--calibration', 'none')
  diff = np.abs(np.nan_to_num(_map(bright).data - _map(base).data))
  assert diff.max() > 0
  top = diff >= 0.5 * diff.max()
  rows, cols = np.nonzero(top)
  weights = diff[top]
  result = _map(bright)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    world = result.wcs.pixel_to_world(np.average(cols, weights=weights),
                                      np.average(rows, weights=weights))
  lon = world.lon.wrap_at(180 * u.deg).deg
  assert abs(lon - target[0]) < 1.0 and abs(world.lat.deg - target[1]) < 1.0


def test_frame_disk_needs_a_full_disk_input(setup, tmp_path, capsys):
  patch = tmp_path / 'p.fits'
  out = tmp_path / 'o.fits'
  _predict(setup, setup['euvi'], patch)
  # a generated file is a patch, but no AIA one
  assert predict.main(['--workdir', setup['workdir'], '--input', str(patch),
                       '--output', str(out), '--frame', 'disk']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: '), err
  assert not out.exists() and not (tmp_path / 'o_disk.fits').exists()
  assert os.listdir(tmp_path) == ['p.fits']


@pytest.mark.slow  # ~20 s: five views synthesised and predicted twice
def test_farside_validation_scores_every_view_with_and_without_calibration(
    setup):
  from tools import farside_validation
  observers = ('sdo', 'stereo-a')
  result = farside_validation.run(setup['workdir'], ['2012-11-20'], 128,
                                  log=lambda *_: None, observers=observers)
  rows = result['rows']
  assert len(rows) == len(observers) * 2
  by = {(r['observer'], r['calibration']): r for r in rows}
  for observer in observers:
    auto, none = by[observer, 'auto'], by[observer, 'none']
    assert auto['valid'] > 1000 and np.isfinite(auto['rmse'])
    # each view's patch sits on its observer's meridian
    assert abs(auto['patch_lon'] - auto['observer_lon']) <= 0.5
    if observer == 'sdo':
      assert auto['rmse'] == none['rmse']  # AIA: the training scale
    else:
      assert auto['gain'] != 1.0 and auto['rmse'] != none['rmse']
  assert '| STEREO-A/EUVI | auto |' in farside_validation.table(result)
