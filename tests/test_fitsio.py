"""data_prep.fitsio: validated SDO reads, one-line DataError, atomic writes.

Inputs are sunpy's real AIA 171 A level-1 test file (128^2) and real HMI
continuum test file (100^2), written back with one defect each.
"""
import os
import warnings

import numpy as np
import pytest
import sunpy.data.test
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from data_prep import fitsio
from data_prep.fitsio import DataError

AIA_FILE = sunpy.data.test.get_test_filepath('aia_171_level1.fits')
HMI_CONT_FILE = sunpy.data.test.get_test_filepath('resampled_hmi.fits')

_DROP = object()


def aia_variant(tmp_path, name='aia.fits', updates=None, data_fn=None,
                compressed=False):
  """sunpy's real AIA 171 file rewritten with header updates (or _DROP)."""
  with fits.open(AIA_FILE) as hdul:
    header = hdul[0].header.copy()
    data = hdul[0].data.copy()
  for key, value in (updates or {}).items():
    if value is _DROP:
      header.remove(key, ignore_missing=True, remove_all=True)
    else:
      header[key] = value
  if data_fn is not None:
    data = data_fn(data)
  path = tmp_path / name
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    if compressed:
      fits.HDUList([fits.PrimaryHDU(),
                    fits.CompImageHDU(data.astype(np.float32), header,
                                      compression_type='GZIP_1',
                                      quantize_level=0.0)]
                   ).writeto(path)
    else:
      fits.PrimaryHDU(data, header).writeto(path)
  return path


def hmi_header(**updates):
  """The real HMI test header, as a magnetogram header (in memory only)."""
  header = fits.getheader(HMI_CONT_FILE).copy()
  header['CONTENT'] = 'MAGNETOGRAM'
  for key, value in updates.items():
    if value is _DROP:
      header.remove(key, ignore_missing=True, remove_all=True)
    else:
      header[key] = value
  return header


def assert_one_line(exc_info, *fragments):
  message = str(exc_info.value)
  assert '\n' not in message
  for fragment in fragments:
    assert fragment in message, message


def test_real_aia_reads_with_any_wavelength():
  kind, data, header = fitsio.read_sdo(AIA_FILE, wavelength=None)
  assert kind == 'aia'
  assert data.dtype == np.float32 and data.shape == (128, 128)
  assert header['WAVELNTH'] == 171
  kind2, header2 = fitsio.read_sdo_header(AIA_FILE, wavelength=None)
  assert kind2 == 'aia' and header2['EXPTIME'] == header['EXPTIME']


def test_wrong_wavelength_is_rejected():
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(AIA_FILE)
  assert_one_line(exc, 'aia_171_level1.fits', 'WAVELNTH is 171',
                  'expected 304')


def test_compressed_image_in_extension(tmp_path):
  path = aia_variant(tmp_path, compressed=True)
  kind, data, _ = fitsio.read_sdo(path, wavelength=None)
  assert kind == 'aia'
  with fits.open(AIA_FILE) as hdul:
    ref = hdul[0].data
  np.testing.assert_allclose(data, ref, rtol=1e-6)


@pytest.mark.parametrize('content, fragment', [
    (b'', 'empty file'),
    (b'\x00\x01garbage' * 400, 'not a FITS file'),
    (b'SIMPLE  =                    T' + b'\xff' * 3000, 'corrupt FITS'),
])
def test_not_fits(tmp_path, content, fragment):
  path = tmp_path / 'bad.fits'
  path.write_bytes(content)
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, 'bad.fits', fragment)


def test_missing_file(tmp_path):
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo(tmp_path / 'nope.fits')
  assert_one_line(exc, 'no such file')
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo(tmp_path)
  assert_one_line(exc, 'is a directory')


@pytest.mark.parametrize('compressed', [False, True])
def test_truncated(tmp_path, compressed):
  path = aia_variant(tmp_path, compressed=compressed)
  blob = path.read_bytes()
  path.write_bytes(blob[:len(blob) - 5000])
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, 'truncated')
  with pytest.raises(DataError):
    fitsio.read_sdo(path, wavelength=None)


def test_no_image_data(tmp_path):
  path = tmp_path / 'table.fits'
  table = fits.BinTableHDU.from_columns(
      [fits.Column(name='a', format='E', array=np.zeros(3))])
  fits.HDUList([fits.PrimaryHDU(), table]).writeto(path)
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path)
  assert_one_line(exc, 'no 2-D image')


def test_other_instrument(tmp_path):
  path = aia_variant(tmp_path, updates={'TELESCOP': 'SOHO',
                                        'INSTRUME': 'EIT'})
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, 'not an SDO AIA or HMI', 'EIT')


@pytest.mark.parametrize('keys, fragment', [
    (('EXPTIME',), 'EXPTIME'),
    (('WAVELNTH',), 'WAVELNTH'),
    (('CDELT1',), 'CDELT1'),
    (('CRPIX2',), 'CRPIX2'),
    (('DSUN_OBS',), 'DSUN_OBS'),
    (('T_OBS',), 'lacks required keyword(s) T_OBS'),
    (('DATE-OBS',), 'lacks required keyword(s) DATE-OBS'),
    (('T_OBS', 'DATE-OBS'), 'T_OBS, DATE-OBS'),
    (('RSUN_REF', 'RSUN_OBS'), 'RSUN_REF and RSUN_OBS'),
    (('HGLN_OBS', 'CRLN_OBS', 'HAEX_OBS', 'HEQX_OBS'), 'observer position'),
])
def test_missing_aia_keywords(tmp_path, keys, fragment):
  path = aia_variant(tmp_path, updates={k: _DROP for k in keys})
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, fragment)


@pytest.mark.parametrize('exptime, fragment', [
    (0.0, 'EXPTIME 0 s'), (-2.0, 'EXPTIME -2 s'), (1.0e6, 'EXPTIME 1e+06'),
    ('long', 'EXPTIME is not a number'),
])
def test_bad_exptime(tmp_path, exptime, fragment):
  path = aia_variant(tmp_path, updates={'EXPTIME': exptime})
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, fragment)


def test_bad_quality_rejected_unless_allowed(tmp_path):
  path = aia_variant(tmp_path, updates={'QUALITY': 1024})
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, 'QUALITY is 1024')
  kind, _ = fitsio.read_sdo_header(path, wavelength=None,
                                   allow_bad_quality=True)
  assert kind == 'aia'


def test_all_nan_data(tmp_path):
  path = aia_variant(tmp_path, data_fn=lambda d: np.full_like(d, np.nan))
  fitsio.read_sdo_header(path, wavelength=None)  # the header is fine
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo(path, wavelength=None)
  assert_one_line(exc, 'all NaN')


def test_cutout_is_not_full_disk(tmp_path):
  # The central 64^2 of the disk, WCS kept consistent (CRPIX shifted).
  with fits.open(AIA_FILE) as hdul:
    crpix1 = hdul[0].header['CRPIX1']
    crpix2 = hdul[0].header['CRPIX2']
  path = aia_variant(tmp_path, updates={'CRPIX1': crpix1 - 32,
                                        'CRPIX2': crpix2 - 32},
                     data_fn=lambda d: d[32:96, 32:96])
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, 'cut-out')


def test_patch_is_not_full_disk(tmp_path):
  path = aia_variant(tmp_path, updates={'CTYPE1': 'HGLN-CAR',
                                        'CTYPE2': 'HGLT-CAR',
                                        'CUNIT1': 'deg', 'CUNIT2': 'deg'})
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, 'heliographic patch', 'HGLN-CAR')


def test_hmi_header_checks():
  assert fitsio.validate_header('h.fits', hmi_header()) == 'hmi'
  cases = [
      (hmi_header(CONTENT='CONTINUUM INTENSITY'), "'MAGNETOGRAM'"),
      (hmi_header(T_OBS=_DROP), 'T_OBS'),
      (hmi_header(CROTA2=_DROP), 'CROTA2'),
      (hmi_header(QUALITY=65536), 'QUALITY is 65536'),
      (hmi_header(T_OBS='yesterday'), "unreadable T_OBS 'yesterday'"),
      (hmi_header(DSUN_OBS=1.0), 'DSUN_OBS'),
      (hmi_header(CTYPE1='CRLN-CEA', CTYPE2='CRLT-CEA'),
       'heliographic patch'),
  ]
  for header, fragment in cases:
    with pytest.raises(DataError) as exc:
      fitsio.validate_header('h.fits', header)
    assert_one_line(exc, 'h.fits', fragment)


def test_real_hmi_continuum_is_not_a_magnetogram():
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(HMI_CONT_FILE)
  assert_one_line(exc, 'CONTINUUM INTENSITY')


def test_observation_time_scales():
  t_hmi = fitsio.observation_time(
      'hmi', {'T_OBS': '2012.01.01_00:00:45_TAI'})
  # TAI - UTC = 34 s in early 2012.
  assert t_hmi.utc.isot == '2012-01-01T00:00:11.000'
  t_aia = fitsio.observation_time('aia', {'DATE-OBS': '2012-01-01T00:00:11'})
  assert abs((t_hmi - t_aia).sec) < 1e-6
  t_aia2 = fitsio.observation_time(
      'aia', {'T_OBS': '2012-01-01T00:00:12.5Z', 'DATE-OBS': 'x'})
  assert abs((t_aia2 - t_hmi).sec - 1.5) < 1e-6
  with pytest.raises(DataError):
    fitsio.observation_time('hmi', {'DATE-OBS': '2012-01-01T00:00:11'})


def test_write_fits_atomic(tmp_path):
  path = tmp_path / 'sub' / 'x.fits'
  data = np.arange(12, dtype=np.float32).reshape(3, 4)
  fitsio.write_fits_atomic(path, data, fits.Header({'SYNTHETIC': True}))
  with fits.open(path) as hdul:
    np.testing.assert_array_equal(hdul[0].data, data)
    assert hdul[0].header['SYNTHETIC'] is True
  # A failing write leaves the old file intact and no tmp file behind.
  with pytest.raises(Exception):
    fitsio.write_fits_atomic(path, np.array([object()]), fits.Header())
  with fits.open(path) as hdul:
    np.testing.assert_array_equal(hdul[0].data, data)
  assert sorted(os.listdir(path.parent)) == ['x.fits']


@pytest.mark.parametrize('key, value, fragment', [
    ('CROTA2', 'x', 'CROTA2 is not a number'),
    ('RSUN_REF', -1.0, 'RSUN_REF -1 m is not a solar radius'),
    ('HGLN_OBS', 'east', 'HGLN_OBS is not a number'),
    ('DSUN_OBS', 1.0e30, 'DSUN_OBS 1e+30 m'),
])
def test_bad_numeric_keywords(tmp_path, key, value, fragment):
  path = aia_variant(tmp_path, updates={key: value})
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path, wavelength=None)
  assert_one_line(exc, fragment)


def test_image_in_an_unexpected_extension(tmp_path):
  with fits.open(AIA_FILE) as hdul:
    header, data = hdul[0].header.copy(), hdul[0].data
  path2 = tmp_path / 'hdu2b.fits'
  fits.HDUList([fits.PrimaryHDU(),
                fits.BinTableHDU.from_columns(
                    [fits.Column(name='a', format='E', array=np.zeros(3))]),
                fits.CompImageHDU(data.astype(np.float32), header)]
               ).writeto(path2)
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(path2, wavelength=None)
  assert_one_line(exc, 'image data in HDU 2')


_HEADER_VALUES = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=8), st.integers(-10**12, 10**12), st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32))


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(sorted(set(fits.getheader(AIA_FILE).keys())
                                  - {'COMMENT', 'HISTORY', ''})),
       value=_HEADER_VALUES)
def test_header_mutations_give_data_error_or_pass(key, value):
  header = fits.getheader(AIA_FILE).copy()
  header[key] = value
  try:
    kind = fitsio.validate_header('m.fits', header, wavelength=None)
  except DataError as exc:
    assert '\n' not in str(exc) and str(exc).startswith('m.fits: ')
  else:
    assert kind == 'aia'


def test_synthetic_flag_in_primary_hdu_is_kept(tmp_path):
  with fits.open(AIA_FILE) as hdul:
    header, data = hdul[0].header.copy(), hdul[0].data
  primary = fits.PrimaryHDU()
  primary.header['HIERARCH SYNTHETIC'] = True
  path = tmp_path / 'syn.fits'
  fits.HDUList([primary, fits.CompImageHDU(data.astype(np.float32), header)]
               ).writeto(path)
  _, read = fitsio.read_sdo_header(path, wavelength=None)
  assert read['SYNTHETIC'] is True
  plain = aia_variant(tmp_path)
  assert 'SYNTHETIC' not in fitsio.read_sdo_header(plain, wavelength=None)[1]


def test_gzipped_fits(tmp_path):
  import gzip
  plain = aia_variant(tmp_path)
  packed = tmp_path / 'aia.fits.gz'
  packed.write_bytes(gzip.compress(plain.read_bytes()))
  kind, data, _ = fitsio.read_sdo(packed, wavelength=None)
  assert kind == 'aia' and data.shape == (128, 128)
  cut = tmp_path / 'cut.fits.gz'
  cut.write_bytes(packed.read_bytes()[:len(packed.read_bytes()) // 2])
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo(cut, wavelength=None)
  assert_one_line(exc, 'cut.fits.gz')
  garbage = tmp_path / 'garbage.fits.gz'
  garbage.write_bytes(gzip.compress(b'hello world' * 300))
  with pytest.raises(DataError) as exc:
    fitsio.read_sdo_header(garbage)
  assert_one_line(exc, 'not a FITS file')
