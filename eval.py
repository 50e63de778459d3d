"""Evaluates a trained magnetogram generator (Table-1 metrics).

  python eval.py --config=configs/rhp.py --workdir=runs/rhp [--step=N]
      [--split=validation] [--eval_mode=both]

Without --config, the config saved with the checkpoint is used. Writes
<workdir>/eval/metrics.json, metrics.md and samples.npz (see
magjax/evaluate.py). Exit codes: 0 done, 2 bad flags, config, checkpoint or
data (one line `error: ...` on stderr).
"""

import re
import sys

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags

from magjax import evaluate
from magjax import provenance

FLAGS = flags.FLAGS

flags.DEFINE_string('workdir', None, 'Training workdir holding checkpoints/.')
flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).')
flags.DEFINE_string('split', None, 'Data split (default: config.eval_split).')
flags.DEFINE_string('eval_mode', None, "'crops', 'tiled' or 'both' (default: "
                    'config.eval_mode); also works with the checkpoint\'s '
                    'config, unlike --config.eval_mode.')
config_flags.DEFINE_config_file(
    'config', None, 'Configuration (configs/*.py[:cpu|:tiny]); default: the '
    'one saved with the checkpoint.', lock_config=False)


def parse_flags(argv):
  """absl flag parsing with one-line errors (exit 2) instead of tracebacks."""
  try:
    argv = FLAGS(argv)
    if FLAGS.config is not None:
      FLAGS.config.get('seed')  # a config file that failed to load raises here
    return argv
  except flags.Error as e:
    message = _one_line(str(e))
  except (AttributeError, KeyError) as e:
    text = str(e).replace('\\', '')
    name = re.findall(r"'([A-Za-z_][A-Za-z0-9_.]*)'", text)
    hint = re.findall(r'Did you mean "([^"]+)"', text)
    message = (f'unknown config field {name[0] if name else text!r} in a '
               '--config.* override'
               + (f' (did you mean {hint[0]!r}?)' if hint else ''))
  except (OSError, ValueError, TypeError) as e:
    message = _one_line(str(e))
  print(f'error: {message}', file=sys.stderr)
  sys.exit(2)


def _one_line(text):
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if len(lines) > 1 and any(l.startswith('Traceback') for l in lines):
    return f'{lines[0]} {lines[-1]}'
  return lines[0] if lines else text


def main(argv):
  if len(argv) > 1:
    print(f'error: unexpected arguments {argv[1:]}', file=sys.stderr)
    sys.exit(2)
  if not FLAGS.workdir:
    print('error: --workdir is required', file=sys.stderr)
    sys.exit(2)
  config = FLAGS.config
  if config is None:
    try:
      config, _ = provenance.checkpoint_config(FLAGS.workdir, FLAGS.step)
    except (FileNotFoundError, ValueError) as e:
      print(f'error: {_one_line(str(e))}', file=sys.stderr)
      sys.exit(2)
  if FLAGS.eval_mode:
    config = ml_collections.ConfigDict(config.to_dict())
    config.eval_mode = FLAGS.eval_mode
  sys.exit(evaluate.run(config, FLAGS.workdir, FLAGS.step, FLAGS.split))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
