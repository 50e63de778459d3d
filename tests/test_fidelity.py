"""magjax equals the PyTorch reference (shared/bench/fixtures), weight for weight.

For every fixture in $MAGJAX_TORCH_FIXTURES (default <repo>/../shared/bench/
fixtures): eval-mode G(a), D(a, b), the attention output and the eval sigmas
with the post-step state; one full train_step from init/ (fresh Adam)
reproducing the losses, the train-mode fake and every post-step parameter,
spectral-norm u/v and BatchNorm running statistic. Tolerances and the
comparison live in magjax.models.fidelity_report (also a CLI). The mutation
tests change single entries of a fixture copy and require a failure.
"""

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax.models import build_generator
from tools import fidelity_report as fr


def _fixture_params():
  try:
    return [pytest.param(p, id=p.stem) for p in fr.fixture_paths()]
  except FileNotFoundError as e:  # fail (not skip) at run time, saying where
    return [pytest.param(e, id='fixtures-missing')]


@functools.lru_cache(maxsize=None)
def _loaded(path):
  fixture = fr.load_fixture(path)
  return fixture, fr.run(fixture)


def _rows(path, prefixes):
  if isinstance(path, Exception):
    raise path
  fixture, result = _loaded(path)
  rows = [r for r in fr.compare(fixture, result)
          if r['check'].startswith(prefixes)]
  assert rows, f'no comparison rows for {prefixes}'
  return rows


FIXTURES = _fixture_params()


def test_fixture_directory_found():
  paths = fr.fixture_paths()
  assert {p.stem for p in paths} >= {'pix2pix_tiny', 'cat_tiny', 'rhp_tiny',
                                     'rhp_tiny_innermost'}


def test_missing_fixtures_fail_saying_where(tmp_path, monkeypatch):
  monkeypatch.setenv(fr.ENV_VAR, str(tmp_path))
  with pytest.raises(FileNotFoundError, match=str(tmp_path)):
    fr.fixture_paths()


@pytest.mark.parametrize('path', FIXTURES)
def test_eval_outputs(path):
  rows = _rows(path, ('eval G', 'eval D', 'eval attention', 'eval sigmas'))
  assert not fr.failures(rows)


@pytest.mark.parametrize('path', FIXTURES)
def test_train_step_losses_and_fake(path):
  rows = _rows(path, ('loss_', 'train fake'))
  assert len(rows) == 6
  assert not fr.failures(rows)


@pytest.mark.parametrize('path', FIXTURES)
def test_train_step_state(path):
  rows = _rows(path, ('G params', 'D params', 'G batch_stats', 'D batch_stats'))
  assert len(rows) == 4
  assert not fr.failures(rows)


@pytest.mark.parametrize('path', FIXTURES)
def test_parameter_counts_equal_the_fixture_settings(path):
  if isinstance(path, Exception):
    raise path
  fixture, result = _loaded(path)
  settings = json.loads(str(fixture['settings']))
  count = lambda tree: sum(int(x.size) for x in jax.tree.leaves(tree))
  assert count(result.g_post['params']) == settings['params_G']
  assert count(result.d_post['params']) == settings['params_D']


def _mutated(fixture, key, index, delta):
  copy = dict(fixture)
  value = np.array(copy[key], copy=True)
  value[index] += delta
  copy[key] = value
  return copy


MUTATIONS = [
    # (key, index, delta, the check that must fail)
    ('G/model.inner.down_conv.weight', (0, 0, 0, 0), 1e-3, 'G params'),
    ('G/model.inner.inner.attn.f.bias', (0,), 1e-3, 'G params'),  # |g| ~ 0
    ('G/model.up_conv.bias', (0,), 1e-5, 'G params'),
    ('D/model.11.weight', (0, 5, 1, 2), 1e-4, 'D params'),
    ('G/model.inner.down_norm.running_var', (3,), 1e-4, 'G batch_stats'),
    ('G/model.inner.inner.attn.v.parametrizations.weight.0._u', (7,), 1e-4,
     'G batch_stats'),
    ('D/model.6.running_mean', (1,), 1e-4, 'D batch_stats'),
    ('eval/G_out', (1, 0, 5, 7), 1e-3, 'eval G'),
    ('eval/D_out', (0, 0, 1, 1), 1e-3, 'eval D'),
    ('eval/attn_y', (0, 3, 2, 1), 1e-3, 'eval attention'),
    ('eval/sigma/model.inner.inner.attn.g', (), 1e-3, 'eval sigmas'),
    ('train/fake', (0, 0, 0, 0), 1e-3, 'train fake'),
    ('train/loss_G_GAN', (), 1e-3, 'loss_g_gan'),
    ('train/loss_D_real', (), 1e-3, 'loss_d_real'),
]


@pytest.mark.parametrize('key,index,delta,check', MUTATIONS,
                         ids=[m[0] for m in MUTATIONS])
def test_a_single_changed_entry_fails(key, index, delta, check):
  path = next(p.values[0] for p in FIXTURES if p.id == 'rhp_tiny')
  fixture, result = _loaded(path)  # unmutated: test_* above pass on it
  mutated_rows = fr.compare(_mutated(fixture, key, index, delta), result)
  failed = [r['check'] for r in mutated_rows if not r['ok']]
  assert failed and all(c.startswith(check) for c in failed), failed


def test_bfloat16_generator_stays_close_to_torch():
  """half_precision: bf16 convs/matmuls, float32 params, BN statistics and
  output; the eval output stays within 2 % of the output range (measured
  0.4 %)."""
  path = next(p.values[0] for p in FIXTURES if p.id == 'rhp_tiny')
  fixture, _ = _loaded(path)
  config = fr.config_for(fixture)
  g_vars, _ = fr.variables(fixture, '', config)
  gen = build_generator(config.model, jnp.bfloat16)
  out = jax.jit(lambda v, x: gen.apply(v, x, train=False))(
      g_vars, fr.nhwc(fixture['a']))
  assert out.dtype == jnp.float32
  want = fixture['eval/G_out']
  np.testing.assert_allclose(fr.nchw(out), want,
                             atol=0.02 * np.abs(want).max())


@pytest.mark.slow  # 28 s; test_winograd.py checks every layer shape by default
@pytest.mark.parametrize('path', [
    p for p in FIXTURES if p.id in ('pix2pix_tiny', 'rhp_tiny')])
def test_winograd_convolutions_reproduce_the_fixture(path):
  """Every convolution and transposed convolution by Winograd (CPU 'auto'
  picks it for large maps only, which the tiny fixtures do not have): the
  whole comparison still passes at the same tolerances."""
  if isinstance(path, Exception):
    raise path
  fixture, _ = _loaded(path)
  result = fr.run(fixture, conv='winograd', conv_transpose='winograd')
  rows = fr.compare(fixture, result)
  assert len(rows) >= 12
  assert not fr.failures(rows)
