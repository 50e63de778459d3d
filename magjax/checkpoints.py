"""Checkpoints of the full training state (orbax CheckpointManager).

Layout: `<workdir>/checkpoints/<step>/` with two items,
- `state`: the whole TrainState (both networks, batch statistics, both
  optimiser states, step, RNG key), saved with StandardSave and restored
  against an abstract target so optax states keep their types;
- `meta`: JSON with the data position (the global step: the input pipeline is
  a pure function of (seed, step)) and the config that produced it.
Saves are asynchronous and atomic (orbax writes a tmp dir, then renames):
a kill during a save leaves the previous checkpoints usable.

Readers of one part (evaluation and predict need the generator only) restore
that part alone (`Checkpointer.restore(..., partial=True)`), so they need
neither the discriminator nor the optimisers, and this module knows nothing
of the TrainState (training/train_state.py builds its abstract target).

Listing the checkpoints and reading the config saved with one
(`list_steps`, `find_step`, `saved_config`) import neither JAX nor orbax at
module level: commands check their arguments before paying for either.

Verification. Every save writes `magjax_sha256.json` (size and SHA-256 of
each file of the checkpoint) into orbax's tmp directory before orbax
renames it into place, so a committed checkpoint carries the list it is
checked against (orbax itself keeps no checksums: a truncated or altered
file otherwise surfaces as thousands of lines of tensorstore errors).
`damage(step)` compares; `intact_step` (readers: evaluation, predict) takes
the newest intact checkpoint or refuses a damaged `--step`;
`set_aside_damaged` (training, which holds the workdir's lock) moves damaged
ones to `<workdir>/checkpoints_damaged/` (never deleted) and resumes from
the newest intact one. A save that fails (full or failing disk) raises
`CheckpointSaveError` naming the step, the reason and the last good
checkpoint, after removing its own partial tmp directory.
"""

import glob
import hashlib
import json
import os
import shutil
import sys

from magjax import config_utils
from magjax_common import fileio
from magjax_common.errors import UserError, WriteError, one_line, write_reason

SUBDIR = 'checkpoints'
DAMAGED_SUBDIR = 'checkpoints_damaged'
MANIFEST = 'magjax_sha256.json'
# orbax's own bookkeeping, rewritten around the commit: not checksummed.
_BOOKKEEPING = ('_CHECKPOINT_METADATA', 'commit_success.txt', MANIFEST)
_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax: atomicity_types.TMP_DIR_SUFFIX


class CheckpointError(UserError):
  """No checkpoint where one is needed, or one that cannot be read."""


class CheckpointMismatchError(CheckpointError):
  """A checkpoint whose arrays do not fit the configured model."""


class CheckpointDamagedError(CheckpointError):
  """A checkpoint whose files differ from what was written."""


class CheckpointSaveError(WriteError):
  """A save that failed (full or failing disk); exit code 3."""


def directory(workdir):
  return os.path.join(os.path.abspath(workdir), SUBDIR)


def step_directory(workdir, step):
  return os.path.join(directory(workdir), str(int(step)))


def _checked_files(step_dir):
  """Paths (relative to `step_dir`) of the files the manifest covers."""
  out = []
  for root, _, names in os.walk(step_dir):
    out += [os.path.relpath(os.path.join(root, name), step_dir)
            for name in names if name not in _BOOKKEEPING]
  return sorted(out)


def _sha256(path):
  with open(path, 'rb') as f:
    return hashlib.file_digest(f, 'sha256').hexdigest()


def seal(step_dir):
  """Writes the manifest (size, SHA-256 of every checked file) of a
  checkpoint directory."""
  files = {rel: [os.path.getsize(os.path.join(step_dir, rel)),
                 _sha256(os.path.join(step_dir, rel))]
           for rel in _checked_files(step_dir)}
  fileio.write_bytes_atomic(os.path.join(step_dir, MANIFEST), json.dumps(
      {'algorithm': 'sha256', 'files': files}, indent=0).encode('utf-8'))


_VERIFIED = {}  # (step dir, its files' sizes and mtimes) -> damage()


def damage(step_dir):
  """None when the checkpoint's files are as written, else why not (one
  short clause). A checkpoint without a manifest (magjax < 0.3) is not
  checked here: orbax's own reads decide."""
  path = os.path.join(step_dir, MANIFEST)
  if not os.path.isdir(step_dir):
    return 'its directory is gone'
  if not os.path.isfile(path):
    return None
  stats = {rel: os.stat(os.path.join(step_dir, rel))
           for rel in _checked_files(step_dir) + [MANIFEST]}
  key = (step_dir,) + tuple((rel, st.st_size, st.st_mtime_ns)
                            for rel, st in stats.items())
  if key not in _VERIFIED:
    _VERIFIED[key] = _compare(step_dir, path)
  return _VERIFIED[key]


def _compare(step_dir, manifest_path):
  try:
    with open(manifest_path, 'rb') as f:
      files = json.loads(f.read().decode('utf-8'))['files']
  except (OSError, ValueError, KeyError, TypeError):
    return f'its checksum list {MANIFEST} is unreadable'
  for rel, (size, _) in sorted(files.items()):
    full = os.path.join(step_dir, rel)
    if not os.path.isfile(full):
      return f'{rel} is missing'
    if os.path.getsize(full) != size:
      return (f'{rel} holds {os.path.getsize(full):,} bytes where '
              f'{size:,} were written')
  for rel, (_, digest) in sorted(files.items()):
    if _sha256(os.path.join(step_dir, rel)) != digest:
      return f'{rel} differs from what was written (SHA-256)'
  return None


def note(line):
  """Readers' notes (a damaged checkpoint passed over) go to stderr."""
  print(line, file=sys.stderr, flush=True)


def intact_step(workdir, step=None, say=None):
  """The step to read: `step`, or the newest intact checkpoint.

  Without `step`, damaged newer checkpoints are passed over and `say(line)`
  (e.g. `note`) hears, in one line, which and why, and which one is used
  instead.

  Raises:
    CheckpointError: no checkpoint, or no such step.
    CheckpointDamagedError: `step` given and damaged, or none intact (the
      line names the newest intact one, if any).
  """
  wanted = find_step(workdir, step)
  reason = damage(step_directory(workdir, wanted))
  if reason is None:
    return wanted
  others = [s for s in reversed(list_steps(workdir)) if s != wanted]
  damaged = [(wanted, reason)]
  intact = None
  for s in others:
    why = damage(step_directory(workdir, s))
    if why is None:
      intact = s
      break
    damaged.append((s, why))
  where = directory(workdir)
  if step is not None or intact is None:
    tail = (f'newest intact checkpoint: {intact}' if intact is not None
            else 'no intact checkpoint left')
    raise CheckpointDamagedError(
        f'checkpoint {wanted} in {where} is damaged: {reason} ({tail}; the '
        f'damaged files are left as they are)')
  if say is not None:
    say(f'note: {_damaged_list(damaged)} in {where}: using checkpoint '
        f'{intact}')
  return intact


def _damaged_list(damaged):
  """'checkpoint 6 is damaged (why)' or 'checkpoints 9, 6 are damaged
  (9: why)'."""
  (first, why), steps = damaged[0], [str(s) for s, _ in damaged]
  if len(damaged) == 1:
    return f'checkpoint {first} is damaged ({why})'
  return f'checkpoints {", ".join(steps)} are damaged ({first}: {why})'


def set_aside_damaged(workdir, say):
  """Training's resume: moves damaged checkpoints newer than the newest
  intact one to `<workdir>/checkpoints_damaged/<step>[.N]` (kept, never
  deleted), tells `say` in one line, and returns the newest intact step
  (None: no checkpoint at all).

  Raises:
    CheckpointDamagedError: checkpoints exist but none is intact.
  """
  damaged = []
  for s in reversed(list_steps(workdir)):
    why = damage(step_directory(workdir, s))
    if why is None:
      break
    damaged.append((s, why))
  else:
    if damaged:
      raise CheckpointDamagedError(
          f'{_damaged_list(damaged)} in {directory(workdir)} and no intact '
          f'one is left: move them away to start afresh')
    return None
  if not damaged:
    return s
  aside = os.path.join(os.path.abspath(workdir), DAMAGED_SUBDIR)
  os.makedirs(aside, exist_ok=True)
  for step, _ in damaged:
    target = os.path.join(aside, str(step))
    n = 1
    while os.path.exists(target):
      target, n = os.path.join(aside, f'{step}.{n}'), n + 1
    os.replace(step_directory(workdir, step), target)
  say(f'note: {_damaged_list(damaged)}: moved to {aside}; resuming from '
      f'checkpoint {s}')
  return s


def quiet_orbax(read_only=False):
  """Orbax logs ~70 INFO lines per save/restore under absl: keep warnings
  (errors only for read-only use, where orbax warns about read-only mode).

  A failed save or read is reported once, in one line, by this module
  (CheckpointSaveError, CheckpointDamagedError); the same failure otherwise
  also reaches stderr from orbax's threads hundreds of times (absl ERROR
  records, asyncio's 'Task exception was never retrieved', tensorstore
  callbacks raising 'Event loop is closed' into sys.excepthook and
  sys.unraisablehook), so those are filtered out.
  """
  import logging as py_logging  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR if read_only else logging.WARNING)
  for name in ('absl', 'asyncio'):
    logger = py_logging.getLogger(name)
    if not any(isinstance(f, _OrbaxThreadErrors) for f in logger.filters):
      logger.addFilter(_OrbaxThreadErrors())
  if not getattr(sys.excepthook, 'magjax_quiet', False):
    sys.excepthook = _quiet_excepthook(sys.excepthook)
  if not getattr(sys.unraisablehook, 'magjax_quiet', False):
    sys.unraisablehook = _quiet_unraisablehook(sys.unraisablehook)


class _OrbaxThreadErrors:
  """A logging filter: drops orbax's own error records and asyncio's
  reports of orbax tasks that failed (the failure is raised and reported
  by the caller)."""

  def filter(self, record):
    if record.levelno < 40:  # logging.ERROR
      return True
    text = record.getMessage()
    return not ('/orbax/' in (record.pathname or '') or (
        record.name == 'asyncio' and 'orbax' in text))


def _loop_closed(value):
  return isinstance(value, RuntimeError) and str(value) == (
      'Event loop is closed')


def _quiet_excepthook(hook):
  """sys.excepthook without tensorstore's late 'Event loop is closed'."""
  def quiet(kind, value, tb):
    if not _loop_closed(value):
      hook(kind, value, tb)
  quiet.magjax_quiet = True
  return quiet


def _quiet_unraisablehook(hook):
  """sys.unraisablehook without the same error raised in C++ callbacks."""
  def quiet(unraisable):
    if not _loop_closed(unraisable.exc_value):
      hook(unraisable)
  quiet.magjax_quiet = True
  return quiet


def list_steps(workdir):
  """Sorted steps of the committed checkpoints under `<workdir>/checkpoints`.

  A step directory counts when orbax has committed it (commit_success.txt
  or _CHECKPOINT_METADATA); a directory listing, no orbax import.
  """
  root = directory(workdir)
  if not os.path.isdir(root):
    return []
  steps = set()
  for name in os.listdir(root):
    path = os.path.join(root, name)
    if name.isdigit() and any(
        os.path.isfile(os.path.join(path, marker))
        for marker in ('commit_success.txt', '_CHECKPOINT_METADATA')):
      steps.add(int(name))
  return sorted(steps)


def find_step(workdir, step=None):
  """The step to use: `step`, or the latest; CheckpointError if there is none."""
  if not os.path.isdir(workdir):
    raise CheckpointError(f'no such workdir {workdir!r}')
  available = list_steps(workdir)
  if not available:
    raise CheckpointError(f'no checkpoint in {directory(workdir)!r} '
                          '(train first)')
  if step is None:
    return available[-1]
  if step not in available:
    raise CheckpointError(f'no checkpoint at step {step} in '
                          f'{directory(workdir)!r} (available: {available})')
  return step


def saved_config(workdir, step=None):
  """(config, step): the config saved with checkpoint `step` (default latest).

  Reads only the JSON `meta` item. Raises CheckpointError.
  """
  step = find_step(workdir, step)
  ckpt = Checkpointer(workdir, read_only=True)
  try:
    meta = ckpt.read_meta(step)
  except CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds
    raise CheckpointError(f'cannot read the meta of checkpoint {step} in '
                          f'{directory(workdir)!r}: {one_line(e)}') from e
  finally:
    ckpt.close()
  try:
    return config_utils.config_from_json((meta or {}).get('config')), step
  except ValueError as e:
    raise CheckpointError(f'checkpoint {step} in {directory(workdir)!r}: '
                          f'{e}') from e


class Checkpointer:
  """Saves / restores TrainState + meta under `<workdir>/checkpoints`."""

  def __init__(self, workdir, keep=3, read_only=False):
    import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
    from orbax.checkpoint import checkpoint_managers  # pylint: disable=g-import-not-at-top
    quiet_orbax(read_only)
    self._ocp = ocp
    self._root = directory(workdir)
    self._pending = None  # the step of the save in flight
    self._failed = False
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint_managers.LatestN(keep),
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=True,
        # Called in orbax's tmp directory before it is renamed into place.
        async_options=ocp.AsyncOptions(
            post_finalization_callback=self._seal_pending),
    )
    self._manager = ocp.CheckpointManager(
        self._root, options=options, item_names=('state', 'meta'))

  def _seal_pending(self):
    """Writes the manifest of the save in flight (process 0)."""
    import jax  # pylint: disable=g-import-not-at-top
    if self._pending is None or jax.process_index() != 0:
      return
    found = (glob.glob(os.path.join(self._root,
                                    f'{self._pending}{_TMP_SUFFIX}*'))
             or [os.path.join(self._root, str(self._pending))])
    seal(found[0])

  def latest_step(self):
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, state, config):
    """Starts an asynchronous save of `state` at its own step.

    Raises:
      CheckpointSaveError: this save or the previous (asynchronous) one
        failed; the failed step's partial files are removed.
    """
    import jax  # pylint: disable=g-import-not-at-top
    ocp = self._ocp
    self.wait()  # a failure of the previous save is reported as its own
    step = int(jax.device_get(state.step))
    meta = {'data_position': step,
            'config': json.loads(config_utils.to_json(config))}
    self._pending = step
    try:
      self._manager.save(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  meta=ocp.args.JsonSave(meta)),
          force=True)
    except Exception as e:  # pylint: disable=broad-except  # orbax, tensorstore, OS
      self._save_failed(e)
    return step

  def _save_failed(self, error):
    """CheckpointSaveError for the save in flight, its tmp files removed."""
    step, self._pending, self._failed = self._pending, None, True
    for path in glob.glob(os.path.join(self._root, f'{step}{_TMP_SUFFIX}*')):
      shutil.rmtree(path, ignore_errors=True)
    good = [s for s in list_steps(os.path.dirname(self._root)) if s != step]
    last = (f'last good checkpoint: step {good[-1]}' if good
            else 'no earlier checkpoint')
    raise CheckpointSaveError(
        f'could not save checkpoint {step} in {self._root}: '
        f'{write_reason(error)} ({last}; rerun the same command to resume '
        'from it once there is room)') from error

  def read_meta(self, step=None):
    """The meta item (data position, config) of `step` (default: latest)."""
    step = self._existing(step)
    return self._manager.restore(
        step, args=self._ocp.args.Composite(
            meta=self._ocp.args.JsonRestore())).meta

  def _existing(self, step):
    available = self.all_steps()
    if step is None:
      step = self.latest_step()
    if step is None or step not in available:
      raise CheckpointError(
          f'no checkpoint at step {step} in {self._manager.directory} '
          f'(available: {sorted(available) or "none"})')
    return step

  def restore(self, target, step=None, partial=False):
    """(state, meta) of `step` (default: the latest).

    Args:
      target: the tree to restore into (concrete arrays or
        jax.ShapeDtypeStruct leaves, with their shardings): the whole
        TrainState, or with `partial` a dict of some of its fields.
      step: the checkpoint step; None for the latest.
      partial: restore only the fields in `target` (read nothing else).

    Raises:
      CheckpointError: no such checkpoint.
      CheckpointDamagedError: files that differ from what was written.
      CheckpointMismatchError: an array of another shape than the target's.
    """
    import jax  # pylint: disable=g-import-not-at-top
    ocp = self._ocp
    step = self._existing(step)
    abstract = jax.tree.map(_abstract, target)
    # Checked before orbax reads anything: a failed orbax restore leaves
    # pending reads behind that print tracebacks at exit.
    wrong = self._shape_mismatches(step, abstract)
    if wrong:
      name, stored, wanted = wrong[0]
      raise CheckpointMismatchError(
          f'checkpoint step {step} in {self._manager.directory} does not fit '
          f'this model: {len(wrong)} arrays of another shape, e.g. {name} '
          f'{stored} where the model has {wanted} (magjax 0.1 stored '
          'transposed-convolution kernels as (4, 4, in, out), 0.2 as (in, 4, '
          '4, out); docs/PERFORMANCE.md)')
    state_args = (ocp.args.PyTreeRestore(
        item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(
            abstract), partial_restore=True)
                  if partial else ocp.args.StandardRestore(abstract))
    why = damage(step_directory(os.path.dirname(self._root), step))
    if why:  # before orbax reads: its errors would bury the cause
      raise CheckpointDamagedError(
          f'checkpoint {step} in {self._root} is damaged: {why}')
    restored = self._manager.restore(
        step, args=ocp.args.Composite(state=state_args,
                                      meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def _shape_mismatches(self, step, abstract):
    """[(name, stored shape, target shape)] of arrays named in both."""
    import jax  # pylint: disable=g-import-not-at-top
    from etils import epath  # pylint: disable=g-import-not-at-top
    path = epath.Path(self._manager.directory) / str(step) / 'state'
    try:
      stored_tree = self._ocp.StandardCheckpointHandler().metadata(path)
    except (KeyError, TypeError, ValueError, OSError):
      return []  # no metadata to check against: orbax's own errors apply
    stored = {leaf.name: tuple(leaf.shape)
              for leaf in jax.tree.leaves(stored_tree)
              if hasattr(leaf, 'name') and hasattr(leaf, 'shape')}
    wrong = []
    for path, leaf in jax.tree_util.tree_leaves_with_path(abstract):
      if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        continue  # stored as its key data, of another shape
      name = '.'.join(_key_name(k) for k in path)
      if name in stored and stored[name] != tuple(leaf.shape):
        wrong.append((name, stored[name], tuple(leaf.shape)))
    return wrong

  def wait(self):
    """Blocks until pending asynchronous saves are on disk.

    Raises:
      CheckpointSaveError: the pending save failed.
    """
    try:
      self._manager.wait_until_finished()
    except Exception as e:  # pylint: disable=broad-except  # orbax, tensorstore, OS
      if self._pending is None:
        raise
      self._save_failed(e)
    self._pending = None

  def close(self):
    """Waits for a pending save (CheckpointSaveError if it fails), then
    releases orbax's threads. After a failed save, closes quietly."""
    try:
      if not self._failed:
        self.wait()
    finally:
      try:
        self._manager.close()
      except Exception:  # pylint: disable=broad-except
        if not self._failed:
          raise


def _key_name(key):
  """A tree path entry as orbax names it (attribute, dict key or index)."""
  for attr in ('name', 'key', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _abstract(x):
  import jax  # pylint: disable=g-import-not-at-top
  if isinstance(x, jax.Array):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  return x
