"""Which method computes a layer: the per-layer rule behind `Policy('auto')`.

On GPU and TPU always XLA's convolutions (cuDNN and the TPU compiler handle
every shape of these networks well). On CPU, measured per layer with
`python -m tools.bench_layers` (docs/PERFORMANCE.md):

- a side with fewer than MIN_CHANNELS channels: one matrix product (XLA:CPU's
  conv library degrades to its naive loop there);
- float32 maps from WINOGRAD_MIN_POSITIONS output positions up (transposed:
  input positions): Winograd;
- below that, a matrix product where the map is small next to the channel
  count (positions <= POSITIONS_PER_CHANNEL x the larger channel count),
  XLA's convolution elsewhere.
"""

import jax
import jax.numpy as jnp

# A side with fewer channels than this degrades XLA:CPU's conv library to
# its naive loop; measured: 1 output channel at 128^2 took 14 ms for 17
# MFLOP.
MIN_CHANNELS = 8
# On CPU the matrix product wins once the output positions (batch x map) are
# at most this many times the larger channel count (profiled crossover at
# 256^2 and 512^2: 2x slower at 32x, equal at 4x, up to 10x faster at 1x).
POSITIONS_PER_CHANNEL = 4
# The same for a transposed convolution, counting its input positions
# (tools.bench_layers: at 512^2 the 64x64x512 -> 128 layer is 15 % faster
# as a matmul, the 128x128x256 -> 64 one 28 % slower).
TRANSPOSED_POSITIONS_PER_CHANNEL = 8
# On CPU, Winograd wins from this many output positions (batch x map) up:
# at 512^2 the 16x16 down conv is 20 % faster than the dot, the 8x8 one
# 30 % slower; the 64x64 stride-1 PatchGAN conv 3.5x faster than XLA's.
WINOGRAD_MIN_POSITIONS = 256
# The same for a transposed convolution, counting its input positions: at
# 512^2 the 32x32x1024 -> 256 layer is 25 % faster than the dot, the
# 16x16x1024 -> 512 one equal.
TRANSPOSED_WINOGRAD_MIN_POSITIONS = 512
# With the kernel transforms computed once (inference), Winograd wins from
# this many (input, for a transposed conv) positions up, either kind: at
# batch 8, the 8x8x512 -> 512 conv 2.3 ms against the dot's 3.2, the
# 4x4x1024 -> 512 transposed one 4.6 against 6.0; at 32 positions the dot
# wins (2x2x512 -> 512: 0.5 against 1.3).
FIXED_WEIGHTS_WINOGRAD_MIN_POSITIONS = 128
# A transposed convolution may take F(4, 2) from this many input positions
# per input channel and this product input positions x Cin x Cout up
# (transposed_winograd_tile).
TRANSPOSED_F4_POSITIONS_PER_CHANNEL = 8
TRANSPOSED_F4_MIN_PRODUCT = 2 ** 30


def choose(positions, cin, cout, *, transposed=False, dtype=jnp.float32,
           backend=None, fixed_weights=False):
  """'xla', 'matmul' or 'winograd' for one layer (the module docstring).

  Args:
    positions: output positions of the layer, N x Ho x Wo (for a transposed
      convolution, N x H x W of its input).
    cin, cout: channels.
    transposed: a transposed convolution (k4 s2 p1).
    dtype: the computation dtype; Winograd only for float32 (its
      transforms would cost bfloat16 a further 2-3 bits).
    backend: jax.default_backend() when None.
    fixed_weights: the kernel transforms are computed once, not per call
      (inference, kernels.replaying_transforms): Winograd from
      FIXED_WEIGHTS_WINOGRAD_MIN_POSITIONS.
  """
  if (backend or jax.default_backend()) != 'cpu':
    return 'xla'
  if min(cin, cout) < MIN_CHANNELS:
    # forward only (inference), few input channels: XLA's conv (the
    # 512^2 x 1 -> 64 first layer at batch 8: 8.2 against the dot's 14.2
    # ms); its kernel gradient is the slow part in training
    few_inputs = cin < MIN_CHANNELS <= cout and not transposed
    return 'xla' if fixed_weights and few_inputs else 'matmul'
  if fixed_weights:
    min_positions = FIXED_WEIGHTS_WINOGRAD_MIN_POSITIONS
  else:
    min_positions = (TRANSPOSED_WINOGRAD_MIN_POSITIONS if transposed
                     else WINOGRAD_MIN_POSITIONS)
  if jnp.dtype(dtype) == jnp.float32 and positions >= min_positions:
    return 'winograd'
  ratio = (TRANSPOSED_POSITIONS_PER_CHANNEL if transposed
           else POSITIONS_PER_CHANNEL)
  return 'matmul' if positions <= ratio * max(cin, cout) else 'xla'


def winograd_tile(ho, wo, r, largest=3):
  """The output tile m (2 to `largest`) of F(m, r) for an ho x wo output.

  Products per image: ceil(ho / m) ceil(wo / m) (m + r - 1)^2. Each larger
  m only where that is at least 10 % below the smaller one's (its
  transforms cost more and it rounds a little more; python -m
  tools.bench_layers).
  """
  def products(m):
    return -(-ho // m) * -(-wo // m) * (m + r - 1) ** 2
  m = 2
  for bigger in range(3, largest + 1):
    if products(bigger) < 0.9 * products(m):
      m = bigger
  return m


def transposed_winograd_tile(x_shape, cin, cout):
  """The tile m of a transposed convolution's F(m, 2) over its (N, H, W)
  input: up to 4 on large layers (input positions x Cin x Cout at least
  TRANSPOSED_F4_MIN_PRODUCT, positions at least
  TRANSPOSED_F4_POSITIONS_PER_CHANNEL x Cin), else up to 3.

  F(4, 2) (25 products per 16 outputs against F(3, 2)'s 16 per 9) pays
  where the products dominate (batch 8 forward at 512^2: 32x32x1024 -> 256
  85 ms against F(3, 2)'s 92). Its kernel transform (25 Cin x 4 Cout
  matrices) costs more where the map is small next to the channels
  (16x16x1024 -> 512: 70 ms against F(2, 2)'s 59), its transforms more on
  small layers (the demo's 32x32x128 -> 32 at batch 8: 2.6 against 2.1 ms).
  """
  n, h, w = x_shape[:3]
  positions = n * h * w
  large = (positions * cin * cout >= TRANSPOSED_F4_MIN_PRODUCT
           and positions >= TRANSPOSED_F4_POSITIONS_PER_CHANNEL * cin)
  return winograd_tile(h, w, 2, 4 if large else 3)
