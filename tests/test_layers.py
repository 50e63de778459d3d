"""Layers: sub-pixel conv-transpose, PyTorch BatchNorm, spectral norm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax import kernels
from magjax.kernels import direct
from magjax.models import layers
from magjax.models import spectral_norm as sn


def torch_conv_transpose(x, w):
  """PyTorch conv_transpose2d(x, w, stride=2, padding=1) in NumPy, scatter
  form (as shared/bench/check_jax_mapping.convT_k4s2p1), NHWC in and out.
  x (N, H, W, Cin), w (Cin, Cout, 4, 4) as PyTorch stores it."""
  n, h, wd, _ = x.shape
  full = np.zeros((n, 2 * h + 2, 2 * wd + 2, w.shape[1]))
  for ky in range(4):
    for kx in range(4):
      full[:, ky:ky + 2 * h:2, kx:kx + 2 * wd:2] += np.einsum(
          'nhwi,io->nhwo', x, w[:, :, ky, kx])
  return full[:, 1:-1, 1:-1]


def torch_conv_transpose_vjp(x, w, r):
  """Gradients of sum(y * r) for the scatter form: (d/dx, d/dw)."""
  n, h, wd, _ = x.shape
  rpad = np.pad(r, ((0, 0), (1, 1), (1, 1), (0, 0)))
  gx = np.zeros_like(x, dtype=np.float64)
  gw = np.zeros_like(w, dtype=np.float64)
  for ky in range(4):
    for kx in range(4):
      patch = rpad[:, ky:ky + 2 * h:2, kx:kx + 2 * wd:2]  # (n, h, w, o)
      gx += np.einsum('nhwo,io->nhwi', patch, w[:, :, ky, kx])
      gw[:, :, ky, kx] = np.einsum('nhwi,nhwo->io', x, patch)
  return gx, gw


@pytest.mark.parametrize('shape', [(2, 4, 4, 3, 5), (1, 1, 3, 4, 2)])
def test_conv_transpose_methods_equal_torch_forward_and_gradient(shape):
  n, h, w, cin, cout = shape
  rng = np.random.default_rng(0)
  x = rng.standard_normal((n, h, w, cin)).astype(np.float32)
  w_torch = rng.standard_normal((cin, cout, 4, 4)).astype(np.float32)
  r = rng.standard_normal((n, 2 * h, 2 * w, cout)).astype(np.float32)
  kernel = jnp.asarray(w_torch.transpose(0, 2, 3, 1))  # documented layout
  want = torch_conv_transpose(x, w_torch)
  want_gx, want_gw = torch_conv_transpose_vjp(x, w_torch, r)
  fns = {m: (lambda m: lambda a, k: kernels.conv_transpose(a, k, m))(m)
         for m in kernels.METHODS}
  fns['lax'] = direct.conv_transpose_lax  # the reference itself
  for method, fn in fns.items():
    got = jax.jit(fn)(jnp.asarray(x), kernel)
    np.testing.assert_allclose(got, want, atol=1e-5, err_msg=method)
    gx, gk = jax.jit(jax.grad(lambda a, k: jnp.sum(fn(a, k) * r),
                              argnums=(0, 1)))(jnp.asarray(x), kernel)
    np.testing.assert_allclose(gx, want_gx, atol=1e-5, err_msg=method)
    np.testing.assert_allclose(np.asarray(gk).transpose(0, 3, 1, 2), want_gw,
                               atol=1e-5, err_msg=method)


def test_conv_transpose_subpixel_equals_stock_lax_op():
  """Against `jax.lax.conv_transpose` called the documented way (flax's
  nn.ConvTranspose with transpose_kernel=True, padding 2)."""
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 6, 4, 8)), jnp.float32)
  kernel = jnp.asarray(rng.standard_normal((4, 4, 8, 3)), jnp.float32)
  stock = jax.lax.conv_transpose(
      x, jnp.swapaxes(kernel, 2, 3), (2, 2), ((2, 2), (2, 2)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'), transpose_kernel=True)
  in_first = jnp.transpose(kernel, (2, 0, 1, 3))  # the module's layout
  np.testing.assert_allclose(direct.conv_transpose_subpixel(x, in_first),
                             stock, atol=1e-5)


def test_conv_transpose_module_same_parameters_for_all_methods():
  x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 4, 4, 6)),
                  jnp.float32)
  sub = layers.ConvTransposeK4S2(
      5, use_bias=True, policy=kernels.Policy(conv_transpose='xla'))
  variables = sub.init(jax.random.key(0), x)
  assert variables['params']['kernel'].shape == (6, 4, 4, 5)
  assert variables['params']['bias'].shape == (5,)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # non-zero bias
  for method in ('matmul', 'winograd', 'auto'):
    other = layers.ConvTransposeK4S2(
        5, use_bias=True, policy=kernels.Policy(conv_transpose=method))
    np.testing.assert_allclose(sub.apply(variables, x),
                               other.apply(variables, x), atol=1e-5,
                               err_msg=method)
  with pytest.raises(ValueError, match='conv_transpose'):
    layers.ConvTransposeK4S2(5, policy=kernels.Policy(conv_transpose='nope'))


@pytest.mark.parametrize('unbiased', [True, False])
def test_batchnorm_matches_pytorch_statistics(unbiased):
  rng = np.random.default_rng(3)
  x = rng.standard_normal((2, 3, 2, 4)).astype(np.float32) * 3 + 1
  bn = layers.BatchNorm(momentum=0.1, epsilon=1e-5,
                        unbiased_running_var=unbiased)
  variables = bn.init(jax.random.key(0), x, train=False)
  scale = np.asarray(variables['params']['scale'])
  np.testing.assert_allclose(variables['batch_stats']['mean'], 0)
  np.testing.assert_allclose(variables['batch_stats']['var'], 1)
  assert abs(scale.mean() - 1) < 0.05 and scale.std() > 0  # N(1, 0.02)
  y, mutated = bn.apply(variables, x, train=True, mutable=['batch_stats'])
  mean = x.mean(axis=(0, 1, 2))
  var = x.var(axis=(0, 1, 2))  # biased: normalises
  np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-5) * scale,
                             atol=1e-5)
  n = 2 * 3 * 2
  run_var = var * n / (n - 1) if unbiased else var
  np.testing.assert_allclose(mutated['batch_stats']['mean'], 0.1 * mean,
                             rtol=1e-5)
  np.testing.assert_allclose(mutated['batch_stats']['var'],
                             0.9 + 0.1 * run_var, rtol=1e-5)
  # eval: running statistics, no update
  stats = mutated['batch_stats']
  y_eval = bn.apply({'params': variables['params'], 'batch_stats': stats}, x,
                    train=False)
  np.testing.assert_allclose(
      y_eval, (x - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * scale,
      atol=1e-5)


def _sn_setup(out=6, inp=10, seed=0, replace_kernel=True):
  x = jnp.asarray(np.random.default_rng(seed).standard_normal((2, 3, 3, inp)),
                  jnp.float32)
  conv = sn.SpectralNormConv(out)
  variables = conv.init(jax.random.key(seed), x, update_stats=False)
  variables = {'params': dict(variables['params']),
               'batch_stats': variables['batch_stats']}
  if replace_kernel:  # unit-scale weights, u and v no longer fitted to them
    kernel = np.random.default_rng(seed + 1).standard_normal((1, 1, inp, out))
    variables['params']['kernel'] = jnp.asarray(kernel, jnp.float32)
  return conv, variables, x


def test_spectral_norm_sigma_converges_to_top_singular_value():
  conv, variables, x = _sn_setup(replace_kernel=False)  # 15 init iterations
  w = np.asarray(sn.weight_matrix(variables['params']['kernel']))
  stats = variables['batch_stats']
  for _ in range(10):  # ten train-mode forwards
    _, mutated = conv.apply({**variables, 'batch_stats': stats}, x,
                            update_stats=True, mutable=['batch_stats'])
    stats = mutated['batch_stats']
  sigma = float(sn.sigma_estimate(jnp.asarray(w), stats['u'], stats['v']))
  top = np.linalg.svd(w / sigma, compute_uv=False)[0]
  assert 1.0 <= top <= 1.01
  np.testing.assert_allclose(np.linalg.norm(stats['u']), 1, rtol=1e-6)
  np.testing.assert_allclose(np.linalg.norm(stats['v']), 1, rtol=1e-6)


def test_spectral_norm_train_updates_u_then_v_eval_keeps_them():
  conv, variables, x = _sn_setup(seed=3)
  w = np.asarray(sn.weight_matrix(variables['params']['kernel']), np.float64)
  u0 = np.asarray(variables['batch_stats']['u'], np.float64)
  v0 = np.asarray(variables['batch_stats']['v'], np.float64)
  # PyTorch: u = normalize(W v), then v = normalize(W^T u); sigma = u.(W v)
  u1 = w @ v0 / np.linalg.norm(w @ v0)
  v1 = w.T @ u1 / np.linalg.norm(w.T @ u1)
  y, mutated = conv.apply(variables, x, update_stats=True,
                          mutable=['batch_stats'])
  np.testing.assert_allclose(mutated['batch_stats']['u'], u1, atol=1e-6)
  np.testing.assert_allclose(mutated['batch_stats']['v'], v1, atol=1e-6)
  sigma1 = u1 @ w @ v1
  want = np.einsum('nhwi,oi->nhwo', np.asarray(x), w / sigma1)
  np.testing.assert_allclose(y, want, atol=1e-5)
  # eval: the stored u0, v0, no iteration, nothing mutated
  y_eval = conv.apply(variables, x, update_stats=False)
  want_eval = np.einsum('nhwi,oi->nhwo', np.asarray(x), w / (u0 @ w @ v0))
  np.testing.assert_allclose(y_eval, want_eval, atol=1e-5)


def test_spectral_norm_gradient_flows_through_w_only():
  conv, variables, x = _sn_setup(seed=5)
  _, mutated = conv.apply(variables, x, update_stats=True,
                          mutable=['batch_stats'])
  u1, v1 = mutated['batch_stats']['u'], mutated['batch_stats']['v']
  r = jnp.asarray(np.random.default_rng(9).standard_normal((2, 3, 3, 6)),
                  jnp.float32)

  def loss(kernel):
    params = {**variables['params'], 'kernel': kernel}
    y, _ = conv.apply({'params': params,
                       'batch_stats': variables['batch_stats']}, x,
                      update_stats=True, mutable=['batch_stats'])
    return jnp.sum(y * r)

  def loss_const_uv(kernel):  # u, v as plain constants
    w = sn.weight_matrix(kernel)
    sigma = u1 @ w @ v1
    return jnp.sum((jnp.einsum('nhwi,oi->nhwo', x, w / sigma)
                    + variables['params']['bias']) * r)

  kernel = variables['params']['kernel']
  np.testing.assert_allclose(jax.grad(loss)(kernel),
                             jax.grad(loss_const_uv)(kernel), atol=1e-5)


def test_spectral_norm_init_runs_power_iterations():
  conv, variables, _ = _sn_setup(seed=7)
  x = jnp.ones((1, 1, 1, 10))
  fresh = conv.init(jax.random.key(1), x, update_stats=False)
  w = np.asarray(sn.weight_matrix(fresh['params']['kernel']))
  sigma = float(sn.sigma_estimate(jnp.asarray(w), fresh['batch_stats']['u'],
                                  fresh['batch_stats']['v']))
  top = np.linalg.svd(w, compute_uv=False)[0]
  assert fresh['batch_stats']['u'].shape == (6,)
  assert fresh['batch_stats']['v'].shape == (10,)
  assert 0.9 * top <= sigma <= top * (1 + 1e-6)
