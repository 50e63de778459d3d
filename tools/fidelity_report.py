"""Fidelity of magjax against the PyTorch reference fixtures (shared/bench).

    python -m tools.fidelity_report [FIXTURE.npz ...]

prints, per fixture, the largest absolute and relative differences between
magjax and PyTorch (eval outputs, attention output, eval sigmas, losses,
train-mode fake, every post-step parameter and buffer) and exits 1 when any
exceeds its tolerance. Default fixtures: every *.npz in $MAGJAX_TORCH_FIXTURES,
else <repo>/../shared/bench/fixtures. tests/test_fidelity.py uses the same
functions.

Post-step parameters: PyTorch's and optax's first Adam step are both
lr * g / (|g| + eps). Where |g| is near eps (1e-8) the step amplifies float
noise in g (e.g. the attention f bias, whose gradient is exactly 0 in exact
arithmetic because softmax is shift invariant, or taps that only meet
padding), so elements with |g| < max(GRAD_REL_FLOOR * max|g| of their
parameter, GRAD_FLOOR) only have to stay in the Adam first-step box
(|diff| <= 2 lr); all others must agree to PARAM_ATOL. The report counts the
former (measured: they are where |g| / max|g| < 1e-5).
"""

import dataclasses
import glob
import json
import os
import sys
from pathlib import Path
from typing import Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from configs import default
from magjax.models import attention_level, build_discriminator, build_generator
from magjax.training import steps
from magjax.training import train_state as train_state_lib
from magjax.models import torch_import
from magjax.models.spectral_norm import sigma_estimate, weight_matrix

ENV_VAR = 'MAGJAX_TORCH_FIXTURES'
OUTPUT_ATOL = 1e-4  # eval G / D / attention outputs, train fake
LOSS_RTOL = 1e-4
SIGMA_RTOL = 1e-5
STATS_ATOL = 1e-5  # BatchNorm running stats, spectral-norm u, v
PARAM_ATOL = 2e-6
GRAD_FLOOR = 1e-7
GRAD_REL_FLOOR = 1e-4
LOSSES = {'loss_d': 'loss_D', 'loss_d_fake': 'loss_D_fake',
          'loss_d_real': 'loss_D_real', 'loss_g_gan': 'loss_G_GAN',
          'loss_g_l1': 'loss_G_L1'}
# Low XLA optimisation: the tiny fixture steps compile ~30 % faster.
_FAST_COMPILE = {'xla_backend_optimization_level': 0,
                 'xla_llvm_disable_expensive_passes': True}


def fixture_dir() -> Path:
  """$MAGJAX_TORCH_FIXTURES or <repo>/../shared/bench/fixtures."""
  env = os.environ.get(ENV_VAR)
  if env:
    return Path(env)
  return Path(__file__).resolve().parents[1].parent / 'shared/bench/fixtures'


def fixture_paths() -> List[Path]:
  """Every fixture; FileNotFoundError saying where it looked if none."""
  where = fixture_dir()
  paths = sorted(Path(p) for p in glob.glob(str(where / '*.npz')))
  if not paths:
    raise FileNotFoundError(
        f'no PyTorch fixtures (*.npz) in {where} (set ${ENV_VAR} to the '
        'directory holding shared/bench/fixtures)')
  return paths


def load_fixture(path) -> Dict[str, np.ndarray]:
  """All arrays of a fixture file (a plain dict, safe to modify)."""
  with np.load(path, allow_pickle=False) as data:
    return {k: data[k] for k in data.files}


def _base_config():
  return default.get_config()


def config_for(fixture):
  """The magjax config of a fixture's settings (Adam and lambda included)."""
  s = json.loads(str(fixture['settings']))
  config = _base_config()
  m = config.model
  m.name, m.ngf, m.ndf, m.num_downs = s['model'], s['ngf'], s['ndf'], s['num_downs']
  m.input_nc, m.output_nc, m.n_layers_d = s['input_nc'], s['output_nc'], s['n_layers_D']
  m.key_reduction, m.value_reduction = s['key_reduction'], s['value_reduction']
  m.attn_level = s['attn_level'] if s['attn_level'] is not None else -1
  config.learning_rate = s['lr']
  config.b1, config.b2 = s['betas']
  config.lambda_l1 = s['lambda_L1']
  config.gan_mode = 'vanilla'
  config.num_train_steps = 1000  # the first step is in the constant phase
  return config


def nhwc(x):
  return jnp.asarray(np.transpose(x, (0, 2, 3, 1)))


def nchw(x):
  return np.transpose(np.asarray(x), (0, 3, 1, 2))


def variables(fixture, prefix, config):
  """(G variables, D variables) from `init/` or the post-step ('') state."""
  def entries(net):
    p = prefix + net + '/'
    return {k[len(p):]: v for k, v in fixture.items() if k.startswith(p)}
  return (torch_import.generator_variables_from_torch(entries('G'), config.model),
          torch_import.discriminator_variables_from_torch(entries('D'),
                                                          config.model))


def initial_state(fixture, config):
  """TrainState from the fixture's init/ weights with fresh Adam states."""
  g_vars, d_vars = variables(fixture, 'init/', config)
  tx_g, tx_d = train_state_lib.make_optimizers(config)
  return train_state_lib.TrainState(
      step=jnp.zeros((), jnp.int32), g_params=g_vars['params'],
      g_batch_stats=g_vars['batch_stats'], d_params=d_vars['params'],
      d_batch_stats=d_vars['batch_stats'],
      g_opt_state=tx_g.init(g_vars['params']),
      d_opt_state=tx_d.init(d_vars['params']), rng=jax.random.key(0))


@dataclasses.dataclass
class Run:
  """What magjax computes for one fixture."""
  config: object
  g_out: np.ndarray  # eval G(a), NCHW
  d_out: np.ndarray  # eval D(a, b), NCHW
  attn_y: object  # eval attention output, NCHW, or None
  sigmas: Dict[str, float]  # torch module name -> eval sigma
  train_fake: np.ndarray  # train-mode G(a) from init/, NCHW
  metrics: Dict[str, float]
  g_post: Dict  # {'params', 'batch_stats'} after the step
  d_post: Dict
  g_grads: Dict  # first-step gradients (from Adam's mu)
  d_grads: Dict


def run(fixture, conv=None, conv_transpose=None) -> Run:
  """Eval forwards with the post-step state, one train step from init/.

  conv, conv_transpose: force a convolution method (kernels.Policy,
    layers.ConvTransposeK4S2) instead of the config's 'auto'.
  """
  config = config_for(fixture)
  if conv:
    config.model.conv = conv
  if conv_transpose:
    config.model.conv_transpose = conv_transpose
  gen, disc = build_generator(config.model), build_discriminator(config.model)
  a, b = nhwc(fixture['a']), nhwc(fixture['b'])
  g_vars, d_vars = variables(fixture, '', config)
  g_out, inter = gen.apply(g_vars, a, train=False, capture_intermediates=(
      lambda mdl, name: mdl.name == 'attention'), mutable=['intermediates'])
  attn_y = None
  if 'attention' in inter.get('intermediates', {}):
    attn_y = nchw(inter['intermediates']['attention']['__call__'][0])
  d_out = disc.apply(d_vars, a, b, train=False)
  sigmas = {}
  if config.model.name != 'pix2pix':
    prefix = 'model.' + 'inner.' * (attention_level(config.model) - 1) + 'attn.'
    for c in 'fghv':
      stats = g_vars['batch_stats']['attention'][c]
      kernel = g_vars['params']['attention'][c]['kernel']
      sigmas[prefix + c] = float(sigma_estimate(weight_matrix(kernel),
                                                stats['u'], stats['v']))

  state = initial_state(fixture, config)
  init_g = {'params': state.g_params, 'batch_stats': state.g_batch_stats}
  train_fake, _ = gen.apply(init_g, a, train=True, mutable=['batch_stats'],
                            rngs={'dropout': jax.random.key(0)})
  batch = {'aia': a, 'hmi': b}
  step = jax.jit(lambda s, x: steps.train_step(s, x, config))
  new, metrics = step.lower(state, batch).compile(_FAST_COMPILE)(state, batch)
  grads = lambda opt: jax.tree.map(lambda mu: np.asarray(mu) / (1 - config.b1),
                                   opt[0].mu)
  return Run(
      config=config, g_out=nchw(g_out), d_out=nchw(d_out), attn_y=attn_y,
      sigmas=sigmas, train_fake=nchw(train_fake),
      metrics={k: float(v) for k, v in metrics.items()},
      g_post={'params': new.g_params, 'batch_stats': new.g_batch_stats},
      d_post={'params': new.d_params, 'batch_stats': new.d_batch_stats},
      g_grads=grads(new.g_opt_state), d_grads=grads(new.d_opt_state))


def _max_abs(got, want):
  return float(np.max(np.abs(np.asarray(got, np.float64) - want)))


def _max_rel(got, want):
  want = np.asarray(want, np.float64)
  diff = np.abs(np.asarray(got, np.float64) - want)
  return float(np.max(diff / np.maximum(np.abs(want), 1e-12)))


def compare(fixture, result: Run) -> List[dict]:
  """Rows {check, abs, rel, tol, ok, note} comparing `result` to `fixture`."""
  rows = []

  def add(check, abs_, rel, tol, ok, note=''):
    rows.append(dict(check=check, abs=abs_, rel=rel, tol=tol, ok=bool(ok),
                     note=note))

  for check, got, key in [('eval G(a)', result.g_out, 'eval/G_out'),
                          ('eval D(a, b)', result.d_out, 'eval/D_out'),
                          ('train fake', result.train_fake, 'train/fake')]:
    err = _max_abs(got, fixture[key])
    add(check, err, _max_rel(got, fixture[key]), OUTPUT_ATOL,
        err <= OUTPUT_ATOL)
  if 'eval/attn_y' in fixture:
    if result.attn_y is None:
      add('eval attention y', np.inf, np.inf, OUTPUT_ATOL, False,
          'no attention in magjax')
    else:
      err = _max_abs(result.attn_y, fixture['eval/attn_y'])
      add('eval attention y', err, _max_rel(result.attn_y, fixture['eval/attn_y']),
          OUTPUT_ATOL, err <= OUTPUT_ATOL)
  want_sigmas = {k[len('eval/sigma/'):]: fixture[k] for k in fixture
                 if k.startswith('eval/sigma/')}
  if set(want_sigmas) != set(result.sigmas):
    add('eval sigmas', np.inf, np.inf, SIGMA_RTOL, False,
        f'modules differ: {sorted(set(want_sigmas) ^ set(result.sigmas))}')
  elif want_sigmas:
    rel = max(_max_rel(result.sigmas[k], v) for k, v in want_sigmas.items())
    abs_ = max(_max_abs(result.sigmas[k], v) for k, v in want_sigmas.items())
    add('eval sigmas', abs_, rel, SIGMA_RTOL, rel <= SIGMA_RTOL)
  for ours, theirs in LOSSES.items():
    want = fixture['train/' + theirs]
    rel = _max_rel(result.metrics[ours], want)
    add(ours, _max_abs(result.metrics[ours], want), rel, LOSS_RTOL,
        rel <= LOSS_RTOL)

  post_g, post_d = variables(fixture, '', result.config)
  lr = result.config.learning_rate
  for net, got, want, grads in [('G', result.g_post, post_g, result.g_grads),
                                ('D', result.d_post, post_d, result.d_grads)]:
    stats_err = max([_max_abs(x, y) for x, y in zip(
        jax.tree.leaves(got['batch_stats']), jax.tree.leaves(want['batch_stats']))],
                    default=0.0)
    add(f'{net} batch_stats (BN running, SN u/v)', stats_err, float('nan'),
        STATS_ATOL, stats_err <= STATS_ATOL)
    good_err, noisy_err, noisy = 0.0, 0.0, 0
    for g_leaf, w_leaf, grad in zip(jax.tree.leaves(got['params']),
                                    jax.tree.leaves(want['params']),
                                    jax.tree.leaves(grads)):
      diff = np.abs(np.asarray(g_leaf, np.float64) - w_leaf)
      floor = max(GRAD_REL_FLOOR * float(np.abs(grad).max()), GRAD_FLOOR)
      determined = np.abs(grad) >= floor
      noisy += int((~determined & (grad != 0)).sum())
      good_err = max(good_err, float(diff[determined].max(initial=0.0)))
      noisy_err = max(noisy_err, float(diff[~determined].max(initial=0.0)))
    add(f'{net} params after step', good_err, float('nan'), PARAM_ATOL,
        good_err <= PARAM_ATOL and noisy_err <= 2 * lr * (1 + 1e-3),
        f'{noisy} elements with 0 < |grad| < floor; max diff of these and g = 0: '
        f'{noisy_err:.2e} (box 2 lr = {2 * lr:.0e})')
  return rows


def failures(rows):
  """The failing rows as one message each."""
  return [f"{r['check']}: abs {r['abs']:.3e} rel {r['rel']:.3e} > tol "
          f"{r['tol']:.0e} {r['note']}" for r in rows if not r['ok']]


def main(argv):
  paths = [Path(p) for p in argv[1:]] or fixture_paths()
  bad = 0
  for path in paths:
    fixture = load_fixture(path)
    rows = compare(fixture, run(fixture))
    print(f'== {path.name}')
    for r in rows:
      print(f"  {'ok  ' if r['ok'] else 'FAIL'} {r['check']:<38} "
            f"abs {r['abs']:.2e}  rel {r['rel']:.2e}  tol {r['tol']:.0e}"
            + (f"  ({r['note']})" if r['note'] else ''))
    bad += sum(not r['ok'] for r in rows)
  print('all within tolerance' if not bad else f'{bad} checks FAILED')
  return 1 if bad else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv))
