"""magjax.synchronic: observed HMI + generated patches -> one whole-Sun map.

Inputs: a 256^2 SYNTHETIC HMI magnetogram from data_prep.synthesize and
generated magnetograms built here with astropy: Stonyhurst CAR patches
centred on their observers at +110 (A) and -115 (B) deg, +50 G and -80 G
with a bright square each, and a full-disk helioprojective one.
"""

import os
import shutil
import subprocess
import sys
import time
import warnings

import astropy.units as u
import matplotlib.image
import numpy as np
import pytest
import sunpy.map
from astropy.coordinates import SkyCoord
from astropy.io import fits
from scipy import ndimage
from sunpy.coordinates import frames
from sunpy.map.header_helper import make_fitswcs_header

from data_prep import calibrate
from data_prep import synthesize
from magjax import synchronic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEN = '2012-06-01T00:00:00'
AU_M = 1.496e11
RSUN_M = 6.96e8
SCALE = 0.5  # deg/px of the maps of these tests (720 x 360)
# Patch A: observer and centre at +110, lon 50..170 (it overlaps HMI's
# view east of 50), lat -40..40, +50 G, a +500 G square at (140, 20).
A = {'lon': 110.0, 'width': 120.0, 'value': 50.0, 'square': (140.0, 20.0),
     'square_value': 500.0, 'offset_min': +3}
# Patch B: observer and centre at -115, lon -175..-55, -80 G, a -600 G
# square at (-140, -15).
B = {'lon': -115.0, 'width': 120.0, 'value': -80.0,
     'square': (-140.0, -15.0), 'square_value': -600.0, 'offset_min': -3}


def _quiet_open(path):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return fits.open(path)


def _map(path):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return sunpy.map.Map(path, hdus=0)


def _hmi(path):
  """The HMI file as the project reads it (data in HDU 1, gauss)."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return calibrate.load_calibrated(path)


def _time(hmi_path, minutes):
  """ISO UTC time `minutes` from the HMI file's reference date."""
  hmi = _hmi(hmi_path)
  return (hmi.reference_date + minutes * u.min).utc.isot


def _generated_cards(header, lon, when, synthetic=True, trainsyn=True):
  """The cards magjax.predict writes (provenance, observer, time)."""
  header['BUNIT'] = 'G'
  header['TELESCOP'] = 'magjax'
  header['INSTRUME'] = 'magjax rhp'
  header['CONTENT'] = 'GENERATED LOS MAGNETOGRAM'
  header['TRAINSYN'] = trainsyn
  header['SRC_INST'] = 'STEREO-A/EUVI 304' if lon > 0 else 'STEREO-B/EUVI 304'
  header['HIERARCH SYNTHETIC'] = synthetic
  header['HGLN_OBS'] = lon
  header['HGLT_OBS'] = 0.0
  header['DSUN_OBS'] = AU_M
  header['RSUN_REF'] = RSUN_M
  header['DATE-OBS'] = when
  header['DATE-AVG'] = when
  return header


def write_patch(path, spec, when, cdelt=0.4, drop=(), **flags):
  """A generated Stonyhurst CAR patch (magjax.predict's layout)."""
  nx, ny = int(round(spec['width'] / cdelt)), int(round(80 / cdelt))
  header = fits.Header()
  header['CTYPE1'], header['CTYPE2'] = 'HGLN-CAR', 'HGLT-CAR'
  header['CUNIT1'] = header['CUNIT2'] = 'deg'
  header['CDELT1'] = header['CDELT2'] = cdelt
  header['CRPIX1'], header['CRPIX2'] = (nx + 1) / 2, (ny + 1) / 2
  header['CRVAL1'], header['CRVAL2'] = spec['lon'], 0.0
  header['LONPOLE'], header['LATPOLE'] = 0.0, 90.0
  _generated_cards(header, spec['lon'], when, **flags)
  for key in drop:
    del header[key]
  lon = spec['lon'] + (np.arange(nx) - (nx - 1) / 2) * cdelt
  lat = (np.arange(ny) - (ny - 1) / 2) * cdelt
  lon, lat = np.meshgrid(lon, lat)
  data = np.full((ny, nx), spec['value'], dtype=np.float32)
  square = ((np.abs(lon - spec['square'][0]) < 4)
            & (np.abs(lat - spec['square'][1]) < 4))
  data[square] = spec['square_value']
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    fits.PrimaryHDU(data, header).writeto(path)
  return str(path)


def write_disk(path, lon, value, when):
  """A generated full-disk helioprojective image seen from `lon`."""
  observer = SkyCoord(lon * u.deg, 0 * u.deg, AU_M * u.m,
                      frame=frames.HeliographicStonyhurst(obstime=when))
  centre = SkyCoord(0 * u.arcsec, 0 * u.arcsec, frame=frames.Helioprojective(
      observer=observer, obstime=when))
  n, scale = 128, 16.0
  meta = make_fitswcs_header((n, n), centre, scale=[scale, scale] * u.arcsec
                             / u.pix)
  header = fits.Header({k.upper(): v for k, v in meta.items()
                        if k not in ('keycomments',)})
  _generated_cards(header, lon, when)
  yy, xx = np.mgrid[0:n, 0:n]
  radius_px = np.degrees(np.arcsin(RSUN_M / AU_M)) * 3600 / scale
  disk = np.hypot(xx - (n - 1) / 2, yy - (n - 1) / 2) < radius_px
  data = np.where(disk, value, np.nan).astype(np.float32)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    fits.PrimaryHDU(data, header).writeto(path)
  return str(path)


@pytest.fixture(scope='module')
def inputs(tmp_path_factory):
  root = tmp_path_factory.mktemp('synchronic')
  aia, hmi = synthesize.synthesize_pair(WHEN, 256, 0, str(root / 'raw'),
                                        bad_fraction=0)
  hmi = str(hmi)
  paths = {'root': root, 'aia': str(aia), 'hmi': hmi}
  paths['A'] = write_patch(root / 'A.fits', A, _time(hmi, A['offset_min']))
  paths['B'] = write_patch(root / 'B.fits', B, _time(hmi, B['offset_min']))
  paths['disk'] = write_disk(root / 'disk_b.fits', -115.0, -80.0,
                             _time(hmi, -2))
  return paths


def run(inputs, out, *extra, generated=('A', 'B')):
  """synchronic.main in-process; returns its exit code."""
  gen = [inputs[g] if g in inputs else g for g in generated]
  return synchronic.main(['--observed', inputs['hmi'], '--generated', *gen,
                          '--out', str(out), '--scale', str(SCALE), *extra])


def pixel(smap_or_header, lon, lat):
  """(row, col) of (lon, lat) from the header's CRPIX/CRVAL/CDELT alone."""
  h = smap_or_header
  col = (lon - h['CRVAL1']) / h['CDELT1'] + h['CRPIX1'] - 1
  row = (lat - h['CRVAL2']) / h['CDELT2'] + h['CRPIX2'] - 1
  return int(round(row)), int(round(col))


@pytest.fixture(scope='module')
def stonyhurst(inputs):
  out = inputs['root'] / 'map' / 'stonyhurst.fits'
  assert run(inputs, out) == 0
  with _quiet_open(out) as hdul:
    data = hdul[0].data.astype(np.float64)
    source = hdul['SOURCE'].data.astype(int)
    header, source_header = hdul[0].header.copy(), hdul['SOURCE'].header.copy()
  return {'path': out, 'data': data, 'source': source, 'header': header,
          'source_header': source_header}


def at(result, lon, lat):
  """(value, source index) of the map pixel at Stonyhurst (lon, lat)."""
  row, col = pixel(result['header'], lon, lat)
  return result['data'][row, col], result['source'][row, col]


# ------------------------------------------------------------ unit checks

def test_mu_is_one_under_the_observer_and_positive_exactly_where_visible():
  observer = SkyCoord(30 * u.deg, 5 * u.deg, AU_M * u.m,
                      frame=frames.HeliographicStonyhurst(obstime=WHEN))
  xyz = observer.cartesian.xyz.to_value(u.m)
  rng = np.random.default_rng(0)
  lon = rng.uniform(-180, 180, 2000)
  lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
  mu = synchronic.cos_incidence(lon, lat, RSUN_M, xyz)
  points = SkyCoord(lon * u.deg, lat * u.deg, RSUN_M * u.m,
                    frame=frames.HeliographicStonyhurst(
                        obstime=WHEN, rsun=RSUN_M * u.m))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    hpc = points.transform_to(frames.Helioprojective(observer=observer,
                                                     obstime=WHEN))
    visible = hpc.is_visible()
  clear = np.abs(mu) > 1e-6  # points on the limb itself: either answer
  assert np.array_equal((mu > 0)[clear], visible[clear])
  under = synchronic.cos_incidence(np.array([30.0]), np.array([5.0]),
                                   RSUN_M, xyz)
  assert under[0] == pytest.approx(1.0, abs=1e-12)


def test_bilinear_is_exact_at_pixels_and_nan_next_to_a_missing_one():
  data = np.arange(20, dtype=np.float32).reshape(4, 5)
  data[3, 4] = np.nan
  valid = np.isfinite(data).astype(np.float32)
  filled = np.where(np.isfinite(data), data, 0).astype(np.float32)
  x = np.array([1.0, 2.5, 3.5, 4.0, np.nan, -3.0])
  y = np.array([2.0, 0.5, 2.5, 2.0, 1.0, 1.0])
  out = synchronic.bilinear(filled, valid, x, y)
  assert out[0] == 11.0  # a pixel centre
  assert out[1] == pytest.approx(np.mean([2, 3, 7, 8]))
  assert np.isnan(out[2])  # one of its four pixels is NaN
  assert out[3] == 14.0
  assert np.isnan(out[4]) and np.isnan(out[5])  # no coordinate / outside


# -------------------------------------------------------- the whole map

def test_the_map_opens_in_sunpy_on_the_whole_sun_stonyhurst_grid(
    inputs, stonyhurst):
  smap = _map(stonyhurst['path'])
  assert smap.data.shape == (360, 720)
  assert smap.coordinate_frame.name == 'heliographic_stonyhurst'
  assert smap.unit.to_string() == 'G'
  assert stonyhurst['header']['BITPIX'] == -32
  corner = smap.pixel_to_world(0 * u.pix, 0 * u.pix)
  far = smap.pixel_to_world(719 * u.pix, 359 * u.pix)
  assert corner.lon.to_value(u.deg) == pytest.approx(-179.75)
  assert corner.lat.to_value(u.deg) == pytest.approx(-89.75)
  assert far.lon.to_value(u.deg) == pytest.approx(179.75)
  assert far.lat.to_value(u.deg) == pytest.approx(89.75)
  hmi = _hmi(inputs['hmi'])
  assert abs((smap.date - hmi.reference_date).to_value(u.s)) < 1e-3
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    both = sunpy.map.Map(str(stonyhurst['path']))
  assert len(both) == 2 and both[1].data.dtype.kind == 'i'


def test_far_side_squares_hold_the_generated_values_and_name_their_files(
    stonyhurst):
  header = stonyhurst['source_header']
  assert at(stonyhurst, *A['square']) == (A['square_value'], 1)
  assert at(stonyhurst, *B['square']) == (B['square_value'], 2)
  assert at(stonyhurst, 120.0, -10.0) == (A['value'], 1)
  assert at(stonyhurst, -100.0, 30.0) == (B['value'], 2)
  assert header['SRC1_FIL'] == 'A.fits' and header['SRC2_FIL'] == 'B.fits'
  assert header['SRC1_KND'] == header['SRC2_KND'] == 'generated'
  assert header['SRC1_LON'] == pytest.approx(A['lon'])
  assert header['SRC2_LON'] == pytest.approx(B['lon'])
  assert header['SRC1_INS'] == 'magjax from STEREO-A/EUVI 304'
  assert header['SRC1_DT'] == pytest.approx(180.0, abs=1e-3)


def test_disk_centre_comes_from_the_observed_hmi_by_bilinear_sampling(
    inputs, stonyhurst):
  header = stonyhurst['source_header']
  assert header['SRC0_FIL'] == os.path.basename(inputs['hmi'])
  assert header['SRC0_KND'] == 'observed'
  assert header['SRC0_INS'] == 'SDO/HMI'
  hmi = _hmi(inputs['hmi'])
  # Pixel centres (0.5 deg/px: centres at odd multiples of 0.25 deg).
  for lon, lat in ((0.25, 0.25), (-30.25, 20.25), (45.25, -35.75)):
    value, index = at(stonyhurst, lon, lat)
    assert index == 0
    point = SkyCoord(lon * u.deg, lat * u.deg, RSUN_M * u.m,
                     frame=frames.HeliographicStonyhurst(
                         obstime=hmi.reference_date, rsun=RSUN_M * u.m))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      x, y = hmi.wcs.world_to_pixel(point.transform_to(hmi.coordinate_frame))
    expected = ndimage.map_coordinates(hmi.data.astype(np.float64),
                                       [[float(y)], [float(x)]], order=1)[0]
    assert value == pytest.approx(expected, abs=1e-3)


def test_observed_wins_where_a_generated_source_sees_the_sun_better(
    inputs, stonyhurst, monkeypatch):
  lon, lat = 60.0, 0.0  # inside patch A; mu from A cos 50, from HMI cos 60
  mu_a = np.cos(np.radians(lon - A['lon']))
  mu_hmi = np.cos(np.radians(lon))
  assert mu_a > mu_hmi + 0.1
  value, index = at(stonyhurst, lon, lat)
  assert index == 0 and value != A['value']
  # Without the preference for observed data, A would win at lon 60.
  monkeypatch.setattr(synchronic, 'OBSERVED_PREFERENCE', 1.0)
  out = inputs['root'] / 'no_preference' / 'map.fits'
  assert run(inputs, out) == 0
  with _quiet_open(out) as hdul:
    row, col = pixel(hdul[0].header, lon, lat)
    assert hdul['SOURCE'].data[row, col] == 1
    assert hdul[0].data[row, col] == A['value']


def test_min_mu_hands_the_limb_to_the_generated_view(inputs, stonyhurst):
  lon, lat = 75.25, 0.25  # mu from HMI ~0.26, from A ~0.82
  assert at(stonyhurst, lon, lat)[1] == 0  # --min-mu 0.1: HMI
  out = inputs['root'] / 'min_mu' / 'map.fits'
  assert run(inputs, out, '--min-mu', '0.3') == 0
  with _quiet_open(out) as hdul:
    result = {'data': hdul[0].data, 'source': hdul['SOURCE'].data,
              'header': hdul[0].header}
    assert hdul[0].header['MINMU'] == 0.3
  assert at(result, lon, lat) == (A['value'], 1)
  assert at(result, 0.25, 0.25)[1] == 0


def test_pixels_no_source_sees_are_nan_with_source_minus_one(stonyhurst):
  for lon, lat in ((177.0, 0.0), (100.0, 60.0), (0.0, 88.0), (0.0, -88.0)):
    value, index = at(stonyhurst, lon, lat)
    assert np.isnan(value) and index == -1, (lon, lat)
  nan = np.isnan(stonyhurst['data'])
  assert np.array_equal(nan, stonyhurst['source'] == -1)
  assert 0.2 < nan.mean() < 0.6


def test_header_says_generated_synthetic_gauss_and_how_it_was_built(
    stonyhurst):
  header = stonyhurst['header']
  assert header['GENERATD'] is True
  assert header['SYNTHETIC'] is True
  assert header['BUNIT'] == 'G'
  assert (header['CTYPE1'], header['CTYPE2']) == ('HGLN-CAR', 'HGLT-CAR')
  assert header['NSRC'] == 3
  text = ' '.join(str(line) for line in header['HISTORY'])
  for words in ('no differential rotation', 'GENERATED', 'SYNTHETIC',
                'A.fits', 'B.fits', 'mu x preference'):
    assert words in text, words
  assert stonyhurst['source_header']['SRC1_SYN'] is True


@pytest.mark.parametrize('hmi_synthetic,gen_synthetic,trainsyn,expected', [
    (False, False, False, False),
    (False, False, True, True),  # a model trained on SYNTHETIC data
    (False, True, False, True),
    (True, False, False, True),
])
def test_synthetic_label_follows_every_input(inputs, tmp_path, hmi_synthetic,
                                             gen_synthetic, trainsyn,
                                             expected):
  hmi = tmp_path / 'hmi.fits'
  with fits.open(inputs['hmi'], disable_image_compression=True) as hdul:
    for hdu in hdul:  # headers only: the RICE data are copied as they are
      hdu.header['HIERARCH SYNTHETIC'] = hmi_synthetic
    hdul.writeto(hmi)
  gen = write_patch(tmp_path / 'A.fits', A, _time(inputs['hmi'], 1),
                    synthetic=gen_synthetic, trainsyn=trainsyn)
  out = tmp_path / 'map.fits'
  assert synchronic.main(['--observed', str(hmi), '--generated', gen,
                          '--out', str(out), '--scale', '2']) == 0
  with _quiet_open(out) as hdul:
    assert hdul[0].header['SYNTHETIC'] is expected
    assert hdul['SOURCE'].header['SRC0_SYN'] is hmi_synthetic
    history = ' '.join(str(line) for line in hdul[0].header['HISTORY'])
  assert ('SYNTHETIC inputs' in history) is expected


def test_generated_label_is_false_when_observed_data_cover_every_patch_pixel(
    inputs, tmp_path):
  centre = dict(A, lon=0.0, width=40.0, square=(10.0, 10.0))
  gen = write_patch(tmp_path / 'front.fits', centre, _time(inputs['hmi'], 1))
  out = tmp_path / 'map.fits'
  assert run(inputs, out, generated=(gen,)) == 0
  with _quiet_open(out) as hdul:
    assert hdul[0].header['GENERATD'] is False
    assert not np.any(hdul['SOURCE'].data >= 1)


def test_carrington_map_puts_the_square_at_stonyhurst_lon_plus_the_offset(
    inputs):
  out = inputs['root'] / 'carrington' / 'map.fits'
  figure = inputs['root'] / 'figures' / 'carrington.png'
  assert run(inputs, out, '--carrington', '--figure', str(figure)) == 0
  assert figure.stat().st_size > 10_000
  assert not out.with_suffix('.png').exists()
  smap = _map(out)
  hmi = _hmi(inputs['hmi'])
  assert smap.coordinate_frame.name == 'heliographic_carrington'
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    origin = SkyCoord(0 * u.deg, 0 * u.deg, RSUN_M * u.m,
                      frame=frames.HeliographicStonyhurst(
                          obstime=hmi.reference_date))
    offset = origin.transform_to(frames.HeliographicCarrington(
        obstime=hmi.reference_date, observer=hmi.observer_coordinate)).lon
    first = smap.pixel_to_world(0 * u.pix, 0 * u.pix)
  assert first.lon.to_value(u.deg) == pytest.approx(0.25)
  with _quiet_open(out) as hdul:
    header = hdul[0].header
    assert (header['CTYPE1'], header['CTYPE2']) == ('CRLN-CAR', 'CRLT-CAR')
    for spec, index in ((A, 1), (B, 2)):
      lon = (spec['square'][0] + offset.to_value(u.deg)) % 360
      row, col = pixel(header, lon, spec['square'][1])
      assert hdul[0].data[row, col] == spec['square_value']
      assert hdul['SOURCE'].data[row, col] == index
    # And through sunpy's own Carrington frame of the written map.
    square = SkyCoord(A['square'][0] * u.deg, A['square'][1] * u.deg,
                      frame=frames.HeliographicStonyhurst(
                          obstime=smap.reference_date))
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      x, y = smap.world_to_pixel(square.transform_to(smap.coordinate_frame))
    row, col = int(round(y.to_value(u.pix))), int(round(x.to_value(u.pix)))
    assert hdul[0].data[row, col] == A['square_value']


def test_a_full_disk_generated_image_gives_only_its_visible_side(inputs):
  out = inputs['root'] / 'disk' / 'map.fits'
  assert run(inputs, out, generated=('disk',)) == 0
  with _quiet_open(out) as hdul:
    result = {'data': hdul[0].data, 'source': hdul['SOURCE'].data,
              'header': hdul[0].header}
  assert at(result, -120.0, 0.0) == (-80.0, 1)
  assert at(result, -115.0, 60.0) == (-80.0, 1)
  # 155 deg from its observer: behind the disk, though it projects on it.
  value, index = at(result, 90.0, 0.0)
  assert np.isnan(value) and index == -1


def test_the_figure_is_a_labelled_png_next_to_the_map(inputs, stonyhurst):
  png = stonyhurst['path'].with_suffix('.png')
  image = matplotlib.image.imread(png)
  assert image.shape[0] > 400 and image.shape[1] > 800
  colours = np.unique((image[..., :3] * 255).astype(np.uint8).reshape(-1, 3),
                      axis=0)
  assert len(colours) > 100
  sources = [synchronic.load_observed(inputs['hmi']),
             synchronic.load_generated(inputs['A'])]
  grid = synchronic.make_grid(2.0, False)
  values, index = synchronic.compose(sources, grid, RSUN_M, 0.1)
  fig = synchronic.draw_figure(values, index, grid, sources,
                               sources[0].time, 200.0)
  ax = fig.axes[0]
  assert 'GENERATED' in ax.get_title() and 'SYNTHETIC' in ax.get_title()
  assert 'longitude' in ax.get_xlabel() and 'latitude' in ax.get_ylabel()
  texts = ' '.join(t.get_text() for t in ax.texts)
  assert 'A.fits' in texts and 'SDO/HMI' in texts
  lines = sorted(line.get_xdata()[0] for line in ax.lines)
  assert lines == pytest.approx(sorted([sources[0].observer_lon, A['lon']]))
  assert ax.images[0].get_clim() == (-200.0, 200.0)


def test_a_figure_that_cannot_be_written_leaves_no_map(inputs, tmp_path,
                                                       monkeypatch):
  write = synchronic.fileio.write_bytes_atomic
  written = []

  def refuse_png(path, data):
    if str(path).endswith('.png'):
      raise OSError(28, 'No space left on device')
    written.append(path)
    write(path, data)
  monkeypatch.setattr(synchronic.fileio, 'write_bytes_atomic', refuse_png)
  out = tmp_path / 'map.fits'
  assert run(inputs, out, '--scale', '2') == 2
  assert written == [str(out)]  # the map was written, then removed
  assert os.listdir(tmp_path) == []


# ------------------------------------------------------------- bad inputs

def _bad_cases(inputs, root):
  """{name: (argv without --out, expected words in the message)}."""
  hmi, gen = inputs['hmi'], inputs['A']
  text = root / 'notes.fits'
  text.write_text('not a FITS file\n')
  blocker = root / 'afile'
  blocker.write_text('x')
  no_observer = write_patch(root / 'no_observer.fits', A,
                            _time(hmi, 1), drop=('HGLN_OBS', 'HGLT_OBS'))
  late = write_patch(root / 'late.fits', A, _time(hmi, 7 * 60))
  return {
      'observed missing': (['--observed', str(root / 'nope.fits'),
                            '--generated', gen], 'no such file'),
      'observed not FITS': (['--observed', str(text), '--generated', gen],
                            'not a FITS file'),
      'observed is AIA': (['--observed', inputs['aia'], '--generated', gen],
                          'SDO/HMI'),
      'observed is generated': (['--observed', gen, '--generated', gen],
                                'not an SDO AIA or HMI file'),
      'generated is HMI': (['--observed', hmi, '--generated', hmi],
                           'not a magjax generated magnetogram'),
      'generated missing': (['--observed', hmi, '--generated',
                             str(root / 'nope.fits')], 'no such file'),
      'generated not FITS': (['--observed', hmi, '--generated', str(text)],
                             'not a FITS file'),
      'generated without observer': (['--observed', hmi, '--generated',
                                      no_observer], 'no observer position'),
      'generated 7 h off': (['--observed', hmi, '--generated', gen, late],
                            'differential rotation'),
      'scale zero': (['--observed', hmi, '--generated', gen, '--scale', '0'],
                     '--scale'),
      'scale too large': (['--observed', hmi, '--generated', gen, '--scale',
                           '6'], '--scale'),
      'unwritable out': (['--observed', hmi, '--generated', gen, '--out',
                          str(blocker / 'map.fits')], 'cannot write'),
  }


BAD = ('observed missing', 'observed not FITS', 'observed is AIA',
       'observed is generated', 'generated is HMI', 'generated missing',
       'generated not FITS', 'generated without observer',
       'generated 7 h off', 'scale zero', 'scale too large',
       'unwritable out')


@pytest.mark.parametrize('case', BAD)
def test_a_bad_input_exits_2_with_one_error_line_and_writes_nothing(
    inputs, tmp_path, capsys, case):
  argv, words = _bad_cases(inputs, tmp_path)[case]
  out_dir = tmp_path / 'out'
  if '--out' not in argv:
    argv = argv + ['--out', str(out_dir / 'map.fits')]
  before = set(os.listdir(tmp_path))
  assert synchronic.main(argv) == 2
  captured = capsys.readouterr()
  lines = captured.err.splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), captured.err
  assert words in lines[0], lines[0]
  assert captured.out == ''
  assert not out_dir.exists()
  assert set(os.listdir(tmp_path)) == before


# ----------------------------------------------------------- command line

def _cli(*args):
  return subprocess.run([sys.executable, '-m', 'magjax.synchronic', *args],
                        cwd=ROOT, capture_output=True, text=True,
                        timeout=300)


@pytest.mark.slow  # ~6 s: a subprocess at the default 0.2 deg scale
def test_the_command_line_writes_the_default_map_and_figure(inputs, tmp_path):
  out = tmp_path / 'sync.fits'
  start = time.monotonic()
  result = _cli('--observed', inputs['hmi'], '--generated', inputs['A'],
                inputs['B'], '--out', str(out))
  seconds = time.monotonic() - start
  assert result.returncode == 0, result.stderr
  assert result.stderr == ''
  assert result.stdout.startswith(f'wrote {out} (1800x900 Stonyhurst')
  assert sorted(os.listdir(tmp_path)) == ['sync.fits', 'sync.png']
  with _quiet_open(out) as hdul:
    assert hdul[0].data.shape == (900, 1800)
    assert hdul[0].header['CDELT1'] == 0.2
  assert seconds < 60


def test_the_command_line_prints_one_error_line_for_a_bad_input(inputs,
                                                                tmp_path):
  out = tmp_path / 'sync.fits'
  shutil.copy(inputs['hmi'], tmp_path / 'hmi.fits')
  result = _cli('--observed', str(tmp_path / 'hmi.fits'), '--generated',
                inputs['aia'], '--out', str(out))
  assert result.returncode == 2
  assert result.stderr.count('\n') == 1
  assert result.stderr.startswith('error: aia_304_')
  assert result.stdout == ''
  assert sorted(os.listdir(tmp_path)) == ['hmi.fits']
