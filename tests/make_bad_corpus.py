"""Generates the bad-input corpus (issue 8's tests/data/bad/; tests/data is
git-ignored, so the files go to a tmp dir) into a dir.

  python tests/make_bad_corpus.py OUT_DIR

Nothing binary is committed: every file is derived at test time from a
SYNTHETIC full-disk pair (data_prep.synthesize), sunpy's test files and
plain bytes. `make_corpus(out)` returns {name: Case}; Case.path is the file,
Case.kind the raw-tree directory it pretends to belong to ('aia' or 'hmi'),
Case.fragment a piece of the expected error message (prepare patch),
Case.predict_ok True for the one file predict accepts (a prepared AIA 304
patch: predict's patch route) and Case.impossible 'oversized' or
'implausible' for issue 20's files that parse cleanly but cannot be real.
"""

import dataclasses
import os
import shutil
import sys
import warnings

import numpy as np
from astropy.io import fits

BAD_TIME = '2012-07-07T07:00:00'
_COMPRESSION_KEYS = ('ZIMAGE', 'ZBITPIX', 'ZNAXIS', 'ZNAXIS1', 'ZNAXIS2',
                     'ZTILE1', 'ZTILE2', 'ZCMPTYPE', 'ZNAME1', 'ZVAL1',
                     'ZNAME2', 'ZVAL2', 'ZQUANTIZ', 'ZDITHER0', 'ZBLANK')


@dataclasses.dataclass
class Case:
  path: str
  kind: str
  fragment: str            # expected in `prepare patch`'s error line
  predict_fragment: str = ''  # expected in predict's ('' = any)
  predict_ok: bool = False
  impossible: str = ''  # issue 20's inputs: 'oversized' or 'implausible'


def _sunpy(name):
  import sunpy.data.test  # pylint: disable=g-import-not-at-top
  return sunpy.data.test.get_test_filepath(name)


def _sunpy_header(name):
  """A real header-only file of sunpy's test data, ready for float data."""
  header = fits.Header.fromtextfile(str(_sunpy(name)))
  for key in ('BLANK', 'BSCALE', 'BZERO', 'BITPIX'):
    header.remove(key, ignore_missing=True)
  return header


def _plain(src):
  """(float32 data, image header) of a synthetic (compressed) SDO file."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    with fits.open(src) as hdul:
      hdu = hdul[1] if len(hdul) > 1 else hdul[0]
      header = hdu.header.copy()
      data = np.asarray(hdu.data, np.float32)
  for key in _COMPRESSION_KEYS + ('BLANK', 'BSCALE', 'BZERO'):
    header.remove(key, ignore_missing=True)
  return data, header


def _write(path, data, header):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    fits.PrimaryHDU(data, header).writeto(path, overwrite=True)
  return str(path)


def _scaled(header, n):
  """The header of the same full-disk view on an n x n grid."""
  header = header.copy()
  factor = n / header['NAXIS1']
  header['NAXIS1'] = header['NAXIS2'] = n
  for axis in (1, 2):
    header[f'CDELT{axis}'] /= factor
    header[f'CRPIX{axis}'] = (header[f'CRPIX{axis}'] - 0.5) * factor + 0.5
  return header


def _oversized(path, header, n, dtype=np.int16):
  """A valid RICE-compressed n x n image in HDU 1 of `header`'s view: a
  constant compresses to ~16 bytes per kpx and is never held in memory
  (40000^2: 25 MB in 2.5 s)."""
  data = np.broadcast_to(dtype(100), (n, n))
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
        data, _scaled(header, n), compression_type='RICE_1',
        tile_shape=(16, n))]).writeto(path, overwrite=True)
  return str(path)


def _later(header, minutes):
  """A copy of an SDO header whose times are `minutes` later."""
  from astropy.time import Time, TimeDelta  # pylint: disable=g-import-not-at-top
  header = header.copy()
  shift = TimeDelta(60.0 * minutes, format='sec')
  for key in ('DATE-OBS', 'T_OBS'):
    header[key] = (Time(header[key].rstrip('Z')) + shift).isot + (
        'Z' if header[key].endswith('Z') else '')
  return header


def _add_impossible_inputs(add, aia, hmi):
  """Files that parse cleanly but cannot be real (issue 20): larger than
  the instrument writes, blank, mostly missing, saturated, out of the
  mission's dates. `aia`, `hmi`: (data, header) of synthetic 256^2 files."""
  data, header = aia
  _oversized(add('oversized_aia_40000.fits', 'aia', '40000x40000 image; '
                 'SDO/AIA images are at most 4096x4096',
                 impossible='oversized'), header, 40000)
  hdata, hheader = hmi
  _oversized(add('oversized_hmi_8192.fits', 'hmi', '8192x8192 image; '
                 'SDO/HMI images are at most 4096x4096', 'SDO/HMI',
                 impossible='oversized'), hheader, 8192, np.int32)
  eit = _sunpy_header('EIT_header/SOHO_EIT_304_20070601T121937_L1.header')
  _oversized(add('oversized_eit_2048.fits', 'aia', 'not an SDO AIA or HMI',
                 '2048x2048 image; SOHO/EIT images are at most 1024x1024',
                 impossible='oversized'), eit, 2048)
  disk = np.isfinite(data) & (data > 0)
  # A minute apart, so that a build can pair each with its own HMI file.
  for minute, (name, fragment, values) in enumerate((
      ('blank_100dn.fits', 'near-constant', np.full_like(data, 100.0)),
      ('zero_filled.fits', '100.0 % of the solar disk has no data',
       np.zeros_like(data)),
      ('half_missing.fits', 'of the solar disk has no data',
       np.where(np.arange(data.shape[1]) < data.shape[1] // 2, np.nan,
                data).astype(np.float32)),
      ('saturated.fits', 'saturated',
       np.where(disk & (np.random.default_rng(1).random(data.shape) < 0.2),
                16383.0, data).astype(np.float32))), start=1):
    _write(add(name, 'aia', fragment, fragment, impossible='implausible'),
           values, _later(header, minute))
  h = header.copy()
  h.update(PERCENTD=62.5, TOTVALS=16777216, DATAVALS=10485760,
           MISSVALS=6291456)
  _write(add('partial_percentd.fits', 'aia', 'PERCENTD 62.5',
             'PERCENTD 62.5', impossible='implausible'), data, h)
  _write(add('hmi_zero_filled.fits', 'hmi', 'has no data', 'SDO/HMI',
             impossible='implausible'),
         np.where(np.isfinite(hdata), 0.0, np.nan).astype(np.float32),
         hheader)
  # A real observatory's date is checked: no SYNTHETIC flag here.
  h = header.copy()
  del h['SYNTHETIC']
  h.update({'DATE-OBS': '1990-07-07T07:00:00.00',
            'T_OBS': '1990-07-07T07:00:01.00Z'})
  _write(add('aia_1990.fits', 'aia', "outside SDO/AIA's operating life",
             "outside SDO/AIA's operating life", impossible='implausible'),
         data, h)
  euvi = _sunpy_header('euvi_20090615_000900_n4euA_s.header')
  euvi.update({'WAVELNTH': 304, 'OBSRVTRY': 'STEREO_B',
               'RSUN_OBS': euvi['RSUN'],
               'DATE-OBS': '2016-06-15T00:09:00.006',
               'DATE-AVG': '2016-06-15T00:09:08.009'})
  _write(add('euvi_b_2016.fits', 'aia', 'not an SDO AIA or HMI file',
             "outside STEREO-B/EUVI's operating life",
             impossible='implausible'),
         np.full((euvi['NAXIS2'], euvi['NAXIS1']), 100.0, np.float32), euvi)


def make_corpus(out):
  """Writes the corpus under `out` (flat); returns {name: Case}."""
  from data_prep import patches  # pylint: disable=g-import-not-at-top
  from data_prep.synthesize import synthesize_pair  # pylint: disable=g-import-not-at-top
  os.makedirs(out, exist_ok=True)
  src_dir = os.path.join(out, '_src')
  aia, hmi = synthesize_pair(BAD_TIME, 256, 0, src_dir)
  data, header = _plain(aia)
  cases = {}

  def add(name, kind, fragment, predict_fragment='', predict_ok=False,
          impossible=''):
    cases[name] = Case(os.path.join(out, name), kind, fragment,
                       predict_fragment, predict_ok, impossible)
    return cases[name].path

  _add_impossible_inputs(add, (data, header), _plain(hmi))

  good = open(aia, 'rb').read()
  with open(add('truncated.fits', 'aia', 'truncated'), 'wb') as f:
    f.write(good[:len(good) // 2])
  with open(add('garbage.fits', 'aia', 'not a FITS file'), 'wb') as f:
    f.write(np.random.default_rng(0).bytes(5000))
  with open(add('empty.fits', 'aia', 'empty'), 'wb') as f:
    pass
  shutil.copy(_sunpy('EIT/efz20040301.000010_s.fits'),
              add('eit.fits', 'aia', 'not an SDO AIA or HMI file',
                  'SOHO/EIT WAVELNTH is 195 A, expected 304'))
  # Real EUI/FSI 304 and EIT 304 headers (sunpy's test data) made bad:
  # without the observer, and too small to hold a patch.
  fsi = _sunpy_header('solo_L1_eui-fsi304-image_20201021T145510206_V03'
                      '.header')
  for key in [k for k in fsi if k.endswith('_OBS') and k != 'DSUN_OBS']:
    del fsi[key]
  _write(add('fsi_no_observer.fits', 'aia', 'not an SDO AIA or HMI file',
             'lacks the observer position'),
         np.full((fsi['NAXIS2'], fsi['NAXIS1']), 100.0, np.float32), fsi)
  eit = _sunpy_header('EIT_header/SOHO_EIT_304_20070601T121937_L1.header')
  eit['NAXIS1'] = eit['NAXIS2'] = 32
  eit['CRPIX1'] = eit['CRPIX2'] = 16.5
  eit['CDELT1'] = eit['CDELT2'] = 2.627 * 32
  _write(add('eit_too_small.fits', 'aia', 'not an SDO AIA or HMI file',
             'too small to hold a patch'),
         np.full((32, 32), 100.0, np.float32), eit)
  shutil.copy(_sunpy('resampled_hmi.fits'),
              add('hmi_other.fits', 'hmi', 'HMI', ''))
  shutil.copy(_sunpy('aia_171_level1.fits'),
              add('aia_171.fits', 'aia', 'WAVELNTH is 171', 'WAVELNTH is 171'))
  for key, name in (('EXPTIME', 'no_exptime'), ('T_OBS', 'no_t_obs'),
                    ('DATE-OBS', 'no_date_obs')):
    h = header.copy()
    del h[key]
    _write(add(f'{name}.fits', 'aia', key), data, h)
  # EXPTIME = NaN as the card text: astropy parses it only on access.
  nan_card = add('exptime_nan_card.fits', 'aia', "unparsable header card "
                 "'EXPTIME'")
  raw = open(_write(nan_card, data, header), 'rb').read()
  at = raw.index(b'EXPTIME =')
  with open(nan_card, 'wb') as f:
    f.write(raw[:at] + f'{"EXPTIME":<8}= {"NaN":>20}'.ljust(80).encode()
            + raw[at + 80:])
  h = header.copy()
  h['EXPTIME'] = 0.0
  _write(add('exptime_0.fits', 'aia', 'EXPTIME 0'), data, h)
  _write(add('all_nan.fits', 'aia', 'all NaN'),
         np.full_like(data, np.nan), header)
  h = header.copy()
  h['QUALITY'] = 0x00010000
  _write(add('quality.fits', 'aia', 'QUALITY is 65536'), data, h)
  h = header.copy()
  h['WAVELNTH'] = 'three hundred'
  _write(add('wavelnth_text.fits', 'aia', 'WAVELNTH'), data, h)
  h = header.copy()
  h['CDELT1'] = h['CDELT2'] = header['CDELT1'] / 4
  _write(add('cutout.fits', 'aia', 'does not fit'), data, h)
  # A patch where a full disk is expected (prepare patch's input), and an
  # HMI patch where predict expects an AIA 304 one. A prepared AIA patch is
  # a valid predict input (its patch route): the corpus's one good file.
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    patches.patch_file(aia, add('aia_patch.fits', 'aia',
                                'heliographic patch', predict_ok=True))
    patches.patch_file(hmi, add('hmi_patch.fits', 'hmi',
                                'heliographic patch', 'patch of SDO/HMI'))
    pdata, pheader = _plain(cases['aia_patch.fits'].path)
    pheader['BUNIT'] = 'G'
    _write(add('aia_patch_gauss.fits', 'aia', 'heliographic patch',
               'BUNIT'), pdata, pheader)
    # A full-disk image in HDU 2 (tile-compressed), behind a table.
    fits.HDUList([
        fits.PrimaryHDU(),
        fits.BinTableHDU.from_columns(
            [fits.Column(name='a', format='E', array=np.zeros(3))]),
        fits.CompImageHDU(data, header)]).writeto(
            add('compressed_hdu2.fits', 'aia', 'HDU 2', 'HDU 2'))
  shutil.rmtree(src_dir)
  return cases


if __name__ == '__main__':
  for case_name, case in make_corpus(sys.argv[1]).items():
    print(case_name, case.fragment)
