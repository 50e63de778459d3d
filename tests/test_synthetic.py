"""Tests of the SYNTHETIC SDO generator (data_prep.synthetic / synthesize)."""
import datetime as dt
import math
import re
import warnings

import astropy.units as u
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.time import Time
from scipy import ndimage, stats
from sunpy.coordinates import HeliographicStonyhurst
from sunpy.map.sources import AIAMap, HMIMap

from data_prep import synthesize, synthetic

SEED = 0
WHEN = dt.datetime(2012, 5, 2, 6, 0, 0)


def _map(path):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(path)


def _map_from(header, data):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(data, header.copy())


@pytest.fixture(scope='module')
def pair_files(tmp_path_factory):
  out = tmp_path_factory.mktemp('raw')
  return synthesize.synthesize_pair(WHEN, 128, SEED, out)


# ------------------------------------------------------------ file format

def test_files_open_as_sdo_maps_with_required_keywords(pair_files):
  aia_path, hmi_path = pair_files
  assert aia_path.name == 'aia_304_20120502T060000.fits'
  assert aia_path.parts[-5:-1] == ('aia', '2012', '05', '02')
  assert hmi_path.name == 'hmi_m_20120502T060000.fits'
  aia, hmi = _map(aia_path), _map(hmi_path)
  assert isinstance(aia, AIAMap) and isinstance(hmi, HMIMap)
  assert aia.wavelength == 304 * u.angstrom
  assert aia.processing_level == 1.0
  assert 2.0 <= aia.exposure_time.to_value(u.s) <= 3.0
  assert aia.scale[0].to_value(u.arcsec / u.pix) == pytest.approx(
      0.6 * 4096 / 128)
  assert hmi.scale[0].to_value(u.arcsec / u.pix) == pytest.approx(
      0.504 * 4096 / 128)
  assert abs(aia.meta['crota2']) <= 0.1
  assert abs(hmi.meta['crota2'] - 180.0) < 0.2
  assert hmi.unit == u.Unit('Mx/cm2')
  assert hmi.meta['content'] == 'MAGNETOGRAM'
  assert hmi.meta['quality'] == 0 or isinstance(hmi.meta['quality'], int)
  for key in ('telescop', 'instrume', 'date-obs', 't_obs', 'rsun_ref',
              'rsun_obs', 'dsun_obs', 'crln_obs', 'crlt_obs', 'cdelt1',
              'crpix1', 'crpix2'):
    assert key in aia.meta and key in hmi.meta, key
  assert 'hgln_obs' in aia.meta and 'hglt_obs' in aia.meta
  assert aia.meta['telescop'] == 'SDO/AIA' and aia.meta['instrume'] == 'AIA_4'
  assert hmi.meta['telescop'] == 'SDO/HMI'
  assert hmi.meta['instrume'] == 'HMI_FRONT2'
  # both instruments see the same observer (AIA from HGLN/HGLT, HMI from
  # CRLN/CRLT): a few seconds apart, so within 1e-4 deg
  assert aia.observer_coordinate.lon.to_value(u.deg) == pytest.approx(
      hmi.observer_coordinate.lon.to_value(u.deg), abs=1e-4)
  assert aia.observer_coordinate.lat.to_value(u.deg) == pytest.approx(
      hmi.observer_coordinate.lat.to_value(u.deg), abs=1e-4)


@pytest.mark.parametrize('when', ['2012-03-07T00:00:00', '2012-09-08T00:00:00',
                                  '2012-06-05T12:00:00'])
def test_observer_follows_sunpy_ephemeris(when):
  from sunpy.coordinates import sun
  pair = synthetic.make_pair(when, 64, SEED)
  a, h = pair.aia_header, pair.hmi_header
  t = Time(a['T_OBS'].rstrip('Z'))
  assert a['HGLT_OBS'] == pytest.approx(sun.B0(t).to_value(u.deg), abs=0.01)
  assert a['CRLN_OBS'] == pytest.approx(sun.L0(t).to_value(u.deg), abs=0.02)
  assert abs(a['HGLN_OBS']) < 0.02  # SDO's geosynchronous wobble
  assert a['RSUN_OBS'] == pytest.approx(
      sun.angular_radius(t).to_value(u.arcsec), rel=1e-3)
  assert 'HGLN_OBS' not in h  # as in some real HMI files: from CRLN/CRLT
  assert h['CRLT_OBS'] == pytest.approx(a['CRLT_OBS'], abs=1e-3)
  # B0 swings through the year: about -7.2 deg in March, +7.2 in September
  expected = {'03': -7.2, '09': 7.2, '06': 0.0}[when[5:7]]
  assert a['HGLT_OBS'] == pytest.approx(expected, abs=0.6)


def test_every_header_says_synthetic_with_generator_and_seed(pair_files):
  for path in pair_files:
    with fits.open(path) as hdul:
      assert len(hdul) == 2
      for hdu in hdul:
        assert hdu.header['SYNTHETIC'] is True
        history = ' '.join(str(v) for v in hdu.header['HISTORY'])
        assert 'SYNTHETIC' in history and 'seed 0' in history
        assert synthetic.GENERATOR_VERSION in history
      assert 'DATE' not in hdul[1].header  # no wall-clock time in files
      assert 'CHECKSUM' not in hdul[1].header


def test_aia_counts_are_int16_and_hmi_is_nan_off_disk(pair_files):
  aia, hmi = (_map(p) for p in pair_files)
  with fits.open(pair_files[0]) as hdul:
    assert hdul[1].data.dtype == np.int16
  assert aia.data.min() >= 0
  finite = np.isfinite(hmi.data)
  assert 0.3 < finite.mean() < 0.9
  # every NaN is off the disk, every finite pixel on it
  rsun_px = hmi.rsun_obs.to_value(u.arcsec) / hmi.scale[0].to_value(
      u.arcsec / u.pix)
  cx, cy = (v.to_value(u.pix) for v in hmi.world_to_pixel(
      SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=hmi.coordinate_frame)))
  yy, xx = np.indices(hmi.data.shape)
  r = np.hypot(xx - cx, yy - cy)
  assert finite[r < rsun_px - 1.0].all()
  assert not finite[r > rsun_px + 1.0].any()
  assert np.nanmax(np.abs(hmi.data)) < 4000


def test_hmi_times_are_tai_and_consistent_with_date_obs():
  for when in ('2012-03-01T00:00:00', '2012-09-15T12:00:00'):
    pair = synthetic.make_pair(when, 64, SEED)
    h, a = pair.hmi_header, pair.aia_header
    assert h['T_OBS'].endswith('_TAI')
    t_obs = Time(h['T_OBS'].replace('_TAI', '').replace('.', '-', 2)
                 .replace('_', 'T'), scale='tai')
    date_obs = Time(h['DATE-OBS'], scale='utc')
    gap = (t_obs - date_obs).to_value(u.s)
    assert 11.0 <= gap <= 33.0
    leap = 34.0 if when < '2012-07-01' else 35.0
    naive = (Time(t_obs.iso, scale='utc') - date_obs).to_value(u.s)
    assert naive == pytest.approx(leap + gap, abs=0.01)
    assert 45.0 <= naive - (leap - 34.0) <= 67.0
    a_obs = Time(a['T_OBS'].rstrip('Z'), scale='utc')
    assert abs((t_obs - a_obs).to_value(u.s)) <= 6.5
    assert (a_obs - Time(a['DATE-OBS'])).to_value(u.s) == pytest.approx(
        a['EXPTIME'] / 2, abs=0.02)


def test_quality_flags_are_reproducible_and_rare():
  times = [Time('2012-01-01') + k * 6 * u.hour for k in range(1000)]
  q = [synthetic.hmi_quality(t, SEED, 0.02) for t in times]
  assert q == [synthetic.hmi_quality(t, SEED, 0.02) for t in times]
  bad = sum(v != 0 for v in q)
  assert 5 <= bad <= 40
  assert all(v in (0,) + synthetic.HMI_BAD_QUALITY for v in q)
  assert not any(synthetic.hmi_quality(t, SEED, 0.0) for t in times[:200])


# ----------------------------------------------------- determinism / CLI

def test_cli_is_deterministic_range_independent_and_resumable(tmp_path,
                                                              capsys):
  out1, out2 = tmp_path / 'a', tmp_path / 'b'
  rc = synthesize.main(['--out', str(out1), '--start', '2012-05-01T18:00',
                        '--end', '2012-05-02T06:00', '--every', '12h',
                        '--size', '96', '--seed', '0'])
  assert rc == 0
  files = sorted(out1.rglob('*.fits'))
  assert len(files) == 4
  assert not list(out1.rglob('*.tmp'))
  # the same timestamp from another range / the Python API: same bytes
  synthesize.synthesize_pair('2012-05-02T06:00:00', 96, 0, out2)
  rc = synthesize.main(['--out', str(out2), '--start', '2012-05-01T18:00',
                        '--end', '2012-05-01T18:00', '--every', '1d',
                        '--size', '96', '--seed', '0'])
  assert rc == 0
  for f in files:
    assert f.read_bytes() == (out2 / f.relative_to(out1)).read_bytes()
  # a re-run skips complete pairs
  mtimes = [f.stat().st_mtime_ns for f in files]
  capsys.readouterr()
  assert synthesize.main(['--out', str(out1), '--start', '2012-05-01T18:00',
                          '--end', '2012-05-02T06:00', '--every', '12h',
                          '--size', '96']) == 0
  assert '0 written, 2 already present' in capsys.readouterr().out
  assert [f.stat().st_mtime_ns for f in files] == mtimes
  # another seed gives other content
  a3 = synthesize.synthesize_pair('2012-05-02T06:00:00', 96, 1,
                                  tmp_path / 'c')[0]
  assert a3.read_bytes() != (out1 / a3.relative_to(tmp_path / 'c')
                             ).read_bytes()


@pytest.mark.slow
def test_cli_process_pool_writes_the_same_bytes(tmp_path):
  args = ['--start', '2012-10-01', '--end', '2012-10-02', '--every', '1d',
          '--size', '64', '--seed', '3']
  assert synthesize.main(['--out', str(tmp_path / 'w1')] + args) == 0
  assert synthesize.main(['--out', str(tmp_path / 'w2'), '--workers', '2']
                         + args) == 0
  files = sorted((tmp_path / 'w1').rglob('*.fits'))
  assert len(files) == 4
  for f in files:
    assert f.read_bytes() == (tmp_path / 'w2' / f.relative_to(
        tmp_path / 'w1')).read_bytes()


def test_a_tree_of_another_generator_version_is_refused(tmp_path, capsys):
  """Resuming into files of the first synthetic Sun would mix two Suns."""
  args = ['--out', str(tmp_path), '--start', '2012-05-01', '--end',
          '2012-05-01', '--every', '1d', '--size', '64']
  assert synthesize.main(args) == 0
  aia = next(tmp_path.rglob('aia_304_*.fits'))
  with fits.open(aia) as hdul:
    for hdu in hdul:
      history = [str(h).replace(f'v{synthetic.GENERATOR_VERSION}', 'v1.0')
                 for h in hdu.header['HISTORY']]
      del hdu.header['HISTORY']
      for line in history:
        hdu.header['HISTORY'] = line
    hdul.writeto(aia, overwrite=True)
  capsys.readouterr()
  assert synthesize.main(args[:5] + ['2012-05-04', '--every', '1d',
                                     '--size', '64']) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and len(err.splitlines()) == 1
  assert 'generator v1.0' in err and 'make rebuild-data' in err


@pytest.mark.parametrize('args, message', [
    (['--every', '6 fortnights'], '--every'),
    (['--start', '2012-13-01'], 'ISO'),
    (['--end', '2011-01-01'], 'before'),
    (['--size', '10'], '--size'),
    (['--bad-fraction', '2'], '--bad-fraction'),
])
def test_cli_bad_arguments_give_one_line_errors(tmp_path, capsys, args,
                                                message):
  base = {'--out': str(tmp_path / 'o'), '--start': '2012-01-01',
          '--end': '2012-01-01', '--every': '1d', '--size': '64'}
  for k, v in zip(args[::2], args[1::2]):
    base[k] = v
  argv = [x for kv in base.items() for x in kv]
  assert synthesize.main(argv) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: ') and message in err
  assert len(err.splitlines()) == 1 and 'Traceback' not in err
  assert not list(tmp_path.rglob('*.fits'))


def test_every_parser():
  assert synthesize.parse_every('6h') == dt.timedelta(hours=6)
  assert synthesize.parse_every('3d') == dt.timedelta(days=3)
  assert synthesize.parse_every('12min') == dt.timedelta(minutes=12)
  ts = synthesize.timestamps(dt.datetime(2012, 1, 1),
                             synthesize.parse_when('2012-12-31', end=True),
                             synthesize.parse_every('3d'))
  assert len(ts) == 122 and ts[-1] == dt.datetime(2012, 12, 29)


# ------------------------------------------------------------- geometry

def _single_region_pair(hgs_lon, hgs_lat, when='2012-08-20T00:00:00',
                        size=256, sigma=1.0):
  """A pair with one Gaussian flux concentration at Stonyhurst (lon, lat)."""
  times = synthetic.frame_times(when, SEED)
  offset = synthetic.observer_at(times.aia_t_obs).carrington_offset
  kernels = synthetic.Kernels(np.array([(hgs_lon + offset) % 360.0]),
                              np.array([hgs_lat]), np.array([sigma]),
                              np.array([1500.0]))
  return synthetic.make_pair(when, size, SEED, kernels=kernels,
                             network=False, noise=False)


def _centroid(image, threshold):
  """Pixel (x, y) centroid of the pixels above `threshold` (weighted)."""
  w = np.where(np.nan_to_num(image) > threshold, np.nan_to_num(image), 0.0)
  yy, xx = np.indices(image.shape)
  return (xx * w).sum() / w.sum(), (yy * w).sum() / w.sum()


@pytest.mark.parametrize('lon, lat', [(25.0, 18.0), (-40.0, -12.0)])
def test_region_appears_where_the_wcs_says(lon, lat):
  pair = _single_region_pair(lon, lat)
  for header, data, tol in ((pair.hmi_header, pair.hmi_data, 0.5),
                            (pair.aia_header, pair.aia_data, 0.8)):
    smap = _map_from(header, data.astype(np.float64))
    coord = SkyCoord(lon * u.deg, lat * u.deg,
                     frame=HeliographicStonyhurst(
                         obstime=smap.reference_date, rsun=smap.rsun_meters))
    px, py = (v.to_value(u.pix) for v in smap.world_to_pixel(coord))
    img = np.abs(smap.data - (np.median(smap.data) if header is
                              pair.aia_header else 0.0))
    cx, cy = _centroid(img, 0.5 * np.nanmax(img))
    assert math.hypot(cx - px, cy - py) < tol, (header['TELESCOP'], cx, cy,
                                                px, py)
  # HMI is stored rotated by ~180 deg: north (lat > 0) is below centre
  hmi = _map_from(pair.hmi_header, pair.hmi_data)
  cx, cy = _centroid(np.abs(hmi.data), 750.0)
  assert (cy < hmi.data.shape[0] / 2) == (lat > 0)
  aia = _map_from(pair.aia_header, pair.aia_data.astype(float))
  cx, cy = _centroid(aia.data - np.median(aia.data), 0.5 * (
      aia.data.max() - np.median(aia.data)))
  assert (cy > aia.data.shape[0] / 2) == (lat > 0)


@pytest.mark.parametrize('crota2', [30.0, 179.93, -95.0])
def test_disk_geometry_agrees_with_sunpy_pixel_to_world(crota2):
  times = synthetic.frame_times('2012-04-01T00:00:00', SEED)
  obs = synthetic.observer_at(times.aia_t_obs)
  header = synthetic.aia_header(times, obs, 128, SEED)
  header['CROTA2'] = crota2
  header['CRPIX1'] += 7.3
  header['CRPIX2'] -= 4.1
  geo = synthetic.disk_geometry(header, synthetic.observers.rounded(obs),
                                (128, 128))
  smap = _map_from(header, np.zeros((128, 128)))
  rng = np.random.default_rng(1)
  ys, xs = rng.integers(0, 128, (2, 400))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    hgs = smap.pixel_to_world(xs * u.pix, ys * u.pix).transform_to(
        HeliographicStonyhurst(obstime=smap.reference_date))
  lat = hgs.lat.to_value(u.deg)
  on = np.isfinite(lat)
  assert 50 < on.sum() < 400
  np.testing.assert_array_equal(on, geo.on_disk[ys, xs])
  np.testing.assert_allclose(geo.lat[ys, xs][on], lat[on], atol=1e-4)
  lon = (hgs.lon.to_value(u.deg) + obs.carrington_offset) % 360
  dlon = (geo.lon_carr[ys, xs][on] - lon[on] + 180) % 360 - 180
  assert np.abs(dlon).max() < 1e-3


def test_hmi_is_line_of_sight_projection_of_radial_field():
  centre = _single_region_pair(0.0, 0.0).hmi_data
  limbward = _single_region_pair(60.0, 0.0).hmi_data
  mu = math.cos(math.radians(60.0))  # B0 ~ 7 deg changes this by < 1 %
  assert np.nanmax(limbward) / np.nanmax(centre) == pytest.approx(mu,
                                                                  rel=0.1)


def test_aia_limb_is_where_rsun_obs_says_with_limb_brightening():
  pair = synthetic.make_pair('2012-02-10T00:00:00', 256, SEED,
                             kernels=synthetic.Kernels.concat([]),
                             noise=False)
  aia = _map_from(pair.aia_header, pair.aia_data.astype(float))
  cx, cy = (v.to_value(u.pix) for v in aia.world_to_pixel(
      SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=aia.coordinate_frame)))
  rsun_px = aia.rsun_obs.to_value(u.arcsec) / aia.scale[0].to_value(
      u.arcsec / u.pix)
  yy, xx = np.indices(aia.data.shape)
  r = np.hypot(xx - cx, yy - cy)
  edges = np.arange(0.0, 1.3 * rsun_px, 1.0)
  idx = np.digitize(r.ravel(), edges)
  profile = np.array([aia.data.ravel()[idx == i].mean()
                      for i in range(1, len(edges))])
  peak_r = edges[np.argmax(profile)] + 0.5
  assert abs(peak_r - rsun_px) <= 1.5
  assert profile[int(0.95 * rsun_px)] > 1.25 * profile[int(0.3 * rsun_px)]
  assert profile[int(1.2 * rsun_px)] < 0.2 * profile[int(rsun_px) - 1]


# ------------------------------------------------------------- physics

def _year_regions():
  return [r for b in range(-1, 14) for r in synthetic.catalogue_block(SEED, b)
          if 0 <= r.t_emerge < 366]


def test_emergence_rate_and_activity_belts():
  regions = _year_regions()
  assert 300 <= len(regions) <= 440  # Poisson, 1 per day
  lats = np.array([r.lat for r in regions])
  assert (np.abs(lats) >= 5).all() and (np.abs(lats) <= 35).all()
  assert 0.4 < (lats > 0).mean() < 0.6


def test_regions_grow_then_decay_over_days_to_weeks():
  lifetimes = []
  for r in _year_regions()[::5]:
    t = r.t_emerge
    assert r.amplitude(t - 0.5) == 0.0
    assert 0 < r.amplitude(t + 0.3 * r.tau_grow) < r.amplitude(
        t + r.tau_grow) == pytest.approx(1.0)
    assert r.amplitude(t + r.tau_grow + r.tau_decay) == pytest.approx(
        math.exp(-1))
    days = np.arange(0.0, synthetic.MAX_LIFE_DAYS, 0.25)
    amp = np.array([r.amplitude(t + d) for d in days])
    lifetimes.append(days[amp > 0.1].max() - days[amp > 0.1].min())
    # the lobes separate while the region grows, the region spreads later
    early = synthetic.region_kernels(r, t + 0.2 * r.tau_grow)
    late = synthetic.region_kernels(r, t + r.tau_grow + 2 * r.tau_decay)
    assert late.sigma.max() > early.sigma.max()
  assert 1.0 < min(lifetimes) and max(lifetimes) < 110.0
  assert 7.0 < np.median(lifetimes) < 45.0


def test_hale_and_joy_laws_hold_in_rendered_flux():
  grid = synthetic.Grid(0.25)
  hale_ok = joy_ok = n = 0
  tilts, abs_lats = [], []
  for r in _year_regions()[::4]:
    if r.flux < 3e21:
      continue
    days = r.t_emerge + r.tau_grow  # fully developed
    br = synthetic.render_kernels(grid, synthetic.region_kernels(r, days))
    lon_c, lat_c = r.centre(days)
    rows = np.abs(grid.lat - lat_c) < 10
    dlon = (grid.lon - lon_c + 180) % 360 - 180
    cols = np.abs(dlon) < 15
    b = br[np.ix_(rows, cols)]
    lon2, lat2 = np.meshgrid(dlon[cols], grid.lat[rows])
    pos, neg = np.clip(b, 0, None), np.clip(-b, 0, None)
    lon_p, lon_n = (lon2 * pos).sum() / pos.sum(), (lon2 * neg).sum() / neg.sum()
    lat_p, lat_n = (lat2 * pos).sum() / pos.sum(), (lat2 * neg).sum() / neg.sum()
    leading_sign = 1.0 if lon_p > lon_n else -1.0
    hale_ok += leading_sign == (-1.0 if r.lat > 0 else 1.0)
    lead_lat, follow_lat = (lat_p, lat_n) if lon_p > lon_n else (lat_n, lat_p)
    joy_ok += abs(lead_lat) < abs(follow_lat)
    tilts.append(math.degrees(math.atan2(abs(follow_lat) - abs(lead_lat),
                                         abs(lon_p - lon_n))))
    abs_lats.append(abs(r.lat))
    n += 1
  assert n >= 20
  assert hale_ok / n >= 0.85  # a few per cent anti-Hale regions
  assert joy_ok / n >= 0.7
  assert stats.spearmanr(abs_lats, tilts).statistic > 0.2


def test_umbrae_reach_kilogauss_but_not_more_than_a_few():
  grid = synthetic.Grid(0.25)
  peaks = [np.abs(synthetic.render_kernels(
      grid, synthetic.active_kernels(SEED, d))).max() for d in (40, 140, 240)]
  assert max(peaks) > 1000 and max(peaks) < 3500


def test_regions_rotate_13_degrees_per_day_on_the_disk():
  # model level: every region's Stonyhurst longitude advances ~13 deg/day
  t0, t1 = Time('2012-06-10T00:00:00'), Time('2012-06-11T00:00:00')
  o0, o1 = synthetic.observer_at(t0), synthetic.observer_at(t1)
  d0, d1 = synthetic.model_days(t0), synthetic.model_days(t1)
  steps = [((r.centre(d1)[0] - o1.carrington_offset)
            - (r.centre(d0)[0] - o0.carrington_offset) + 180) % 360 - 180
           for r in synthetic.regions_at(SEED, d0)]
  assert len(steps) > 5
  assert all(12.0 < s < 14.8 for s in steps)
  # image level: the same flux concentration, two HMI frames a day apart
  region = synthetic.Region(
      t_emerge=d0 - 3, lat=12.0, lon0=(o0.carrington_offset - 20.0) % 360,
      flux=1e22, leading_sign=-1.0, tilt=6.0, separation=5.0, sigma0=1.0,
      tau_grow=1.0, tau_decay=20.0, drift=synthetic.carrington_drift(12.0),
      seed=3)
  lons = []
  for t in (t0, t1):
    when = t.isot
    days = synthetic.model_days(synthetic.frame_times(when, SEED).aia_t_obs)
    pair = synthetic.make_pair(when, 256, SEED, network=False, noise=False,
                               kernels=synthetic.region_kernels(region, days))
    hmi = _map_from(pair.hmi_header, pair.hmi_data)
    cx, cy = _centroid(-hmi.data, 300.0)  # the negative (leading) lobe
    lons.append(hmi.pixel_to_world(cx * u.pix, cy * u.pix).transform_to(
        HeliographicStonyhurst).lon.to_value(u.deg))
  assert 12.0 < lons[1] - lons[0] < 14.8


def test_aia_is_brighter_where_the_field_is_strong():
  pair = synthetic.make_pair('2012-07-04T00:00:00', 256, SEED)
  aia = _map_from(pair.aia_header, pair.aia_data.astype(float))
  hmi = _map_from(pair.hmi_header, pair.hmi_data)
  rng = np.random.default_rng(0)
  ys, xs = rng.integers(40, 216, (2, 4000))
  coords = hmi.pixel_to_world(xs * u.pix, ys * u.pix)
  ax, ay = aia.world_to_pixel(coords)
  ok = np.isfinite(hmi.data[ys, xs]) & np.isfinite(ax)
  a = aia.data[np.round(ay[ok]).astype(int), np.round(ax[ok]).astype(int)]
  b = np.abs(hmi.data[ys[ok], xs[ok]])
  assert stats.spearmanr(a, b).statistic > 0.2
  assert np.median(a[b > 150]) > 2 * np.median(a[b < 20])


def test_aiapy_register_accepts_the_aia_map(pair_files):
  from aiapy.calibrate import register
  aia = _map(pair_files[0])
  float_map = sunpy.map.Map(aia.data.astype(np.float32), aia.meta)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    level15 = register(float_map)
  assert level15.meta['lvl_num'] == 1.5
  assert level15.data.shape == aia.data.shape
  assert abs(level15.meta.get('crota2', 0.0)) < 1e-6 or np.allclose(
      level15.rotation_matrix, np.eye(2), atol=1e-6)


# ------------------------------------------------- 304 A cues of the field

def _noiseless_view(when='2012-07-04T00:00:00', size=256):
  times = synthetic.frame_times(when, SEED)
  days = synthetic.model_days(times.aia_t_obs)
  surface = synthetic.surface_at(SEED, days, synthetic.grid_for_size(size))
  obs = synthetic.observers.rounded(synthetic.observer_at(times.aia_t_obs))
  header = synthetic.aia_header(times, obs, size, SEED)
  return surface, synthetic.render.render_view(surface, obs, header,
                                               (size, size))


def test_304_brightness_follows_network_and_plage_flux():
  """The 304 network is the magnetic network, plage sits on the regions'
  flux: brightness rises monotonically with the nearby |B_LOS| / mu."""
  _, view = _noiseless_view()
  on = view.mu > 0.3
  b = np.abs(np.nan_to_num(view.los)) / np.maximum(view.mu, 0.3)
  b = ndimage.gaussian_filter(b, 1.0)
  limb = synthetic.render.AIA_LIMB_A
  a = view.emission / np.sqrt((1 + limb) / (view.mu + limb))
  assert stats.spearmanr(a[on], b[on]).statistic > 0.4
  quiet = on & (b < 10)
  network = on & (b > 40) & (b < 120)
  plage = on & (b > 300)
  assert network.sum() > 100 and plage.sum() > 20
  assert np.median(a[network]) > 1.5 * np.median(a[quiet])
  assert np.median(a[plage]) > 2.0 * np.median(a[network])


def test_filaments_lie_on_polarity_inversion_lines():
  from data_prep.synthetic import sun
  days = synthetic.model_days('2012-07-04T00:00:00')
  surface = synthetic.surface_at(SEED, days, synthetic.Grid(0.25))
  grid = surface.grid
  br = surface.br + sun.elements_on_grid(surface.elements, grid)
  smooth = sun.smooth(br, sun.FILAMENT_SMOOTH_DEG, grid.res)
  dark = surface.tau > 0.5
  assert dark.sum() > 50  # some filaments near maximum of the cycle
  assert np.mean(np.abs(smooth[dark]) < 2 * sun.FILAMENT_WIDTH_G) > 0.95
  # both polarities on either side: the sign changes within 2 degrees
  reach = int(2.0 / grid.res)
  pos = ndimage.maximum_filter(smooth, reach) > sun.FILAMENT_WIDTH_G
  neg = ndimage.minimum_filter(smooth, reach) < -sun.FILAMENT_WIDTH_G
  assert np.mean((pos & neg)[dark]) > 0.9
  # and they darken 304 A
  _, view = _noiseless_view()
  assert view.emission.min() < 0.7 * np.median(view.emission[view.mu > 0])


def test_leading_polarity_is_compact_and_holds_the_spot():
  """Compact leading polarity with the main spot, dispersed following
  plage (van Driel-Gesztelyi & Green 2015)."""
  from data_prep.synthetic import sun
  checked = 0
  for r in _year_regions():
    if r.flux < sun.UMBRA_MIN_FLUX:
      continue
    lead, follow = sun._lobe_parts(r, r.t_emerge + r.tau_grow)  # pylint: disable=protected-access
    assert lead[4] < follow[4]  # width
    assert lead[5] > 3 * follow[5]  # spot fraction
    lead_el = sun.region_elements(r, r.t_emerge + r.tau_grow)
    checked += 1
    if checked > 20:
      break
  assert checked > 10
  assert lead_el.flux.size > 100  # the plage is fragmented into elements


def test_every_physical_choice_of_the_sun_names_its_source():
  from data_prep.synthetic import sun
  bullets = [b for b in sun.__doc__.split('\n- ')[1:]]
  assert len(bullets) >= 10
  for bullet in bullets:
    text = ' '.join(bullet.split())
    assert re.search(r'(1[89]\d\d|20[0-2]\d)', text), text
