"""Per-layer convolution timings: the evidence behind kernels/policy.py.

  python -m tools.bench_layers --config=configs/pix2pix.py --size 512
  python -m tools.bench_layers --config=configs/rhp.py --size 512 \
      --batch 8 --forward          (the generator's inference)

For every convolution of the generator and the discriminator (shapes from
the config at batch 1, or --batch), times forward + backward (gradients of
x and the kernel, one jitted function, median of --repeats after a warm-up)
with each of kernels.METHODS, prints a table with the method 'auto' picks
and the best one, then the totals. The kernels are in the modules'
layouts, so these are the operations the train step runs.
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from magjax import config_utils
from magjax import host_memory
from magjax import kernels
from magjax.models import level_channels


def conv_layers(model_cfg, size, batch):
  """[(name, kind, (N, H, W, Cin), Cout, stride)] of G and D, in order."""
  n, ngf, ndf = model_cfg.num_downs, model_cfg.ngf, model_cfg.ndf
  attn = model_cfg.name != 'pix2pix'
  attn_level = n if model_cfg.attn_level == -1 else model_cfg.attn_level
  out = []
  cin, s = model_cfg.input_nc, size
  for k in range(1, n + 1):
    out.append((f'G down_conv_{k}', 'conv', (batch, s, s, cin),
                level_channels(k, ngf), 2))
    cin, s = level_channels(k, ngf), s // 2
    if attn and k == attn_level:
      cin *= 2  # the fused map [fused, x]
  for k in range(n, 0, -1):
    c_k = level_channels(k, ngf) * (2 if attn and k == attn_level else 1)
    cin = c_k if k == n else c_k + level_channels(k, ngf)
    cout = model_cfg.output_nc if k == 1 else level_channels(k - 1, ngf)
    out.append((f'G up_conv_{k}', 'conv_transpose',
                (batch, size >> k, size >> k, cin), cout, 2))
  cin, s = model_cfg.input_nc + model_cfg.output_nc, size
  widths = [ndf * min(2 ** i, 8) for i in range(model_cfg.n_layers_d + 1)]
  for i, cout in enumerate(widths + [1]):
    stride = 2 if i < model_cfg.n_layers_d else 1
    out.append((f'D conv_{i}', 'conv', (batch, s, s, cin), cout, stride))
    cin, s = cout, (s + 2 - 4) // stride + 1
  return out


def _apply_fn(kind, method, stride):
  if kind == 'conv_transpose':
    return lambda x, k: kernels.conv_transpose(x, k, method)
  return lambda x, k: kernels.conv(x, k, stride, 1, method)


def time_layer(kind, method, x_shape, cout, stride, repeats, forward=False):
  """Median seconds of one jitted forward + backward (`forward`: forward
  only, as inference runs it)."""
  rng = np.random.default_rng(0)
  cin = x_shape[-1]
  k_shape = ((cin, 4, 4, cout) if kind == 'conv_transpose'
             else (4, 4, cin, cout))
  x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
  kernel = jnp.asarray(0.02 * rng.standard_normal(k_shape), jnp.float32)
  fn = _apply_fn(kind, method, stride)
  step = jax.jit(fn if forward else jax.grad(
      lambda a, k: jnp.sum(fn(a, k) ** 2), argnums=(0, 1)))
  jax.block_until_ready(step(x, kernel))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(step(x, kernel))
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/pix2pix.py')
  p.add_argument('--size', type=int, default=256)
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--repeats', type=int, default=5)
  p.add_argument('--forward', action='store_true',
                 help="the generator's layers forward only (inference)")
  args = p.parse_args(argv)
  host_memory.tune_malloc()
  model = config_utils.load_config_file(args.config).model
  what = 'forward' if args.forward else 'forward + backward'
  print(f'| layer | input | Cout | stride | auto picks | ms per method '
        f'({what}) | best |')
  print('|---|---|---|---|---|---|---|')
  totals = {}
  for name, kind, x_shape, cout, stride in conv_layers(
      model, args.size, args.batch):
    if args.forward and not name.startswith('G '):
      continue  # inference runs the generator alone
    _, h, w, cin = x_shape
    policy = kernels.Policy()
    if kind == 'conv_transpose':
      auto = policy.conv_transpose_method(x_shape, cout)
    else:
      auto = policy.conv_method(x_shape, 4, stride, 1, cout)
    methods = kernels.METHODS
    ms = {m: 1e3 * time_layer(kind, m, x_shape, cout, stride, args.repeats,
                              args.forward)
          for m in methods}
    best = min(ms, key=ms.get)
    for key, value in (('auto', ms[auto]), ('best', ms[best]),
                       ('xla everywhere', ms[methods[0]]),
                       ('matmul everywhere', ms['matmul']),
                       ('winograd everywhere', ms['winograd'])):
      totals[key] = totals.get(key, 0.0) + value
    cells = ', '.join(f'{m} {v:.1f}' for m, v in ms.items())
    print(f'| {name} | {h}x{w}x{cin} | {cout} | {stride} | {auto} | {cells} '
          f'| {best} |', flush=True)
  print('\ntotal ms (each layer once): ' + ', '.join(
      f'{k} {v:.0f}' for k, v in totals.items()))


if __name__ == '__main__':
  main()
