"""Trains pix2pix / cat-attention / RHP-attention magnetogram generators.

  python train.py --config=configs/rhp.py:cpu --workdir=runs/rhp \
      --config.batch_size=8

Rerunning the same command resumes from the workdir's latest checkpoint.
Exit codes: 0 done or stopped cleanly (SIGTERM/SIGINT, max_train_seconds),
1 non-finite loss, 2 bad flags, config, data or checkpoints (a workdir in
use, no intact checkpoint), 3 a checkpoint or event file the disk would not
take (the last good checkpoint is named; rerun to resume from it).
"""

import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from magjax import cli
from magjax import compile_cache
from magjax import host_memory
from magjax import xla_env
from magjax.training import train as train_lib
from magjax_common.errors import fail

FLAGS = flags.FLAGS

flags.DEFINE_string('workdir', None, 'Directory for checkpoints and logs.')
config_flags.DEFINE_config_file(
    'config', None, 'Training configuration (configs/*.py[:cpu|:tiny]).',
    lock_config=True)


def main(argv):
  if len(argv) > 1:
    sys.exit(fail(f'unexpected arguments {argv[1:]}'))
  if FLAGS.config is None or not FLAGS.workdir:
    sys.exit(fail('--config and --workdir are required'))
  host_memory.tune_malloc()  # keep freed pages: see magjax/host_memory.py
  xla_env.apply_defaults()  # before the backend starts: magjax/xla_env.py
  compile_cache.configure(FLAGS.config.get('compilation_cache_dir', 'auto'))
  sys.exit(train_lib.run(FLAGS.config, FLAGS.workdir))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
