"""``prepare build``: full-disk pairs -> paired (800, 900) patches + manifest.

Steps: read every header under ``--raw`` and pair AIA with HMI by time
(:mod:`data_prep.pairing`); assign each pair a date split
(:mod:`data_prep.splits`); run :func:`process_pair` for each pair in a
process pool, or on dask.distributed with ``--scheduler local`` (a
LocalCluster of ``--workers`` processes) or ``--scheduler HOST:PORT`` (an
existing scheduler whose workers see ``--raw`` and ``--out`` at the same
paths and can import ``data_prep``); the parent alone appends one JSON line
per pair to ``OUT/manifest.jsonl`` (:mod:`data_prep.manifest`). Workers
write the patch files straight into the one OUT tree, so the outputs and the
manifest do not depend on the engine.

Outputs: ``OUT/<split>/<pair_id>_aia.fits`` and ``..._hmi.fits`` (float32,
NaN off-disk, written atomically), ``pair_id`` = AIA time ``YYYYMMDDTHHMMSS``.

Manifest record fields: ``pair_id``, ``status`` ('ok' | 'skipped'),
``reason`` (one line, '' when ok), ``error`` (None, 'DataError' for a data
reason, 'NoSplit', 'DuplicatePairId', or the class name of an unexpected
exception), ``aia``/``hmi`` (absolute source paths), ``t_aia``/``t_hmi``
(UTC ISO), ``dt`` (t_hmi - t_aia, s), ``exposure`` (AIA exposure, s),
``split``, ``synthetic``, ``aia_patch``/``hmi_patch`` (paths relative to OUT).
Files without a partner get a line with ``status`` 'unpaired', no
``pair_id``, and their own path and reason; so does (status 'skipped') a
second AIA file of the same second as another, whose pair id is taken.

``sources`` holds ``size:mtime_ns`` of the two source files.

Resume: a restarted run skips a pair whose latest record has the same
sources (paths, sizes and modification times) and split and is either 'ok'
with both patch files present or
'skipped' for a data reason (``error`` in :data:`FINAL_ERRORS`); anything
else (unexpected exceptions, a worker killed) is tried again.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import contextlib
import functools
import glob
import multiprocessing
import os
import sys
import time
from typing import Any, Iterable, Iterator

from data_prep import manifest as manifest_lib
from data_prep import pairing
from data_prep import splits as splits_lib
from magjax_common.errors import fail, one_line

# Seconds to wait for a dask scheduler given by address.
DASK_CONNECT_TIMEOUT = 30

# Skip reasons that a rerun cannot change: not retried on resume.
FINAL_ERRORS = frozenset({'DataError', 'NoSplit', 'DuplicatePairId'})


def add_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the ``build`` options to a (sub)parser."""
  parser.add_argument('--raw', required=True,
                      help='raw tree holding aia/**/*.fits and hmi/**/*.fits')
  parser.add_argument('--out', required=True,
                      help='patch tree to write (<split>/<pair_id>_{aia,hmi}'
                      '.fits and manifest.jsonl)')
  parser.add_argument('--workers', type=int, default=2,
                      help='worker processes (1: run in this process)')
  parser.add_argument('--scheduler', default=None, metavar='local|ADDRESS',
                      help='run on dask.distributed: "local" starts a '
                      'LocalCluster of --workers processes, an address '
                      '(tcp://host:8786) uses that scheduler; default: a '
                      'local process pool')
  parser.add_argument('--tolerance', type=float, default=60.0,
                      help='max |t_hmi - t_aia| in seconds to pair (default 60)')
  parser.add_argument('--split', action='append', default=None,
                      metavar='NAME=MM-DD:MM-DD', dest='splits',
                      help='date split, repeatable; default: '
                      + ' '.join(splits_lib.DEFAULT_SPECS) + ' (the paper\'s)')


def run(args: argparse.Namespace) -> int:
  """Runs the build; returns the exit code (2 for bad arguments)."""
  try:
    splits = splits_lib.parse_splits(args.splits or splits_lib.DEFAULT_SPECS)
  except ValueError as e:
    return fail(e)
  if args.workers < 1:
    return fail(f'--workers must be >= 1, got {args.workers}')
  if args.tolerance < 0:
    return fail(f'--tolerance must be >= 0, got {args.tolerance}')
  if not os.path.isdir(args.raw):
    return fail(f'raw directory not found: {args.raw}')
  manifest_path = os.path.join(args.out, manifest_lib.MANIFEST_NAME)
  try:
    os.makedirs(args.out, exist_ok=True)
    remove_stale_tmp(args.out)
    previous = manifest_lib.read_manifest(manifest_path)
    # Opened before the long scan so an unwritable OUT fails at once.
    writer = manifest_lib.ManifestWriter(manifest_path)
  except (OSError, ValueError) as e:
    return fail(e)

  with writer, contextlib.ExitStack() as stack:
    try:
      executor = stack.enter_context(make_executor(
          args.workers, getattr(args, 'scheduler', None)))
    except (ImportError, OSError, ValueError) as e:
      return fail(f'--scheduler {args.scheduler}: {one_line(e)}')
    map_fn = map if executor is None else functools.partial(
        executor.map, chunksize=32)
    observations, unreadable = pairing.scan(os.path.abspath(args.raw), map_fn)
    pairs, unmatched = pairing.pair_observations(observations, args.tolerance)
    unpaired = unreadable + unmatched
    tasks, resolved, reused = plan(pairs, splits, args.out, previous)
    print(f'build: {len(pairs)} pairs, {len(unpaired)} unpaired files, '
          f'{reused} already done, {len(tasks)} to process '
          f'with {_engine(args, executor)}', flush=True)

    # Lines without a pair id (unpaired files, duplicates) are re-derived on
    # every run: append only those not already in the manifest.
    logged = {_line_key(r) for r in previous if not r.get('pair_id')}
    for record in [unpaired_record(u) for u in unpaired] + resolved:
      if record.get('pair_id') or _line_key(record) not in logged:
        writer.append(record)
    start = time.monotonic()
    for k, record in enumerate(run_tasks(tasks, executor), start=1):
      writer.append(record)
      reason = f' {record["reason"]}' if record['reason'] else ''
      print(f'[{k}/{len(tasks)}] {record["pair_id"]} {record["status"]} '
            f'{record["split"]}{reason} '
            f'({(time.monotonic() - start) / k:.2f} s/pair)', flush=True)

  final = manifest_lib.latest_by_pair(manifest_lib.read_manifest(manifest_path))
  print(summary(final.values(), len(unpaired)), flush=True)
  return 0


def remove_stale_tmp(out_dir: str) -> list[str]:
  """Deletes tmp files a killed run left (``OUT/<split>/.<name>.*.tmp``).

  ``fitsio.write_fits_atomic`` removes its tmp file on any exception, but
  not when the process is killed; the final names are never half-written.
  Call only when no other build writes into ``out_dir``.
  """
  stale = glob.glob(os.path.join(out_dir, '*', '.*.fits.*.tmp'))
  for path in stale:
    os.remove(path)
  return stale


def plan(pairs: Iterable[pairing.Pair], splits, out_dir: str,
         previous: list[dict[str, Any]]):
  """Splits the pairs into work to do, records decided now, and done ones.

  Returns ``(tasks, resolved, reused)``: ``tasks`` for :func:`process_pair`,
  ``resolved`` records that need no work (no split; a second AIA file of
  the same second, recorded without a pair id so that it cannot shadow the
  first), and the number of pairs the manifest already settles.
  """
  done = manifest_lib.latest_by_pair(previous)
  tasks, resolved, reused, first_aia = [], [], 0, {}
  for pair in pairs:
    record = base_record(pair)
    pair_id = record['pair_id']
    split = splits_lib.assign_split(pair.aia.time, splits)
    record['split'] = split
    if pair_id in first_aia:
      record.update(pair_id=None, status='skipped', error='DuplicatePairId',
                    reason=f'pair id {pair_id} already taken by '
                    f'{first_aia[pair_id]}')
      resolved.append(record)
      continue
    first_aia[pair_id] = pair.aia.path
    if split is None:
      record.update(status='skipped', error='NoSplit',
                    reason=f'date {record["t_aia"][:10]} is in no split')
    if _settled(done.get(record['pair_id']), record, out_dir):
      reused += 1
      continue
    if 'status' in record:
      resolved.append(record)
    else:
      tasks.append({'record': record, 'out': os.path.abspath(out_dir)})
  return tasks, resolved, reused


def _settled(old: dict | None, record: dict, out_dir: str) -> bool:
  """Whether a previous record makes redoing this pair pointless: the same
  source files, unchanged since (size and modification time), and split."""
  if not old or any(old.get(k) != record[k]
                    for k in ('aia', 'hmi', 'split', 'sources')):
    return False
  if old.get('status') == 'ok':
    return all(os.path.exists(os.path.join(out_dir, old[k]))
               for k in ('aia_patch', 'hmi_patch'))
  return old.get('status') == 'skipped' and old.get('error') in FINAL_ERRORS


def _stamp(path: str) -> str:
  """size:mtime_ns of a source file ('' when it cannot be read)."""
  try:
    st = os.stat(path)
  except OSError:
    return ''
  return f'{st.st_size}:{st.st_mtime_ns}'


def base_record(pair: pairing.Pair) -> dict[str, Any]:
  """The manifest fields known before any pixel is read."""
  return {
      'sources': [_stamp(pair.aia.path), _stamp(pair.hmi.path)],
      'pair_id': pair.pair_id,
      'aia': pair.aia.path,
      'hmi': pair.hmi.path,
      't_aia': pair.aia.time.utc.isot,
      't_hmi': pair.hmi.time.utc.isot,
      'dt': round(pair.dt, 3),
      'exposure': None,
      'synthetic': None,
      'aia_patch': None,
      'hmi_patch': None,
  }


def unpaired_record(u: pairing.Unpaired) -> dict[str, Any]:
  """Manifest line for a file that got no partner."""
  return {'pair_id': None, 'status': 'unpaired', 'kind': u.kind,
          'aia': u.path if u.kind == 'aia' else None,
          'hmi': u.path if u.kind == 'hmi' else None,
          'reason': one_line(u.reason, whole=True), 'error': 'Unpaired'}


def process_pair(task: dict[str, Any]) -> dict[str, Any]:
  """Calibrates and patches one pair and writes both patch files.

  Pure top-level function (picklable, no shared state) so any executor can
  run it.  Never raises: every failure becomes a 'skipped' record.
  """
  from data_prep import calibrate, fitsio, patches

  record = dict(task['record'])
  try:
    aia = patches.extract_patch(calibrate.load_calibrated(record['aia']))
    hmi = patches.extract_patch(calibrate.load_calibrated(record['hmi']))
    names = {kind: os.path.join(record['split'],
                                f'{record["pair_id"]}_{kind}.fits')
             for kind in ('aia', 'hmi')}
    os.makedirs(os.path.join(task['out'], record['split']), exist_ok=True)
    for kind, smap in (('aia', aia), ('hmi', hmi)):
      fitsio.write_fits_atomic(os.path.join(task['out'], names[kind]),
                               smap.data.astype('float32'),
                               patches.patch_header(smap))
    record.update(status='ok', reason='', error=None,
                  exposure=_exposure(aia), synthetic=_synthetic(aia, hmi),
                  aia_patch=names['aia'], hmi_patch=names['hmi'])
  except fitsio.DataError as e:
    record.update(status='skipped', error='DataError',
                  reason=one_line(e, whole=True))
  except Exception as e:  # pylint: disable=broad-except
    # One bad pair must never abort the batch; the record keeps the cause.
    record.update(status='skipped', error=type(e).__name__,
                  reason=one_line(e, with_type=True, whole=True))
  return record


def _exposure(aia_patch) -> float | None:
  """AIA exposure time (s) recorded in the patch provenance."""
  exptime = aia_patch.meta.get('exptime')
  return None if exptime is None else float(exptime)


def _synthetic(*patch_maps) -> bool:
  """True when either patch carries the SYNTHETIC provenance flag."""
  return any(bool(m.meta.get('synthetic', False)) for m in patch_maps)


def make_executor(workers: int, scheduler: str | None = None):
  """A context manager giving the executor of the per-pair work.

  No scheduler: a process pool of ``workers`` (spawned: clean workers, no
  fork of a parent holding threads), or None (run here) for 1 worker.
  ``scheduler='local'``: a dask LocalCluster of ``workers`` single-threaded
  processes; any other value: the address of a running dask scheduler. Both
  give ``client.get_executor()`` (a concurrent.futures executor).

  Raises:
    OSError / ValueError: the scheduler cannot be reached.
  """
  if scheduler:
    return _dask_executor(workers, scheduler)
  if workers <= 1:
    return contextlib.nullcontext(None)
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'))


@contextlib.contextmanager
def _dask_executor(workers: int, scheduler: str):
  """client.get_executor() of a LocalCluster or of the given scheduler."""
  import distributed  # pylint: disable=g-import-not-at-top
  with contextlib.ExitStack() as stack:
    if scheduler == 'local':
      cluster = stack.enter_context(distributed.LocalCluster(
          n_workers=workers, threads_per_worker=1, processes=True,
          dashboard_address=None))
      client = stack.enter_context(distributed.Client(cluster))
    else:
      client = stack.enter_context(
          distributed.Client(scheduler, timeout=DASK_CONNECT_TIMEOUT))
    yield client.get_executor()


def _engine(args: argparse.Namespace, executor) -> str:
  """How the pairs are processed, for the first progress line."""
  if getattr(args, 'scheduler', None) and executor is not None:
    client = executor._client  # pylint: disable=protected-access
    n = len(client.scheduler_info(n_workers=-1)['workers'])
    return f'dask ({args.scheduler}, {n} worker(s))'
  return f'{args.workers} worker(s)'


def run_tasks(tasks: list[dict], executor=None) -> Iterator[dict[str, Any]]:
  """Yields one record per task, in completion order.

  ``executor``: a ``concurrent.futures`` executor, or None to run here.
  """
  if executor is None:
    for task in tasks:
      yield process_pair(task)
    return
  futures = {executor.submit(process_pair, task): task for task in tasks}
  for future in concurrent.futures.as_completed(futures):
    try:
      yield future.result()
    except Exception as e:  # pylint: disable=broad-except
      # A worker died (e.g. killed for memory): record, retry on resume.
      record = dict(futures[future]['record'])
      record.update(status='skipped', error=type(e).__name__,
                    reason=one_line(e, with_type=True, whole=True))
      yield record


def summary(records: Iterable[dict[str, Any]], n_unpaired: int) -> str:
  """``ok``/``skipped`` counts per split plus the unpaired count."""
  counts: dict[str, collections.Counter] = collections.defaultdict(
      collections.Counter)
  for record in records:
    counts[record.get('split') or '(none)'][record['status']] += 1
  parts = [f'{split}: {c["ok"]} ok, {c["skipped"]} skipped'
           for split, c in sorted(counts.items())]
  return 'summary: ' + '; '.join(parts + [f'unpaired files: {n_unpaired}'])


def _line_key(record: dict[str, Any]) -> tuple:
  return tuple(record.get(k) for k in ('status', 'aia', 'hmi', 'reason'))


def main(argv=None) -> int:
  """Standalone entry point (``prepare build`` is the documented one)."""
  parser = argparse.ArgumentParser(prog='build', description=__doc__.split(
      '\n', 1)[0])
  add_arguments(parser)
  return run(parser.parse_args(argv))


if __name__ == '__main__':
  sys.exit(main())
