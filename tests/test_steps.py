"""Losses, optimisers + schedule, train state and the train step."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import default
from magjax.evaluation import inference
from magjax.training import losses, steps
from magjax.training import train_state as ts
from model_helpers import (abstract_discriminator, abstract_generator,
                           random_variables, tiny)


def test_vanilla_gan_loss_is_pytorch_bce_with_logits():
  x = np.array([-30.0, -2.0, -0.1, 0.0, 0.3, 4.0, 40.0], np.float32)
  for real, y in [(True, 1.0), (False, 0.0)]:
    want = np.mean(np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x))))
    np.testing.assert_allclose(losses.gan_loss(jnp.asarray(x), real), want,
                               rtol=1e-6)


def test_lsgan_and_l1():
  x = jnp.array([[0.5, -1.0], [2.0, 0.0]])
  np.testing.assert_allclose(losses.gan_loss(x, True, 'lsgan'),
                             np.mean((np.asarray(x) - 1) ** 2))
  np.testing.assert_allclose(losses.gan_loss(x, False, 'lsgan'),
                             np.mean(np.asarray(x) ** 2))
  np.testing.assert_allclose(losses.l1_loss(x, jnp.zeros_like(x)), 0.875)
  with pytest.raises(ValueError, match='gan_mode'):
    losses.gan_loss(x, True, 'wgan')


def _config(**overrides):
  config = default.get_config()
  config.model = tiny('rhp', attn_level=3)
  config.num_train_steps = 100
  config.update(overrides)
  return config


def test_schedule_constant_then_linear_to_zero():
  config = _config(num_train_steps=10, lr_constant_fraction=0.5,
                   learning_rate=1e-3)
  lr = ts.learning_rate_schedule(config)
  np.testing.assert_allclose([float(lr(s)) for s in (0, 4, 5, 6, 9, 10)],
                             [1e-3, 1e-3, 1e-3, 0.8e-3, 0.2e-3, 0.0],
                             rtol=1e-5, atol=1e-9)
  with pytest.raises(ValueError, match='num_train_steps'):
    ts.make_optimizers(_config(num_train_steps=-1))


def test_schedule_count_lives_in_the_optimizer_state():
  """Adam with unit gradients steps by exactly lr(k): a state carried over
  (e.g. restored from a checkpoint) continues the schedule."""
  config = _config(num_train_steps=4, lr_constant_fraction=0.5,
                   learning_rate=1e-2, adam_eps=0.0)
  tx, _ = ts.make_optimizers(config)
  params = {'w': jnp.zeros(3)}
  opt_state = tx.init(params)
  seen = []
  for _ in range(4):
    updates, opt_state = tx.update({'w': jnp.ones(3)}, opt_state, params)
    seen.append(-float(updates['w'][0]))
  np.testing.assert_allclose(seen, [1e-2, 1e-2, 1e-2, 0.5e-2], rtol=1e-5)


def test_create_train_state_structure():
  config = _config()
  state = jax.eval_shape(functools.partial(
      ts.create_train_state, config, image_shape=(32, 32)), jax.random.key(0))
  assert state.step.dtype == jnp.int32 and state.step.shape == ()
  assert jax.dtypes.issubdtype(state.rng.dtype, jax.dtypes.prng_key)
  assert set(state.g_batch_stats) >= {'attention', 'down_norm_2', 'up_norm_2'}
  assert state.g_batch_stats['attention']['f']['v'].shape == (32,)
  assert jax.tree.structure(state.g_opt_state[0].mu) == jax.tree.structure(
      state.g_params)
  with pytest.raises(ValueError, match='channels'):
    jax.eval_shape(functools.partial(ts.create_train_state, config,
                                     image_shape=(32, 32, 3)),
                   jax.random.key(0))


def _state(config, batch):
  g = random_variables(abstract_generator(config.model, 32, batch), seed=1)
  d = random_variables(abstract_discriminator(config.model, 32, batch), seed=2)
  tx_g, tx_d = ts.make_optimizers(config)
  return ts.TrainState(
      step=jnp.zeros((), jnp.int32), g_params=g['params'],
      g_batch_stats=g['batch_stats'], d_params=d['params'],
      d_batch_stats=d['batch_stats'], g_opt_state=tx_g.init(g['params']),
      d_opt_state=tx_d.init(d['params']), rng=jax.random.key(0))


def _batch(seed, n=2):
  rng = np.random.default_rng(seed)
  aia = rng.uniform(-1, 1, (n, 32, 32, 1)).astype(np.float32)
  hmi = np.tanh(2 * aia[:, ::-1] - 0.3).astype(np.float32)  # learnable map
  return {'aia': jnp.asarray(aia), 'hmi': jnp.asarray(hmi)}


@functools.lru_cache(maxsize=None)
def _jitted_step():
  config = _config(learning_rate=1e-3)
  return config, jax.jit(functools.partial(steps.train_step, config=config))


def test_l1_falls_on_a_fixed_batch_and_metrics():
  config, step = _jitted_step()
  state, batch = _state(config, 2), _batch(0)
  l1 = []
  for _ in range(30):
    state, metrics = step(state, batch)
    l1.append(float(metrics['loss_g_l1']))
  assert int(state.step) == 30
  assert bool(metrics['finite'])
  assert set(metrics) == {'loss_d', 'loss_d_fake', 'loss_d_real', 'loss_g',
                          'loss_g_gan', 'loss_g_l1', 'd_real', 'd_fake',
                          'gamma', 'lr', 'finite'}
  assert set(metrics) == set(steps.metric_names(config)) | {'finite'}
  np.testing.assert_allclose(metrics['lr'], 1e-3, rtol=1e-6)
  np.testing.assert_allclose(metrics['loss_g'],
                             metrics['loss_g_gan'] + metrics['loss_g_l1'],
                             rtol=1e-6)
  assert 0 < float(metrics['d_real']) < 1 and 0 < float(metrics['d_fake']) < 1
  assert float(metrics['gamma']) != 0.0  # gamma learns
  assert np.mean(l1[-5:]) < 0.85 * np.mean(l1[:3]), l1  # measured: 0.77


def test_non_finite_step_rolls_back_everything_but_the_step_counter():
  """The counter is the data position: it advances; networks, statistics
  and both optimiser states (their schedule counts too) stay as they were."""
  config, step = _jitted_step()
  state = _state(config, 2)
  batch = _batch(1)
  batch['hmi'] = batch['hmi'].at[0, 3, 4, 0].set(jnp.nan)
  new_state, metrics = step(state, batch)
  assert not bool(metrics['finite'])
  assert int(new_state.step) == int(state.step) + 1
  for new, old in zip(jax.tree.leaves(new_state.replace(step=state.step)),
                      jax.tree.leaves(state)):
    if jax.dtypes.issubdtype(old.dtype, jax.dtypes.prng_key):
      old, new = jax.random.key_data(old), jax.random.key_data(new)
    np.testing.assert_array_equal(new, old)


def test_generate_eval_and_mc_dropout():
  config = _config()
  config.model = tiny('pix2pix', num_downs=6)
  variables = random_variables(abstract_generator(config.model, 64), std=0.2)
  aia = _batch(2, n=1)['aia']
  aia = jnp.tile(aia, (1, 2, 2, 1))  # 64 x 64
  predict = jax.jit(functools.partial(inference.generate, config=config))
  out = predict(variables, aia)
  assert out.shape == (1, 64, 64, 1) and out.dtype == jnp.float32
  np.testing.assert_array_equal(out, predict(variables, aia))
  mc = predict(variables, aia, rng=jax.random.key(3))
  assert float(jnp.abs(mc - out).max()) > 1e-4


@pytest.mark.slow
@pytest.mark.parametrize('overrides', [dict(gan_mode='lsgan'),
                                       dict(half_precision=True),
                                       dict(model=tiny('pix2pix'))])
def test_other_settings_train(overrides):
  config = _config(learning_rate=1e-3, **overrides)
  step = jax.jit(functools.partial(steps.train_step, config=config))
  state, batch = _state(config, 2), _batch(0)
  first = None
  for _ in range(20):
    state, metrics = step(state, batch)
    first = first or float(metrics['loss_g_l1'])
    assert bool(metrics['finite'])
  assert float(metrics['loss_g_l1']) < first
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.g_params))
