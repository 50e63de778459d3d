"""The CPU convolution kernels (magjax.kernels): every method equals jax.lax,
forward and gradient, through the one entry per operation, and the
per-layer policy picks what was measured."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax import kernels
from magjax.kernels import direct
from magjax.kernels import policy
from magjax.models import build_discriminator, build_generator, layers
import model_helpers

_DIMS = ('NHWC', 'HWIO', 'NHWC')


def _lax_conv(x, kernel, stride, pad):
  return jax.lax.conv_general_dilated(x, kernel, (stride, stride),
                                      ((pad, pad), (pad, pad)),
                                      dimension_numbers=_DIMS)


def _value_and_grads(fn, x, kernel, r):
  return jax.jit(jax.value_and_grad(
      lambda a, k: jnp.sum(fn(a, k) * r), argnums=(0, 1)))(x, kernel)


def _random(shape, seed):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape),
                     jnp.float32)


@pytest.mark.parametrize('n,h,w,cin,cout,k,stride,pad', [
    (2, 8, 8, 3, 5, 4, 2, 1),    # the U-Net / PatchGAN down conv
    (1, 9, 7, 4, 6, 4, 1, 1),    # the PatchGAN's stride-1 convs, odd sizes
    (1, 2, 2, 16, 8, 4, 2, 1),   # the innermost level: 2x2 -> 1x1
    (1, 9, 9, 3, 4, 4, 2, 1),    # stride 2 on an odd size (XLA's dx)
    (2, 6, 6, 5, 3, 3, 1, 0),    # another kernel size, no padding
])
def test_every_method_equals_lax_forward_and_gradient(
    n, h, w, cin, cout, k, stride, pad):
  x = _random((n, h, w, cin), 0)
  kernel = _random((k, k, cin, cout), 1)
  want = _lax_conv(x, kernel, stride, pad)
  r = _random(want.shape, 2)
  want_grads = _value_and_grads(
      lambda a, kk: _lax_conv(a, kk, stride, pad), x, kernel, r)
  fns = {'gather': lambda a, kk: direct.conv_gather(a, kk, stride, pad)}
  for method in kernels.METHODS:
    if method != 'winograd' or stride == 1 or k % 2 == 0:
      fns[method] = (lambda m: lambda a, kk: kernels.conv(a, kk, stride, pad,
                                                          m))(method)
  if stride == 1:
    fns['scatter'] = lambda a, kk: direct.conv_scatter(a, kk, pad)
  for name, fn in fns.items():
    # Winograd's transforms round more than a direct sum: its error is
    # bounded relative to the output's scale (tests/test_winograd.py)
    scale = 10.0 if name == 'winograd' else 1.0
    np.testing.assert_allclose(fn(x, kernel), want, rtol=1e-5,
                               atol=1e-5 * scale, err_msg=name)
    got = _value_and_grads(fn, x, kernel, r)
    for g, wnt in zip(jax.tree.leaves(got), jax.tree.leaves(want_grads)):
      np.testing.assert_allclose(g, wnt, rtol=1e-4, atol=1e-4 * scale,
                                 err_msg=name)


def test_every_transposed_method_equals_the_stock_op_with_gradients():
  x = _random((2, 3, 5, 6), 3)
  kernel = _random((6, 4, 4, 4), 4)  # (in, 4, 4, out)
  r = _random((2, 6, 10, 4), 5)
  want = _value_and_grads(direct.conv_transpose_lax, x, kernel, r)
  fns = {'scatter': direct.conv_transpose_scatter,
         'subpixel': direct.conv_transpose_subpixel}
  for method in kernels.METHODS:
    fns[method] = (lambda m: lambda a, k: kernels.conv_transpose(a, k, m))(
        method)
  for name, fn in fns.items():
    got = _value_and_grads(fn, x, kernel, r)
    for g, wnt in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
      np.testing.assert_allclose(g, wnt, rtol=1e-4, atol=1e-4, err_msg=name)
  with pytest.raises(ValueError, match=r'\(in, 4, 4, out\)'):
    direct.conv_transpose_scatter(x, _random((4, 4, 6, 4), 6))
  with pytest.raises(ValueError, match='method'):
    kernels.conv_transpose(x, kernel, 'subpixel')  # one vocabulary


def test_a_wrong_kernel_in_the_right_layout_changes_the_output():
  """The equality tests above can fail: a transposed kernel does not pass."""
  x = _random((1, 4, 4, 3), 7)
  kernel = _random((4, 4, 3, 3), 8)
  want = _lax_conv(x, kernel, 2, 1)
  wrong = direct.conv_gather(x, jnp.swapaxes(kernel, 0, 1), 2, 1)
  assert np.max(np.abs(np.asarray(wrong) - np.asarray(want))) > 1e-2


@pytest.mark.parametrize('positions,cin,cout,want', [
    (1, 512, 512, 'matmul'),       # innermost U-Net level
    (64 * 64, 64, 128, 'winograd'),  # an outer level: large map
    (16 * 16, 512, 512, 'winograd'),  # 16 x 16 map, 512 channels
    (8 * 8, 512, 512, 'matmul'),   # 8 x 8 map: the transforms cost more
    (15 * 15, 32, 32, 'xla'),      # a small map with few channels
    (63 * 63, 512, 1, 'matmul'),   # the PatchGAN's 1-channel output
    (256 * 256, 1, 64, 'matmul'),  # the image's single channel
])
def test_auto_policy_on_cpu(positions, cin, cout, want):
  assert policy.choose(positions, cin, cout, backend='cpu') == want


def test_auto_policy_for_transposed_convolutions_on_cpu():
  # 512^2 pix2pix: up_conv_4 (32x32x1024 -> 256) and larger by Winograd,
  # up_conv_5 (16x16x1024 -> 512) and smaller as one dot
  def choose(positions, cin, cout):
    return policy.choose(positions, cin, cout, transposed=True,
                         backend='cpu')
  assert choose(32 * 32, 1024, 256) == 'winograd'
  assert choose(128 * 128, 256, 64) == 'winograd'
  assert choose(16 * 16, 1024, 512) == 'matmul'
  assert choose(20 * 20, 32, 16) == 'xla'


def test_auto_policy_keeps_winograd_to_float32():
  """bfloat16 transforms would round 2-3 bits more: the dot or XLA's conv."""
  for transposed in (False, True):
    assert policy.choose(128 * 128, 256, 64, transposed=transposed,
                         dtype=jnp.bfloat16, backend='cpu') == 'xla'
    assert policy.choose(16 * 16, 512, 512, transposed=transposed,
                         dtype=jnp.bfloat16, backend='cpu') == 'matmul'


@pytest.mark.parametrize('ho,r,want', [
    (128, 2, 3), (64, 2, 3), (32, 2, 3),  # large maps: fewer products at 3
    (16, 2, 2), (8, 2, 2), (1, 2, 2),     # 3 does not divide: padding waste
    (63, 4, 3), (15, 4, 3), (2, 4, 2),
])
def test_winograd_tile(ho, r, want):
  assert policy.winograd_tile(ho, ho, r) == want


@pytest.mark.parametrize('x_shape,cout,want', [
    # the paper's U-Net at batch 8: products dominate
    ((8, 128, 128, 256), 64, 4), ((8, 64, 64, 512), 128, 4),
    ((8, 32, 32, 1024), 256, 4),
    # 25 kernel matrices of 1024 x 2048 cost more than the products saved
    ((8, 16, 16, 1024), 512, 2),
    # small layers (batch 1, the demo's): the larger transforms cost more
    ((1, 128, 128, 256), 64, 3), ((8, 32, 32, 128), 32, 3),
    ((8, 16, 16, 256), 64, 2),
])
def test_transposed_winograd_tile_takes_f4_only_on_large_layers(
    x_shape, cout, want):
  assert policy.transposed_winograd_tile(x_shape, x_shape[-1], cout) == want


def test_policy_object_resolves_auto_per_layer_and_keeps_explicit_methods():
  for backend in ('gpu', 'tpu'):
    assert policy.choose(1, 512, 1, backend=backend) == 'xla'
  auto = kernels.Policy()
  # On this CPU: the innermost U-Net conv (2x2 -> 1x1, 512 channels) is a dot
  assert auto.conv_method((1, 2, 2, 512), 4, 2, 1, 512,
                          backend='cpu') == 'matmul'
  assert auto.conv_transpose_method((1, 64, 64, 128), 64,
                                    backend='cpu') == 'winograd'
  assert auto.conv_method((1, 2, 2, 512), 4, 2, 1, 512,
                          backend='gpu') == 'xla'
  fixed = kernels.Policy(conv='xla', conv_transpose='matmul')
  assert fixed.conv_method((1, 2, 2, 512), 4, 2, 1, 512) == 'xla'
  assert fixed.conv_transpose_method((1, 64, 64, 128), 64) == 'matmul'
  with pytest.raises(ValueError, match='model.conv must be one of'):
    kernels.Policy(conv='fast')
  with pytest.raises(ValueError, match='model.conv_transpose must be one of'):
    kernels.Policy(conv_transpose='subpixel')  # one vocabulary for both
  with pytest.raises(ValueError, match='method must be one of'):
    kernels.conv(jnp.zeros((1, 4, 4, 1)), jnp.zeros((4, 4, 1, 1)), 2, 1,
                 'auto')  # the policy resolves 'auto', not the kernels


def test_conv_module_has_flax_parameters_for_every_method():
  x = _random((2, 8, 8, 3), 9)
  ref = layers.Conv(4, strides=2, policy=kernels.Policy(conv='xla'))
  variables = ref.init(jax.random.key(0), x)
  assert variables['params']['kernel'].shape == (4, 4, 3, 4)
  variables = jax.tree.map(lambda v: v + 0.1, variables)  # non-zero bias
  want = ref.apply(variables, x)
  for method in ('matmul', 'winograd', 'auto'):
    got = layers.Conv(4, strides=2, policy=kernels.Policy(conv=method)).apply(
        variables, x)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['pix2pix', 'rhp'])
def test_networks_equal_for_every_method(name):
  """Generator and discriminator: same variables, same outputs, whichever
  way the convolutions are computed."""
  size = 32
  outs = {}
  # (Winograd everywhere: tests/test_fidelity.py, against PyTorch)
  for conv, conv_t in (('xla', 'xla'), ('matmul', 'matmul'),
                       ('auto', 'auto'), ('xla', 'matmul')):
    cfg = model_helpers.tiny(name, conv=conv, conv_transpose=conv_t)
    g_vars = model_helpers.random_variables(
        model_helpers.abstract_generator(cfg, size), seed=0, std=0.05)
    d_vars = model_helpers.random_variables(
        model_helpers.abstract_discriminator(cfg, size), seed=1, std=0.05)
    a = _random((2, size, size, 1), 10)
    gen, disc = build_generator(cfg), build_discriminator(cfg)
    fake = gen.apply(g_vars, a, train=False)
    outs[conv, conv_t] = (fake, disc.apply(d_vars, a, fake, train=False))
  want = outs['xla', 'xla']
  assert min(float(jnp.max(jnp.abs(w))) for w in want) > 1e-2  # not vacuous
  for key, got in outs.items():
    for g, wnt in zip(got, want):
      # float32 sums in another order, through 10 layers
      scale = float(jnp.max(jnp.abs(wnt)))
      np.testing.assert_allclose(g, wnt, rtol=1e-4, atol=1e-4 * scale,
                                 err_msg=str(key))


@pytest.mark.parametrize('method', kernels.METHODS)
def test_conv_transpose_of_channel_parts_equals_it_of_their_concatenation(
    method):
  """The U-Net hands its skip connection over as two parts; inference reads
  them in place where it can (replaying_transforms), training joins them."""
  a, b = _random((2, 6, 6, 3), 1), _random((2, 6, 6, 5), 2)
  kernel = _random((8, 4, 4, 4), 3)
  want = kernels.conv_transpose(jnp.concatenate([a, b], -1), kernel, method)
  np.testing.assert_allclose(kernels.conv_transpose((a, b), kernel, method),
                             want, rtol=1e-5, atol=1e-5)
  if method != 'winograd':  # no recorded transform to replay here
    with kernels.replaying_transforms([]):
      got = kernels.conv_transpose((a, b), kernel, method)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_fixed_weights_take_winograd_from_smaller_maps():
  """Inference computes the kernel transforms once (replaying_transforms):
  Winograd then pays from 128 positions, where training's per-call
  transform makes the dot the faster."""
  for transposed in (False, True):
    assert policy.choose(128, 512, 512, transposed=transposed,
                         backend='cpu') == 'matmul'
    assert policy.choose(128, 512, 512, transposed=transposed,
                         backend='cpu', fixed_weights=True) == 'winograd'
    assert policy.choose(32, 512, 512, transposed=transposed,
                         backend='cpu', fixed_weights=True) == 'matmul'
  # the image's one channel in: XLA's forward (its kernel gradient is slow)
  assert policy.choose(8 * 256 * 256, 1, 64, backend='cpu') == 'matmul'
  assert policy.choose(8 * 256 * 256, 1, 64, backend='cpu',
                       fixed_weights=True) == 'xla'
  assert policy.choose(8 * 256 * 256, 128, 1, transposed=True,
                       backend='cpu', fixed_weights=True) == 'matmul'
  auto = kernels.Policy()
  shape = (8, 8, 8, 512)  # -> 8 x 4 x 4 outputs
  assert auto.conv_method(shape, 4, 2, 1, 512, backend='cpu') == 'matmul'
  with kernels.replaying_transforms([]):
    assert auto.conv_method(shape, 4, 2, 1, 512, backend='cpu') == 'winograd'
