"""One user-error class and its one-line message, for every command.

A `UserError` is a problem the user can fix: a bad flag or setting, an
input file that is not what the command takes, a workdir without a
checkpoint. Its message is one line that names the thing and the problem.
Every command line prints it as `error: <message>` on stderr, prints nothing
after it, and exits with `EXIT_USAGE`; batch commands record the message as
a skip reason and go on. Subclasses say where the problem was found
(`data_prep.fitsio.DataError` for input files, for example).
"""

import sys

EXIT_USAGE = 2


class UserError(Exception):
  """A problem the user can fix; the message is one line (exit code 2)."""


def one_line(error, with_type=False, whole=False):
  """The first non-empty line of an exception or a text.

  An exception without a message gives its type name; `with_type` prefixes
  the type name (for exceptions nobody expected). A text that embeds a
  traceback also gives its last line (the exception that ended it).
  `whole` joins every line instead, for records that must keep all of a
  message (a manifest's skip reason).
  """
  text = str(error)
  lines = [line.strip() for line in text.splitlines() if line.strip()]
  if not lines:
    return type(error).__name__ if isinstance(error, BaseException) else ''
  line = lines[0]
  if whole:
    line = ' '.join(lines)
  elif len(lines) > 1 and any(l.startswith('Traceback') for l in lines):
    line = f'{lines[0]} {lines[-1]}'
  if with_type and isinstance(error, BaseException):
    line = f'{type(error).__name__}: {line}'
  return line


def fail(error, stream=None):
  """Prints `error: <one line>` to stderr; returns EXIT_USAGE for sys.exit."""
  print(f'error: {one_line(error)}', file=stream or sys.stderr, flush=True)
  return EXIT_USAGE
