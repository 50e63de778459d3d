"""The pix2pix train state and its optimisers.

`TrainState` holds both networks, their batch statistics (BatchNorm running
stats, spectral-norm u and v), both optax states, the step and a typed RNG
key. It is a pytree: jit, shard, donate and checkpoint it whole.

The learning-rate schedule is junyanz's 'linear' policy in steps: constant
for `lr_constant_fraction * num_train_steps`, then linear to 0 at
`num_train_steps`. Its count lives in the optax state, so a restored state
continues the schedule.
"""

import functools
from typing import Any, Optional

import flax
import jax
import jax.numpy as jnp
import optax

from magjax.models import build_discriminator, build_generator


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  g_params: Any
  g_batch_stats: Any
  d_params: Any
  d_batch_stats: Any
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  rng: jax.Array  # typed key (jax.random.key); dropout keys fold in `step`


def _resolved_steps(config, num_train_steps):
  steps = config.num_train_steps if num_train_steps is None else num_train_steps
  if steps is None or steps <= 0:
    raise ValueError('num_train_steps must be resolved to a positive number '
                     f'before building the optimisers (got {steps}); '
                     'train.py derives it from num_epochs')
  return int(steps)


def learning_rate_schedule(config, num_train_steps: Optional[int] = None):
  """Constant lr for lr_constant_fraction of training, then linear to 0."""
  steps = _resolved_steps(config, num_train_steps)
  constant = int(round(config.lr_constant_fraction * steps))
  return optax.join_schedules(
      [optax.constant_schedule(config.learning_rate),
       optax.linear_schedule(config.learning_rate, 0.0,
                             max(steps - constant, 1))],
      [constant])


def make_optimizers(config, num_train_steps: Optional[int] = None):
  """(tx_g, tx_d): optax Adam(b1, b2, adam_eps) with the pix2pix schedule."""
  schedule = learning_rate_schedule(config, num_train_steps)

  def adam():
    return optax.adam(schedule, b1=config.b1, b2=config.b2,
                      eps=config.adam_eps)
  return adam(), adam()


def create_train_state(config, rng, image_shape,
                       num_train_steps: Optional[int] = None) -> TrainState:
  """Initialised networks and fresh optimisers.

  Args:
    config: the full config (model settings under config.model).
    rng: a typed key (jax.random.key) or a raw uint32 key.
    image_shape: (H, W) or (H, W, C) of one AIA input (H, W multiples of
      2**num_downs); channels come from config.model.
    num_train_steps: overrides config.num_train_steps for the schedule.
  """
  if not jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    rng = jax.random.wrap_key_data(rng)
  height, width = image_shape[:2]
  model_cfg = config.model
  if len(image_shape) == 3 and image_shape[2] != model_cfg.input_nc:
    raise ValueError(f'image_shape {tuple(image_shape)} has '
                     f'{image_shape[2]} channels, model.input_nc is '
                     f'{model_cfg.input_nc}')
  g_key, d_key, state_key = jax.random.split(rng, 3)
  a = jnp.zeros((1, height, width, model_cfg.input_nc), jnp.float32)
  b = jnp.zeros((1, height, width, model_cfg.output_nc), jnp.float32)
  g_vars = _init_variables(build_generator(model_cfg), g_key, a)
  d_vars = _init_variables(build_discriminator(model_cfg), d_key, a, b)
  tx_g, tx_d = make_optimizers(config, num_train_steps)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      g_params=g_vars['params'],
      g_batch_stats=g_vars.get('batch_stats', {}),
      d_params=d_vars['params'],
      d_batch_stats=d_vars.get('batch_stats', {}),
      g_opt_state=tx_g.init(g_vars['params']),
      d_opt_state=tx_d.init(d_vars['params']),
      rng=state_key)


def _init_variables(module, key, *inputs):
  """module.init(key, *inputs, train=False), compiled: init keeps only the
  variables, so XLA drops the forward pass it would otherwise run eagerly
  (each layer by its own method, as in apply)."""
  return jax.jit(functools.partial(module.init, train=False))(key, *inputs)


def abstract_train_state(config, sharding=None):
  """The TrainState of `config` as jax.ShapeDtypeStructs (no computation).

  The restore target of training (resume): `sharding` (default: the first
  device) is where restored arrays are placed. An unresolved
  num_train_steps (-1) is fine: the schedule does not shape the state.
  """
  if sharding is None:
    sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  steps = int(config.num_train_steps)
  shapes = jax.eval_shape(
      functools.partial(create_train_state, config,
                        image_shape=(config.crop_size, config.crop_size),
                        num_train_steps=steps if steps > 0 else 1),
      jax.random.key(0))
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      shapes)
