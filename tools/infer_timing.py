"""The timing protocol shared by tools/infer_bench.py (JAX) and
tools/torch_infer.py (PyTorch, in the torch venv): imports NumPy and
magjax.evaluation.tiling only, which both environments have."""

import resource
import statistics
import time

from magjax.evaluation import tiling


def peak_rss_mb():
  """This process's peak resident memory, MB."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def measure(fn, batch, images, tile, overlap, warmup, repeats):
  """(median seconds per pass, tiles per pass): a pass generates every
  image by overlap-blended tiles, tiles of all images sharing batches of
  `batch` (as batch predict does)."""
  for _ in range(warmup):
    tiling.tiled_apply_many(fn, images, tile, overlap, batch)
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    tiling.tiled_apply_many(fn, images, tile, overlap, batch)
    times.append(time.perf_counter() - start)
  tiles = sum(len(tiling.Tiled(x, tile, overlap).corners) for x in images)
  return statistics.median(times), tiles


def result(framework, seconds, tiles, patches, batch, tile, overlap, shape,
           **extra):
  """The benchmark's JSON line (a dict)."""
  return {'framework': framework, 'batch': batch, 'tile': tile,
          'overlap': overlap, 'patch_shape': list(shape),
          'patches': patches, 'tiles_per_patch': tiles // patches,
          'patches_per_s': round(patches / seconds, 4),
          'tiles_per_s': round(tiles / seconds, 3),
          'ms_per_patch': round(1000 * seconds / patches, 1),
          'peak_rss_mb': round(peak_rss_mb(), 1), **extra}
