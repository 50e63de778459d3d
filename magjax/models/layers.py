"""Building blocks with PyTorch semantics: the k4 s2 p1 transposed convolution
and BatchNorm.

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
(magjax 0.1 stored (4, 4, in, out); docs/PERFORMANCE.md). All methods below
take this kernel, so checkpoints do not depend on the method:

- 'subpixel': the output phase (r, c) = (oy % 2, ox % 2) only ever sees the
  taps ky = 3 - r - 2t (t = 0, 1), so the layer is four stride-1 2x2
  convolutions whose outputs are interleaved (depth-to-space). With the
  flipped kernel Kf = kernel[::-1, ::-1], phase (r, c) uses Kf[r::2, c::2]
  and pads (1, 0) on an axis of phase 0 and (0, 1) for phase 1. On a 2-core
  CPU this is ~7x faster than XLA's conv_transpose including the backward
  pass (DESIGN.md section 3); XLA has no such rewrite, hence the hand code.
  The input gradient is the same four convolutions' own; the kernel
  gradient is one dot (conv_ops.conv_transpose, a custom VJP).
- 'lax': `jax.lax.conv_transpose` (the stock op) with its automatic
  gradient, for checking.
- 'matmul': one dot and shifted sums (conv_ops.conv_transpose_scatter) in
  every pass, the fastest on CPU for small maps and for one output channel.
- 'winograd': Winograd F(m, 2) (conv_ops.conv_transpose_winograd), the
  fastest on CPU for large maps.
- 'auto' (default): conv_ops.choose per layer; 'subpixel' where it says
  'xla'.

Convolution
-----------
`Conv` is `flax.linen.Conv` for square kernels with symmetric padding (same
parameters `kernel` (k, k, in, out) and `bias`, so checkpoints do not
depend on the method), computed by XLA's convolution ('xla':
conv_ops.conv_xla, whose k4 s2 input gradient is four 2x2 convolutions),
as one dot ('matmul': conv_ops.conv_gather, or conv_ops.conv_scatter for a
stride-1 layer with fewer output than input channels) or by Winograd
('winograd': conv_ops.conv_winograd, stride 1 or 2), chosen per layer by
conv_ops.choose when 'auto'.

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

from magjax.models import conv_ops

Dtype = Any
Initializer = Callable[..., jax.Array]



# The implementations live in conv_ops (one file for how convolutions are
# computed); these names are the layer-level API.
conv_transpose_subpixel = conv_ops.conv_transpose_subpixel
conv_transpose_lax = conv_ops.conv_transpose_lax


# INIT_NOTE: initialisation keeps only the parameters, so a Winograd layer
# computes its (discarded) output there with the stock op instead of its
# hundreds of small ones: run eagerly, create_train_state of a 64^2 tiny
# network took 34 s with them, 15 s without.
CONV_TRANSPOSE_METHODS = {
    # forward and input gradient as four 2x2 convolutions, kernel gradient
    # as one dot (conv_ops.conv_transpose)
    'subpixel': lambda x, k: conv_ops.conv_transpose(x, k, 'subpixel'),
    # the stock op and its automatic gradient, for checking
    'lax': conv_transpose_lax,
    # every pass as one dot
    'matmul': lambda x, k: conv_ops.conv_transpose(x, k, 'scatter'),
    # Winograd F(m, 2) products (the stride-2 conv's passes, swapped)
    'winograd': conv_ops.conv_transpose_winograd,
}


def resolve_conv_transpose(method, x_shape, features, dtype=jnp.float32):
  """The concrete method ('subpixel', 'lax', 'matmul' or 'winograd')."""
  if method == 'auto':
    n, h, w, cin = x_shape
    picked = conv_ops.choose('auto', n * h * w, cin, features,
                             transposed=True, dtype=dtype)
    return 'subpixel' if picked == 'xla' else picked
  if method not in CONV_TRANSPOSE_METHODS:
    raise ValueError(f'conv_transpose must be one of '
                     f"{sorted(CONV_TRANSPOSE_METHODS) + ['auto']}, "
                     f'got {method!r}')
  return method


class ConvTransposeK4S2(nn.Module):
  """PyTorch `ConvTranspose2d(in, features, 4, stride=2, padding=1)`, NHWC.

  Attributes:
    features: output channels.
    use_bias: add a bias (zeros at init).
    method: 'auto', 'subpixel', 'lax' or 'matmul' (same parameter, same
      result).
    kernel_init: initialiser of the (in, 4, 4, out) kernel.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  use_bias: bool = False
  method: str = 'auto'
  kernel_init: Initializer = nn.initializers.normal(0.02)
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    method = resolve_conv_transpose(self.method, x.shape, self.features,
                                    self.dtype)
    if method == 'winograd' and self.is_initializing():
      method = 'subpixel'  # see INIT_NOTE
    kernel = self.param('kernel', self.kernel_init,
                        (x.shape[-1], 4, 4, self.features), jnp.float32)
    y = CONV_TRANSPOSE_METHODS[method](
        x.astype(self.dtype), kernel.astype(self.dtype))
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
    method: 'auto', 'xla' or 'matmul' (module docstring).
    kernel_init: initialiser of the (k, k, in, out) kernel.
    dtype: computation dtype (parameters stay float32).
  """
  features: int
  kernel_size: int = 4
  strides: int = 1
  padding: int = 1
  use_bias: bool = True
  method: str = 'auto'
  kernel_init: Initializer = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s, p = self.kernel_size, self.strides, self.padding
    kernel = self.param('kernel', self.kernel_init,
                        (k, k, x.shape[-1], self.features), jnp.float32)
    n, h, w, cin = x.shape
    positions = n * ((h + 2 * p - k) // s + 1) * ((w + 2 * p - k) // s + 1)
    method = conv_ops.choose(self.method, positions, cin, self.features,
                             dtype=self.dtype)
    if method == 'winograd' and self.is_initializing():
      method = 'xla'  # see INIT_NOTE
    x, kernel = x.astype(self.dtype), kernel.astype(self.dtype)
    if method == 'xla':
      y = conv_ops.conv_xla(x, kernel, s, p)
    elif method == 'winograd':
      y = conv_ops.conv_winograd(x, kernel, s, p)
    elif s == 1 and self.features < cin:
      y = conv_ops.conv_scatter(x, kernel, p)
    else:
      y = conv_ops.conv_gather(x, kernel, s, p)
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
