"""magjax.predict: FITS in, generated magnetogram FITS out, one-line errors."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import sunpy.data.test
import sunpy.map
from astropy.io import fits
from astropy.wcs import WCS

import eval_helpers
from data_prep import patches
from data_prep import synthesize
from magjax import predict
from magjax import config_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP = 4


def _config():
  """:tiny, but deep enough (num_downs 6) to have a dropout layer."""
  config = eval_helpers.tiny_config('rhp')
  config.model.num_downs = 6
  config.crop_size = 64
  config.eval_tile_overlap = 16
  return config


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('predict')
  workdir = str(root / 'runs' / 'rhp')
  config = _config()
  eval_helpers.save_checkpoint(workdir, config, step=STEP)
  aia, hmi = synthesize.synthesize_pair('2012-10-05T00:00:00', 256, 0,
                                        str(root / 'raw'))
  patch_path = str(root / 'aia_patch.fits')
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    patches.patch_file(aia, patch_path)
  return {'root': root, 'workdir': workdir, 'config': config,
          'aia': str(aia), 'hmi': str(hmi), 'patch': patch_path}


def _cli(*args):
  return subprocess.run(
      [sys.executable, '-m', 'magjax.predict', *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))


def _open(path):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    return fits.open(path)


def test_round_trip_on_a_synthetic_full_disk_file(setup):
  out = str(setup['root'] / 'magnetogram.fits')
  assert predict.main(['--workdir', setup['workdir'], '--input', setup['aia'],
                       '--output', out]) == 0
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    smap = sunpy.map.Map(out)
  assert smap.data.shape == (800, 900)
  assert smap.coordinate_frame.name == 'heliographic_stonyhurst'
  assert smap.unit.to_string() == 'G'
  with _open(out) as hdul, _open(setup['patch']) as patch:
    assert len(hdul) == 1
    data, header = hdul[0].data, hdul[0].header
    assert data.dtype == np.dtype('>f4')
    patch_header, patch_data = patch[0].header, patch[0].data
  # The patch WCS (data_prep's calibration + extraction of the same file).
  assert WCS(header).wcs.compare(WCS(patch_header).wcs)
  assert header['CTYPE1'] == 'HGLN-CAR' and header['CDELT1'] == 0.1
  for key in ('DATE-OBS', 'T_OBS', 'HGLN_OBS', 'HGLT_OBS', 'DSUN_OBS',
              'RSUN_REF'):
    assert header[key] == patch_header[key], key
  # Provenance.
  assert header['BUNIT'] == 'G'
  assert header['MODEL'] == 'rhp'
  assert header['CKPTSTEP'] == STEP
  assert header['CFGHASH'] == config_utils.config_hash(setup['config'])
  assert header['TRAINSYN'] is True
  assert header['SYNTHETIC'] is True  # the input is synthetic
  assert header['SRC_FILE'] == os.path.basename(setup['aia'])
  assert header['NSAMPLES'] == 0
  assert header['MJXVER']
  history = '\n'.join(header['HISTORY'])
  assert 'predict: rhp generator, checkpoint step 4' in history
  assert 'SYNTHETIC' in history
  # Finite on the disk, NaN exactly where the input patch is NaN.
  valid = np.isfinite(patch_data)
  assert valid.mean() > 0.9
  np.testing.assert_array_equal(np.isfinite(data), valid)
  assert np.all(np.abs(data[valid]) <= 200.0)
  assert np.std(data[valid]) > 0


def test_a_binned_model_generates_at_its_resolution_with_the_wcs(setup):
  """A model trained on patches binned 2 x 2 (config.patch_binning) gets
  its input at that resolution and writes its output on that grid."""
  config = _config()
  config.patch_binning = 2
  workdir = str(setup['root'] / 'runs' / 'binned')
  eval_helpers.save_checkpoint(workdir, config, step=STEP)
  out = str(setup['root'] / 'binned.fits')
  assert predict.main(['--workdir', workdir, '--input', setup['patch'],
                       '--output', out]) == 0
  with _open(out) as hdul, _open(setup['patch']) as patch:
    data, header = hdul[0].data, hdul[0].header
    full = patch[0].header
  assert data.shape == (400, 450)
  assert header['CDELT1'] == 0.2 and header['CDELT2'] == 0.2
  # the same world coordinates at the binned grid's pixel centres
  world = WCS(header).pixel_to_world_values([0.0, 449.0], [0.0, 399.0])
  wanted = WCS(full).pixel_to_world_values([0.5, 898.5], [0.5, 798.5])
  np.testing.assert_allclose(world, wanted, atol=1e-9)
  assert 'binned 2x2' in '\n'.join(header['HISTORY'])


def test_samples_write_a_stddev_hdu_on_a_prepared_patch(setup):
  out = str(setup['root'] / 'mc.fits')
  assert predict.main(['--workdir', setup['workdir'], '--input',
                       setup['patch'], '--output', out, '--samples', '3',
                       '--step', str(STEP)]) == 0
  with _open(out) as hdul, _open(setup['patch']) as patch:
    assert [h.name for h in hdul] == ['PRIMARY', 'STDDEV']
    mean, std = hdul[0].data, hdul['STDDEV'].data
    assert hdul[0].header['NSAMPLES'] == 3
    assert hdul['STDDEV'].header['BUNIT'] == 'G'
    assert WCS(hdul['STDDEV'].header).wcs.compare(WCS(patch[0].header).wcs)
    assert WCS(hdul[0].header).wcs.compare(WCS(patch[0].header).wcs)
    assert hdul[0].header['SRC_FILE'] == 'aia_patch.fits'
    valid = np.isfinite(patch[0].data)
  assert mean.shape == std.shape == (800, 900)
  assert np.all(std[valid] >= 0) and np.mean(std[valid] > 0) > 0.5
  np.testing.assert_array_equal(np.isfinite(std), valid)


def _assert_one_line_error(proc, fragment, output):
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert lines[0].startswith('error: ') and fragment in lines[0], lines[0]
  assert not os.path.exists(output)


def test_real_aia_171_file_is_a_wrong_wavelength(setup):
  path = sunpy.data.test.get_test_filepath('aia_171_level1.fits')
  out = str(setup['root'] / 'x171.fits')
  proc = _cli('--workdir', setup['workdir'], '--input', path, '--output', out)
  _assert_one_line_error(proc, 'WAVELNTH is 171', out)


def test_hmi_file_is_refused(setup):
  out = str(setup['root'] / 'xhmi.fits')
  proc = _cli('--workdir', setup['workdir'], '--input', setup['hmi'],
              '--output', out)
  _assert_one_line_error(proc, 'SDO/HMI file', out)


def test_missing_checkpoint(setup, tmp_path):
  out = str(tmp_path / 'x.fits')
  proc = _cli('--workdir', str(tmp_path), '--input', setup['aia'],
              '--output', out)
  _assert_one_line_error(proc, 'no checkpoint', out)


def test_in_process_errors(setup, tmp_path, capsys):
  """Corrupt file, unknown instrument, missing workdir, missing step,
  --samples 1."""
  truncated = tmp_path / 'truncated.fits'
  truncated.write_bytes(open(setup['aia'], 'rb').read()[:20000])
  other = tmp_path / 'other.fits'
  fits.PrimaryHDU(np.zeros((8, 8), np.float32)).writeto(other)
  out = str(tmp_path / 'o.fits')
  cases = [
      (['--input', str(truncated)], 'truncated'),
      (['--input', str(other)], 'not a 304 A image of SDO/AIA, STEREO/EUVI'),
      (['--input', setup['aia'], '--step', '99'], 'no checkpoint at step 99'),
      (['--input', setup['aia'], '--samples', '1'], '--samples 1'),
      (['--input', setup['aia'], '--config',
        os.path.join(ROOT, 'configs', 'rhp.py') + ':nope'],
       "unknown config string 'nope'"),
      (['--input', setup['aia'], '--config',
        os.path.join(ROOT, 'configs', 'none.py')],
       'no such config file'),
  ]
  for args, fragment in cases:
    assert predict.main(['--workdir', setup['workdir'], '--output', out]
                        + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err
  assert predict.main(['--workdir', str(tmp_path / 'none'), '--input',
                       setup['aia'], '--output', out]) == 2
  assert 'no such workdir' in capsys.readouterr().err
  assert not os.path.exists(out)


def test_a_damaged_checkpoint_is_refused_by_step_and_passed_over_without(
    setup, tmp_path, capsys):
  workdir = str(tmp_path / 'run')
  eval_helpers.save_checkpoint(workdir, setup['config'], step=1)
  eval_helpers.save_checkpoint(workdir, setup['config'], step=2)
  step_dir = tmp_path / 'run' / 'checkpoints' / '2'
  victim = max((p for p in step_dir.rglob('*') if p.is_file()),
               key=lambda p: p.stat().st_size)
  victim.write_bytes(victim.read_bytes()[:-1])
  out = str(tmp_path / 'o.fits')
  assert predict.main(['--workdir', workdir, '--input', setup['aia'],
                       '--output', out, '--step', '2']) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'checkpoint 2' in err[0], err
  assert 'is damaged' in err[0] and 'newest intact checkpoint: 1' in err[0]
  assert not os.path.exists(out)
  assert predict.main(['--workdir', workdir, '--input', setup['aia'],
                       '--output', out]) == 0
  captured = capsys.readouterr()
  assert 'checkpoint 2 is damaged' in captured.err
  assert 'using checkpoint 1' in captured.err
  with fits.open(out) as hdul:
    assert hdul[0].header['CKPTSTEP'] == 1
