"""Winograd F(m, r) convolutions (magjax.kernels.winograd): the transforms are
exact, every variant equals jax.lax forward and gradient, the rounding is
bounded against a float64 reference, and bad arguments are one clear error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax import kernels
from magjax.kernels import direct, winograd

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _random(shape, seed, scale=1.0):
  return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


def _lax_conv(x, kernel, stride, padding):
  if isinstance(padding, int):
    padding = ((padding, padding), (padding, padding))
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride), padding,
                                      dimension_numbers=_DIMS)


def _grads(fn, x, kernel, r):
  return jax.jit(jax.grad(lambda a, k: jnp.sum(fn(a, k) * r),
                          argnums=(0, 1)))(x, kernel)


def _assert_close(got, want, rel, what):
  """|got - want| <= rel * max|want| (the error scale of a sum of products)."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, what
  scale = np.abs(want).max()
  assert scale > 0, what
  err = np.abs(got - want).max() / scale
  assert err <= rel, f'{what}: relative error {err:.2e} > {rel:.0e}'


@pytest.mark.parametrize('m,r', [(2, 2), (3, 2), (4, 2), (2, 3), (3, 3),
                                 (2, 4), (3, 4), (4, 4)])
def test_transforms_compute_the_1d_correlation_exactly(m, r):
  """A^T [(G g) (.) (B^T d)] = sum_k d[i + k] g[k], in float64."""
  a_t, g_mat, b_t = winograd.transforms(m, r)
  alpha = m + r - 1
  assert a_t.shape == (m, alpha) and g_mat.shape == (alpha, r)
  assert b_t.shape == (alpha, alpha)
  np.testing.assert_array_equal(b_t, np.round(b_t))  # integers: cheap, exact
  rng = np.random.default_rng(m * 10 + r)
  for _ in range(5):
    d, g = rng.standard_normal(alpha), rng.standard_normal(r)
    want = [d[i:i + r] @ g for i in range(m)]
    np.testing.assert_allclose(a_t @ ((g_mat @ g) * (b_t @ d)), want,
                               rtol=1e-12, atol=1e-12)


def test_a_wrong_transform_is_caught():
  """The check above can fail: one changed entry of B^T breaks it."""
  a_t, g_mat, b_t = winograd.transforms(3, 4)
  b_t = b_t.copy()
  b_t[2, 1] += 1
  d, g = np.arange(6.0), np.array([1.0, -2.0, 0.5, 3.0])
  got = a_t @ ((g_mat @ g) * (b_t @ d))
  assert np.abs(got - [d[i:i + 4] @ g for i in range(3)]).max() > 0.01


@pytest.mark.parametrize('n,h,w,cin,cout,k,stride,padding,m', [
    (2, 9, 7, 3, 5, 4, 1, 1, 3),     # PatchGAN stride-1 conv, odd sizes
    (1, 8, 8, 4, 6, 4, 1, 1, 2),
    (1, 6, 9, 3, 2, 3, 1, ((1, 0), (2, 1)), 3),  # 3x3, uneven padding
    (2, 5, 5, 2, 3, 2, 1, 0, 3),     # 2x2, no padding
    (2, 8, 8, 3, 5, 4, 2, 1, 3),     # the U-Net / PatchGAN down conv
    (1, 9, 11, 4, 3, 4, 2, 1, 2),    # stride 2 on odd sizes
    (1, 2, 2, 8, 4, 4, 2, 1, 2),     # innermost level: 2x2 -> 1x1
    (1, 7, 7, 3, 2, 2, 2, 0, 3),     # 2x2 stride 2 (space_to_depth, r = 1)
])
def test_conv_equals_lax_forward_and_gradient(n, h, w, cin, cout, k, stride,
                                              padding, m):
  x = _random((n, h, w, cin), 0)
  kernel = _random((k, k, cin, cout), 1)
  want = _lax_conv(x, kernel, stride, padding)
  fn = lambda a, kk: winograd.conv(a, kk, stride, padding, m)
  _assert_close(jax.jit(fn)(x, kernel), want, 2e-6, 'forward')
  r = _random(want.shape, 2)
  got = _grads(fn, x, kernel, r)
  wanted = _grads(lambda a, kk: _lax_conv(a, kk, stride, padding), x,
                  kernel, r)
  _assert_close(got[0], wanted[0], 5e-6, 'input gradient')
  _assert_close(got[1], wanted[1], 5e-6, 'kernel gradient')


@pytest.mark.parametrize('n,h,w,cin,cout,m', [
    (2, 4, 4, 3, 5, 2), (1, 5, 3, 4, 2, 3), (1, 1, 1, 6, 4, 2),
    (1, 7, 7, 8, 3, 3), (1, 8, 6, 4, 3, 4), (1, 9, 9, 5, 2, 4)])
def test_conv_transpose_equals_lax_forward_and_gradient(n, h, w, cin, cout, m):
  x = _random((n, h, w, cin), 3)
  kernel = _random((cin, 4, 4, cout), 4)  # (in, 4, 4, out), models/layers.py
  want = direct.conv_transpose_lax(x, kernel)
  assert want.shape == (n, 2 * h, 2 * w, cout)
  fn = lambda a, kk: winograd.conv_transpose(a, kk, m)
  _assert_close(jax.jit(fn)(x, kernel), want, 2e-6, 'forward')
  r = _random(want.shape, 5)
  got = _grads(fn, x, kernel, r)
  wanted = _grads(direct.conv_transpose_lax, x, kernel, r)
  _assert_close(got[0], wanted[0], 5e-6, 'input gradient')
  _assert_close(got[1], wanted[1], 5e-6, 'kernel gradient')


def test_rounding_is_bounded_against_float64():
  """The PatchGAN's 4x4 stride-1 conv at F(3, 4) (alpha = 6), the largest
  transform the network uses: float32 error <= 3e-5 of the output scale
  (measured 8e-6; XLA's direct convolution 5e-7), at 256 channels."""
  x = np.random.default_rng(6).standard_normal((1, 24, 24, 256))
  kernel = 0.02 * np.random.default_rng(7).standard_normal((4, 4, 256, 64))
  want = np.zeros((1, 23, 23, 64))
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  for i in range(4):
    for j in range(4):
      want += np.einsum('nhwc,cd->nhwd', xp[:, i:i + 23, j:j + 23], kernel[i, j])
  got = winograd.conv(jnp.asarray(x, jnp.float32),
                      jnp.asarray(kernel, jnp.float32), 1, 1, 3)
  _assert_close(got, want, 3e-5, 'F(3, 4) against float64')
  direct = _lax_conv(jnp.asarray(x, jnp.float32),
                     jnp.asarray(kernel, jnp.float32), 1, 1)
  _assert_close(direct, want, 3e-6, 'XLA against float64')


@pytest.mark.parametrize('call,match', [
    (lambda: winograd.conv(jnp.zeros((1, 8, 8, 2)), jnp.zeros((4, 4, 2, 2)),
                           3, 1, 2), 'stride 1, or stride 2'),
    (lambda: winograd.conv(jnp.zeros((1, 8, 8, 2)), jnp.zeros((3, 3, 2, 2)),
                           2, 1, 2), 'even kernel'),
    (lambda: winograd.conv(jnp.zeros((1, 2, 2, 2)), jnp.zeros((4, 4, 2, 2)),
                           1, 0, 2), 'does not fit'),
    (lambda: winograd.transforms(8, 4), r'F\(8, 4\)'),
    (lambda: kernels.conv_transpose(jnp.zeros((1, 2, 2, 3)),
                                    jnp.zeros((4, 4, 3, 2)), 'winograd'),
     r'\(in, 4, 4, out\)'),
])
def test_bad_arguments_are_one_clear_error(call, match):
  with pytest.raises(ValueError, match=match):
    call()
