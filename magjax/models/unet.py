"""U-Net generator: junyanz `unet_256` rules plus an optional attention level.

Level k = 1..n (n = num_downs) is the k-th stride-2 down; x_k has
C_k = ngf * min(2**(k-1), 8) channels (`level_channels`).

  z_k = image if k == 1 else LeakyReLU_0.2(input of level k)   (also the skip)
  x_k = Conv(k4, s2, p1, no bias)(z_k), BatchNorm if 1 < k < n
  x_k = fuse(x_k, attention(x_k))  if k == attn_level  (2*C_k channels)
  decoder, k = n..1: u = ConvTranspose(k4, s2, p1)(ReLU(u)) (bias at k = 1)
    k == 1: tanh(u); else BatchNorm, Dropout(rate) if 5 <= k < n,
    then concat([z_k, u]) feeds up conv k-1.

The skip carries LeakyReLU'd features (junyanz's in-place LeakyReLU). With
norm 'none' the BatchNorms are left out and, as in junyanz (whose
`use_bias` is only True for InstanceNorm), no conv gains a bias.

Parameter names (flat, per level): `down_conv_k`, `down_norm_k`, `up_conv_k`,
`up_norm_k`, `attention` (see torch_import for the PyTorch names).
"""

from typing import Any, Optional

import flax.linen as nn
import jax.numpy as jnp

from magjax import kernels
from magjax.models.attention import FUSIONS, SelfAttention, fuse
from magjax.models.layers import (BatchNorm, Conv, ConvTransposeK4S2,
                                  normal_around_one)

Dtype = Any


def level_channels(level, ngf):
  """C_k, the channels of x_k (level 1 = after the first stride-2 down)."""
  return ngf * min(2 ** (level - 1), 8)


class UNetGenerator(nn.Module):
  """The pix2pix / cat- / RHP-attention generator (NHWC, output in [-1, 1]).

  Attributes:
    output_nc: output channels.
    ngf: filters of the first level.
    num_downs: levels (>= 5; 8 is unet_256).
    fusion: None (pix2pix), 'cat' or 'rhp'.
    attn_level: level 1..num_downs of the attention block.
    key_reduction, value_reduction: SAGAN channel reductions.
    dropout: dropout rate of the up blocks 5 <= k < num_downs.
    norm: 'batch' or 'none'.
    init_std: std of the N(0, std) conv init and of the N(1, std) BN scale.
    bn_momentum, bn_epsilon, bn_unbiased_running_var: BatchNorm (PyTorch).
    sn_epsilon: spectral-norm normalize() epsilon.
    conv_policy: how the convolutions are computed (kernels.Policy).
    dtype: computation dtype (parameters and BN statistics stay float32).
  """
  output_nc: int = 1
  ngf: int = 64
  num_downs: int = 8
  fusion: Optional[str] = None
  attn_level: int = 8
  key_reduction: int = 8
  value_reduction: int = 8
  dropout: float = 0.5
  norm: str = 'batch'
  init_std: float = 0.02
  bn_momentum: float = 0.1
  bn_epsilon: float = 1e-5
  bn_unbiased_running_var: bool = True
  sn_epsilon: float = 1e-12
  conv_policy: kernels.Policy = kernels.Policy()
  dtype: Dtype = jnp.float32

  def _norm(self, name):
    if self.norm == 'none':
      return lambda x, train: x
    if self.norm != 'batch':
      raise ValueError(f"norm must be 'batch' or 'none', got {self.norm!r}")
    return BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                     unbiased_running_var=self.bn_unbiased_running_var,
                     scale_init=normal_around_one(self.init_std), name=name)

  @nn.compact
  def __call__(self, x, train: bool, mc_dropout: bool = False):
    """x (N, H, W, input_nc) -> (N, H, W, output_nc).

    train: batch statistics + BatchNorm/spectral-norm updates (needs
      mutable=['batch_stats']) and dropout (rng 'dropout').
    mc_dropout: keep dropout active in eval mode (needs rng 'dropout').
    """
    n = self.num_downs
    if n < 5:
      raise ValueError('num_downs must be >= 5 (junyanz builds 5 levels)')
    if self.fusion is not None and self.fusion not in FUSIONS:
      raise ValueError(f'fusion must be None or one of {FUSIONS}')
    if self.fusion is not None and not 1 <= self.attn_level <= n:
      raise ValueError(f'attn_level must be in 1..{n}, got {self.attn_level}')
    if x.shape[1] % 2 ** n or x.shape[2] % 2 ** n:
      raise ValueError(f'image size {x.shape[1:3]} is not a multiple of '
                       f'2**num_downs = {2 ** n}')
    init = nn.initializers.normal(self.init_std)
    skips = []
    h = x.astype(self.dtype)
    for k in range(1, n + 1):
      z = h if k == 1 else nn.leaky_relu(h, 0.2)
      skips.append(z)
      h = Conv(level_channels(k, self.ngf), 4, strides=2, padding=1,
               use_bias=False, policy=self.conv_policy, kernel_init=init,
               dtype=self.dtype, name=f'down_conv_{k}')(z)
      if 1 < k < n:
        h = self._norm(f'down_norm_{k}')(h, train)
      if self.fusion is not None and k == self.attn_level:
        y = SelfAttention(self.key_reduction, self.value_reduction,
                          self.init_std, self.sn_epsilon, self.dtype,
                          name='attention')(h, train)
        h = fuse(h, y, self.fusion)
    u = (h,)  # the up convolution's input, as channel parts
    for k in range(n, 0, -1):
      out_ch = self.output_nc if k == 1 else level_channels(k - 1, self.ngf)
      u = ConvTransposeK4S2(out_ch, use_bias=k == 1,
                            policy=self.conv_policy, kernel_init=init,
                            dtype=self.dtype, name=f'up_conv_{k}')(
                                tuple(nn.relu(p) for p in u))
      if k == 1:
        return jnp.tanh(u.astype(jnp.float32))
      u = self._norm(f'up_norm_{k}')(u, train)
      if 5 <= k < n and self.dropout > 0:
        u = nn.Dropout(self.dropout, deterministic=not (train or mc_dropout))(u)
      # the skip connection: concatenated channels, kept as two parts
      u = (skips[k - 1], u.astype(self.dtype))
