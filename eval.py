"""Evaluates a trained magnetogram generator (Table-1 metrics).

  python eval.py --config=configs/rhp.py --workdir=runs/rhp [--step=N]
      [--split=validation] [--eval_mode=both]

Without --config, the config saved with the checkpoint is used. Writes
<workdir>/eval/metrics.json, metrics.md and samples.npz (see
magjax/evaluation/evaluate.py). Exit codes: 0 done, 2 bad flags, config, checkpoint or
data (one line `error: ...` on stderr).
"""

import sys

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags

from magjax import checkpoints
from magjax import cli
from magjax import compile_cache
from magjax import config_schema
from magjax import host_memory
from magjax.evaluation import evaluate
from magjax_common.errors import UserError, fail

FLAGS = flags.FLAGS

flags.DEFINE_string('workdir', None, 'Training workdir holding checkpoints/.')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the newest '
                     'intact one).')
flags.DEFINE_string('split', None, 'Data split (default: config.eval_split).')
flags.DEFINE_string('eval_mode', None, "'crops', 'tiled' or 'both' (default: "
                    'config.eval_mode); also works with the checkpoint\'s '
                    'config, unlike --config.eval_mode.')
config_flags.DEFINE_config_file(
    'config', None, 'Configuration (configs/*.py[:cpu|:tiny]); default: the '
    'one saved with the checkpoint.', lock_config=False)


def main(argv):
  if len(argv) > 1:
    sys.exit(fail(f'unexpected arguments {argv[1:]}'))
  if not FLAGS.workdir:
    sys.exit(fail('--workdir is required'))
  config, saved = FLAGS.config, FLAGS.config is None
  try:
    if not saved:  # every setting in range before any work
      config_schema.check(config)
    # The newest intact checkpoint unless --step (a damaged one is refused).
    step = checkpoints.intact_step(FLAGS.workdir, FLAGS.step,
                                   say=checkpoints.note)
    if saved:
      config, _ = checkpoints.saved_config(FLAGS.workdir, step)
    if FLAGS.eval_mode:
      config = ml_collections.ConfigDict(config.to_dict())
      config.eval_mode = FLAGS.eval_mode
    config_schema.check(config, saved=saved)
  except UserError as e:
    sys.exit(fail(e))
  host_memory.tune_malloc()  # keep freed pages: see magjax/host_memory.py
  compile_cache.configure(config.get('compilation_cache_dir', 'auto'))
  sys.exit(evaluate.run(config, FLAGS.workdir, step, FLAGS.split))


if __name__ == '__main__':
  app.run(main, flags_parser=cli.parse_flags)
