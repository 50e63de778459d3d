"""magjax.training.tb.Writer: synchronous event files that a full disk
cannot leave unreadable or hang."""

import errno
import os

import numpy as np
import pytest

from magjax.training import tb
from magjax_common.errors import WriteError


def test_scalars_text_and_images_are_read_back(tmp_path):
  writer = tb.Writer(str(tmp_path))
  writer.scalars(1, {'loss': 0.5, 'lr': 2e-4})
  writer.text(1, 'data', 'SYNTHETIC data')
  writer.images(2, {'samples': np.full((4, 6), 0.5)})
  writer.scalars(3, {'loss': 0.25})
  writer.close()
  scalars = tb.read_scalars(str(tmp_path))
  assert scalars['loss'] == [(1, 0.5), (3, 0.25)]
  assert scalars['lr'][0][0] == 1


class _FullDisk:
  """A file object that takes `room` more bytes, then raises ENOSPC."""

  def __init__(self, f, room):
    self._f, self._room = f, room

  def write(self, data):
    if len(data) > self._room:
      self._f.write(data[:self._room])
      self._f.flush()
      self._room = 0
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    self._room -= len(data)
    return self._f.write(data)

  def __getattr__(self, name):
    return getattr(self._f, name)


def test_a_full_disk_truncates_to_the_last_record_and_says_one_line(
    tmp_path):
  writer = tb.Writer(str(tmp_path))
  writer.scalars(1, {'loss': 0.5})
  path = writer.path
  good = os.path.getsize(path)
  record = writer._events._py_recordio_writer  # pylint: disable=protected-access
  record._writer = _FullDisk(record._writer, room=10)  # pylint: disable=protected-access
  with pytest.raises(WriteError) as info:
    writer.scalars(2, {'loss': 0.25})
  assert str(info.value) == (f'could not write TensorBoard events to {path}: '
                             'No space left on device')
  assert info.value.exit_code == 3
  assert os.path.getsize(path) == good
  writer.scalars(3, {'loss': 0.1})  # the writer is closed: a no-op
  writer.close()
  assert tb.read_scalars(str(tmp_path)) == {'loss': [(1, 0.5)]}
