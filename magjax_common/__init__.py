"""The bottom layer of the project: what `data_prep` and `magjax` both need.

Nothing here imports either of them (tests/test_layers.py checks it):

- `errors`: `UserError`, the one error a user can fix (a bad flag, setting,
  input file or workdir), printed as one line `error: ...` with exit code 2,
  and `one_line`, the one-line form of any exception;
- `fileio`: atomic writes (every output appears whole or not at all);
- `version()`: the installed magjax version, for provenance.
"""

from importlib import metadata


def version():
  """The installed magjax version ('unknown' outside an install)."""
  try:
    return metadata.version('magjax')
  except metadata.PackageNotFoundError:
    return 'unknown'
