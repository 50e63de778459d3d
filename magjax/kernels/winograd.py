"""Convolutions by Winograd's minimal filtering, F(m x m, r x r).

Why this file exists: on the 2-core CPU every convolution of the network
already ran near the machine's float32 matmul rate (docs/PERFORMANCE.md),
so the only way left to a faster step was fewer multiplications. A direct
r x r convolution spends r^2 multiply-adds per output and channel pair;
Winograd's algorithm computes an m x m output tile from an (m + r - 1)^2
input tile with (m + r - 1)^2 of them: for the PatchGAN's 4 x 4 stride-1
convolution with m = 3 that is 36 per 9 outputs instead of 144 (4x fewer).
XLA has no Winograd rewrite on CPU (oneDNN's and cuDNN's are for 3 x 3
kernels), hence the hand code.

The algorithm (Lavin & Gray 2016): with input tile d (alpha x alpha,
alpha = m + r - 1) and kernel g (r x r),

    Y = A^T [ (G g G^T) (.) (B^T d B) ] A

where (.) is the elementwise product, summed over input channels: for each
of the alpha^2 transformed positions that is one (tiles x Cin) @ (Cin x
Cout) matrix product. `transforms(m, r)` builds A^T, G and B^T exactly
(Python fractions) from the Toom-Cook points 0, 1, -1, 2, -2, 1/2, ...;
the fractions go into G (the kernel transform) so that B^T and A^T keep
small integer entries.

Three convolutions of the network, one machinery:
- `conv`, stride 1: F(m, r) over the padded input.
- `conv`, stride 2 with an even kernel k: a stride-2 k x k convolution is a
  stride-1 (k/2) x (k/2) one over space-to-depth of the padded input (4 Cin
  channels), so F(m, k/2): F(3, 2) does 16 products per 9 outputs where the
  direct 4 x 4 stride-2 conv does 36 (2.25x fewer).
- `conv_transpose`, PyTorch's conv_transpose2d(stride 2, padding 1): the
  input gradient of that stride-2 conv, so its forward pass is the conv's
  backward products, its input gradient the conv's forward products (over
  dy) and its kernel gradient the conv's, with input and output swapped.

The gradients are custom VJPs in the transformed domain: dM = A dY A^T per
tile, dU = V^T dM and dV = dM U^T (again alpha^2 matrix products), then the
transposed input and kernel transforms. JAX's automatic transpose of the
tile extraction took 4x the forward time (it pads each of the alpha^2
strided slices to the full image); the transposes here add shifted slices
per residue class instead.

Rounding: against a float64 reference (256 input channels), the largest
float32 error relative to the output's scale was 8e-6 for F(3, 4) and
4e-6 for F(2, 4), 16x and 7x XLA's direct convolution (5e-7), and 9e-7
to 1.4e-6 for the stride-2 F(m, 2) (2-3x). Well below the noise of a GAN's
training, but not bit-equal to XLA (tests/test_winograd.py bounds it).
"""

import fractions
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

# Toom-Cook interpolation points, in the order that keeps the transforms
# smallest (the point at infinity is always added last).
POINTS = (0, 1, -1, 2, -2, fractions.Fraction(1, 2), fractions.Fraction(-1, 2),
          3, -3)


def _inverse(rows):
  """The inverse of a square matrix of Fractions (Gauss-Jordan)."""
  n = len(rows)
  a = [list(r) + [fractions.Fraction(int(i == j)) for j in range(n)]
       for i, r in enumerate(rows)]
  for c in range(n):
    p = next(r for r in range(c, n) if a[r][c] != 0)
    a[c], a[p] = a[p], a[c]
    pivot = a[c][c]
    a[c] = [v / pivot for v in a[c]]
    for r in range(n):
      if r != c and a[r][c] != 0:
        f = a[r][c]
        a[r] = [u - f * v for u, v in zip(a[r], a[c])]
  return [r[n:] for r in a]


@functools.lru_cache(maxsize=None)
def transforms(m, r):
  """(A^T (m, alpha), G (alpha, r), B^T (alpha, alpha)) as float64 arrays.

  Correlation y_i = sum_k d_{i+k} g_k (i < m) is the transpose of the
  polynomial product s = h * g (deg h = m - 1), which Toom-Cook computes by
  evaluating h and g at alpha points (E_h, E_g, infinity = the leading
  coefficient) and interpolating (V^-1): s = V^-1 [(E_h h) (.) (E_g g)].
  Transposed: y = E_h^T [(E_g g) (.) (V^-T d)]. Each row of V^-T is scaled to
  integers and its scale moved into G.
  """
  alpha = m + r - 1
  if m < 1 or r < 1 or alpha - 1 > len(POINTS):
    raise ValueError(f'no Winograd transform for F({m}, {r})')
  points = [fractions.Fraction(p) for p in POINTS[:alpha - 1]]

  def evaluation(n):
    rows = [[p ** k for k in range(n)] for p in points]
    rows.append([fractions.Fraction(int(k == n - 1)) for k in range(n)])
    return rows

  e_h, e_g = evaluation(m), evaluation(r)
  b_t = [list(col) for col in zip(*_inverse(evaluation(alpha)))]
  scales = []
  for i, row in enumerate(b_t):
    den = math.lcm(*(v.denominator for v in row))
    b_t[i] = [v * den for v in row]
    scales.append(fractions.Fraction(1, den))
  g = [[scales[j] * e_g[j][k] for k in range(r)] for j in range(alpha)]
  a_t = [list(col) for col in zip(*e_h)]
  return tuple(np.array(x, dtype=np.float64) for x in (a_t, g, b_t))


def _combine(coefficients, arrays):
  """sum_i c_i * arrays[i], skipping zero coefficients."""
  out = None
  for c, x in zip(coefficients, arrays):
    if c == 0:
      continue
    term = x if c == 1 else (-x if c == -1 else x * np.float32(c))
    out = term if out is None else out + term
  return out


def _apply(matrix, arrays):
  """[sum_i matrix[k, i] * arrays[i] for each row k]."""
  return [_combine(row, arrays) for row in matrix]


def _windows(x, axis, alpha, m, tiles):
  """alpha strided slices of x on `axis`: slice i holds x[i + m t], t < tiles."""
  out = []
  for i in range(alpha):
    start = [0] * x.ndim
    limit = list(x.shape)
    strides = [1] * x.ndim
    start[axis], limit[axis], strides[axis] = i, i + m * (tiles - 1) + 1, m
    out.append(jax.lax.slice(x, start, limit, strides))
  return out


def _place(parts, axis, m, length):
  """The transpose of _windows: sum part i into positions i + m t of `axis`.

  Parts i = q m + s land on residue s, shifted by q tiles: each residue is a
  sum of shifted (padded) parts, and the residues are interleaved.
  """
  tiles = parts[0].shape[axis]
  shift = (len(parts) - 1) // m
  residues = []
  for s in range(m):
    acc = None
    for q in range((len(parts) - 1 - s) // m + 1):
      pad = [(0, 0)] * parts[0].ndim
      pad[axis] = (q, shift - q)
      term = jnp.pad(parts[q * m + s], pad)
      acc = term if acc is None else acc + term
    residues.append(acc)
  y = jnp.stack(residues, axis=axis + 1)
  shape = list(parts[0].shape)
  shape[axis] = (tiles + shift) * m
  y = y.reshape(shape)
  if shape[axis] >= length:
    return jax.lax.slice_in_dim(y, 0, length, axis=axis)
  pad = [(0, 0)] * y.ndim
  pad[axis] = (0, length - shape[axis])
  return jnp.pad(y, pad)


def _input_transform(xp, b_t, m, th, tw):
  """B^T d B for every tile: alpha^2 arrays (N * th * tw, C)."""
  alpha = b_t.shape[0]
  c = xp.shape[-1]
  rows = _apply(b_t, _windows(xp, 1, alpha, m, th))
  return [v.reshape(-1, c) for t in rows
          for v in _apply(b_t, _windows(t, 2, alpha, m, tw))]


def _input_transform_t(dv, b_t, m, shape):
  """The transpose of _input_transform: alpha^2 arrays -> (N, Hp, Wp, C)."""
  alpha = b_t.shape[0]
  n, hp, wp, c = shape
  th, tw = (hp - alpha) // m + 1, (wp - alpha) // m + 1
  dv = [v.reshape(n, th, tw, c) for v in dv]
  rows = [_place(_apply(b_t.T, dv[k * alpha:(k + 1) * alpha]), 2, m, wp)
          for k in range(alpha)]
  return _place(_apply(b_t.T, rows), 1, m, hp)


def _kernel_transform(kernel, g, axes):
  """G k G^T over two axes of `kernel`: alpha^2 arrays without those axes.

  The axes are chosen so that every layout is read in place (no transpose
  of the kernel first: a strided read of a 4x4x1024x256 kernel by each of
  the alpha^2 outputs took 10-25 ms apiece).
  """
  first, second = axes
  r = kernel.shape[first]
  rows = _apply(g, [jax.lax.index_in_dim(kernel, i, first, keepdims=False)
                    for i in range(r)])
  second -= second > first
  return [u for t in rows
          for u in _apply(g, [jax.lax.index_in_dim(t, j, second,
                                                   keepdims=False)
                              for j in range(r)])]


def _kernel_transform_t(du, g, axes):
  """The transpose of _kernel_transform: alpha^2 arrays -> the kernel."""
  first, second = axes
  alpha = g.shape[0]
  second -= second > first
  rows = [jnp.stack(_apply(g.T, du[k * alpha:(k + 1) * alpha]), axis=second)
          for k in range(alpha)]
  return jnp.stack(_apply(g.T, rows), axis=first)


def _output_transform(mm, a_t, n, th, tw):
  """A^T M A per tile, interleaved: (N, th m, tw m, Cout)."""
  alpha, m = a_t.shape[1], a_t.shape[0]
  cout = mm[0].shape[-1]
  mm = [x.reshape(n, th, tw, cout) for x in mm]
  cols = [_apply(a_t, mm[k * alpha:(k + 1) * alpha]) for k in range(alpha)]
  # cols[k][q]: A^T applied on the second index; now the first index.
  y = [[_combine(a_t[p], [cols[k][q] for k in range(alpha)])
        for q in range(m)] for p in range(m)]
  y = jnp.stack([jnp.stack(row, axis=3) for row in y], axis=2)
  return y.reshape(n, th * m, tw * m, cout)


def _output_transform_t(dy, a_t):
  """The transpose of _output_transform: (N, th m, tw m, C) -> alpha^2 arrays."""
  m, alpha = a_t.shape
  n, hm, wm, c = dy.shape
  th, tw = hm // m, wm // m
  dy = dy.reshape(n, th, m, tw, m, c)
  parts = [[dy[:, :, p, :, q, :] for q in range(m)] for p in range(m)]
  first = [[_combine(a_t[:, k], [parts[p][q] for p in range(m)])
            for q in range(m)] for k in range(alpha)]
  return [x.reshape(-1, c) for k in range(alpha)
          for x in _apply(a_t.T, first[k])]


def _pads(padding):
  """int p -> ((p, p), (p, p)); ((top, bottom), (left, right)) as is."""
  if isinstance(padding, int):
    return ((padding, padding), (padding, padding))
  (top, bottom), (left, right) = padding
  return ((int(top), int(bottom)), (int(left), int(right)))


class _Plan:
  """How a convolution of an (N, H, W, C) input becomes tiles.

  Stride 1: F(m, r) over x zero-padded (then zeros, or a crop, to the last
  tile). Stride 2 (even k): the padded x goes through space-to-depth
  (channels (p, q, c)) and the kernel becomes 2x2 blocks, so r = k / 2 over
  4 C channels.
  """

  def __init__(self, x_shape, k, stride, padding, m):
    if stride not in (1, 2) or (stride == 2 and k % 2):
      raise ValueError(f'Winograd convolution takes stride 1, or stride 2 '
                       f'with an even kernel; got stride {stride}, kernel '
                       f'{k}x{k}')
    n, h, w, c = x_shape
    (top, bottom), (left, right) = _pads(padding)
    ho = (h + top + bottom - k) // stride + 1
    wo = (w + left + right - k) // stride + 1
    if ho < 1 or wo < 1:
      raise ValueError(f'a {k}x{k} kernel with padding {padding} does not '
                       f'fit a {h}x{w} map')
    self.x_shape, self.stride, self.m = x_shape, stride, m
    self.r = k // stride
    self.ho, self.wo = ho, wo
    self.th, self.tw = -(-ho // m), -(-wo // m)
    # the tile grid's rows and columns (after space-to-depth for stride 2)
    self.hg, self.wg = self.th * m + self.r - 1, self.tw * m + self.r - 1
    self.channels = c * stride * stride
    # lax.pad of x to the grid: negative high padding crops unread rows
    self.pad_config = ((0, 0, 0), (top, stride * self.hg - h - top, 0),
                       (left, stride * self.wg - w - left, 0), (0, 0, 0))
    self.a_t, self.g, self.b_t = transforms(m, self.r)

  def tiles(self, x):
    """B^T d B of every tile of x: alpha^2 arrays (N th tw, channels)."""
    xp = jax.lax.pad(x, jnp.zeros((), x.dtype), self.pad_config)
    if self.stride == 1:
      return _input_transform(xp, self.b_t, self.m, self.th, self.tw)
    # Space-to-depth, channels (p, q, c): (q, c) is already contiguous in
    # NHWC, so only the row phase p is split off and each phase transformed
    # on its own; transforming through the full 6-D transpose instead made
    # XLA:CPU compute every element's index through it, 2-3x slower (e.g.
    # 512^2 down_conv_2 at batch 8: 150 against 75 ms).
    n, hp, wp, c = xp.shape
    phases = xp.reshape(n, hp // 2, 2, wp // 2, 2 * c)
    halves = [_input_transform(phases[:, :, p], self.b_t, self.m, self.th,
                               self.tw) for p in range(2)]
    return [jnp.stack(pair, axis=1).reshape(-1, 4 * c)
            for pair in zip(*halves)]

  def tiles_t(self, dv):
    """The transpose of tiles: alpha^2 arrays -> (N, H, W, C)."""
    n = self.x_shape[0]
    if self.stride == 1:
      dxp = _input_transform_t(dv, self.b_t, self.m,
                               (n, self.hg, self.wg, self.channels))
    else:  # per row phase, as in tiles
      c2 = self.channels // 2
      halves = [_input_transform_t([v.reshape(-1, 2, c2)[:, p] for v in dv],
                                   self.b_t, self.m,
                                   (n, self.hg, self.wg, c2))
                for p in range(2)]
      dxp = jnp.stack(halves, axis=2).reshape(n, 2 * self.hg,
                                              2 * self.wg, c2 // 2)
    crop = tuple((-lo, -hi, 0) for lo, hi, _ in self.pad_config)
    return jax.lax.pad(dxp, jnp.zeros((), dxp.dtype), crop)

  def output(self, mm):
    """A^T M A of every tile, cropped: (N, Ho, Wo, Cout)."""
    y = _output_transform(mm, self.a_t, self.x_shape[0], self.th, self.tw)
    return y[:, :self.ho, :self.wo]

  def output_t(self, dy):
    """The transpose of output: (N, Ho, Wo, Cout) -> alpha^2 arrays."""
    dy = jnp.pad(dy, ((0, 0), (0, self.th * self.m - self.ho),
                      (0, self.tw * self.m - self.wo), (0, 0)))
    return _output_transform_t(dy, self.a_t)


def _conv_kernel(kernel, plan):
  """U: alpha^2 (channels, Cout) matrices from an HWIO kernel."""
  k, _, cin, cout = kernel.shape
  if plan.stride == 1:
    return _kernel_transform(kernel, plan.g, (0, 1))
  blocks = kernel.reshape(k // 2, 2, k // 2, 2, cin, cout)  # (a, p, b, q, ..)
  return [u.reshape(4 * cin, cout)
          for u in _kernel_transform(blocks, plan.g, (0, 2))]


def _conv_kernel_t(du, plan, k_shape):
  """The transpose of _conv_kernel: alpha^2 matrices -> the HWIO kernel."""
  k, _, cin, cout = k_shape
  if plan.stride == 1:
    return _kernel_transform_t(du, plan.g, (0, 1))
  du = [u.reshape(2, 2, cin, cout) for u in du]
  return _kernel_transform_t(du, plan.g, (0, 2)).reshape(k_shape)


def _products(a, b, transpose_a=False, transpose_b=False):
  """[a_i @ b_i] over the alpha^2 transformed positions (one dot each)."""
  return [(ai.T if transpose_a else ai) @ (bi.T if transpose_b else bi)
          for ai, bi in zip(a, b)]


def _conv_forward(x, kernel, stride, padding, m):
  plan = _Plan(x.shape, kernel.shape[0], stride, padding, m)
  v, u = plan.tiles(x), _conv_kernel(kernel, plan)
  return plan.output(_products(v, u)), (v, u)


def conv_kernel(kernel, x_shape, stride, padding, m):
  """The kernel transform of `conv` for inputs of x_shape: alpha^2
  (channels, Cout) matrices (what `conv_transformed` takes)."""
  return _conv_kernel(kernel, _Plan(x_shape, kernel.shape[0], stride,
                                    padding, m))


def conv_transformed(x, u, k, stride, padding, m):
  """`conv` with its k x k kernel already transformed (`conv_kernel`):
  inference, where the weights are fixed, pays the transform once. No
  custom gradient (training uses `conv`)."""
  plan = _Plan(x.shape, k, stride, padding, m)
  return plan.output(_products(plan.tiles(x), u))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv(x, kernel, stride, padding, m):
  """conv2d(x, kernel, stride, padding) by Winograd F(m x m, r x r).

  Args:
    x: (N, H, W, Cin).
    kernel: (k, k, Cin, Cout), HWIO (cross-correlation, as lax and torch).
    stride: 1 (r = k), or 2 with an even k (r = k / 2 over space-to-depth).
    padding: p (symmetric) or ((top, bottom), (left, right)) zeros.
    m: output tile size (2 or 3; larger m, fewer products, more rounding).

  Returns:
    (N, Ho, Wo, Cout) as lax.conv_general_dilated gives it.
  """
  return _conv_forward(x, kernel, stride, padding, m)[0]


def _conv_fwd(x, kernel, stride, padding, m):
  y, (v, u) = _conv_forward(x, kernel, stride, padding, m)
  return y, (v, u, x.shape, kernel.shape)


def _conv_bwd(stride, padding, m, residuals, dy):
  v, u, x_shape, k_shape = residuals
  plan = _Plan(x_shape, k_shape[0], stride, padding, m)
  dm = plan.output_t(dy)
  dx = plan.tiles_t(_products(dm, u, transpose_b=True))
  dk = _conv_kernel_t(_products(v, dm, transpose_a=True), plan, k_shape)
  return dx.astype(dy.dtype), dk.astype(dy.dtype)


conv.defvjp(_conv_fwd, _conv_bwd)


def _transposed_plan(x_shape, k_shape, m):
  """The plan of the stride-2 conv whose input gradient conv_transpose is."""
  n, h, w, _ = x_shape
  _, k, _, cout = k_shape
  # torch: (H - 1) * 2 - 2 * 1 + k; for k = 4 that is 2H
  z_shape = (n, 2 * (h - 1) - 2 + k, 2 * (w - 1) - 2 + k, cout)
  return _Plan(z_shape, k, 2, 1, m)


def _transposed_kernel(kernel, plan):
  """U^T: alpha^2 (Cin, 4 Cout) matrices from a (Cin, k, k, Cout) kernel,
  read in place (its input channels lead, as the products want them)."""
  cin, k, _, cout = kernel.shape
  blocks = kernel.reshape(cin, k // 2, 2, k // 2, 2, cout)  # (o, a, p, b, q, c)
  return [u.reshape(cin, 4 * cout)
          for u in _kernel_transform(blocks, plan.g, (1, 3))]


def _transposed_forward(x, kernel, m):
  plan = _transposed_plan(x.shape, kernel.shape, m)
  dm, ut = plan.output_t(x), _transposed_kernel(kernel, plan)
  return plan.tiles_t(_products(dm, ut)), (dm, ut)


def conv_transpose_kernel(kernel, x_shape, m):
  """The kernel transform of `conv_transpose` for inputs of x_shape."""
  return _transposed_kernel(kernel, _transposed_plan(x_shape, kernel.shape,
                                                     m))


def conv_transpose_transformed(x, ut, k_shape, m):
  """`conv_transpose` with its kernel (of shape k_shape) already
  transformed (`conv_transpose_kernel`); no custom gradient."""
  plan = _transposed_plan(x.shape, k_shape, m)
  return plan.tiles_t(_products(plan.output_t(x), ut))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x, kernel, m):
  """PyTorch conv_transpose2d(x, w, stride=2, padding=1), even k, by F(m, k/2).

  It is the input gradient of conv(z, w as HWIO (k, k, Cout, Cin), stride 2,
  padding 1), so its forward pass runs that conv's backward products, its
  input gradient that conv's forward products (over dy), and its kernel
  gradient that conv's kernel gradient with input and output swapped.

  Args:
    x: (N, H, W, Cin).
    kernel: (Cin, k, k, Cout), the scatter form (layers.ConvTransposeK4S2).
    m: output tile size of the underlying conv (over x's H x W).

  Returns:
    (N, 2 (H - 1) - 2 + k, 2 (W - 1) - 2 + k, Cout).
  """
  return _transposed_forward(x, kernel, m)[0]


def _conv_transpose_fwd(x, kernel, m):
  y, (dm, ut) = _transposed_forward(x, kernel, m)
  return y, (dm, ut, x.shape, kernel.shape)


def _conv_transpose_bwd(m, residuals, dy):
  dm, ut, x_shape, k_shape = residuals
  plan = _transposed_plan(x_shape, k_shape, m)
  v = plan.tiles(dy)
  dx = plan.output(_products(v, ut, transpose_b=True))
  cin, k, _, cout = k_shape
  dut = [u.reshape(cin, 2, 2, cout)
         for u in _products(dm, v, transpose_a=True)]
  dk = _kernel_transform_t(dut, plan.g, (1, 3)).reshape(k_shape)
  return dx.astype(dy.dtype), dk.astype(dy.dtype)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)
