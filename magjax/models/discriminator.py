"""PatchGAN discriminator: junyanz `NLayerDiscriminator` on concat([a, b]).

conv_0 (k4 s2 p1, bias) LeakyReLU; for i = 1..n_layers: conv_i (k4, stride 2
except the last which is 1, p1, no bias) -> norm_i (BatchNorm) -> LeakyReLU,
with ndf * min(2**i, 8) channels; conv_{n_layers+1} (k4 s1 p1, bias) -> 1 logit
channel. Explicit padding ((1, 1), (1, 1)) everywhere, so the stride-1 convs
shrink the map by one pixel: S x S -> (S/8 - 2)^2 logits for n_layers = 3.
PyTorch names: conv_0 = model.0, conv_i = model.{3i-1}, norm_i = model.{3i}.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from magjax import kernels
from magjax.models.layers import BatchNorm, Conv, normal_around_one

Dtype = Any


class PatchDiscriminator(nn.Module):
  """70x70 PatchGAN (n_layers = 3) returning logits (N, S', S', 1)."""
  ndf: int = 64
  n_layers: int = 3
  norm: str = 'batch'
  init_std: float = 0.02
  bn_momentum: float = 0.1
  bn_epsilon: float = 1e-5
  bn_unbiased_running_var: bool = True
  conv_policy: kernels.Policy = kernels.Policy()  # how convs are computed
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, a, b, train: bool):
    """a (N, H, W, input_nc), b (N, H, W, output_nc) -> float32 logits."""
    if self.norm not in ('batch', 'none'):
      raise ValueError(f"norm must be 'batch' or 'none', got {self.norm!r}")
    init = nn.initializers.normal(self.init_std)

    def conv(features, stride, use_bias, name):
      return Conv(features, 4, strides=stride, padding=1, use_bias=use_bias,
                  policy=self.conv_policy, kernel_init=init, dtype=self.dtype,
                  name=name)

    h = jnp.concatenate([a, b], axis=-1).astype(self.dtype)
    h = nn.leaky_relu(conv(self.ndf, 2, True, 'conv_0')(h), 0.2)
    for i in range(1, self.n_layers + 1):
      stride = 2 if i < self.n_layers else 1
      h = conv(self.ndf * min(2 ** i, 8), stride, False, f'conv_{i}')(h)
      if self.norm == 'batch':
        h = BatchNorm(momentum=self.bn_momentum, epsilon=self.bn_epsilon,
                      unbiased_running_var=self.bn_unbiased_running_var,
                      scale_init=normal_around_one(self.init_std),
                      name=f'norm_{i}')(h, train)
      h = nn.leaky_relu(h, 0.2)
    h = conv(1, 1, True, f'conv_{self.n_layers + 1}')(h)
    return h.astype(jnp.float32)
