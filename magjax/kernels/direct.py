"""Direct convolutions: XLA's, and the same operations as one matrix product.

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
  the transposed kernel reshapes to it for free); each output phase (oy %
  2, ox % 2) sums four shifted slices of z; the phases are interleaved.

and XLA's own convolutions where they are fast, with hand-written gradients
where XLA's are slow:

- `conv_xla`: XLA's convolution; the k4 s2 input gradient as four 2x2
  convolutions.
- `conv_transpose_subpixel`: the transposed convolution as four interleaved
  2x2 convolutions (sub-pixel): on the 2-core CPU ~7x faster than XLA's
  conv_transpose including the backward pass (64 -> 64 channels, 128^2 ->
  256^2: 0.60 s against 4.19 s forward + backward, and 3.6x faster to
  compile).
- `conv_transpose_dot_grad`: either transposed form, with the kernel
  gradient as one dot.
- `conv_transpose_lax`: `jax.lax.conv_transpose`, the stock op, as the
  reference the others are tested against.

Every function equals `jax.lax` to float rounding (tests/test_kernels.py),
forward and gradient, and takes the kernels of models/layers.py (HWIO;
(in, 4, 4, out) for the transposed convolution).
"""

import functools

import jax
import jax.numpy as jnp

_DIMS = ('NHWC', 'HWIO', 'NHWC')


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


def spatial_first(kernel):
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
  flipped = spatial_first(kernel)[::-1, ::-1]
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
      x, jnp.swapaxes(spatial_first(kernel), 2, 3), strides=(2, 2),
      padding=((2, 2), (2, 2)), dimension_numbers=_DIMS,
      transpose_kernel=True)


def conv_transpose_scatter(x, kernel):
  """PyTorch conv_transpose2d(x, w, stride=2, padding=1) for a 4x4 kernel.

  kernel: (Cin, 4, 4, Cout), scatter form: y[2iy - 1 + ky, 2ix - 1 + kx] +=
  x[iy, ix] @ kernel[:, ky, kx] (layers.py). Output row 2m + r receives tap
  ky = 3 - r - 2t from input row m - 1 + r + t (t = 0, 1), likewise columns.
  x may be a tuple of channel parts summing to Cin (inference,
  kernels.conv_transpose).
  """
  if kernel.shape[1:3] != (4, 4):
    raise ValueError(f'kernel must be (in, 4, 4, out), got {kernel.shape}')
  parts = x if isinstance(x, tuple) else (x,)
  n, h, w, _ = parts[0].shape
  cout = kernel.shape[-1]
  z, start = 0, 0
  for part in parts:  # channel parts: one dot each, never concatenated
    z = z + _taps_matmul(part, kernel[start:start + part.shape[-1]])
    start += part.shape[-1]
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


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose_dot_grad(x, kernel, form):
  """PyTorch conv_transpose2d(k4, s2, p1); kernel (Cin, 4, 4, Cout).

  form: 'subpixel' (four 2x2 convolutions; the input gradient too) or
  'scatter' (one dot; the input gradient too). The kernel gradient is always
  one dot, x^T @ dy-at-every-tap: for the 128x128x256 -> 64 layer of a 512^2
  U-Net it took 70 ms where the 2x2 convolutions' own kernel gradient took
  110 ms (python -m tools.bench_layers).
  """
  if form == 'subpixel':
    return conv_transpose_subpixel(x, kernel)
  return conv_transpose_scatter(x, kernel)


def _conv_transpose_fwd(x, kernel, form):
  return conv_transpose_dot_grad(x, kernel, form), (x, kernel)


def _conv_transpose_bwd(form, residuals, dy):
  x, kernel = residuals
  cin = kernel.shape[0]
  dz = _gather_taps(dy)
  dkernel = (x.reshape(-1, cin).T @ dz).reshape(kernel.shape)
  if form == 'subpixel':
    dx = jax.vjp(lambda a: conv_transpose_subpixel(a, kernel), x)[1](dy)[0]
  else:
    dx = (dz @ kernel.reshape(cin, -1).T).reshape(x.shape)
  return dx.astype(x.dtype), dkernel.astype(kernel.dtype)


conv_transpose_dot_grad.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


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
  (python -m tools.bench_layers). Otherwise XLA's own gradients.
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
