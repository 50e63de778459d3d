"""SAGAN self-attention block (Zhang et al. 2018) and the paper's fusions.

On x (N, H, W, C), positions P = H*W flattened row-major (as PyTorch's
`flatten(2)` on NCHW):
  f, g: 1x1 conv C -> C/key_reduction, h: C -> C/value_reduction,
  v: C/value_reduction -> C, all with bias and spectral normalisation;
  s[j, i] = g(x)_j . f(x)_i, beta = softmax over i (key positions),
  o_j = v(sum_i beta[j, i] h(x)_i), y = gamma * o + x.
gamma is a parameter of shape (1,) (like PyTorch's `attn.gamma`), init 0.

Fusions (fused map first, then x, channel concat; 2*C channels):
  'cat': [x + y, x];  'rhp' (Residual Hadamard Product): [x * (1 + y), x].
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from magjax.models.spectral_norm import SpectralNormConv

Dtype = Any
FUSIONS = ('cat', 'rhp')


def fuse(x, y, fusion):
  """The paper's fusion of the attention output y with the features x."""
  if fusion == 'cat':
    fused = x + y
  elif fusion == 'rhp':
    fused = x * (1 + y)
  else:
    raise ValueError(f'fusion must be one of {FUSIONS}, got {fusion!r}')
  return jnp.concatenate([fused, x], axis=-1)


class SelfAttention(nn.Module):
  """y = gamma * v(attend(f, g, h)(x)) + x; see the module docstring."""
  key_reduction: int = 8
  value_reduction: int = 8
  init_std: float = 0.02
  sn_epsilon: float = 1e-12
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    n, height, width, channels = x.shape
    if channels % self.key_reduction or channels % self.value_reduction:
      raise ValueError(f'{channels} channels not divisible by the reductions '
                       f'{self.key_reduction}, {self.value_reduction}')
    ck = channels // self.key_reduction
    cv = channels // self.value_reduction

    def conv(features, name):
      return SpectralNormConv(
          features, eps=self.sn_epsilon, dtype=self.dtype,
          kernel_init=nn.initializers.normal(self.init_std), name=name)

    keys = conv(ck, 'f')(x, train).reshape(n, -1, ck)  # position i
    queries = conv(ck, 'g')(x, train).reshape(n, -1, ck)  # position j
    values = conv(cv, 'h')(x, train).reshape(n, -1, cv)
    scores = jnp.einsum('njc,nic->nji', queries, keys)
    beta = jax.nn.softmax(scores.astype(jnp.float32), axis=-1)
    attended = jnp.einsum('nji,nic->njc', beta.astype(self.dtype), values)
    out = conv(channels, 'v')(attended.reshape(n, height, width, cv), train)
    gamma = self.param('gamma', nn.initializers.zeros, (1,), jnp.float32)
    return (gamma * out.astype(jnp.float32) + x.astype(jnp.float32)).astype(
        x.dtype)
