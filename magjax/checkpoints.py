"""Checkpoints of the full training state (orbax CheckpointManager).

Layout: `<workdir>/checkpoints/<step>/` with two items,
- `state`: the whole TrainState (both networks, batch statistics, both
  optimiser states, step, RNG key), saved with StandardSave and restored
  against an abstract target so optax states keep their types;
- `meta`: JSON with the data position (the global step: the input pipeline is
  a pure function of (seed, step)) and the config that produced it.
Saves are asynchronous and atomic (orbax writes a tmp dir, then renames):
a kill during a save leaves the previous checkpoints usable.
"""

import functools
import json
import os

from absl import logging
from etils import epath
import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from magjax import config_utils
from magjax import train_state as train_state_lib

SUBDIR = 'checkpoints'


class CheckpointMismatchError(ValueError):
  """A checkpoint whose arrays do not fit the configured model."""


def quiet_orbax():
  """Orbax logs ~70 INFO lines per save/restore under absl: keep warnings."""
  logging.set_verbosity(logging.WARNING)


def directory(workdir):
  return os.path.join(os.path.abspath(workdir), SUBDIR)


class Checkpointer:
  """Saves / restores TrainState + meta under `<workdir>/checkpoints`."""

  def __init__(self, workdir, keep=3, read_only=False):
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
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def _existing(self, step):
    available = self.all_steps()
    if step is None:
      step = self.latest_step()
    if step is None or step not in available:
      raise FileNotFoundError(
          f'no checkpoint at step {step} in {self._manager.directory} '
          f'(available: {sorted(available) or "none"})')
    return step

  def restore(self, target, step=None):
    """(state, meta) of `step` (default: the latest).

    Args:
      target: a TrainState (concrete or of jax.ShapeDtypeStruct) giving the
        structure, dtypes and shardings to restore into.
      step: the checkpoint step; None for the latest.

    Raises:
      FileNotFoundError: no such checkpoint.
      CheckpointMismatchError: an array of another shape than the target's.
    """
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
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def _shape_mismatches(self, step, abstract):
    """[(name, stored shape, target shape)] of arrays named in both."""
    path = epath.Path(self._manager.directory) / str(step) / 'state'
    try:
      stored_tree = ocp.StandardCheckpointHandler().metadata(path)
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


def abstract_train_state(config, sharding=None):
  """The TrainState of `config` as jax.ShapeDtypeStructs (no computation).

  The restore target for training (resume) and evaluation; `sharding`
  (default: the first device) is where restored arrays are placed.
  """
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shapes = jax.eval_shape(
      functools.partial(train_state_lib.create_train_state, config,
                        image_shape=(config.crop_size, config.crop_size)),
      jax.random.key(0))
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes)


def _key_name(key):
  """A tree path entry as orbax names it (attribute, dict key or index)."""
  for attr in ('name', 'key', 'idx'):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def _abstract(x):
  if isinstance(x, jax.Array):
    return jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding)
  return x
