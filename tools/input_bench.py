"""Input-pipeline benchmark: global batches per second from sdo_ar.

  python -m tools.input_bench --config=configs/rhp.py [--batch 32] \
      [--crop 512] [--batches 20] [--warmup 3] [--data-dir data/tfds]

Times the code path of train.py: `input_pipeline.load_source` of
config.train_split, the config resolved by `train._resolve` (global batch,
checks, the SYNTHETIC flag), and `input_pipeline.batches` under the data
sharding of the training mesh, run by `input_pipeline.Prefetcher`
(config.prefetch batches ahead). The consumer only waits for each global
batch to be ready, so the figures are the most the pipeline can deliver to
a train step. Prints one JSON line; exit code 2 (one line, no traceback)
when the config or the data set is unusable.
"""

import argparse
import json
import statistics
import sys
import time

import jax
import numpy as np

from magjax import config_utils
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


def time_batches(source, config, warmup, count):
  """Seconds between consecutive global batches, after `warmup` untimed ones.

  Each interval ends when the batch's arrays are ready on the devices.
  """
  data = input_pipeline.Prefetcher(
      input_pipeline.batches(source, config, 0, warmup + count,
                             data_sharding()),
      config.prefetch)
  times = []
  try:
    last = time.perf_counter()
    for step, batch in data:
      jax.block_until_ready(batch)
      now = time.perf_counter()
      if step >= warmup:
        times.append(now - last)
      last = now
  finally:
    data.close()
  return times


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
  args = p.parse_args(argv)
  if args.batches < 1 or args.warmup < 0:
    p.error('need --batches >= 1 and --warmup >= 0')
  try:
    config = config_utils.load_config_file(args.config)
    if args.batch is not None:
      config.batch_size = args.batch
      config.per_device_batch_size = 0
    if args.crop is not None:
      config.crop_size = args.crop
    if args.data_dir is not None:
      config.data_dir = args.data_dir
    source = input_pipeline.load_source(config, config.train_split)
    config = train_lib._resolve(config, source)  # pylint: disable=protected-access
  except (FileNotFoundError, ValueError, UserError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  times = time_batches(source, config, args.warmup, args.batches)
  total = sum(times)
  name, version = dataset_version(source)
  print(json.dumps({
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
  }))
  return 0


if __name__ == '__main__':
  sys.exit(main())
