"""Many 304 A files in one run: the engine behind `python -m magjax.predict`.

  python -m magjax.predict --workdir runs/rhp --input DIR 'glob*.fits' \\
      a.fits ... --output OUTDIR [--batch N] [--frame disk]

Inputs: files, directories (searched recursively for FITS names: .fits,
.fts, .fit, optionally .gz or .fz) and glob patterns, sorted, each once.
Each input gets OUTDIR/<stem>_magjax.fits (and <stem>_magjax_disk.fits
with --frame disk), written atomically, and one line in
OUTDIR/predictions.jsonl (fsynced): input, output, status ('ok', 'failed',
'exists'), reason, observation time, instrument, seconds (read: reading,
calibrating and patching; infer; write).

Pipeline: readers (READERS) read, calibrate and cut the next
inputs to their patches (PREFETCH ahead) while the main thread runs the
generator and a thread writes the results: reading, inference and writing
overlap (the CLI reads in processes, library calls in threads). A reader
process that dies (killed, out of memory) costs only the inputs it was
reading: each is read again, and recorded as failed if its reader dies
again; reader processes end with their run, however it ends. The generator is one jitted
function of a fixed batch of tiles (`--batch`, default the config's), so it
compiles once per run (once per machine with the persistent compilation
cache); tiles of consecutive inputs share batches. A bad input is recorded
with its one-line reason and the run goes on; a run started again skips
inputs whose outputs are complete (same checkpoint and config hash). A
progress line with the ETA goes to stderr every few seconds.
"""

import atexit
import collections
import concurrent.futures
import dataclasses
import datetime
import glob
import multiprocessing
import multiprocessing.connection
import os
import sys
import threading
import time

import numpy as np

from magjax_common.errors import UserError, one_line

INDEX_NAME = 'predictions.jsonl'
SUFFIXES = ('.fits', '.fts', '.fit')
COMPRESSED = ('', '.gz', '.fz')
OUTPUT_SUFFIX = '_magjax'
PROGRESS_SECONDS = 5.0
PREFETCH = 3  # inputs being read ahead
# Readers. Reading an input is mostly Python (sunpy maps and coordinates;
# importing sunpy.map alone takes 2 s), so reader threads share one core
# (the GIL) with JAX's start-up and the main loop. The CLI reads in
# processes instead (`reader_processes`): a warm one-file predict of the
# demo model took 5.8 s with a reader thread and 4.2 s with a reader
# process (medians of 5, alternating; docs/PERFORMANCE.md).
# They are spawned, not forked (the parent runs JAX's thread pools, and a
# fork of a threaded process can deadlock); spawning re-imports the main
# module, so a script using them needs the `if __name__ == '__main__':`
# guard, which is why library calls default to threads.
READERS = max(1, min(4, os.cpu_count() or 1))


def _fits_stem(name):
  """The name without its FITS suffix, or None if it is not a FITS name."""
  lower = name.lower()
  for suffix in SUFFIXES:
    for extra in COMPRESSED:
      if lower.endswith(suffix + extra):
        return name[:len(name) - len(suffix + extra)]
  return None


def expand_inputs(specs):
  """(sorted unique input paths, [(spec, reason)] for specs naming none)."""
  found, missing = [], []
  for spec in specs:
    if os.path.isdir(spec):
      paths = [os.path.join(d, f) for d, _, files in os.walk(spec)
               for f in files if _fits_stem(f) is not None]
    elif any(c in spec for c in '*?['):
      paths = [p for p in glob.glob(spec, recursive=True)
               if os.path.isfile(p)]
    else:
      paths = [spec]
    if not paths:
      missing.append((spec, 'no FITS file in this directory'
                      if os.path.isdir(spec) else 'no file matches'))
    found.extend(os.path.abspath(p) for p in paths)
  return sorted(set(found)), missing


def without_outputs(inputs, out_dir):
  """`inputs` less this command's own outputs in `out_dir` (an output
  directory inside an input directory is searched too)."""
  out_dir = os.path.abspath(out_dir)
  own = (OUTPUT_SUFFIX + '.fits', OUTPUT_SUFFIX + '_disk.fits')
  return [p for p in inputs if not (
      os.path.dirname(os.path.abspath(p)) == out_dir and p.endswith(own))]


def is_batch(specs, output):
  """Batch mode: several inputs, a directory or pattern, or an output
  that is an existing directory; else one file to one file, as before."""
  return (len(specs) != 1 or os.path.isdir(specs[0])
          or any(c in specs[0] for c in '*?[') or os.path.isdir(output)
          or output.endswith(os.sep))


def output_names(inputs, out_dir, frame):
  """{input: (output, disk output or None)}; UserError on a clash."""
  names, seen = {}, {}
  for path in inputs:
    base = os.path.basename(path)
    stem = _fits_stem(base) or base
    out = os.path.join(out_dir, stem + OUTPUT_SUFFIX + '.fits')
    if out in seen:
      raise UserError(f'{path} and {seen[out]} would both write {out}: '
                      'give them separate runs')
    seen[out] = path
    disk = (os.path.join(out_dir, stem + OUTPUT_SUFFIX + '_disk.fits')
            if frame == 'disk' else None)
    names[path] = (out, disk)
  return names


_pool = None  # the reader processes, kept for this process's later runs
_pool_size = 0


def _reader_pool(workers=None, fresh=False):
  """The reader processes (started on demand, kept until exit): at least
  `workers` of them (default: the pool's size, else READERS); `fresh`: a
  new pool in place of a broken one."""
  global _pool, _pool_size
  workers = max(int(workers or 0), _pool_size) or READERS
  if _pool is not None and (fresh or workers > _pool_size):
    _pool.shutdown(wait=False, cancel_futures=True)
    _pool = None
  if _pool is None:
    _pool = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context('spawn'),
        initializer=_reader_started)
    _pool_size = workers
    atexit.register(_pool.shutdown, wait=True, cancel_futures=True)
  return _pool


def _reader_started():
  """In a new reader process: end with its parent, and without tearing
  down its modules.

  A reader blocks on its task queue, which never reports the parent gone
  (every reader holds both ends of it): a SIGKILLed run left its readers
  running. A thread now waits on the parent's sentinel and ends the reader
  when it fires. Tearing down sunpy and astropy took 0.5 s that the
  parent's exit waited for; the results are all sent by then.
  """
  atexit.register(os._exit, 0)  # pylint: disable=protected-access
  parent = multiprocessing.parent_process()
  if parent is not None:
    def end_with_parent():
      multiprocessing.connection.wait([parent.sentinel])
      os._exit(1)  # pylint: disable=protected-access
    threading.Thread(target=end_with_parent, daemon=True,
                     name='magjax-reader-parent-watch').start()


def _import_readers_modules():
  from data_prep import calibrate, patches  # pylint: disable=g-import-not-at-top,unused-import
  from magjax import predict  # pylint: disable=g-import-not-at-top,unused-import


def start_readers(count):
  """Starts `count` reader processes importing what reading needs (2-3 s
  of sunpy and astropy), while the caller imports JAX and restores the
  checkpoint."""
  workers = max(1, min(READERS, count))
  _reader_pool(workers)
  for _ in range(workers):  # each spawns one process (none is idle yet)
    _submit(_import_readers_modules)


def _submit(fn, *args):
  """(the pool, the future) of fn(*args) in a reader process; a pool that
  broke (a reader died) is replaced first."""
  pool = _reader_pool()
  try:
    return pool, pool.submit(fn, *args)
  except concurrent.futures.BrokenExecutor:
    pool = _reader_pool(fresh=True)
    return pool, pool.submit(fn, *args)


@dataclasses.dataclass
class Read:
  """What a reader process hands back for one input."""
  aia: object = None  # (H, W) float32 patch in DN/s, full resolution
  header: object = None  # the patch header
  route: str = ''  # 'patch' or 'full-disk'
  smap: object = None  # the full-disk map, for --frame disk only
  error: str = ''
  seconds: float = 0.0


def read_input(path, calibration, reference, frame):
  """In a reader process: one input read, calibrated and cut to its
  patch (`predict.load_input_patch`); a bad input is a Read with its
  one-line error, never an exception."""
  from magjax import predict  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  out = Read()
  try:
    out.aia, out.header, out.route, smap = predict.load_input_patch(
        path, calibration, reference)
    if frame == 'disk' and smap is None:
      raise UserError(f'{os.path.basename(path)}: --frame disk needs a '
                      'full-disk image, not a patch')
    out.smap = smap if frame == 'disk' else None
  except UserError as e:
    out = Read(error=one_line(e))
  except MemoryError:
    out = Read(error=f'{os.path.basename(path)}: out of memory')
  out.seconds = time.perf_counter() - start
  return out


@dataclasses.dataclass
class Item:
  """One input on its way through the pipeline."""
  path: str
  output: str
  disk_output: str = None
  x: object = None  # (H, W, 1) network input
  valid: object = None  # (H, W) where the input patch holds data
  header: object = None  # the (binned) input patch header
  route: str = ''
  smap: object = None  # the full-disk map, for --frame disk
  tiled: object = None  # tiling.Tiled
  error: str = ''
  reads: int = 0  # times it was given to a reader
  pool: object = None  # the reader processes it was last given to
  seconds: dict = dataclasses.field(
      default_factory=lambda: {'read': 0.0, 'infer': 0.0, 'write': 0.0})


class Index:
  """OUTDIR/predictions.jsonl, one fsynced JSON line per input, from any
  thread; None path: records are only counted."""

  def __init__(self, path):
    self._lock = threading.Lock()
    self._writer = None
    if path:
      from data_prep import manifest  # pylint: disable=g-import-not-at-top
      self._writer = manifest.ManifestWriter(path)
    self.counts = collections.Counter()

  def record(self, item, status, reason='', header=None):
    header = header if header is not None else (item.header or {})
    line = {
        'input': item.path, 'output': item.output if status != 'failed'
        else None, 'status': status, 'reason': reason,
        'time': str(header.get('DATE-OBS', '') or header.get('T_OBS', '')),
        'instrument': str(header.get('SRC_INST', '')),
        'seconds': {k: round(v, 3) for k, v in item.seconds.items()},
        'written': datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds')}
    if item.disk_output and status != 'failed':
      line['disk_output'] = item.disk_output
    with self._lock:
      self.counts[status] += 1
      if self._writer:
        self._writer.append(line)

  def close(self):
    if self._writer:
      self._writer.close()


class Progress:
  """A progress line with the ETA on stderr, at most every few seconds."""

  def __init__(self, total, stream=None):
    self.total, self.start = total, time.perf_counter()
    self._last = 0.0
    self._stream = stream or sys.stderr

  def update(self, counts, final=False):
    now = time.perf_counter()
    if self.total < 2 or (not final and now - self._last < PROGRESS_SECONDS):
      return
    self._last = now
    done = sum(counts.values())
    worked = counts['ok'] + counts['failed']
    rate = (now - self.start) / worked if worked else float('nan')
    left = self.total - done
    eta = (str(datetime.timedelta(seconds=round(rate * left)))
           if worked and left else '0:00:00')
    print(f'predict: {done}/{self.total} inputs ({counts["ok"]} written, '
          f'{counts["failed"]} failed, {counts["exists"]} already done), '
          f'{rate:.2f} s/input, ETA {eta}', file=self._stream, flush=True)


class Runner:
  """Prepares, generates and writes items (see the module docstring)."""

  def __init__(self, config, saved_config, restore, step, *, batch,
               samples=0, seed=0, calibration='auto', frame='patch',
               reader_processes=False):
    """restore(None) -> the generator variables' shapes; restore(shapes)
    -> the variables; called by `ready`, after the first inputs started
    being read."""
    from magjax import config_utils  # pylint: disable=g-import-not-at-top
    from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top
    self.config, self.step = config, int(step)
    self._restore, self.variables, self.fn = restore, None, None
    self.batch = int(batch)
    self.samples, self.seed = int(samples), int(seed)
    self.calibration, self.frame = calibration, frame
    self.reader_processes = bool(reader_processes)
    self._readers = None  # the executor of the running `run`
    self.tile = int(config.crop_size)
    self.overlap = inference.tile_overlap(config)
    self.cfg_hash = config_utils.config_hash(config)
    self.trained_synthetic = config_utils.trained_on_synthetic(saved_config)
    self._mc_fn = None

  def ready(self):
    """Restores the generator and compiles it for the tile shape (once):
    the restore (I/O) runs in a thread while the main thread compiles
    against the variables' shapes."""
    from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top
    if self.fn is not None:
      return
    abstract = self._restore(None)  # configures the cache, no I/O
    self.fn = inference.GeneratorFn(self.config, None, self.batch)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      restoring = pool.submit(self._restore, abstract)
      if not self.samples:
        self.fn.compile((self.tile, self.tile,
                         int(self.config.model.input_nc)), abstract)
      self.variables = restoring.result()
    self.fn.set_variables(self.variables)

  # ------------------------------------------------------------- stages

  def submit(self, item):
    """Gives `item` to a reader (process or thread); returns the future
    Read."""
    item.reads += 1
    args = (read_input, item.path, self.calibration,
            self.config.get('aia_quiet_sun', None), self.frame)
    if not self.reader_processes:
      return self._readers.submit(*args)
    item.pool, future = _submit(*args)
    return future

  def prepare(self, item, future):
    """The reader's result, binned to the model's resolution, normalised
    and cut into tiles; a bad input becomes item.error (the run goes on).
    An input whose reader process died is read again, once."""
    from magjax import predict  # pylint: disable=g-import-not-at-top
    from magjax.evaluation import inference, tiling  # pylint: disable=g-import-not-at-top
    try:
      read = future.result()
    except concurrent.futures.BrokenExecutor:
      if item.reads >= 2:
        read = Read(error=f'{os.path.basename(item.path)}: its reader '
                    'process died twice while reading it (killed, or out '
                    'of memory)')
      else:
        if item.pool is _pool:  # not yet replaced after this break
          _reader_pool(fresh=True)
        return self.prepare(item, self.submit(item))
    start = time.perf_counter()
    try:
      if read.error:
        raise UserError(read.error)
      aia, header = predict.bin_patch(read.aia, read.header,
                                      int(self.config.patch_binning))
      item.valid = np.isfinite(aia)
      item.x = inference.network_input(aia, item.valid, self.config)
      item.header, item.route, item.smap = header, read.route, read.smap
      if not self.samples:
        item.tiled = tiling.Tiled(item.x, self.tile, self.overlap)
    except UserError as e:
      item.error = one_line(e)
    except MemoryError:
      item.error = f'{os.path.basename(item.path)}: out of memory'
    item.seconds['read'] = read.seconds + time.perf_counter() - start
    return item

  def sample(self, item):
    """--samples: the mean and std of MC-dropout draws of one item."""
    from magjax import predict  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    if self._mc_fn is None:
      self._mc_fn = predict.mc_generator(self.config, self.variables,
                                         self.batch, self.seed)
    mean, std = predict.mc_draws(self.config, self._mc_fn, item.x,
                                 item.valid, self.samples)
    item.seconds['infer'] += time.perf_counter() - start
    return mean, std

  def finish(self, item, mean, std=None):
    """Header, optional full-disk frame, atomic writes (all or none)."""
    from magjax import predict  # pylint: disable=g-import-not-at-top
    start = time.perf_counter()
    header = predict.output_header(
        item.header, model=str(self.config.model.name), step=self.step,
        cfg_hash=self.cfg_hash, trained_synthetic=self.trained_synthetic,
        src_file=item.path, samples=self.samples, tile=self.tile,
        overlap=self.overlap, route=item.route)
    predict.write_all(item.output, item.disk_output, mean, std, header,
                      item.smap)
    item.smap = item.x = item.tiled = None  # free memory early
    item.seconds['write'] = time.perf_counter() - start
    return header

  # --------------------------------------------------------------- run

  def complete(self, item):
    """True when the outputs of `item` exist for this checkpoint."""
    from astropy.io import fits  # pylint: disable=g-import-not-at-top
    paths = [item.output] + ([item.disk_output] if item.disk_output else [])
    try:
      headers = [fits.getheader(p) for p in paths]
    except (OSError, ValueError):  # missing or unreadable: do it again
      return False
    return all(h.get('CKPTSTEP') == self.step
               and h.get('CFGHASH') == self.cfg_hash
               and h.get('SRC_FILE') == os.path.basename(item.path)
               and h.get('NSAMPLES') == self.samples for h in headers)

  def run(self, items, index, strict=False, progress=None):
    """Runs every item; with `strict` (one input) a failure raises."""
    todo = []
    for item in items:
      if not strict and self.complete(item):
        index.record(item, 'exists', 'outputs complete for this checkpoint')
      else:
        todo.append(item)
    pending = collections.deque()  # (item, tile index, tile)
    with concurrent.futures.ThreadPoolExecutor(1) as writers, \
        concurrent.futures.ThreadPoolExecutor(READERS) as self._readers:
      writes = collections.deque()

      def written(item, future):
        try:
          header = future.result()
        except UserError as e:
          if strict:
            raise
          item.error = one_line(e)
          index.record(item, 'failed', item.error)
        else:
          index.record(item, 'ok', header=header)
        if progress:
          progress.update(index.counts)

      def done(item, mean, std=None):
        writes.append((item, writers.submit(self.finish, item, mean, std)))
        while writes and (writes[0][1].done() or len(writes) > PREFETCH):
          written(*writes.popleft())

      def run_batches(force):
        while len(pending) >= self.batch or (force and pending):
          chunk = [pending.popleft() for _ in range(min(
              self.batch, len(pending)))]
          start = time.perf_counter()
          out = self.fn(np.stack([tile for _, _, tile in chunk]))
          share = (time.perf_counter() - start) / len(chunk)
          for (item, i, _), o in zip(chunk, out):
            item.tiled.add(i, o)
            item.seconds['infer'] += share
            if not item.tiled.pending:
              done(item, self.to_gauss(item.tiled.result(), item.valid))

      queue = collections.deque()
      feed = iter(todo)

      def submit_next():
        item = next(feed, None)
        if item is not None:
          queue.append((item, self.submit(item)))

      for _ in range(PREFETCH):
        submit_next()
      if todo:
        self.ready()  # while the first inputs are read
      while queue:
        entry = queue.popleft()
        submit_next()
        item = self.prepare(*entry)
        if item.error:
          if strict:
            raise UserError(item.error)
          index.record(item, 'failed', item.error)
          if progress:
            progress.update(index.counts)
          continue
        if self.samples:
          try:
            mean, std = self.sample(item)
          except UserError as e:
            if strict:
              raise
            index.record(item, 'failed', one_line(e))
            continue
          done(item, mean, std)
          continue
        for i, tile in enumerate(item.tiled.tiles()):
          pending.append((item, i, tile))
        run_batches(force=False)
      run_batches(force=True)
      while writes:
        written(*writes.popleft())
    if progress:
      progress.update(index.counts, final=True)
    return index.counts

  def to_gauss(self, pred, valid):
    from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top
    mean = inference.to_gauss(pred, self.config)
    return np.where(valid, mean, np.nan).astype(np.float32)
