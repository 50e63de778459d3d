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
"""

import json
import os

from magjax import config_utils
from magjax_common.errors import UserError, one_line

SUBDIR = 'checkpoints'


class CheckpointError(UserError):
  """No checkpoint where one is needed, or one that cannot be read."""


class CheckpointMismatchError(CheckpointError):
  """A checkpoint whose arrays do not fit the configured model."""


def directory(workdir):
  return os.path.join(os.path.abspath(workdir), SUBDIR)


def quiet_orbax(read_only=False):
  """Orbax logs ~70 INFO lines per save/restore under absl: keep warnings
  (errors only for read-only use, where orbax warns about read-only mode)."""
  from absl import logging  # pylint: disable=g-import-not-at-top
  logging.set_verbosity(logging.ERROR if read_only else logging.WARNING)


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
    options = ocp.CheckpointManagerOptions(
        preservation_policy=checkpoint_managers.LatestN(keep),
        create=not read_only,
        read_only=read_only,
        enable_async_checkpointing=True,
    )
    self._manager = ocp.CheckpointManager(
        directory(workdir), options=options, item_names=('state', 'meta'))

  def latest_step(self):
    """The newest complete checkpoint's step, or None."""
    return self._manager.latest_step()

  def all_steps(self):
    return list(self._manager.all_steps())

  def save(self, state, config):
    """Starts an asynchronous save of `state` at its own step."""
    import jax  # pylint: disable=g-import-not-at-top
    ocp = self._ocp
    step = int(jax.device_get(state.step))
    meta = {'data_position': step,
            'config': json.loads(config_utils.to_json(config))}
    self._manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        force=True)
    return step

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
    """Blocks until pending asynchronous saves are on disk."""
    self._manager.wait_until_finished()

  def close(self):
    self._manager.wait_until_finished()
    self._manager.close()


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
