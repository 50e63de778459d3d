"""Test helpers for the networks: configs and cheap random variables.

`flax` `init` of even the tiny U-Net costs ~20 s of CPU here (XLA compiles
one partitionable-threefry sampler per parameter), so the tests that only
need *some* weights draw them with NumPy from the `jax.eval_shape` tree,
following the same rules as the real initialisers (tests/test_layers.py and
the fixture tests cover those).
"""

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from magjax.models import build_discriminator, build_generator


def model_cfg(name='rhp', **overrides):
  cfg = ConfigDict(dict(
      name=name, input_nc=1, output_nc=1, ngf=64, ndf=64, num_downs=8,
      attn_level=-1, key_reduction=8, value_reduction=8, dropout=0.5,
      norm='batch', n_layers_d=3, init_std=0.02, bn_momentum=0.1,
      bn_epsilon=1e-5, bn_unbiased_running_var=True, sn_epsilon=1e-12,
      conv='auto', conv_transpose='auto'))
  cfg.update(overrides)
  return cfg


def tiny(name='rhp', **overrides):
  """The fixtures' size: ngf = ndf = 8, 5 levels (32^2 inputs)."""
  return model_cfg(name, **{'ngf': 8, 'ndf': 8, 'num_downs': 5, **overrides})


def abstract_generator(cfg, size, batch=1):
  gen = build_generator(cfg)
  x = jax.ShapeDtypeStruct((batch, size, size, cfg.input_nc), jnp.float32)
  return jax.eval_shape(lambda x: gen.init(jax.random.key(0), x, train=False), x)


def abstract_discriminator(cfg, size, batch=1):
  disc = build_discriminator(cfg)
  a = jax.ShapeDtypeStruct((batch, size, size, cfg.input_nc), jnp.float32)
  b = jax.ShapeDtypeStruct((batch, size, size, cfg.output_nc), jnp.float32)
  return jax.eval_shape(lambda a, b: disc.init(jax.random.key(0), a, b,
                                               train=False), a, b)


def random_variables(abstract, seed=0, std=0.02):
  """Concrete variables for an eval_shape tree: kernels N(0, std), BN scale
  N(1, std), biases, gamma and running means 0, running vars 1, spectral-norm
  u, v random unit vectors."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = getattr(path[-1], 'key', path[-1])
    shape = leaf.shape
    if name == 'kernel':
      value = rng.normal(0, std, shape)
    elif name == 'scale':
      value = 1 + rng.normal(0, std, shape)
    elif name == 'var':
      value = np.ones(shape)
    elif name in ('u', 'v'):
      value = rng.standard_normal(shape)
      value /= np.linalg.norm(value)
    else:  # bias, gamma, mean
      value = np.zeros(shape)
    return jnp.asarray(value, jnp.float32)

  return jax.tree_util.tree_map_with_path(draw, abstract)
