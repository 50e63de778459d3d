"""Networks: shapes, parameter counts (= torch_ref), attention and fusion
maths, torch import errors (MC dropout: test_steps; bfloat16:
test_fidelity)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax.models import attention, build_discriminator, build_generator
from magjax.models import torch_import
from model_helpers import (abstract_generator, model_cfg, random_variables,
                           tiny)


def count(tree):
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_g(cfg, size):
  gen = build_generator(cfg)
  x = jax.ShapeDtypeStruct((1, size, size, 1), jnp.float32)
  variables = jax.eval_shape(
      lambda x: gen.init(jax.random.key(0), x, train=False), x)
  out = jax.eval_shape(lambda v, x: gen.apply(v, x, train=False), variables, x)
  return variables, out


def abstract_d(cfg, size):
  disc = build_discriminator(cfg)
  x = jax.ShapeDtypeStruct((2, size, size, 1), jnp.float32)
  variables = jax.eval_shape(
      lambda x: disc.init(jax.random.key(0), x, x, train=False), x)
  out = jax.eval_shape(lambda v, x: disc.apply(v, x, x, train=False),
                       variables, x)
  return variables, out


# torch_ref.py --params-only (ngf 64, ndf 64, num_downs 8) and the fixtures.
PAPER_COUNTS = [('pix2pix', -1, 54_407_809), ('cat', -1, 58_733_890),
                ('rhp', -1, 58_733_890), ('cat', 8, 58_733_890),
                ('rhp', 5, 62_928_194), ('cat', 5, 62_928_194),
                ('rhp', 3, 57_062_370)]
TINY_COUNTS = [('pix2pix', -1, 260_945), ('cat', 3, 302_462),
               ('rhp', 3, 302_462), ('rhp', 5, 328_618)]


@pytest.mark.parametrize('name,level,want', PAPER_COUNTS)
def test_paper_size_generator_parameter_count(name, level, want):
  variables, out = abstract_g(model_cfg(name, attn_level=level), 256)
  assert count(variables['params']) == want
  assert out.shape == (1, 256, 256, 1)


def test_paper_size_discriminator_parameter_count_and_patch_shape():
  variables, out = abstract_d(model_cfg(), 256)
  assert count(variables['params']) == 2_764_609
  assert out.shape == (2, 30, 30, 1)


@pytest.mark.parametrize('name,level,want', TINY_COUNTS)
def test_fixture_settings_parameter_counts(name, level, want):
  variables, _ = abstract_g(tiny(name, attn_level=level), 32)
  assert count(variables['params']) == want
  d_vars, out = abstract_d(tiny(), 32)
  assert count(d_vars['params']) == 44_521
  assert out.shape == (2, 2, 2, 1)


@pytest.mark.parametrize('name', ['pix2pix', 'cat', 'rhp'])
def test_output_shapes_every_level(name):
  levels = [-1] if name == 'pix2pix' else [1, 2, 3, 4, 5]
  for level in levels:
    _, out = abstract_g(tiny(name, attn_level=level), 64)
    assert out.shape == (1, 64, 64, 1), level
  for level in ([-1] if name == 'pix2pix' else [1, 4, 8]):  # 512: 9 levels
    _, out = abstract_g(model_cfg(name, attn_level=level, num_downs=9,
                                  ngf=8), 512)
    assert out.shape == (1, 512, 512, 1), level


def test_attention_channel_rule_below_innermost():
  """Attention at level k < n: down conv k+1 reads 2 C_k, up conv k 3 C_k."""
  variables, _ = abstract_g(tiny('rhp', attn_level=3), 32)
  p = variables['params']
  assert p['down_conv_4']['kernel'].shape == (4, 4, 64, 64)
  assert p['up_conv_3']['kernel'].shape == (96, 4, 4, 16)
  assert 'bias' in p['up_conv_1'] and 'bias' not in p['up_conv_2']
  assert all('bias' not in p[f'down_conv_{k}'] for k in range(1, 6))
  assert 'down_norm_1' not in p and 'down_norm_5' not in p
  assert p['attention']['gamma'].shape == (1,)


def test_bad_settings_fail_clearly():
  with pytest.raises(ValueError, match='model.name'):
    build_generator(model_cfg('unet'))
  with pytest.raises(ValueError, match='attn_level'):
    abstract_g(tiny('cat', attn_level=6), 32)
  with pytest.raises(ValueError, match='multiple of'):
    abstract_g(tiny('cat'), 48)


def _x(shape, seed=0):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


def test_attention_identity_at_gamma_zero_and_fusions():
  x = _x((2, 4, 4, 16))
  block = attention.SelfAttention(key_reduction=8, value_reduction=8)
  variables = jax.jit(lambda x: block.init(jax.random.key(0), x, train=False))(x)
  np.testing.assert_array_equal(variables['params']['gamma'], [0.0])
  y = jax.jit(lambda v, x: block.apply(v, x, train=False))(variables, x)
  np.testing.assert_array_equal(y, x)
  np.testing.assert_array_equal(attention.fuse(x, y, 'cat'),
                                jnp.concatenate([2 * x, x], -1))
  np.testing.assert_allclose(attention.fuse(x, y, 'rhp'),
                             jnp.concatenate([x * (1 + x), x], -1), rtol=1e-6)


def test_attention_maths_against_numpy():
  """s[j, i] = g_j . f_i, softmax over i, o = v(sum_i beta h_i), y = gamma o + x."""
  x = _x((1, 2, 3, 16), seed=1)
  block = attention.SelfAttention(key_reduction=4, value_reduction=2)
  variables = random_variables(jax.eval_shape(
      lambda x: block.init(jax.random.key(1), x, train=False), x), seed=1,
                               std=0.2)
  params = dict(variables['params'], gamma=jnp.array([0.7]))
  stats = variables['batch_stats']
  y = jax.jit(lambda v, x: block.apply(v, x, train=False))(
      {'params': params, 'batch_stats': stats}, x)

  def conv(name, inp):
    kernel = np.asarray(params[name]['kernel'])[0, 0]  # (in, out)
    u, v = np.asarray(stats[name]['u']), np.asarray(stats[name]['v'])
    sigma = u @ kernel.T @ v
    return inp @ (kernel / sigma) + np.asarray(params[name]['bias'])

  xs = np.asarray(x).reshape(6, 16)  # row-major positions
  f, g, h = conv('f', xs), conv('g', xs), conv('h', xs)
  s = g @ f.T  # s[j, i]
  beta = np.exp(s - s.max(1, keepdims=True))
  beta /= beta.sum(1, keepdims=True)
  o = conv('v', beta @ h)
  np.testing.assert_allclose(np.asarray(y).reshape(6, 16), 0.7 * o + xs,
                             rtol=1e-4, atol=1e-4)
  y2 = _x((1, 2, 3, 16), seed=2)
  np.testing.assert_allclose(attention.fuse(x, y2, 'rhp')[..., :16],
                             x * (1 + y2), rtol=1e-6)
  np.testing.assert_allclose(attention.fuse(x, y2, 'cat')[..., 16:], x)


def test_torch_import_rejects_missing_extra_and_misshaped_entries():
  cfg = tiny('rhp', attn_level=3)
  variables, _ = abstract_g(cfg, 32)
  names = torch_import.torch_names(cfg, 'G')
  table = torch_import._generator_table(cfg)  # pylint: disable=protected-access
  state = {}
  for name, path, perm in table:
    leaf = variables
    for key in path:
      leaf = leaf[key]
    shape = leaf.shape if perm is None else tuple(
        leaf.shape[perm.index(i)] for i in range(len(perm)))
    state[name] = np.zeros(shape, np.float32)
  assert set(state) == set(names)
  state['model.inner.down_norm.num_batches_tracked'] = np.array(3)  # ignored
  out = torch_import.generator_variables_from_torch(state, cfg)
  assert count(out['params']) == 302_462
  assert jax.tree.structure(out) == jax.tree.structure(variables)

  missing = dict(state)
  del missing['model.inner.inner.attn.g.parametrizations.weight.0._v']
  with pytest.raises(torch_import.TorchImportError, match='missing.*attn.g'):
    torch_import.generator_variables_from_torch(missing, cfg)
  extra = dict(state, **{'model.inner.extra.weight': np.zeros(3)})
  with pytest.raises(torch_import.TorchImportError, match='unexpected'):
    torch_import.generator_variables_from_torch(extra, cfg)
  wrong = dict(state)
  wrong['model.up_conv.weight'] = np.zeros((16, 2, 4, 4), np.float32)
  with pytest.raises(ValueError, match=r'model.up_conv.weight has shape'):
    torch_import.generator_variables_from_torch(wrong, cfg)


def test_load_npz_prefixes(tmp_path):
  path = tmp_path / 'both.npz'
  np.savez(path, **{'G/model.0.weight': np.ones(2), 'D/model.0.bias': np.ones(1)})
  assert list(torch_import.load_npz(path, 'G/')) == ['model.0.weight']
  with pytest.raises(torch_import.TorchImportError, match='no entries'):
    torch_import.load_npz(path, 'X/')
  with pytest.raises(torch_import.TorchImportError, match='cannot read'):
    torch_import.load_npz(tmp_path / 'absent.npz')


def test_norm_none_drops_every_batchnorm_and_imports():
  cfg = tiny('cat', attn_level=2, norm='none')
  g_vars, _ = abstract_g(cfg, 32)
  d_vars, _ = abstract_d(cfg, 32)
  assert not any('norm' in k for k in g_vars['params'])
  assert not any('norm' in k for k in d_vars['params'])
  assert set(g_vars['batch_stats']) == {'attention'}
  names = torch_import.torch_names(cfg, 'G') + torch_import.torch_names(cfg, 'D')
  assert not any('norm' in n or 'running' in n for n in names)
