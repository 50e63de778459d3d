"""Input-pipeline benchmark: crops per second, per core, and host memory.

  python -m tools.input_bench --config=configs/rhp.py [--batch 32] \
      [--crop 512] [--batches 20] [--warmup 3] [--data-dir data/tfds] \
      [--cache auto|device|host|off]

Times the code path of train.py: `input_pipeline.load_source` of
config.train_split, the config resolved by `train._resolve` (global batch,
checks, the SYNTHETIC flag), the `input_pipeline.Feed` of
config.input_cache (its cache filled first, timed on its own), and
`input_pipeline.batches` under the data sharding of the training mesh, run
by `input_pipeline.Prefetcher` (config.prefetch batches ahead). The
consumer only waits for each global batch to be ready, so the figures are
the most the pipeline can deliver to a train step.

`crops_per_s_per_core` is crops per CPU-second of this process (all its
threads, user + system, over the timed batches): how many host cores a
given crop rate costs. Prints one line `... crops/s per core ...` and one
JSON line; exit code 2 (one line, no traceback) when the config or the data
set is unusable.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time

import jax
import numpy as np

from magjax import config_utils
from magjax import host_memory
from magjax import input_cache
from magjax import input_pipeline
from magjax.training import train as train_lib
from magjax_common.errors import UserError


def dataset_version(source):
  """(full name, version) of a TFDS source; (None, None) for other sources."""
  info = getattr(source, 'dataset_info', None)
  if info is None:
    return None, None
  return info.full_name, str(info.version)


def data_sharding():
  """The batch sharding of the training loop (train._train): 'data' axis."""
  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
  return jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))


def cpu_seconds():
  """User + system CPU seconds of this process so far (all threads)."""
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def resident_megabytes():
  """(current, peak) resident set size of this process in MiB."""
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
  try:
    with open('/proc/self/statm', encoding='ascii') as f:
      pages = int(f.read().split()[1])
    current = pages * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
  except (OSError, ValueError, IndexError):
    current = float('nan')
  return current, peak


def time_batches(source, config, warmup, count, feed=None):
  """(seconds between consecutive global batches after `warmup` untimed
  ones, CPU-seconds of the process over those timed batches).

  Each interval ends when the batch's arrays are ready on the devices.
  """
  data = input_pipeline.Prefetcher(
      input_pipeline.batches(source, config, 0, warmup + count,
                             data_sharding(), feed),
      config.prefetch)
  times = []
  try:
    last, cpu_start = time.perf_counter(), cpu_seconds()
    for step, batch in data:
      jax.block_until_ready(batch)
      now = time.perf_counter()
      if step >= warmup:
        times.append(now - last)
      else:  # the timed interval starts at the last warm-up batch
        cpu_start = cpu_seconds()
      last = now
    cpu = cpu_seconds() - cpu_start
  finally:
    data.close()
  return times, cpu


def summary_line(result):
  """The human line: crops/s, per core, and memory."""
  return (f'input pipeline ({result["input_cache"]} cache, crop '
          f'{result["crop_size"]}, batch {result["batch"]}): '
          f'{result["crops_per_s"]:.0f} crops/s on '
          f'{result["cores_used"]:.2f} cores = '
          f'{result["crops_per_s_per_core"]:.0f} crops/s per core; host '
          f'memory {result["host_rss_mb"]:.0f} MiB resident '
          f'({result["host_cache_mb"]:.0f} MiB cache), cache fill '
          f'{result["cache_fill_s"]:.1f} s')


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m tools.input_bench',
                              description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/rhp.py',
                 help='config file, optionally with a config string')
  p.add_argument('--batch', type=int, default=None,
                 help='global batch (default: the config\'s)')
  p.add_argument('--crop', type=int, default=None,
                 help='crop size (default: the config\'s crop_size)')
  p.add_argument('--batches', type=int, default=20, help='timed batches')
  p.add_argument('--warmup', type=int, default=3, help='untimed batches first')
  p.add_argument('--data-dir', default=None,
                 help='TFDS data_dir (default: the config\'s data_dir)')
  p.add_argument('--cache', choices=input_cache.MODES, default=None,
                 help='config.input_cache (default: the config\'s)')
  args = p.parse_args(argv)
  if args.batches < 1 or args.warmup < 0:
    p.error('need --batches >= 1 and --warmup >= 0')
  host_memory.tune_malloc()  # as train.py does
  try:
    config = config_utils.load_config_file(args.config)
    if args.batch is not None:
      config.batch_size = args.batch
      config.per_device_batch_size = 0
    if args.crop is not None:
      config.crop_size = args.crop
    if args.data_dir is not None:
      config.data_dir = args.data_dir
    if args.cache is not None:
      config.input_cache = args.cache
    source = input_pipeline.with_binning(
        input_pipeline.load_source(config, config.train_split), config)
    config = train_lib._resolve(config, source)  # pylint: disable=protected-access
    feed = input_pipeline.Feed(source, config, data_sharding())
  except (FileNotFoundError, ValueError, UserError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  times, cpu = time_batches(source, config, args.warmup, args.batches, feed)
  total = sum(times)
  crops = len(times) * config.batch_size
  rss, peak = resident_megabytes()
  name, version = dataset_version(source)
  result = {
      'bench': 'input pipeline', 'dataset': config.dataset,
      'dataset_full_name': name, 'dataset_version': version,
      'data': input_pipeline.data_label(config.synthetic),
      'synthetic': config.synthetic, 'split': config.train_split,
      'examples': len(source), 'batch': config.batch_size,
      'crop_size': config.crop_size, 'prefetch': config.prefetch,
      'devices': jax.device_count(), 'batches': len(times),
      'warmup': args.warmup,
      'batches_per_s': round(len(times) / total, 3),
      'images_per_s': round(len(times) * config.batch_size / total, 2),
      'ms_per_batch_median': round(1e3 * statistics.median(times), 2),
      'ms_per_batch_min': round(1e3 * min(times), 2),
      'input_cache': feed.mode,
      'cache_fill_s': round(feed.cache.fill_seconds if feed.cache else 0.0,
                            3),
      'cache_mb': round(feed.cache.nbytes / 2 ** 20 if feed.cache else 0.0,
                        1),
      'host_cache_mb': round(feed.host_megabytes(), 1),
      'crops_per_s': round(crops / total, 2),
      'cpu_s': round(cpu, 3),
      'cores_used': round(cpu / total, 3),
      'crops_per_s_per_core': round(crops / cpu, 2) if cpu > 0 else None,
      'cores_available': len(os.sched_getaffinity(0)),
      'host_rss_mb': round(rss, 1), 'host_peak_rss_mb': round(peak, 1),
  }
  print(summary_line(result))
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
