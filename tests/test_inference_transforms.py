"""Inference computes the Winograd kernel transforms once per weights."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax import config_utils
from magjax import kernels
from magjax.evaluation import inference
from magjax.models import build_generator

BATCH, TILE = 8, 32  # the :tiny G has Winograd layers at this size


@pytest.fixture(scope='module')
def setup():
  config = config_utils.load_config_file('configs/rhp.py:tiny')
  gen = build_generator(config.model)
  x = jnp.zeros((1, TILE, TILE, 1), jnp.float32)
  init = jax.jit(lambda k: gen.init(k, x, train=False))
  tiles = np.random.default_rng(0).uniform(
      -1, 1, (BATCH, TILE, TILE, 1)).astype(np.float32)
  plain = jax.jit(functools.partial(inference.generate, config=config))
  return config, init(jax.random.key(0)), init(jax.random.key(1)), tiles, plain


def test_the_network_has_winograd_layers_to_precompute(setup):
  config, v, _, _, _ = setup
  recorded = jax.eval_shape(
      lambda v: inference.transforms(v, (BATCH, TILE, TILE, 1), config), v)
  assert len(recorded) >= 2


def test_precomputed_transforms_give_the_plain_forward(setup):
  config, v, _, tiles, plain = setup
  fn = inference.GeneratorFn(config, v, BATCH)
  np.testing.assert_allclose(fn(tiles), np.asarray(plain(v, tiles)),
                             rtol=0, atol=1e-6)


def test_new_variables_get_new_transforms(setup):
  config, v1, v2, tiles, plain = setup
  fn = inference.GeneratorFn(config, v1, BATCH)
  first = fn(tiles)
  fn.set_variables(v2)
  second = fn(tiles)
  np.testing.assert_allclose(second, np.asarray(plain(v2, tiles)), rtol=0,
                             atol=1e-6)
  assert np.abs(second - first).max() > 1e-3
  assert fn.compiles == 1


def test_replaying_transforms_of_other_shapes_is_refused(setup):
  config, v, _, _, _ = setup
  recorded = jax.eval_shape(
      lambda v: inference.transforms(v, (BATCH, TILE, TILE, 1), config), v)
  # 128^2: down_conv_2 takes F(3, 2) where 32^2 took F(2, 2)
  other = jax.ShapeDtypeStruct((1, 4 * TILE, 4 * TILE, 1), jnp.float32)
  with pytest.raises(ValueError, match='does not fit this layer'):
    jax.eval_shape(lambda v, t, x: inference.generate_transformed(
        v, t, x, config), v, recorded, other)


def test_replaying_more_transforms_than_layers_is_refused(setup):
  config, v, _, _, _ = setup
  shape = (BATCH, TILE, TILE, 1)
  recorded = jax.eval_shape(lambda v: inference.transforms(v, shape, config),
                            v)
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  with pytest.raises(ValueError, match='Winograd layers traced now'):
    jax.eval_shape(lambda v, t, x: inference.generate_transformed(
        v, t, x, config), v, recorded + recorded[:1], x)


def test_transform_contexts_do_not_nest():
  with kernels.recording_transforms():
    with pytest.raises(RuntimeError, match='do not nest'):
      with kernels.replaying_transforms([]):
        pass
