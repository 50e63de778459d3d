"""One user-error class and its one-line message, for every command.

A `UserError` is a problem the user can fix: a bad flag or setting, an
input file that is not what the command takes, a workdir without a
checkpoint. Its message is one line that names the thing and the problem.
Every command line prints it as `error: <message>` on stderr, prints nothing
after it, and exits with `EXIT_USAGE` (`EXIT_WRITE` for a `WriteError`, an
output the disk would not take); batch commands record the message as
a skip reason and go on. Subclasses say where the problem was found
(`data_prep.fitsio.DataError` for input files, for example).
"""

import sys

EXIT_USAGE = 2
EXIT_WRITE = 3  # an output could not be written (full or failing disk)

# What a failed write says, for `write_reason` (errno texts, and tensorstore's
# words for the same conditions).
_WRITE_REASONS = ('No space left on device', 'File too large',
                  'Disk quota exceeded', 'Read-only file system',
                  'Input/output error', 'Permission denied')


class UserError(Exception):
  """A problem the user can fix; the message is one line (exit code 2)."""
  exit_code = EXIT_USAGE


class WriteError(UserError):
  """An output that could not be written: full or failing disk (exit 3).

  The message names the output, the reason and what is still intact.
  """
  exit_code = EXIT_WRITE


def write_reason(error):
  """The OS's words for why a write failed ('No space left on device'):
  the first OSError's strerror in the exception's chain, else a known
  phrase in its text (tensorstore and orbax wrap errno in their own
  messages), else its first line."""
  seen = set()
  cause = error
  while cause is not None and id(cause) not in seen:
    seen.add(id(cause))
    if isinstance(cause, OSError) and cause.strerror:
      return cause.strerror
    cause = cause.__cause__ or cause.__context__
  text = str(error)
  for phrase in _WRITE_REASONS:
    if phrase.lower() in text.lower():
      return phrase
  return one_line(error)[:300]


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
  """Prints `error: <one line>` to stderr; returns the exit code for
  sys.exit (the error's own, EXIT_USAGE for a text or another exception)."""
  print(f'error: {one_line(error)}', file=stream or sys.stderr, flush=True)
  return getattr(error, 'exit_code', EXIT_USAGE)
