"""Child process of tests/test_train.py: trains a :tiny config on an
in-memory source through magjax.training.train.run and exits with its code.

  python tests/train_child.py WORKDIR '{"variant": "rhp", "nan_at": null,
      "overrides": {"num_train_steps": 4}, "dump": "final.npz"}'

With "slow": S, every example read takes S seconds (a slow disk), so that
a test can signal a run of a few steps while it trains. With "eval": true,
two more in-memory examples are the validation source of the periodic
evaluation. With "dump", the latest checkpoint is restored afterwards and
every leaf of the TrainState is written to that .npz (keys: pytree paths)
by process 0.
Multi-process runs: set MAGJAX_COORDINATOR_ADDRESS, MAGJAX_NUM_PROCESSES and
MAGJAX_PROCESS_ID in the environment of each process.
"""

import json
import sys
import time

import jax
import numpy as np
import train_helpers

from magjax import checkpoints
from magjax.training import train
from magjax.training import train_state


def _leaves(state):
  flat, _ = jax.tree_util.tree_flatten_with_path(state)
  out = {}
  for path, leaf in flat:
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      leaf = jax.random.key_data(leaf)
    out[jax.tree_util.keystr(path)] = np.asarray(leaf.addressable_data(0))
  return out


class _Slow:
  """A source whose reads take `delay` seconds."""

  def __init__(self, source, delay):
    self._source, self._delay = source, delay

  def __len__(self):
    return len(self._source)

  def __getitem__(self, index):
    time.sleep(self._delay)
    return self._source[index]


def main(workdir, spec):
  spec = json.loads(spec)
  config = train_helpers.load_config(spec.get('variant', 'rhp'), 'tiny')
  for key, value in spec.get('overrides', {}).items():
    node = config
    *parents, leaf = key.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  source = train_helpers.memory_source(nan_at=spec.get('nan_at'))
  if spec.get('slow'):
    source = _Slow(source, spec['slow'])
  eval_source = (train_helpers.memory_source(2, seed=5) if spec.get('eval')
                 else None)
  code = train.run(config, workdir, source, eval_source)
  if code == 0 and spec.get('dump'):
    # replicated over all devices of all processes (every process restores)
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
    replicated = jax.sharding.NamedSharding(mesh,
                                            jax.sharding.PartitionSpec())
    ckpt = checkpoints.Checkpointer(workdir, read_only=True)
    state, _ = ckpt.restore(
        train_state.abstract_train_state(config, replicated))
    if jax.process_index() == 0:
      np.savez(spec['dump'], **_leaves(state))
  return code


if __name__ == '__main__':
  sys.exit(main(*sys.argv[1:]))
