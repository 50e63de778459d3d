"""How the networks' convolutions are computed (never what they compute).

One entry per operation, one vocabulary of methods:

  conv(x, kernel, stride, pad, method)   kernel (k, k, in, out), HWIO,
                                         symmetric zero padding `pad`
  conv_transpose(x, kernel, method)      PyTorch ConvTranspose2d(k4, s2, p1),
                                         kernel (in, 4, 4, out)

METHODS:
- 'xla': XLA's convolutions (`direct.conv_xla`; the transposed one as four
  interleaved 2x2 convolutions, `direct.conv_transpose_subpixel`), with
  hand-written gradients where XLA's are slow; the only method off the CPU;
- 'matmul': one matrix product per pass (`direct.conv_gather` or
  `conv_scatter`; `direct.conv_transpose_scatter`);
- 'winograd': Winograd's minimal filtering F(m, r) (`winograd.py`), fewest
  multiplications, float32.

A network holds one `Policy` (config.model.conv and conv_transpose: 'auto'
or a method) and its layers ask it for their method (`Policy.conv_method`,
`Policy.conv_transpose_method`); 'auto' is resolved per layer from its shape
by `policy.choose`, the measured CPU rule. Nothing else resolves method
names. Every method takes the same kernel and gives the same result to
float rounding, forward and gradient (tests/test_kernels.py), so the method
never changes a parameter or a checkpoint.

Inference with fixed weights can compute the Winograd kernel transforms
once instead of in every call: trace the network once inside
`recording_transforms()` (a jitted function returning the recorded list;
XLA drops the rest of that forward pass), then trace the network that
runs inside `replaying_transforms(that list)` (evaluation/inference.py
does both).
"""

import contextlib
import dataclasses
import threading

import jax

import jax.numpy as jnp

from magjax.kernels import direct
from magjax.kernels import policy
from magjax.kernels import winograd

METHODS = ('xla', 'matmul', 'winograd')
CHOICES = ('auto',) + METHODS


def _out_size(size, k, stride, pad):
  return (size + 2 * pad - k) // stride + 1


def _conv_matmul(x, kernel, stride, pad):
  if stride == 1 and kernel.shape[3] < kernel.shape[2]:  # few outputs
    return direct.conv_scatter(x, kernel, pad)
  return direct.conv_gather(x, kernel, stride, pad)


class _Transforms(threading.local):
  """The trace-time state of recording_transforms / replaying_transforms."""
  mode = None  # None, 'record' or 'replay'
  items = None
  index = 0


_TRANSFORMS = _Transforms()


@contextlib.contextmanager
def _transform_mode(mode, items):
  if _TRANSFORMS.mode is not None:
    raise RuntimeError('recording_transforms and replaying_transforms do '
                       'not nest')
  _TRANSFORMS.mode, _TRANSFORMS.items, _TRANSFORMS.index = mode, items, 0
  try:
    yield items
    if mode == 'replay' and _TRANSFORMS.index != len(items):
      raise ValueError(f'replaying_transforms: {len(items)} transforms '
                       f'recorded, {_TRANSFORMS.index} Winograd layers '
                       'traced now')
  finally:
    _TRANSFORMS.mode, _TRANSFORMS.items = None, None


def recording_transforms():
  """Context (while tracing): every Winograd layer appends its transformed
  kernel (a list of matrices) to the yielded list, in call order."""
  return _transform_mode('record', [])


def replaying_transforms(transforms):
  """Context (while tracing): every Winograd layer takes its transformed
  kernel from `transforms` (recording_transforms' list, as arrays), in call
  order, instead of transforming its kernel. The result has no custom
  gradient: inference only."""
  return _transform_mode('replay', list(transforms))


def _transformed(transform, apply, plain):
  """plain() outside the contexts; else apply(u) with u = transform()
  recorded, or u replayed (its shapes checked against transform's)."""
  state = _TRANSFORMS
  if state.mode is None:
    return plain()
  if state.mode == 'record':
    u = transform()
    state.items.append(u)
    return apply(u)
  want = jax.eval_shape(transform)
  if state.index >= len(state.items):
    raise ValueError(f'replaying_transforms: {len(state.items)} transforms '
                     'recorded, more Winograd layers traced now')
  u = state.items[state.index]
  state.index += 1
  if [(a.shape, a.dtype) for a in u] != [(a.shape, a.dtype) for a in want]:
    raise ValueError('replaying_transforms: transform '
                     f'{state.index - 1} does not fit this layer (traced '
                     'with other shapes than recorded?)')
  return apply(u)


def _conv_winograd(x, kernel, stride, pad):
  k = kernel.shape[0]
  m = policy.winograd_tile(_out_size(x.shape[1], k, stride, pad),
                           _out_size(x.shape[2], k, stride, pad),
                           k // stride)
  return _transformed(
      lambda: winograd.conv_kernel(kernel, x.shape, stride, pad, m),
      lambda u: winograd.conv_transformed(x, u, k, stride, pad, m),
      lambda: winograd.conv(x, kernel, stride, pad, m))


def _conv_transpose_winograd(x, kernel):
  direct.spatial_first(kernel)  # checks the (in, 4, 4, out) layout
  m = policy.transposed_winograd_tile(x.shape, kernel.shape[0],
                                      kernel.shape[-1])
  return _transformed(
      lambda: winograd.conv_transpose_kernel(kernel, x.shape, m),
      lambda u: winograd.conv_transpose_transformed(x, u, kernel.shape, m),
      lambda: winograd.conv_transpose(x, kernel, m))


_CONV = {
    'xla': direct.conv_xla,
    'matmul': _conv_matmul,
    'winograd': _conv_winograd,
}
_CONV_TRANSPOSE = {
    'xla': lambda x, k: direct.conv_transpose_dot_grad(x, k, 'subpixel'),
    'matmul': lambda x, k: direct.conv_transpose_dot_grad(x, k, 'scatter'),
    'winograd': _conv_transpose_winograd,
}


def _check(method):
  if method not in METHODS:
    raise ValueError(f'convolution method must be one of {METHODS}, got '
                     f'{method!r}')


def conv(x, kernel, stride, pad, method):
  """conv2d(x (N, H, W, Cin), kernel (k, k, Cin, Cout), stride, padding=pad)."""
  _check(method)
  return _CONV[method](x, kernel, stride, pad)


def conv_transpose(x, kernel, method):
  """PyTorch conv_transpose2d(x, w, stride=2, padding=1), kernel (Cin, 4, 4,
  Cout) = w.transpose(0, 2, 3, 1): (N, H, W, Cin) -> (N, 2H, 2W, Cout).

  x may be a tuple of channel parts whose concatenation is the input (the
  U-Net's skip and upsampled maps). Inside replaying_transforms (inference)
  the 'matmul' method takes one dot per part and never writes the
  concatenation out: at the paper's batch-8 inference that is the
  outermost layer's 8 x 256^2 x 128 floats (268 MB), 11-15 ms of a
  ~650 ms call. Every other method joins the parts first: the methods'
  gradients take one array, and Winograd transforms of the parts, joined
  after, were slower than transforming the joined input (XLA wrote each
  part's transform out, then their concatenation).
  """
  _check(method)
  if isinstance(x, (tuple, list)):
    if _TRANSFORMS.mode == 'replay' and method == 'matmul':
      return direct.conv_transpose_scatter(tuple(x), kernel)
    x = jnp.concatenate(x, axis=-1)
  return _CONV_TRANSPOSE[method](x, kernel)


@dataclasses.dataclass(frozen=True)
class Policy:
  """The methods of one network: 'auto' (per layer) or one of METHODS.

  Frozen and hashable: a Flax module attribute.
  """
  conv: str = 'auto'
  conv_transpose: str = 'auto'

  def __post_init__(self):
    for name in ('conv', 'conv_transpose'):
      value = getattr(self, name)
      if value not in CHOICES:
        raise ValueError(f'model.{name} must be one of {CHOICES}, got '
                         f'{value!r}')

  def conv_method(self, x_shape, kernel_size, stride, pad, features,
                  dtype=jnp.float32, backend=None):
    """The method of a conv of `features` outputs on inputs of x_shape
    (backend: jax.default_backend() when None; inside recording_ or
    replaying_transforms the weights count as fixed, policy.choose)."""
    if self.conv != 'auto':
      return self.conv
    n, h, w, cin = x_shape
    positions = (n * _out_size(h, kernel_size, stride, pad)
                 * _out_size(w, kernel_size, stride, pad))
    return policy.choose(positions, cin, features, dtype=dtype,
                         backend=backend,
                         fixed_weights=_TRANSFORMS.mode is not None)

  def conv_transpose_method(self, x_shape, features, dtype=jnp.float32,
                            backend=None):
    """The method of a k4 s2 transposed conv on inputs of x_shape."""
    if self.conv_transpose != 'auto':
      return self.conv_transpose
    n, h, w, cin = x_shape
    return policy.choose(n * h * w, cin, features, transposed=True,
                         dtype=dtype, backend=backend,
                         fixed_weights=_TRANSFORMS.mode is not None)
