"""Benchmark: seconds per 4096^2 AIA + HMI pair, and peak memory per worker.

  python -m tools.prep_bench [--repeats 3] [--cache .cache/bench]

Inputs: a 4096^2 SYNTHETIC AIA 304 file from data_prep.synthesize (rendered
once, ~30 s, then cached), and a real 4096^2 hmi.M_720s magnetogram from the
test-data cache (data_prep.test_data). Without the generator, the AIA input
is sunpy's real 128^2 AIA 171 level-1 file upsampled to 4096^2 (header
rescaled; the 304 A check relaxed); without the cache, the synthetic HMI.

The timed work is what one ``prepare build`` worker does per pair: read and
validate, calibrate, extract the patch and write it, for both files. It runs
in a fresh child process pinned to one thread (OMP/BLAS), so the figures are
per core; peak memory is the child's ``ru_maxrss`` (imports included).
Prints one JSON line.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

SIZE = 4096
BENCH_TIME = '2012-06-01T00:00:00'
_ONE_THREAD = {k: '1' for k in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS',
                                'MKL_NUM_THREADS', 'NUMEXPR_NUM_THREADS')}


def _upsampled_aia(cache):
  """sunpy's real AIA 171 level-1 file resampled to 4096^2 (fallback)."""
  import numpy as np
  import sunpy.data.test
  from astropy.io import fits
  from scipy import ndimage
  from data_prep import fitsio
  path = cache / 'aia_171_upsampled_4096.fits'
  if path.is_file():
    return path
  with fits.open(sunpy.data.test.get_test_filepath('aia_171_level1.fits')) as h:
    header, data = h[0].header.copy(), h[0].data
  factor = SIZE / data.shape[0]
  big = ndimage.zoom(data.astype(np.float32), factor, order=1)
  for axis in (1, 2):
    header[f'CDELT{axis}'] /= factor
    header[f'CRPIX{axis}'] = (header[f'CRPIX{axis}'] - 0.5) * factor + 0.5
  header.add_history('magjax bench: real AIA 171 test file upsampled to 4096')
  fitsio.write_fits_atomic(path, big, header)
  return path


def prepare_inputs(cache):
  """(aia_path, hmi_path, description) for the benchmark."""
  cache.mkdir(parents=True, exist_ok=True)
  sources = {}
  try:
    from data_prep import synthesize
    aia, syn_hmi = synthesize.synthesize_pair(BENCH_TIME, SIZE, 0,
                                              cache / 'synthetic',
                                              bad_fraction=0.0)
    sources['aia'] = 'SYNTHETIC 304 (data_prep.synthesize)'
  except ImportError:
    aia, syn_hmi = _upsampled_aia(cache), None
    sources['aia'] = 'real AIA 171 test file upsampled (wavelength relaxed)'
  from data_prep import test_data
  try:
    hmi = test_data.fill_cache()[0]
    sources['hmi'] = f'real hmi.M_720s ({hmi.name})'
  except test_data.CacheError:
    if syn_hmi is None:
      raise
    hmi = syn_hmi
    sources['hmi'] = 'SYNTHETIC (test-data cache unavailable)'
  return Path(aia), Path(hmi), sources


def worker(aia, hmi, repeats, any_wavelength):
  """Runs in the child: times `repeats` pairs; returns a dict."""
  warnings.simplefilter('ignore')
  from data_prep import patches
  wavelength = None if any_wavelength else 304
  walls, cpus = [], []
  with tempfile.TemporaryDirectory() as tmp:
    for _ in range(repeats):
      w0, c0 = time.perf_counter(), time.process_time()
      patches.patch_file(aia, Path(tmp) / 'aia.fits', wavelength=wavelength)
      patches.patch_file(hmi, Path(tmp) / 'hmi.fits')
      walls.append(time.perf_counter() - w0)
      cpus.append(time.process_time() - c0)
  peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  return {'wall_s': walls, 'cpu_s': cpus, 'peak_rss_mb': peak_kb / 1024}


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m tools.prep_bench',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=3)
  parser.add_argument('--cache', type=Path,
                      default=Path(__file__).resolve().parent.parent
                      / '.cache' / 'bench')
  parser.add_argument('--worker', nargs=2, metavar=('AIA', 'HMI'),
                      help=argparse.SUPPRESS)
  parser.add_argument('--any-wavelength', action='store_true',
                      help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.worker:
    print(json.dumps(worker(*args.worker, args.repeats, args.any_wavelength)))
    return 0
  try:
    aia, hmi, sources = prepare_inputs(args.cache)
  except Exception as exc:  # report, do not trace: inputs are optional
    print(f'error: cannot prepare benchmark inputs: {exc}', file=sys.stderr)
    return 2
  cmd = [sys.executable, '-m', 'tools.prep_bench', '--worker', str(aia),
         str(hmi), '--repeats', str(args.repeats)]
  if 'upsampled' in sources['aia']:
    cmd.append('--any-wavelength')
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                        env={**os.environ, **_ONE_THREAD})
  if proc.returncode != 0:
    tail = (proc.stderr.strip().splitlines() or ['?'])[-1]
    print(f'error: benchmark worker failed: {tail}', file=sys.stderr)
    return 2
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  walls, cpus = sorted(result['wall_s']), sorted(result['cpu_s'])
  print(json.dumps({
      'bench': 'data_prep patch pair', 'size': SIZE,
      'seconds_per_pair': round(walls[len(walls) // 2], 3),
      'cpu_seconds_per_pair': round(cpus[len(cpus) // 2], 3),
      'seconds_per_pair_all': [round(w, 3) for w in result['wall_s']],
      'peak_rss_mb_per_worker': round(result['peak_rss_mb'], 1),
      'threads': 1, 'aia': sources['aia'], 'hmi': sources['hmi'],
      'targets': {'seconds_per_pair': 3.0, 'peak_rss_mb_per_worker': 1536},
  }))
  return 0


if __name__ == '__main__':
  sys.exit(main())
