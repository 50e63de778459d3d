"""Inputs that parse but cannot be real (data_prep/limits.py): sizes from
the header, mission dates, the instruments' statistics keywords and the
pixels of the disk. The whole files go through every command in
tests/test_bad_inputs.py (make_bad_corpus: oversized, blank, zero-filled,
half missing, saturated, partial, out of the mission's dates); the three
real HMI magnetograms pass the pixel checks in tests/test_real_hmi.py
(every read goes through them); here the synthetic data set and sunpy's
real headers pass them too.
"""
import os

import numpy as np
import pytest
import sunpy.data.test
from astropy.io import fits
from astropy.time import Time

from data_prep import fitsio, limits
from data_prep.fitsio import DataError

NOW = Time('2025-01-01T00:00:00')


def _header(nx, ny, bitpix=16):
  return {'NAXIS1': nx, 'NAXIS2': ny, 'BITPIX': bitpix}


@pytest.mark.parametrize('key, largest', [
    ('aia', 4096), ('hmi', 4096), ('euvi', 2048), ('euvi-b', 2048),
    ('eit', 1024), ('fsi', 3072), (None, limits.GENERAL_MAX_PX)])
def test_the_largest_image_passes_and_one_pixel_more_is_refused(key,
                                                                 largest):
  assert limits.size_problem(_header(largest, largest, -64), key) is None
  problem = limits.size_problem(_header(largest + 1, largest), key)
  assert f'{largest + 1}x{largest} image' in problem
  assert f'at most {largest}x{largest} px' in problem


@pytest.mark.parametrize('key, nx, ny', [
    ('aia', 1024, 1024), ('euvi', 1024, 1024), ('euvi', 512, 512),
    ('eit', 512, 512), ('fsi', 3040, 3072), ('fsi', 768, 768)])
def test_binned_and_synoptic_products_pass(key, nx, ny):
  assert limits.size_problem(_header(nx, ny), key) is None


def test_the_largest_accepted_image_fits_the_memory_bound():
  largest = max(i.max_px for i in limits.INSTRUMENTS.values())
  assert limits.memory_estimate(largest, largest, -64) < (
      limits.MAX_FILE_MEMORY / 2)


def test_an_image_over_the_memory_bound_is_refused(monkeypatch):
  monkeypatch.setattr(limits, 'GENERAL_MAX_PX', 100_000)
  problem = limits.size_problem(_header(12000, 12000, -32))
  assert problem.startswith('the header declares a 12000x12000 image '
                            '(BITPIX -32) that would need ~')
  assert 'at most 2 GiB' in problem
  assert limits.span_problem(3 * limits.GIB).startswith(
      'a data section of 3 GiB')
  assert limits.span_problem(limits.GIB) is None


def test_an_oversized_aia_header_is_refused_with_one_line():
  header = fits.getheader(
      sunpy.data.test.get_test_filepath('aia_171_level1.fits'))
  header['NAXIS1'] = header['NAXIS2'] = 40000
  with pytest.raises(DataError) as info:
    fitsio.validate_header('big.fits', header, wavelength=None)
  assert str(info.value) == (
      'big.fits: the header declares a 40000x40000 image; SDO/AIA images '
      'are at most 4096x4096 px (refused before reading its pixels)')


@pytest.mark.parametrize('key, date, possible', [
    ('aia', '1990-07-07', False), ('aia', '2010-02-10', False),
    ('aia', '2010-05-01', True), ('hmi', '2009-12-31', False),
    ('hmi', '2024-06-01', True), ('euvi', '2006-10-01', False),
    ('euvi', '2016-06-15', True), ('euvi-b', '2012-06-15', True),
    ('euvi-b', '2014-10-02', False), ('euvi-b', '2016-06-15', False),
    ('eit', '1995-06-01', False), ('eit', '1996-03-01', True),
    ('fsi', '2019-12-31', False), ('fsi', '2022-03-20', True),
    ('aia', '2025-01-03', False)])
def test_an_observation_outside_the_mission_is_refused(key, date,
                                                       possible):
  problem = limits.date_problem(key, Time(date), now=NOW)
  assert (problem is None) == possible, problem


def test_synthetic_files_may_place_an_observer_at_any_date_but_the_future():
  assert limits.date_problem('fsi', Time('2012-11-20'), True, NOW) is None
  assert 'future' in limits.date_problem('aia', Time('2026-01-01'), True,
                                         NOW)


def test_the_operating_life_is_named_in_the_refusal():
  assert limits.date_problem('euvi-b', Time('2016-06-15T00:09:08'),
                             now=NOW) == (
      "observation time 2016-06-15T00:09:08 is outside STEREO-B/EUVI's "
      'operating life (2006-10-26 to 2014-10-02)')
  assert limits.mission_key('euvi', {'OBSRVTRY': 'STEREO_B'}) == 'euvi-b'
  assert limits.mission_key('euvi', {'OBSRVTRY': 'STEREO_A'}) == 'euvi'


@pytest.mark.parametrize('keywords, fragment', [
    ({'PERCENTD': 62.5}, 'PERCENTD 62.5: only 62.5 % of the image has data'),
    ({'MISSVALS': 3e6, 'TOTVALS': 1.2e7}, '25.0 % of the image missing'),
    ({'SATVALS': 2e6, 'TOTVALS': 1.2e7}, '16.7 % of the image saturated'),
    ({'DATAMIN': 100, 'DATAMAX': 100}, 'a constant image')])
def test_the_instruments_own_keywords_refuse_a_partial_frame(keywords,
                                                              fragment):
  assert fragment in limits.keyword_problem(keywords)


@pytest.mark.parametrize('name', [
    'aia_171_level1.fits', 'resampled_hmi.fits',
    'euvi_20090615_000900_n4euA_s.header',
    'solo_L1_eui-fsi304-image_20201021T145510206_V03.header',
    'EIT_header/SOHO_EIT_304_20070601T121937_L1.header'])
def test_real_headers_pass_the_keyword_checks(name):
  path = sunpy.data.test.get_test_filepath(name)
  header = (fits.Header.fromtextfile(str(path)) if name.endswith('.header')
            else fits.getheader(path))
  assert limits.keyword_problem(header) is None


def _disk(size=512, seed=0):
  """A 304-like disk: log-normal network on a limb-brightened disk."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:size, 0:size]
  r = np.hypot(xx - size / 2, yy - size / 2) / (0.4 * size)
  data = 100 * (1 + 0.3 * r ** 2) * rng.lognormal(0, 0.3, (size, size))
  return np.where(r < 1, data, 5.0).astype(np.float32), (size / 2,
                                                         size / 2), 0.4 * size


def _problem(data, centre, radius, field=False):
  return limits.pixel_problem(limits.disk_sample(data, centre, radius),
                              field)


def test_a_real_looking_disk_passes():
  assert _problem(*_disk()) is None


@pytest.mark.parametrize('change, fragment', [
    (lambda d: np.full_like(d, 100.0), 'near-constant image'),
    (lambda d: 100 + np.random.default_rng(0).normal(0, 0.5, d.shape),
     'near-constant image'),
    (np.zeros_like, '100.0 % of the solar disk has no data'),
    (lambda d: np.where(np.arange(d.shape[1]) < d.shape[1] // 3, np.nan, d),
     'of the solar disk has no data'),
    (lambda d: np.minimum(d, np.percentile(d, 80)), 'saturated')])
def test_a_blank_missing_or_saturated_disk_is_refused(change, fragment):
  data, centre, radius = _disk()
  assert fragment in _problem(change(data).astype(np.float32), centre,
                              radius)


def test_a_magnetogram_with_its_zeros_passes_and_a_flat_one_is_refused():
  rng = np.random.default_rng(0)
  field = np.round(rng.normal(0, 7, (512, 512)), 1).astype(np.float32)
  field[rng.random(field.shape) < 0.01] = 0.0  # ~1 % exactly 0 G, as HMI
  assert _problem(field, (256, 256), 200, field=True) is None
  flat = rng.normal(0, 0.1, field.shape).astype(np.float32)
  assert 'near-constant magnetogram' in _problem(flat, (256, 256), 200,
                                                 field=True)
  clipped = np.clip(field, -3, 3)
  assert 'saturated' in _problem(clipped, (256, 256), 200, field=True)


def test_the_sample_is_the_inner_disk_of_about_a_million_pixels():
  data = np.zeros((4096, 4096), np.float32)
  sample = limits.disk_sample(data, (2048, 2048), 1800)
  expected = np.pi * (limits.DISK_RADIUS_FRACTION * 1800) ** 2 / 16
  assert sample.size == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize('time', ['2012-01-04T00:00:00', '2012-06-15T12:00:00',
                                  '2012-11-30T06:00:00'])
def test_synthetic_pairs_of_the_data_set_pass_every_check(tmp_path, time):
  """As `make data` writes them (1024^2; the whole data/raw passed too)."""
  from data_prep import synthesize  # pylint: disable=g-import-not-at-top
  for path in synthesize.synthesize_pair(time, 1024, 0, str(tmp_path)):
    fitsio.read_sdo(str(path), allow_bad_quality=True)


def _finer(src, out, factor):
  """The synthetic SDO file `src` on a `factor` times finer grid, written
  as the archive writes it (data_prep.synthesize)."""
  import make_bad_corpus  # pylint: disable=g-import-not-at-top
  from data_prep import synthesize  # pylint: disable=g-import-not-at-top
  data, header = make_bad_corpus._plain(src)  # pylint: disable=protected-access
  data = np.kron(data, np.ones((factor, factor), np.float32))
  header = make_bad_corpus._scaled(header, data.shape[0])  # pylint: disable=protected-access
  hdus = (synthesize.hmi_hdulist if header['TELESCOP'].startswith('SDO/HMI')
          else synthesize.aia_hdulist)(header, data)
  hdus.writeto(out)
  return str(out)


@pytest.mark.slow
@pytest.mark.parametrize('size', [1024, 4096])
def test_reading_patching_and_back_to_the_disk_stay_within_the_estimate(
    tmp_path, size):
  """What `memory_estimate` promises, measured (tracemalloc: every numpy
  array) on AIA and HMI files of 1024^2 and the largest, 4096^2."""
  import tracemalloc  # pylint: disable=g-import-not-at-top
  from data_prep import calibrate, patches, synthesize  # pylint: disable=g-import-not-at-top
  pair = synthesize.synthesize_pair('2012-07-07T07:00:00', 256, 0,
                                    str(tmp_path), bad_fraction=0)
  for src, load in zip(pair, (lambda p: calibrate.load_304(p, 'quiet-sun'),
                              calibrate.load_calibrated)):
    path = _finer(src, tmp_path / f'{size}.fits', size // 256)
    load(path)  # imports and caches outside the measure
    tracemalloc.start()
    try:
      smap = load(path)
      pmap = patches.extract_patch(smap)
      patches.to_disk(pmap.data, patches.patch_header(pmap), smap)
      peak = tracemalloc.get_traced_memory()[1]
    finally:
      tracemalloc.stop()
    bitpix = fits.getheader(path, 1)['BITPIX']
    assert peak < limits.memory_estimate(size, size, bitpix), (src, peak)
    os.remove(path)
