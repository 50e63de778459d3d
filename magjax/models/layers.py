"""Layers with PyTorch semantics: convolution, the k4 s2 p1 transposed
convolution and BatchNorm.

`Conv` and `ConvTransposeK4S2` hold the parameters; how they are computed
is the network's `kernels.Policy` (attribute `policy`): each layer asks it
for its method and calls `kernels.conv` / `kernels.conv_transpose`, in
`init` and `apply` alike. The method never changes a parameter.

Transposed convolution, parameter layout
-----------------------------------------
`ConvTransposeK4S2.kernel` has shape (in, 4, 4, out) and is the
*scatter-form* kernel, i.e. PyTorch's ConvTranspose2d weight (in, out, kh,
kw) moved to `w.transpose(0, 2, 3, 1)` without any flip:

    y[2*iy - 1 + ky, 2*ix - 1 + kx, :] += x[iy, ix, :] @ kernel[:, ky, kx]

(PyTorch `conv_transpose2d(x, w, stride=2, padding=1)`). Input channels come
first so that the 'matmul' method reads the kernel as one (in, 16 * out)
matrix and gets its gradient in that shape, with no transpose of the
largest tensors of the network (4 x 4 x 1024 x 512) in either direction
(magjax 0.1 stored (4, 4, in, out); docs/PERFORMANCE.md).

Convolution
-----------
`Conv` is `flax.linen.Conv` for square kernels with symmetric padding: the
same parameters `kernel` (k, k, in, out) and `bias`.

BatchNorm
---------
`flax.linen.BatchNorm` updates the running variance with the biased batch
variance; PyTorch uses the unbiased one (x n / (n - 1)). `BatchNorm` here
normalises with the biased batch variance and updates the running variance
with the unbiased one when `unbiased_running_var` is set (PyTorch default).
`momentum` follows PyTorch: new = (1 - momentum) * old + momentum * batch.
Statistics are always computed in float32 (also under bfloat16 compute).
Parameters: `scale`, `bias`; batch_stats: `mean`, `var`.
"""

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from magjax import kernels

Dtype = Any
Initializer = Callable[..., jax.Array]


class ConvTransposeK4S2(nn.Module):
  """PyTorch `ConvTranspose2d(in, features, 4, stride=2, padding=1)`, NHWC.

  Attributes:
    features: output channels.
    use_bias: add a bias (zeros at init).
    policy: how to compute it (kernels.Policy; same parameter, same result).
    kernel_init: initialiser of the (in, 4, 4, out) kernel.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  use_bias: bool = False
  policy: kernels.Policy = kernels.Policy()
  kernel_init: Initializer = nn.initializers.normal(0.02)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    """x: (N, H, W, in), or a tuple of channel parts whose concatenation it
    is (kernels.conv_transpose reads them in place where it can)."""
    parts = tuple(x) if isinstance(x, (tuple, list)) else (x,)
    shape = tuple(parts[0].shape[:-1]) + (sum(p.shape[-1] for p in parts),)
    kernel = self.param('kernel', self.kernel_init,
                        (shape[-1], 4, 4, self.features), jnp.float32)
    method = self.policy.conv_transpose_method(shape, self.features,
                                               self.dtype)
    parts = tuple(p.astype(self.dtype) for p in parts)
    y = kernels.conv_transpose(parts if len(parts) > 1 else parts[0],
                               kernel.astype(self.dtype), method)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,),
                        jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class Conv(nn.Module):
  """`nn.Conv(features, (k, k), stride, padding=((p, p), (p, p)))`, NHWC.

  Attributes:
    features: output channels.
    kernel_size: k (square).
    strides: stride (both axes).
    padding: p, symmetric zero padding (both axes).
    use_bias: add a bias (zeros at init).
    policy: how to compute it (kernels.Policy; same parameters, same result).
    kernel_init: initialiser of the (k, k, in, out) kernel.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  kernel_size: int = 4
  strides: int = 1
  padding: int = 1
  use_bias: bool = True
  policy: kernels.Policy = kernels.Policy()
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s, p = self.kernel_size, self.strides, self.padding
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, x.shape[-1], self.features), jnp.float32)
    method = self.policy.conv_method(x.shape, k, s, p, self.features,
                                     self.dtype)
    y = kernels.conv(x.astype(self.dtype), kernel.astype(self.dtype), s, p,
                     method)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,),
                        jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


def normal_around_one(stddev):
  """junyanz BatchNorm weight init: N(1, stddev)."""
  def init(key, shape, dtype=jnp.float32):
    return 1.0 + stddev * jax.random.normal(key, shape, dtype)
  return init


class BatchNorm(nn.Module):
  """BatchNorm over (N, H, W) with PyTorch's statistics (module docstring).

  Call with `train=True` inside `apply(..., mutable=['batch_stats'])`: the
  batch statistics normalise and the running ones are updated. With
  `train=False` the running statistics normalise.
  """
  momentum: float = 0.1
  epsilon: float = 1e-5
  unbiased_running_var: bool = True
  scale_init: Initializer = normal_around_one(0.02)

  @nn.compact
  def __call__(self, x, train: bool):
    features = x.shape[-1]
    scale = self.param('scale', self.scale_init, (features,), jnp.float32)
    bias = self.param('bias', nn.initializers.zeros, (features,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean',
                            lambda: jnp.zeros((features,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var',
                           lambda: jnp.ones((features,), jnp.float32))
    x32 = x.astype(jnp.float32)
    if train:
      axes = tuple(range(x.ndim - 1))
      mean = jnp.mean(x32, axis=axes)
      var = jnp.mean(jnp.square(x32 - mean), axis=axes)  # biased, two-pass
      if not self.is_initializing():
        n = x32.size // features
        run_var = var * (n / (n - 1)) if self.unbiased_running_var else var
        m = self.momentum
        ra_mean.value = (1 - m) * ra_mean.value + m * mean
        ra_var.value = (1 - m) * ra_var.value + m * run_var
    else:
      mean, var = ra_mean.value, ra_var.value
    y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(x.dtype)
