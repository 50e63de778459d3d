"""magjax.checkpoints: full-state round trip, retention, restore by step."""

import json

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from magjax import checkpoints


@flax.struct.dataclass
class _State:
  """Same kinds of leaves as magjax.train_state.TrainState."""
  step: jax.Array
  g_params: dict
  g_batch_stats: dict
  d_params: dict
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  rng: jax.Array


def _state(seed, step):
  keys = jax.random.split(jax.random.key(seed), 3)
  g = {'conv': {'kernel': jax.random.normal(keys[0], (3, 3, 1, 4))}}
  d = {'dense': {'kernel': jax.random.normal(keys[1], (4, 2)),
                 'bias': jnp.zeros(2)}}
  tx = optax.adam(optax.linear_schedule(2e-4, 0.0, 10), b1=0.5)
  g_opt, d_opt = tx.init(g), tx.init(d)
  # Make the optimiser state non-trivial (moments, counts).
  _, g_opt = tx.update(g, g_opt, g)
  _, d_opt = tx.update(d, d_opt, d)
  return _State(step=jnp.asarray(step, jnp.int32), g_params=g,
                g_batch_stats={'bn': {'mean': jnp.full(4, float(seed))}},
                d_params=d, g_opt_state=g_opt, d_opt_state=d_opt,
                rng=keys[2])


def _config():
  return ml_collections.ConfigDict({'seed': 3, 'model': {'name': 'rhp'}})


def _assert_equal(a, b):
  a_leaves, a_def = jax.tree.flatten(a)
  b_leaves, b_def = jax.tree.flatten(b)
  assert a_def == b_def
  for x, y in zip(a_leaves, b_leaves):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_of_the_full_state(tmp_path):
  state = _state(seed=1, step=7)
  ckpt = checkpoints.Checkpointer(tmp_path, keep=2)
  assert ckpt.latest_step() is None
  assert ckpt.save(state, _config()) == 7
  ckpt.wait()
  target = _state(seed=2, step=0)  # different values, same structure
  restored, meta = ckpt.restore(target)
  ckpt.close()
  _assert_equal(restored, state)
  assert type(restored.g_opt_state) is type(state.g_opt_state)
  assert jnp.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
  assert meta['data_position'] == 7
  assert meta['config']['seed'] == 3
  # the config is also plain JSON on disk
  text = (tmp_path / 'checkpoints' / '7' / 'meta' / 'metadata').read_text()
  assert json.loads(text)['config']['model']['name'] == 'rhp'


def test_keeps_the_latest_and_restores_a_given_step(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path, keep=2)
  for step in (1, 2, 3):
    ckpt.save(_state(seed=step, step=step), _config())
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]
  reader = checkpoints.Checkpointer(tmp_path, keep=2, read_only=True)
  assert reader.latest_step() == 3
  assert reader.read_meta()['data_position'] == 3
  assert reader.read_meta(step=2)['config']['seed'] == 3
  restored, _ = reader.restore(_state(seed=0, step=0), step=2)
  _assert_equal(restored, _state(seed=2, step=2))
  with pytest.raises(checkpoints.CheckpointError,
                     match='step 1 .*available: \\[2, 3\\]'):
    reader.restore(_state(seed=0, step=0), step=1)
  ckpt.close()
