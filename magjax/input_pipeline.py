"""sdo_ar -> seeded random crops -> fixed normalisation -> sharded batches.

Stateless by construction: the global batch of step `s` is a pure function of
(config.seed, s). Example order comes from one permutation per epoch (seeded
by (seed, epoch)), crop offsets from a generator seeded by (seed, s, row), so
a resumed run needs no data state beyond the step it restarts from, and any
process can compute its own rows of any step. Where the crops are cut (from
the source, or from normalised patches cached in host or device memory:
config.input_cache, magjax/input_cache.py) changes the speed, not the batch.

A *source* is any random-access sequence (`len`, `__getitem__`) of dicts with
'aia', 'hmi' (H, W, 1) float and 'mask' (H, W, 1) bool: the `sdo_ar` TFDS
data source, or an in-memory list in tests.
"""

import os
import queue
import threading

import jax
import numpy as np

from magjax import input_cache
from magjax_common.errors import UserError, one_line

# The sdo_ar version of a checkpoint whose config does not record one.
FIRST_VERSION = '1.0.0'


def load_source(config, split):
  """The `config.dataset` split as a random-access source.

  config.dataset: 'sdo_ar' (its default builder config, the embedded
  SYNTHETIC set), 'sdo_ar/synthetic' or 'sdo_ar/real'.

  Raises:
    ValueError: an unknown dataset name.
    FileNotFoundError: the data set is not built under config.data_dir.
  """
  name = config.dataset
  if name.split('/')[0] != 'sdo_ar':
    raise ValueError(f"unknown dataset {name!r} (expected 'sdo_ar', "
                     "'sdo_ar/synthetic' or 'sdo_ar/real')")
  if not os.path.isdir(os.path.join(config.data_dir, 'sdo_ar')):
    raise FileNotFoundError(f'no sdo_ar data set under {config.data_dir!r} '
                            '(build it with `make data`)')
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from magjax.datasets import sdo_ar  # pylint: disable=g-import-not-at-top  # registers the builder
  check_version(config.data_dir, name, str(sdo_ar.Builder.VERSION))
  try:
    return tfds.data_source(name, split=split, data_dir=config.data_dir,
                            download=False)
  except Exception as e:  # pylint: disable=broad-except  # TFDS raises many kinds
    raise FileNotFoundError(
        f'cannot read {name} split {split!r} from {config.data_dir!r} '
        f'(build it with `make data`): {one_line(e)}') from e


REBUILD = '`make rebuild-data` (removes data/ and builds it anew)'


def check_version(data_dir, name, wanted):
  """FileNotFoundError (one line, naming the rebuild command) when
  `data_dir` holds only other versions of the data set than `wanted`."""
  config_name = name.split('/', 1)[1] if '/' in name else 'synthetic'
  root = os.path.join(data_dir, 'sdo_ar', config_name)
  if not os.path.isdir(root):
    return
  present = sorted(v for v in os.listdir(root) if v[:1].isdigit())
  if present and wanted not in present:
    raise FileNotFoundError(
        f'{root} holds sdo_ar/{config_name} {", ".join(present)}, this '
        f'magjax reads {wanted}: rebuild it with {REBUILD}')


def dataset_version(source):
  """The data set's version string ('' for in-memory sources)."""
  info = getattr(source, 'dataset_info', None)
  return str(getattr(info, 'version', '') or '')


def check_trained_version(saved_config, source, workdir):
  """UserError when the checkpoints of `workdir` were trained on another
  version of the data set than `source` (in-memory sources: no check)."""
  current = dataset_version(source)
  if not current:
    return
  trained = saved_config.get('dataset_version') or FIRST_VERSION
  if trained != current:
    raise UserError(
        f'{workdir} was trained on sdo_ar {trained}, the data set is now '
        f'{current}: train again in a new --workdir (or remove {workdir})')


def normalize_hmi(hmi, config):
  """Gauss -> [-1, 1] by the fixed saturation (clip)."""
  return np.clip(hmi / config.hmi_saturation, -1.0, 1.0)


def normalize_aia(aia, config):
  """DN/s -> [-1, 1] by the fixed log10 scaling of the config (clip)."""
  log = np.log10(np.maximum(aia, config.aia_floor))
  span = config.aia_log_max - config.aia_log_min
  return np.clip(2.0 * (log - config.aia_log_min) / span - 1.0, -1.0, 1.0)


def network_input(aia, valid, config):
  """AIA in DN/s -> the generator's input: normalize_aia where `valid`,
  config.aia_fill elsewhere (float32). Training, evaluation and predict
  all use it; they differ only in what they call valid (see preprocess)."""
  scaled = normalize_aia(np.where(valid, aia, np.float32(0)), config)
  return np.where(valid, scaled, np.float32(config.aia_fill)).astype(
      np.float32, copy=False)


def preprocess(example, top, left, config):
  """One crop of one example, normalised; masked pixels get the fill values.

  Valid = the mask: non-finite values inside it are kept (not hidden), since
  a NaN in valid data is a data error that the training loop's NaN policy
  must see.
  """
  size = config.crop_size
  window = np.s_[top:top + size, left:left + size]
  return normalized({key: example[key][window]
                     for key in ('aia', 'hmi', 'mask')}, config)


def normalized(example, config):
  """{'aia', 'hmi'}: the example's planes scaled to [-1, 1], masked pixels
  filled (preprocess without the crop: the scaling is per pixel, so a crop
  of this equals preprocess of the crop)."""
  mask = np.asarray(example['mask'], bool)
  aia = np.asarray(example['aia'], np.float32)
  hmi = normalize_hmi(np.asarray(example['hmi'], np.float32), config)
  return {
      'aia': network_input(aia, mask, config),
      'hmi': np.where(mask, hmi, np.float32(config.hmi_fill)).astype(
          np.float32, copy=False),
  }


class BatchSampler:
  """Which example and which crop fill each row of a global batch.

  Pure function of (seed, step): `rows(step)` is the same whenever, wherever
  and how often it is asked for.
  """

  def __init__(self, num_examples, image_shape, batch_size, crop_size, seed):
    if num_examples < 1:
      raise ValueError('the training source is empty')
    self.num_examples = num_examples
    self.image_shape = tuple(image_shape)
    self.batch_size = batch_size
    self.crop_size = crop_size
    self.seed = seed
    self._perms = {}

  def _permutation(self, epoch):
    if epoch not in self._perms:
      if len(self._perms) > 2:  # steps advance monotonically: keep a few
        self._perms.pop(min(self._perms))
      rng = np.random.default_rng([self.seed, 0, epoch])
      self._perms[epoch] = rng.permutation(self.num_examples)
    return self._perms[epoch]

  def rows(self, step, start=0, stop=None):
    """[(example_index, top, left)] for rows start:stop of the step's batch."""
    stop = self.batch_size if stop is None else stop
    out = []
    for row in range(start, stop):
      position = step * self.batch_size + row
      epoch, offset = divmod(position, self.num_examples)
      index = int(self._permutation(epoch)[offset])
      rng = np.random.default_rng([self.seed, 1, step, row])
      top = int(rng.integers(0, self.image_shape[0] - self.crop_size + 1))
      left = int(rng.integers(0, self.image_shape[1] - self.crop_size + 1))
      out.append((index, top, left))
    return out


def local_batch(source, sampler, step, config, process_index=0,
                process_count=1):
  """This process's rows of the global batch of `step`, as NumPy arrays."""
  per_process = config.batch_size // process_count
  start = process_index * per_process
  crops = [preprocess(source[index], top, left, config)
           for index, top, left in sampler.rows(step, start,
                                                start + per_process)]
  return {key: np.stack([c[key] for c in crops]) for key in ('aia', 'hmi')}


def bin_image(image, valid, k):
  """(k x k block means, block validity) of an (H, W[, C]) image; a block is
  valid when all its pixels are (the means of invalid blocks are 0).
  Rows and columns beyond a multiple of k are dropped."""
  image = np.asarray(image, np.float32)
  valid = np.asarray(valid, bool)
  h, w = image.shape[0] // k * k, image.shape[1] // k * k
  image, valid = image[:h, :w], valid[:h, :w]
  shape = (h // k, k, w // k, k) + image.shape[2:]
  summed = np.where(valid, image, 0.0).reshape(shape).mean(axis=(1, 3))
  ok = valid.reshape(shape).all(axis=(1, 3))
  return np.where(ok, summed, 0.0).astype(np.float32), ok


class BinnedSource:
  """A source whose examples are binned k x k (config.patch_binning): the
  paper's field of view at 1/k of its resolution. Other fields pass
  through; `dataset_info` too."""

  def __init__(self, source, k):
    self.source, self.k = source, k
    self.dataset_info = getattr(source, 'dataset_info', None)

  def __len__(self):
    return len(self.source)

  def __getitem__(self, index):
    example = dict(self.source[index])
    mask = np.asarray(example['mask'], bool)
    for key in ('aia', 'hmi'):
      example[key], ok = bin_image(example[key], mask, self.k)
    example['mask'] = ok
    return example


def with_binning(source, config):
  """`source` binned by config.patch_binning (itself when 1 or already)."""
  k = int(config.patch_binning)
  if k == 1 or (isinstance(source, BinnedSource) and source.k == k):
    return source
  return BinnedSource(source, k)


def image_shape(source):
  """(height, width) of the source's examples (read from the first one)."""
  return tuple(np.shape(source[0]['hmi'])[:2])


def synthetic_flag(source):
  """The first example's SYNTHETIC flag (True / False), None if it has none.

  A data set is built from one kind of patches (the sdo_ar builder refuses
  a mix), so the first example speaks for the source.
  """
  example = source[0]
  if not hasattr(example, 'get') or example.get('synthetic') is None:
    return None
  return bool(np.asarray(example['synthetic']))


def data_label(synthetic):
  """'SYNTHETIC', 'real' or 'UNKNOWN' for a synthetic flag."""
  if synthetic is None:
    return 'UNKNOWN'
  return 'SYNTHETIC' if synthetic else 'real'


def to_global(batch, sharding):
  """Process-local NumPy rows -> one global jax.Array sharded by `sharding`."""
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)


class Feed:
  """Where a step's crops are cut (config.input_cache, input_cache.py):
  from the source itself ('off'), from normalised patches in host memory
  ('host') or on the devices ('device'; needs a sharding).

  Attributes:
    mode: 'off', 'host' or 'device'.
    cache: the PatchCache, or None ('off').
    device: the DeviceCrops, or None.
  """

  def __init__(self, source, config, sharding=None, backend=None):
    """Fills the cache the config asks for (every example decoded once).

    Raises:
      UserError: a bad input_cache setting, or one whose cache would
        exceed input_cache_max_mb.
    """
    backend = backend or jax.default_backend()
    self.mode = input_cache.resolve_mode(
        config.input_cache, config.input_cache_max_mb, len(source),
        image_shape(source), backend)
    if self.mode == 'device' and sharding is None:
      self.mode = 'host'  # NumPy batches were asked for
    self.cache = self.device = None
    if self.mode != 'off':
      self.cache = input_cache.PatchCache(
          source, lambda example: normalized(example, config))
    if self.mode == 'device':
      self.device = input_cache.DeviceCrops(self.cache, config.crop_size,
                                            sharding)
      self.cache = _Dropped(self.cache)  # the devices hold it now

  def host_megabytes(self):
    """MiB of host memory the cache holds (0 off and on the device)."""
    if self.mode != 'host':
      return 0.0
    return self.cache.nbytes / 2 ** 20

  def local_batch(self, source, sampler, step, config, process_index,
                  process_count):
    """This process's rows of `step`: NumPy arrays, or the global batch as
    jax.Arrays for 'device'."""
    if self.mode == 'off':
      return local_batch(source, sampler, step, config, process_index,
                         process_count)
    per_process = config.batch_size // process_count
    start = process_index * per_process
    rows = sampler.rows(step, start, start + per_process)
    if self.mode == 'device':
      return self.device.crops(rows)
    return self.cache.crops(rows, config.crop_size)


class _Dropped:
  """What is left of a PatchCache placed on the devices: its fill time."""

  def __init__(self, cache):
    self.fill_seconds = cache.fill_seconds
    self.nbytes = cache.nbytes


def batches(source, config, start_step, end_step, sharding=None, feed=None):
  """Yields (step, batch) for steps start_step..end_step-1.

  With a sharding, each batch is a global jax.Array built from this process's
  rows (jax.process_index/process_count); without, NumPy arrays of the whole
  global batch. `feed`: a Feed of this source and config (default: one made
  here, before the first batch, which fills its cache).
  """
  sampler = BatchSampler(len(source), image_shape(source), config.batch_size,
                         config.crop_size, config.seed)
  index, count = ((jax.process_index(), jax.process_count())
                  if sharding is not None else (0, 1))
  feed = feed or Feed(source, config, sharding)
  for step in range(start_step, end_step):
    batch = feed.local_batch(source, sampler, step, config, index, count)
    if sharding is not None and feed.mode != 'device':
      batch = to_global(batch, sharding)
    yield step, batch


# Written by hand: flax.jax_utils.prefetch_to_device is for pmap only, and a
# single thread suffices (cropping and scaling are NumPy calls that release
# the GIL) without adding grain as a dependency.
class Prefetcher:
  """Runs an iterator in a background thread, `size` items ahead.

  Exceptions of the producer are re-raised in the consumer; `close()` stops
  the thread (also when the consumer leaves early).
  """

  _DONE = object()

  def __init__(self, iterator, size):
    self._queue = queue.Queue(maxsize=max(1, size))
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, args=(iterator,),
                                    daemon=True, name='magjax-prefetch')
    self._thread.start()

  def _put(self, item):
    while not self._stop.is_set():
      try:
        self._queue.put(item, timeout=0.1)
        return True
      except queue.Full:
        continue
    return False

  def _run(self, iterator):
    try:
      for item in iterator:
        if not self._put((item, None)):
          return
    except BaseException as e:  # pylint: disable=broad-except  # re-raised below
      self._put((None, e))
      return
    self._put((self._DONE, None))

  def __iter__(self):
    return self

  def __next__(self):
    item, error = self._queue.get()
    if error is not None:
      raise error
    if item is self._DONE:
      raise StopIteration
    return item

  def close(self):
    self._stop.set()
    self._thread.join(timeout=10)

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    self.close()
