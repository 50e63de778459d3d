"""Atomic file writes: the complete file appears under its name, or nothing.

Every output of the project (patches, synthetic FITS, metrics, reports,
generated magnetograms, test-data files) goes through `atomic_write`, so a
killed process or a full disk never leaves a half-written file under a final
name. The tmp file lives in the destination directory (same file system, so
`os.replace` is atomic on POSIX) and is named `.<name>.<random>.tmp`, which
`data_prep.build` removes when it cleans up after a killed run.
"""

import contextlib
import io
import os
import tempfile

from magjax_common.errors import WriteError, write_reason


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
  """Yields a file object; on success the file is fsynced and renamed.

  On any exception (including KeyboardInterrupt) the tmp file is removed and
  the exception propagates; nothing appears under `path`.
  """
  path = os.fspath(path)
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                             suffix='.tmp', dir=directory)
  try:
    with os.fdopen(fd, mode) as f:
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(FileNotFoundError):
      os.unlink(tmp)
    raise


def write_bytes_atomic(path, data):
  """Writes `data` (bytes) to `path` atomically."""
  with atomic_write(path) as f:
    f.write(data)


def write_hdulist_atomic(path, hdulist, output_verify='silentfix'):
  """Writes an astropy HDUList to `path` atomically.

  Serialised in memory first: astropy's own write into a file object turns
  a full disk (ENOSPC / EFBIG) into an AttributeError from its free-space
  check; a plain write of the bytes raises the OSError itself.
  """
  buffer = io.BytesIO()
  hdulist.writeto(buffer, output_verify=output_verify)
  write_bytes_atomic(path, buffer.getvalue())


def write_files_atomic(files, what='the outputs'):
  """Writes {path: bytes}: every file appears complete under its name, or
  (the disk refusing one) none of them changes.

  All are written and fsynced as tmp files first, then renamed.

  Raises:
    WriteError: one line naming the file, the reason and that nothing
      changed (exit code 3).
  """
  staged = []
  try:
    for path, data in files.items():
      directory = os.path.dirname(os.path.abspath(path))
      os.makedirs(directory, exist_ok=True)
      fd, tmp = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.',
                                 suffix='.tmp', dir=directory)
      staged.append((tmp, path))
      with os.fdopen(fd, 'wb') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
      os.chmod(tmp, 0o644)
  except OSError as e:
    for tmp, _ in staged:
      with contextlib.suppress(OSError):
        os.unlink(tmp)
    raise WriteError(f'could not write {path}: {write_reason(e)} (none of '
                     f'{what} changed)') from e
  for tmp, path in staged:
    os.replace(tmp, path)
