"""Spectral normalisation with PyTorch `parametrizations.spectral_norm` semantics.

Why not `flax.linen.SpectralNorm`: it keeps only u, iterates v then u (the
other order), and iterates even with `update_stats=False`, so loading a
PyTorch state into it gives eval sigmas off by 1e-5 to 4e-4 relative
(shared/bench/README.md). This module keeps both vectors and matches PyTorch
to float precision; the fixtures test it.

The weight matrix is W = weight.reshape(out, -1) in PyTorch's (out, in, kh, kw)
order; u has shape (out,), v (in * kh * kw,), both in `batch_stats`.

- init: u, v random normal, normalised, then `n_init_iterations` (15, as
  PyTorch does when it wraps a layer) power iterations.
- train forward (`update_stats=True`): u = normalize(W v), then
  v = normalize(W^T u); the new u, v are stored; sigma = u . (W v).
- eval forward: no iteration, sigma = u . (W v) from the stored vectors.
- gradients flow through W only (u and v are constants, `stop_gradient`).
normalize(x) = x / max(||x||, eps) like `torch.nn.functional.normalize`.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def normalize(x, eps):
  """x / max(||x||_2, eps), as torch.nn.functional.normalize(dim=0)."""
  return x / jnp.maximum(jnp.linalg.norm(x), eps)


def weight_matrix(kernel):
  """Flax HWIO kernel -> PyTorch's W = weight.reshape(out, -1), (out, in*kh*kw)."""
  return jnp.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1)


def power_iteration(w, u, v, eps, n_steps=1):
  """n_steps of PyTorch's power method: u = nrm(W v), then v = nrm(W^T u)."""
  for _ in range(n_steps):
    u = normalize(w @ v, eps)
    v = normalize(w.T @ u, eps)
  return u, v


def sigma_estimate(w, u, v):
  """sigma = u . (W v); differentiable in w, u and v are constants."""
  u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
  return jnp.dot(u, w @ v)


def init_vectors(key, w, eps, n_steps):
  """Random normalised u, v followed by n_steps power iterations."""
  ku, kv = jax.random.split(key)
  out_dim, in_dim = w.shape
  u = normalize(jax.random.normal(ku, (out_dim,), jnp.float32), eps)
  v = normalize(jax.random.normal(kv, (in_dim,), jnp.float32), eps)
  return power_iteration(w, u, v, eps, n_steps)


class SpectralNormConv(nn.Module):
  """A spectrally normalised convolution (stride 1, padding 'VALID').

  Params: `kernel` (kh, kw, in, out) float32 (the un-normalised weight,
  PyTorch's `parametrizations.weight.original`), `bias`; batch_stats: `u`, `v`.
  Call with `update_stats=True` (train mode) inside
  `apply(..., mutable=['batch_stats'])`.
  """
  features: int
  kernel_size: tuple = (1, 1)
  use_bias: bool = True
  eps: float = 1e-12
  n_init_iterations: int = 15
  kernel_init: Callable = nn.initializers.normal(0.02)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, update_stats: bool):
    kernel = self.param('kernel', self.kernel_init,
                        (*self.kernel_size, x.shape[-1], self.features),
                        jnp.float32)
    w = weight_matrix(kernel)
    if not self.has_variable('batch_stats', 'u'):  # first call: init
      u0, v0 = init_vectors(self.make_rng('params'), jax.lax.stop_gradient(w),
                            self.eps, self.n_init_iterations)
    u_var = self.variable('batch_stats', 'u', lambda: u0)
    v_var = self.variable('batch_stats', 'v', lambda: v0)
    u, v = u_var.value, v_var.value
    if update_stats and not self.is_initializing():
      u, v = power_iteration(jax.lax.stop_gradient(w), u, v, self.eps)
      u_var.value, v_var.value = u, v
    sigma = sigma_estimate(w, u, v)
    kernel = (kernel / sigma).astype(self.dtype)
    y = jax.lax.conv_general_dilated(
        x.astype(self.dtype), kernel, window_strides=(1, 1), padding='VALID',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,),
                        jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
