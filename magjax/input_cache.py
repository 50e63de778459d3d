"""Normalised training patches held in memory, cropped at every step.

The uncached pipeline decodes and normalises a whole patch for every crop
(about 12 ms to decode an (800, 900) sdo_ar example, 2 ms to scale a 512^2
crop on this project's CPU): one host core then feeds about 100 crops/s,
a tenth of what one H100 consumes (docs/PERFORMANCE.md). Decoding and
scaling are the same every epoch, so they are done once per example here;
a step only cuts its crops:

* 'host': the normalised patches live in host memory as NumPy arrays and a
  crop is one slice copy;
* 'device': they live on every device (replicated) and one jitted gather
  cuts a step's crops there from (example, top, left) rows: the host sends
  a few integers per crop.

A crop of a normalised patch equals the normalised crop (the scaling is
per pixel), so the batches are those of the uncached pipeline: the pipeline
stays a pure function of (seed, step), cached or not.

`resolve_mode` picks the mode from config.input_cache and
config.input_cache_max_mb; `PatchCache` holds the arrays.
"""

import functools
import time

import jax
import numpy as np

from magjax_common.errors import UserError

MODES = ('auto', 'device', 'host', 'off')
KEYS = ('aia', 'hmi')
_MB = 2 ** 20


def cache_megabytes(num_examples, image_shape):
  """MiB of float32 AIA and HMI planes for `num_examples` patches."""
  height, width = image_shape
  return num_examples * height * width * len(KEYS) * 4 / _MB


def resolve_mode(mode, max_mb, num_examples, image_shape, backend):
  """'device', 'host' or 'off' for config.input_cache = `mode`.

  'auto': 'device' on an accelerator backend, 'host' on CPU (where device
  memory is host memory and a NumPy slice is the cheaper copy), 'off' when
  the cache would exceed `max_mb`.

  Raises:
    UserError: an unknown mode, or 'device' / 'host' asked for a cache
      larger than `max_mb`.
  """
  if mode not in MODES:
    raise UserError(f'input_cache={mode!r}: expected one of '
                    f'{", ".join(MODES)}')
  if mode == 'off':
    return 'off'
  need = cache_megabytes(num_examples, image_shape)
  if need > max_mb:
    if mode == 'auto':
      return 'off'
    raise UserError(
        f'input_cache={mode!r} needs {need:.0f} MiB for {num_examples} '
        f'patches, over input_cache_max_mb={max_mb:g}: raise it or set '
        "input_cache='off'")
  if mode == 'auto':
    return 'host' if backend == 'cpu' else 'device'
  return mode


class PatchCache:
  """Every example of a source, normalised, as (N, H, W, 1) float32 arrays.

  Attributes:
    arrays: {'aia', 'hmi'} -> NumPy (N, H, W, 1) float32.
    fill_seconds: wall time of the fill.
  """

  def __init__(self, source, normalize):
    """Decodes and normalises every example of `source` once.

    Args:
      source: a random-access sequence of examples.
      normalize: example -> {'aia', 'hmi'} whole (H, W, 1) float32 planes.
    """
    start = time.perf_counter()
    first = normalize(source[0])
    self.arrays = {
        key: np.empty((len(source),) + first[key].shape, np.float32)
        for key in KEYS}
    for index in range(len(source)):
      planes = first if index == 0 else normalize(source[index])
      for key in KEYS:
        self.arrays[key][index] = planes[key]
    self.fill_seconds = time.perf_counter() - start

  @property
  def nbytes(self):
    return sum(a.nbytes for a in self.arrays.values())

  def crops(self, rows, size):
    """{'aia', 'hmi'}: (len(rows), size, size, 1) crops, rows as
    [(example_index, top, left)]."""
    out = {}
    for key, array in self.arrays.items():
      batch = np.empty((len(rows), size, size) + array.shape[3:], np.float32)
      for i, (index, top, left) in enumerate(rows):
        batch[i] = array[index, top:top + size, left:left + size]
      out[key] = batch
    return out


class DeviceCrops:
  """A PatchCache replicated on every device of a sharding's mesh; a
  step's crops are cut there by one jitted gather, sharded as the batch."""

  def __init__(self, cache, size, sharding):
    """Places `cache` on the devices of `sharding` (a batch sharding over a
    mesh of all processes' devices); each process holds the same cache."""
    replicated = jax.sharding.NamedSharding(sharding.mesh,
                                            jax.sharding.PartitionSpec())
    self.arrays = {
        key: jax.make_array_from_callback(
            array.shape, replicated, functools.partial(_piece, array))
        for key, array in cache.arrays.items()}
    self._sharding = sharding
    self._cut = jax.jit(functools.partial(_cut, size=size),
                        in_shardings=(replicated, sharding),
                        out_shardings=sharding)

  @property
  def nbytes(self):
    """Bytes of one device's replica."""
    return sum(a.nbytes for a in self.arrays.values())

  def crops(self, local_rows):
    """The global batch whose process-local rows are `local_rows`
    ([(example_index, top, left)]), as jax.Arrays sharded like the batch."""
    rows = jax.make_array_from_process_local_data(
        self._sharding, np.asarray(local_rows, np.int32).reshape(-1, 3))
    return self._cut(self.arrays, rows)


def _piece(array, index):
  return array[index]


def _cut(arrays, rows, size):
  """Crops of size x size at rows (B, 3) = (example, top, left)."""
  def one(row):
    return {key: jax.lax.dynamic_slice(
        array, (row[0], row[1], row[2], 0),
        (1, size, size, array.shape[3]))[0]
            for key, array in arrays.items()}
  return jax.vmap(one)(rows)
