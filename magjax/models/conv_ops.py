"""Convolutions written as matrix products, and the per-layer choice of method.

Why this file exists (measured with jax.profiler on the 2-core CPU, see
docs/PERFORMANCE.md): XLA:CPU runs a stock convolution through its
conv library, and on this network it loses most of its time *around* the
arithmetic. Layers with a small map and a large kernel (the inner U-Net
levels: 1x1 to 16x16 maps, 4x4x1024x512 kernels) spend it transposing and
reversing the kernel for the backward pass; layers with one output channel
(the last up conv, the last PatchGAN conv) fall back to a naive loop
(~1 GFLOP/s). No XLA flag changes this, so these layers are written here as
one dot each, which XLA:CPU runs at the machine's matmul speed, with only
cheap slicing around it:

- `conv_gather` (im2col): the k*k shifted views of the padded input are
  concatenated on the channel axis, (M, k*k*Cin) @ kernel.reshape(k*k*Cin,
  Cout). The HWIO kernel reshapes for free; the weight gradient is one dot.
- `conv_scatter` (stride 1): z = x @ kernel moved to (Cin, k*k*Cout), then the
  k*k shifted slices of z are summed. Cheap when Cout is small.
- `conv_transpose_scatter`: PyTorch's conv_transpose2d(k4, s2, p1) in the
  same way: z = x @ kernel as (Cin, 16*Cout) (the (in, 4, 4, out) layout of
  layers.ConvTransposeK4S2 reshapes to it for free); each output phase (oy %
  2, ox % 2) sums four shifted slices of z; the phases are interleaved.

- `conv_winograd`, `conv_transpose_winograd`: Winograd's algorithm
  (winograd.py), fewer multiplications than any direct form: 2.25x fewer
  for the stride-2 and transposed convolutions, 4x for the stride-1
  PatchGAN conv.

Every function equals `jax.lax` to float rounding (tests/test_conv_ops.py,
tests/test_winograd.py), forward and gradient, and takes the same kernels
as the modules in layers.py (HWIO; (in, 4, 4, out) for the transposed
convolution), so the method never changes a parameter or a checkpoint.

`choose` picks per layer: on CPU, a matrix product where a side has fewer
than MIN_CHANNELS channels, Winograd (float32 only) from
WINOGRAD_MIN_POSITIONS output positions up, below that a matrix product
where the map is small next to the channel count and the stock op
elsewhere; on GPU/TPU always the stock op (cuDNN / the TPU compiler handle
all these shapes well).
"""

import functools

import jax
import jax.numpy as jnp

from magjax.models import winograd

METHODS = ('auto', 'xla', 'matmul', 'winograd')
# A side with fewer channels than this degrades XLA:CPU's conv library to
# its naive loop; measured: 1 output channel at 128^2 took 14 ms for 17
# MFLOP.
MIN_CHANNELS = 8
_DIMS = ('NHWC', 'HWIO', 'NHWC')
# On CPU the matrix product wins once the output positions (batch x map) are
# at most this many times the larger channel count (profiled crossover at
# 256^2 and 512^2: 2x slower at 32x, equal at 4x, up to 10x faster at 1x).
POSITIONS_PER_CHANNEL = 4
# The same for a transposed convolution, counting its input positions
# (python -m magjax.bench_layers: at 512^2 the 64x64x512 -> 128 layer is 15 %
# faster as a matmul, the 128x128x256 -> 64 one 28 % slower).
TRANSPOSED_POSITIONS_PER_CHANNEL = 8
# On CPU, Winograd (conv_winograd) wins from this many output positions
# (batch x map) up: at 512^2 the 16x16 down conv is 20 % faster than the
# dot, the 8x8 one 30 % slower; the 64x64 stride-1 PatchGAN conv 3.5x
# faster than XLA's (python -m magjax.bench_layers).
WINOGRAD_MIN_POSITIONS = 256
# The same for a transposed convolution, counting its input positions: at
# 512^2 the 32x32x1024 -> 256 layer is 25 % faster than the dot, the
# 16x16x1024 -> 512 one equal.
TRANSPOSED_WINOGRAD_MIN_POSITIONS = 512


def _pad_hw(x, pad):
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))


def _out_size(size, k, stride, pad):
  return (size + 2 * pad - k) // stride + 1


def conv_gather(x, kernel, stride, pad):
  """conv2d(x, kernel, stride, padding=pad) as one (im2col) dot.

  Args:
    x: (N, H, W, Cin).
    kernel: (k, k, Cin, Cout), HWIO (cross-correlation, as lax and torch).
    stride: int.
    pad: symmetric zero padding.

  Returns:
    (N, Ho, Wo, Cout).
  """
  kh, kw, cin, cout = kernel.shape
  n, h, w, _ = x.shape
  ho, wo = _out_size(h, kh, stride, pad), _out_size(w, kw, stride, pad)
  xp = _pad_hw(x, pad)
  views = [jax.lax.slice(xp, (0, i, j, 0),
                         (n, i + stride * (ho - 1) + 1,
                          j + stride * (wo - 1) + 1, cin),
                         (1, stride, stride, 1))
           for i in range(kh) for j in range(kw)]
  patches = jnp.concatenate(views, axis=-1).reshape(n * ho * wo, -1)
  y = patches @ kernel.reshape(kh * kw * cin, cout)
  return y.reshape(n, ho, wo, cout)


def _taps_matmul(x, kernel):
  """x (N, H, W, Cin) @ kernel (Cin, kh, kw, Cout): (N, H, W, kh, kw, Cout).

  The kernel's input channels come first, so it reshapes for free to one
  (Cin, kh * kw * Cout) matrix and its gradient comes back in its layout.
  """
  cin, kh, kw, cout = kernel.shape
  n, h, w, _ = x.shape
  z = x.reshape(n * h * w, cin) @ kernel.reshape(cin, kh * kw * cout)
  return z.reshape(n, h, w, kh, kw, cout)


def conv_scatter(x, kernel, pad):
  """Stride-1 conv2d(x, kernel, padding=pad): one dot, then shifted sums.

  y[i, j] = sum_{a, b} x_padded[i + a, j + b] @ kernel[a, b]
          = sum_{a, b} z_padded[i + a, j + b, a, b],  z = x @ kernel[a, b].
  """
  kh, kw = kernel.shape[:2]
  n, h, w, _ = x.shape
  ho, wo = _out_size(h, kh, 1, pad), _out_size(w, kw, 1, pad)
  # Chosen for few output channels, so moving the HWIO kernel is cheap.
  z = _taps_matmul(x, jnp.transpose(kernel, (2, 0, 1, 3)))
  zp = jnp.pad(z, ((0, 0), (pad, pad), (pad, pad), (0, 0), (0, 0), (0, 0)))
  y = 0
  for a in range(kh):
    for b in range(kw):
      y = y + zp[:, a:a + ho, b:b + wo, a, b, :]
  return y


def _spatial_first(kernel):
  """(in, 4, 4, out) -> (4, 4, in, out), the layout of lax's kernels."""
  if kernel.shape[1:3] != (4, 4):
    raise ValueError(f'kernel must be (in, 4, 4, out), got {kernel.shape}')
  return jnp.transpose(kernel, (1, 2, 0, 3))


def conv_transpose_subpixel(x, kernel):
  """PyTorch conv_transpose2d(k4, s2, p1) as four interleaved 2x2 convs.

  Args:
    x: (N, H, W, Cin).
    kernel: (Cin, 4, 4, Cout), the scatter-form kernel (layers.py).

  Returns:
    (N, 2H, 2W, Cout).
  """
  flipped = _spatial_first(kernel)[::-1, ::-1]
  pads = ((1, 0), (0, 1))  # phase 0 reads rows m-1, m; phase 1 rows m, m+1
  rows = []
  for r in range(2):
    cols = []
    for c in range(2):
      cols.append(jax.lax.conv_general_dilated(
          x, flipped[r::2, c::2], window_strides=(1, 1),
          padding=(pads[r], pads[c]), dimension_numbers=_DIMS))
    rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2c, C)
  y = jnp.stack(rows, axis=2)  # (N, H, 2r, W, 2c, C)
  n, h, _, w, _, cout = y.shape
  return y.reshape(n, 2 * h, 2 * w, cout)


def conv_transpose_lax(x, kernel):
  """The same operation with `jax.lax.conv_transpose` (the stock op)."""
  # transpose_kernel=True flips spatially and swaps the last two axes, so it
  # wants (kh, kw, out, in); padding k - 1 - p = 2.
  return jax.lax.conv_transpose(
      x, jnp.swapaxes(_spatial_first(kernel), 2, 3), strides=(2, 2),
      padding=((2, 2), (2, 2)), dimension_numbers=_DIMS,
      transpose_kernel=True)


def conv_transpose_scatter(x, kernel):
  """PyTorch conv_transpose2d(x, w, stride=2, padding=1) for a 4x4 kernel.

  kernel: (Cin, 4, 4, Cout), scatter form: y[2iy - 1 + ky, 2ix - 1 + kx] +=
  x[iy, ix] @ kernel[:, ky, kx] (layers.py). Output row 2m + r receives tap
  ky = 3 - r - 2t from input row m - 1 + r + t (t = 0, 1), likewise columns.
  """
  if kernel.shape[1:3] != (4, 4):
    raise ValueError(f'kernel must be (in, 4, 4, out), got {kernel.shape}')
  n, h, w, _ = x.shape
  cout = kernel.shape[-1]
  z = _taps_matmul(x, kernel)
  zp = jnp.pad(z, ((0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (0, 0)))
  rows = []
  for r in range(2):
    cols = []
    for c in range(2):
      y = 0
      for t in range(2):
        for s in range(2):
          y = y + zp[:, r + t:r + t + h, c + s:c + s + w,
                     3 - r - 2 * t, 3 - c - 2 * s, :]
      cols.append(y)
    rows.append(jnp.stack(cols, axis=3))  # (N, H, W, 2c, C)
  return jnp.stack(rows, axis=2).reshape(n, 2 * h, 2 * w, cout)


def _gather_taps(dy):
  """(N, 2H, 2W, C) -> (N*H*W, 16*C): dy at the 16 outputs of every input.

  Row (n, iy, ix), column block ky * 4 + kx holds dy[2iy - 1 + ky, 2ix - 1 +
  kx] (zero outside): the transpose of the scatter in conv_transpose_scatter,
  written out because the automatic one goes through 6-d pads.
  """
  n, h2, w2, c = dy.shape
  h, w = h2 // 2, w2 // 2
  dyp = _pad_hw(dy, 1)
  taps = [jax.lax.slice(dyp, (0, ky, kx, 0),
                        (n, ky + 2 * h - 1, kx + 2 * w - 1, c), (1, 2, 2, 1))
          for ky in range(4) for kx in range(4)]
  return jnp.stack(taps, axis=3).reshape(n * h * w, 16 * c)


TRANSPOSED_FORWARDS = ('subpixel', 'scatter')


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x, kernel, forward='subpixel'):
  """PyTorch conv_transpose2d(k4, s2, p1); kernel (Cin, 4, 4, Cout).

  forward: 'subpixel' (four 2x2 convolutions; the input gradient too) or
  'scatter' (one dot; the input gradient too). The kernel gradient is always
  one dot, x^T @ dy-at-every-tap: for the 128x128x256 -> 64 layer of a 512^2
  U-Net it took 70 ms where the 2x2 convolutions' own kernel gradient took
  110 ms (python -m magjax.bench_layers).
  """
  if forward not in TRANSPOSED_FORWARDS:
    raise ValueError(f'forward must be one of {TRANSPOSED_FORWARDS}, '
                     f'got {forward!r}')
  if forward == 'subpixel':
    return conv_transpose_subpixel(x, kernel)
  return conv_transpose_scatter(x, kernel)


def _conv_transpose_fwd(x, kernel, forward):
  return conv_transpose(x, kernel, forward), (x, kernel)


def _conv_transpose_bwd(forward, residuals, dy):
  x, kernel = residuals
  cin = kernel.shape[0]
  dz = _gather_taps(dy)
  dkernel = (x.reshape(-1, cin).T @ dz).reshape(kernel.shape)
  if forward == 'subpixel':
    dx = jax.vjp(lambda a: conv_transpose_subpixel(a, kernel), x)[1](dy)[0]
  else:
    dx = (dz @ kernel.reshape(cin, -1).T).reshape(x.shape)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


def _lax_conv(x, kernel, stride, pad):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride),
                                      ((pad, pad), (pad, pad)),
                                      dimension_numbers=_DIMS)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv_xla(x, kernel, stride, pad):
  """conv2d(x, kernel (HWIO), stride, padding=pad) by XLA's convolution.

  For the k4 s2 p1 convolution the input gradient is PyTorch's
  conv_transpose2d of dy with the same kernel, computed as four 2x2
  convolutions (conv_transpose_subpixel) instead of XLA's base-dilated
  convolution: 23 ms instead of 30 ms for a 256x256x64 -> 128 layer
  (python -m magjax.bench_layers). Otherwise XLA's own gradients.
  """
  return _lax_conv(x, kernel, stride, pad)


def _conv_xla_fwd(x, kernel, stride, pad):
  return _lax_conv(x, kernel, stride, pad), (x, kernel)


def _conv_xla_bwd(stride, pad, residuals, dy):
  x, kernel = residuals
  dkernel = jax.vjp(lambda k: _lax_conv(x, k, stride, pad), kernel)[1](dy)[0]
  kh, kw = kernel.shape[:2]
  if (kh, kw, stride, pad) == (4, 4, 2, 1) and x.shape[1:3] == (
      2 * dy.shape[1], 2 * dy.shape[2]):
    # (kh, kw, in, out) read as a transposed conv's (out -> in) kernel
    dx = conv_transpose_subpixel(dy, jnp.transpose(kernel, (3, 0, 1, 2)))
  else:
    dx = jax.vjp(lambda a: _lax_conv(a, kernel, stride, pad), x)[1](dy)[0]
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


conv_xla.defvjp(_conv_xla_fwd, _conv_xla_bwd)


def winograd_tile(ho, wo, r):
  """The output tile m (2 or 3) of F(m, r) for an ho x wo output.

  Products per image: ceil(ho / m) ceil(wo / m) (m + r - 1)^2. m = 3 only
  where that is at least 10 % below m = 2's (its transforms cost more and
  it rounds a little more; python -m magjax.bench_layers).
  """
  def products(m):
    return -(-ho // m) * -(-wo // m) * (m + r - 1) ** 2
  return 3 if products(3) < 0.9 * products(2) else 2


def conv_winograd(x, kernel, stride, pad, m=None):
  """conv2d(x, kernel (HWIO), stride 1 or 2, padding=pad) by Winograd
  (winograd.conv); m: the output tile, winograd_tile's choice when None."""
  k = kernel.shape[0]
  ho = _out_size(x.shape[1], k, stride, pad)
  wo = _out_size(x.shape[2], k, stride, pad)
  return winograd.conv(x, kernel, stride, pad,
                       m or winograd_tile(ho, wo, k // stride))


def conv_transpose_winograd(x, kernel, m=None):
  """PyTorch conv_transpose2d(k4, s2, p1), kernel (Cin, 4, 4, Cout), by
  Winograd (winograd.conv_transpose: the backward pass of the stride-2
  conv_winograd with the same kernel)."""
  _spatial_first(kernel)  # checks the (in, 4, 4, out) layout
  return winograd.conv_transpose(
      x, kernel, m or winograd_tile(x.shape[1], x.shape[2], 2))


def choose(method, positions, cin, cout, backend=None, transposed=False,
           dtype=jnp.float32):
  """'xla', 'matmul' or 'winograd' for one layer.

  Args:
    method: 'auto' or one of the others (returned as is).
    positions: output positions of the dot, N x Ho x Wo (for a transposed
      convolution, N x H x W of its input).
    cin, cout: channels.
    backend: jax.default_backend() when None.
    transposed: a transposed convolution (k4 s2 p1).
    dtype: the computation dtype; 'winograd' only for float32 (its
      transforms would cost bfloat16 a further 2-3 bits).
  """
  if method not in METHODS:
    raise ValueError(f'conv method must be one of {METHODS}, got {method!r}')
  if method != 'auto':
    return method
  if (backend or jax.default_backend()) != 'cpu':
    return 'xla'
  if min(cin, cout) < MIN_CHANNELS:
    return 'matmul'
  min_positions = (TRANSPOSED_WINOGRAD_MIN_POSITIONS if transposed
                   else WINOGRAD_MIN_POSITIONS)
  if jnp.dtype(dtype) == jnp.float32 and positions >= min_positions:
    return 'winograd'
  ratio = (TRANSPOSED_POSITIONS_PER_CHANNEL if transposed
           else POSITIONS_PER_CHANNEL)
  return 'matmul' if positions <= ratio * max(cin, cout) else 'xla'
