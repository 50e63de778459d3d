"""Shared command-line plumbing of the absl entry points (train.py, eval.py).

absl + ml_collections.config_flags print raw tracebacks for an unknown
`--config.x` override (AttributeError / KeyError) or a config file that fails
to load; `parse_flags` turns every flag error into one line and exit code 2.
"""

import ast
import sys

from absl import flags

from magjax_common.errors import fail, one_line

FLAGS = flags.FLAGS


def parse_flags(argv):
  """absl flag parsing with one-line errors (exit 2) instead of tracebacks.

  config_flags raises a raw AttributeError/KeyError for an unknown
  `--config.x` override, and wraps errors of get_config().
  """
  try:
    argv = FLAGS(argv)
    if FLAGS.config is not None:
      FLAGS.config.get('seed')  # a config file that failed to load raises here
    return argv
  except flags.Error as e:
    message = _config_flags_line(str(e))
  except (AttributeError, KeyError) as e:
    message = _unknown_field(e)
  except (OSError, ValueError, TypeError) as e:
    message = _config_flags_line(str(e))
  sys.exit(fail(message))


def _unknown_field(error):
  """'unknown config field ...' from config_flags' (nested-quoted) KeyError."""
  text = str(error)
  for _ in range(3):  # KeyError reprs nest quotes: "'\\'ngff\\'...'"
    if text[:1] not in ('"', "'"):
      break
    try:
      text = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      break
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  name = lines[0].strip('\'"') if lines else text
  hint = f' ({lines[1]})' if len(lines) > 1 else ''
  if ' ' in name:  # a message, not a field name
    return f'bad --config.* override: {name}'
  return f'unknown config field {name!r} in a --config.* override{hint}'


def _config_flags_line(text):
  """one_line, except for config_flags' 'Configuration is not available'
  message, whose cause is in its last two lines."""
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if len(lines) > 2 and lines[0].startswith('Configuration is not available'):
    return f'{lines[-2]}: {lines[-1]}'
  return one_line(text)
