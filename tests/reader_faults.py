"""A reader for magjax.predict_batch's reader processes that dies on some
inputs (imported by name in the spawned reader: tests/ is on its path)."""
import os

from magjax import predict_batch

DIE_MARK = 'reader_dies'


def read_or_die(path, *args):
  """predict_batch.read_input, except that a reader given a file whose
  name holds DIE_MARK dies at once, as one killed for memory would."""
  if DIE_MARK in os.path.basename(path):
    os._exit(137)  # pylint: disable=protected-access
  return predict_batch.read_input(path, *args)
