"""The SYNTHETIC Sun seen from any spacecraft (data_prep.synthetic): each
imager's file opens as its own sunpy map, sits where its observer is, and
comes with the ground-truth LOS magnetogram that observer sees."""
import math
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from sunpy.coordinates import HeliographicStonyhurst
from sunpy.map.sources import AIAMap, EITMap, EUIMap, EUVIMap, HMIMap

from data_prep import synthesize, synthetic
from data_prep.synthetic import observers

SEED = 0
WHEN = '2012-06-01T00:00:00'
MAP_CLASSES = {'stereo-a': EUVIMap, 'stereo-b': EUVIMap, 'soho': EITMap,
               'solo': EUIMap}


def _map(path):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(path)


@pytest.fixture(scope='module')
def tree(tmp_path_factory):
  out = tmp_path_factory.mktemp('views')
  paths = {}
  for name in synthetic.OBSERVERS:
    when = '2022-03-20T00:00:00' if name == 'solo' else WHEN
    paths[name] = synthesize.synthesize_frame(when, 128, SEED, out, name,
                                              truth=True)
  return paths


@pytest.mark.parametrize('name', synthetic.OBSERVERS)
def test_each_imager_opens_as_its_map_at_its_observer(tree, name):
  paths = tree[name]
  euv = _map(paths[0])
  assert isinstance(euv, MAP_CLASSES.get(name, AIAMap))
  assert euv.wavelength == 304 * u.angstrom
  assert euv.meta['synthetic'] is True
  expected = observers.observer_for(name, euv.date)
  coord = euv.observer_coordinate.transform_to(
      HeliographicStonyhurst(obstime=euv.date))
  assert coord.lon.to_value(u.deg) == pytest.approx(expected.hgln, abs=0.01)
  assert coord.lat.to_value(u.deg) == pytest.approx(expected.hglt, abs=0.01)
  assert coord.radius.to_value(u.m) == pytest.approx(expected.dsun, rel=1e-6)
  if name == 'sdo':
    assert isinstance(_map(paths[1]), HMIMap)
  else:
    assert euv.meta['obs_appr'] is True  # an approximate position
  truth = _map(paths[-1])
  assert truth.meta['content'] == 'GROUND-TRUTH LOS MAGNETOGRAM'
  assert truth.meta['synthetic'] is True and truth.unit == u.G
  assert 'truth' in paths[-1].name and paths[-1].parts[-6] == 'truth'
  assert truth.observer_coordinate.lon.to_value(u.deg) == pytest.approx(
      coord.lon.to_value(u.deg), abs=0.01)
  on = np.isfinite(truth.data)
  assert 0.03 < on.mean() < 0.8  # FSI's wide field shows a small Sun
  assert np.nanmax(np.abs(truth.data)) > 30  # active regions, even binned


def test_spacecraft_positions_follow_their_approximations():
  t = '2012-01-01T00:00:00'
  a, b = observers.observer_for('stereo-a', t), observers.observer_for(
      'stereo-b', t)
  assert 100 < a.hgln < 118 and -118 < b.hgln < -100  # 2012: ~+108, ~-110
  assert a.dsun < b.dsun
  soho = observers.observer_for('soho', t)
  assert soho.hgln == 0.0 and 0.97 < soho.dsun / observers.AU_M < 0.99
  solo = observers.solo_at(observers.SOLO_ANCHOR['time'])
  assert solo.hgln == pytest.approx(125.257, abs=0.05)  # in the ecliptic
  assert solo.dsun / observers.AU_M == pytest.approx(0.9848, abs=1e-3)
  distances = [observers.solo_at(f'2022-{m:02d}-01').dsun / observers.AU_M
               for m in range(1, 13)]
  assert 0.29 < min(distances) < 0.4 and 0.85 < max(distances) <= 1.001


def test_a_far_side_region_appears_where_the_euvi_wcs_says():
  """A region at Stonyhurst +110 deg: on the far side for SDO, near
  STEREO-A's disk centre in 2012-06."""
  view = synthetic.make_view('stereo-a', WHEN, 256, SEED, truth=True,
                             noise=False)
  offset = view.observer.carrington_offset
  kernels = synthetic.Kernels(np.array([(110.0 + offset) % 360.0]),
                              np.array([15.0]), np.array([1.0]),
                              np.array([1500.0]))
  days = synthetic.model_days(view.header['DATE-AVG'])
  surface = synthetic.surface_at(SEED, days, synthetic.Grid(0.125), kernels,
                                 network=False)
  rendered = synthetic.render.render_view(
      surface, observers.rounded(view.observer), view.header, (256, 256))
  smap = sunpy.map.Map(rendered.los, view.truth_header)
  px, py = (v.to_value(u.pix) for v in smap.world_to_pixel(SkyCoord(
      110 * u.deg, 15 * u.deg, frame=HeliographicStonyhurst(
          obstime=smap.reference_date, rsun=smap.rsun_meters))))
  b = np.nan_to_num(rendered.los)
  w = np.where(b > 0.5 * b.max(), b, 0.0)
  yy, xx = np.indices(b.shape)
  cx, cy = (xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()
  assert math.hypot(cx - px, cy - py) < 0.6


def test_sdo_truth_is_hmi_without_noise(tree):
  aia_path, hmi_path, truth_path = tree['sdo']
  clean = synthetic.make_pair(WHEN, 128, SEED, noise=False)
  with fits.open(truth_path) as hdul:
    np.testing.assert_array_equal(hdul[0].data, clean.hmi_data)
  hmi = _map(hmi_path)
  diff = (hmi.data - clean.hmi_data)[np.isfinite(hmi.data)]
  # HMI's noise, averaged down to this pixel scale
  expected = 6.0 * 0.504 / hmi.meta['cdelt1']
  assert np.std(diff) == pytest.approx(expected, rel=0.3)


def test_two_observers_see_the_same_field_where_both_see_it():
  """SDO and STEREO-A (at ~+115 deg) both see Stonyhurst lon ~+57 at about
  the same angle (mu), so their noiseless LOS fields agree there: one Sun."""
  pair = synthetic.make_pair(WHEN, 256, SEED, noise=False)
  view = synthetic.make_view('stereo-a', WHEN, 256, SEED, noise=False)
  values = []
  for data, header in ((pair.hmi_data, pair.hmi_header),
                       (view.truth, view.truth_header)):
    smap = sunpy.map.Map(data, header)
    lon = np.arange(45.0, 70.0, 2.5)
    lat = np.arange(-20.0, 25.0, 5.0)
    lon, lat = np.meshgrid(lon, lat)
    coord = SkyCoord(lon * u.deg, lat * u.deg, frame=HeliographicStonyhurst(
        obstime=smap.reference_date, rsun=smap.rsun_meters))
    px, py = (np.round(v.to_value(u.pix)).astype(int)
              for v in smap.world_to_pixel(coord))
    values.append(data[py, px])
  a, b = (np.asarray(v, np.float64) for v in values)
  ok = np.isfinite(a) & np.isfinite(b)
  assert ok.sum() > 20
  assert np.corrcoef(a[ok], b[ok])[0, 1] > 0.5
