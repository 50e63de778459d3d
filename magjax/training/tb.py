"""Training logs: TensorBoard event files (tensorboardX, no TensorFlow) and a
console progress line with ETA. Only process 0 writes; others get no-ops."""

import os
import sys
import time

import jax
import numpy as np

from magjax_common.errors import WriteError, write_reason


class Writer:
  """Scalars, images and text to a `<workdir>` event file (process 0 only).

  Written synchronously and flushed at every call (training calls it at
  log steps): tensorboardX's SummaryWriter writes from a thread that dies
  on a full disk while the training loop blocks on its full queue. A
  failed write truncates the file back to its last complete record and
  raises WriteError, so the file stays readable.
  """

  def __init__(self, logdir):
    self._events = None
    self._good = 0  # bytes of the file known complete
    if jax.process_index() == 0:
      from tensorboardX import event_file_writer  # pylint: disable=g-import-not-at-top
      self._call(lambda: setattr(self, '_events', event_file_writer.EventsWriter(
          os.path.join(os.path.abspath(logdir), 'events'))), logdir)

  @property
  def path(self):
    return getattr(self._events, '_file_name', None)

  def _call(self, write, where=None):
    """Runs `write`, flushes; WriteError (file truncated back) on failure."""
    try:
      write()
      if self._events is not None:
        self._events.flush()
        self._good = os.path.getsize(self.path)
    except OSError as e:
      where = self.path or where
      if self.path:
        try:
          self._events.close()
        except OSError:
          pass
        os.truncate(self.path, self._good)  # frees space: works on a full disk
      self._events = None
      raise WriteError(f'could not write TensorBoard events to {where}: '
                       f'{write_reason(e)}') from e

  def _summary(self, step, summary):
    if self._events is None:
      return
    from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
    event = event_pb2.Event(wall_time=time.time(), step=int(step),
                            summary=summary)
    self._call(lambda: self._events.write_event(event))

  def scalars(self, step, scalars):
    if self._events is None:
      return
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    from tensorboardX.proto import summary_pb2  # pylint: disable=g-import-not-at-top
    self._summary(step, summary_pb2.Summary(value=[
        v for name, value in scalars.items()
        for v in summary.scalar(name, float(value)).value]))

  def images(self, step, images):
    """images: name -> (H, W) or (H, W, C) floats in [0, 1]."""
    if self._events is None:
      return
    from tensorboardX import summary  # pylint: disable=g-import-not-at-top
    for name, image in images.items():
      image = np.asarray(image, np.float32)
      if image.ndim == 2:
        image = image[..., None]
      self._summary(step, summary.image(name, np.clip(image, 0, 1),
                                        dataformats='HWC'))

  def text(self, step, tag, text):
    if self._events is not None:
      from tensorboardX import summary  # pylint: disable=g-import-not-at-top
      self._summary(step, summary.text(tag, text))

  def flush(self):
    if self._events is not None:
      self._call(lambda: None)

  def close(self):
    if self._events is not None:
      events, self._events = self._events, None
      try:
        events.close()
      except OSError:
        pass  # every record was flushed (and checked) when written


def sample_strip(aia, hmi, generated, max_rows=4):
  """AIA | true HMI | generated, one row per example, [-1, 1] -> [0, 1]."""
  rows = [np.concatenate([a, h, g], axis=1)
          for a, h, g in zip(np.asarray(aia)[:max_rows],
                             np.asarray(hmi)[:max_rows],
                             np.asarray(generated)[:max_rows])]
  return (np.concatenate(rows, axis=0)[..., 0] + 1.0) / 2.0


def format_eta(seconds):
  seconds = int(max(0, seconds))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return (f'{hours}h{minutes:02d}m{seconds:02d}s' if hours
          else f'{minutes}m{seconds:02d}s')


class Progress:
  """`step 120/1000 (12%) 1.83 steps/s ETA 8m01s g_l1=0.31 ...` lines.

  The rate is measured over the steps since the previous report (and, with
  `restart` after the first step, without the compile time).
  """

  def __init__(self, total_steps, first_step, stream=sys.stdout):
    self._total = total_steps
    self._stream = stream
    self._last_step = first_step
    self._last_time = time.monotonic()
    self.rate = 0.0

  def restart(self, step):
    """Measures from here (call after the first, compiling, step)."""
    self._last_step, self._last_time = step, time.monotonic()

  def update(self, step, scalars):
    """Reports `step` (completed steps); returns the measured steps/s."""
    now = time.monotonic()
    if step > self._last_step:
      self.rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    if jax.process_index() == 0:
      eta = (format_eta((self._total - step) / self.rate) if self.rate
             else '?')
      values = ' '.join(f'{k}={float(v):.4g}' for k, v in scalars.items())
      print(f'step {step}/{self._total} ({100 * step // self._total}%) '
            f'{self.rate:.2f} steps/s ETA {eta} {values}',
            file=self._stream, flush=True)
    return self.rate


def read_scalars(logdir):
  """{tag: [(step, value), ...]} of the scalar summaries in `logdir`'s
  event files, sorted by step (the TFRecord framing tensorboardX writes:
  length, its CRC, the event, its CRC)."""
  import glob  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  import struct  # pylint: disable=g-import-not-at-top
  from tensorboardX.proto import event_pb2  # pylint: disable=g-import-not-at-top
  out = {}
  for path in sorted(glob.glob(os.path.join(logdir, 'events.out.tfevents.*'))):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset + 12 <= len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      if offset + 12 + length + 4 > len(data):
        break  # a record cut short (a killed writer): the rest is lost
      event = event_pb2.Event()
      event.ParseFromString(data[offset + 12:offset + 12 + length])
      offset += 12 + length + 4
      for value in event.summary.value:
        if value.HasField('simple_value'):
          out.setdefault(value.tag, []).append((event.step,
                                                value.simple_value))
  return {tag: sorted(points) for tag, points in out.items()}
