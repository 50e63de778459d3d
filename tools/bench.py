"""Train-step benchmark, printing the fields of shared/bench/torch_ref.py.

  python -m tools.bench --config=configs/rhp.py --size 256 --batch 1

Times full train steps (G forward, D update, G update, both Adam steps: one
jitted, donated `steps.train_step`) after compilation and warm-up on seeded
uniform data, like torch_ref, and prints one JSON line with
ms_per_step_median, ms_per_step_min, img_per_s, params_G, params_D, plus
the step's FLOPs from XLA's cost analysis, the float32 matmul peak of this
machine measured in the same run, and the fraction of it the step reaches.
Two FLOP counts: `gflop_per_step`, what the compiled step executes (Winograd
convolutions execute fewer), and `direct_gflop_per_step`, the same step
with every convolution computed directly (the model's FLOPs, as PyTorch
executes them); `fraction_of_peak` and `direct_fraction_of_peak` are each
per second over the measured peak; `peak_device_mb` is the device
allocator's peak (GPU/TPU; null on CPU). `--profile DIR` adds a jax.profiler
trace and a per-op table.
"""

import argparse
import functools
import json
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from magjax import compile_cache
from magjax import config_utils
from magjax import host_memory
from magjax import kernels
from magjax import xla_env
from magjax.training import steps
from magjax.training import train_state as train_state_lib
from tools import profiling


def count_params(tree):
  return int(sum(np.prod(x.shape) for x in jax.tree.leaves(tree)))


def matmul_peak_flops(n=2048, repeats=5):
  """Measured float32 matmul FLOP/s of the default device (best of repeats)."""
  x = jnp.ones((n, n), jnp.float32)
  f = jax.jit(lambda a: a @ a)
  f(x).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    f(x).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def peak_device_megabytes():
  """Peak MiB in use on the default device (its allocator's count; None
  where the backend keeps none, as on CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  peak = stats.get('peak_bytes_in_use')
  return round(peak / 2 ** 20, 1) if peak is not None else None


def _flops(cost):
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get('flops', float('nan'))) if cost else float('nan')


def direct_conv_flops(config, state, data):
  """FLOPs of the train step with direct convolutions (XLA's; the
  transposed ones as their four 2x2 phases), from the lowered, not compiled,
  step: the model's arithmetic whatever method 'auto' picks."""
  direct = config.copy_and_resolve_references()
  direct.model.conv, direct.model.conv_transpose = 'xla', 'xla'
  step = jax.jit(lambda s, b: steps.train_step(s, b, direct))
  return _flops(step.lower(state, data).cost_analysis())


def time_train_step(config, size, batch, warmup, repeats, profile_dir=None):
  """(per-step seconds, (executed, direct-conv) FLOPs per step, params_G,
  params_D).

  profile_dir: also trace two more steps there and print the per-op table
  (tools/profiling.py).
  """
  state = jax.jit(functools.partial(  # jitted: eager init is op by op
      train_state_lib.create_train_state, config, image_shape=(size, size)))(
          jax.random.key(config.seed))
  rng = np.random.default_rng(1)
  data = {k: jnp.asarray(rng.uniform(-1, 1, (batch, size, size, 1)),
                         jnp.float32) for k in ('aia', 'hmi')}
  step = jax.jit(lambda s, b: steps.train_step(s, b, config),
                 donate_argnums=0)
  direct = direct_conv_flops(config, state, data)
  compiled = step.lower(state, data).compile()
  flops = (_flops(compiled.cost_analysis()), direct)
  params = (count_params(state.g_params), count_params(state.d_params))
  times = []
  for i in range(warmup + repeats):
    start = time.perf_counter()
    state, metrics = compiled(state, data)
    jax.block_until_ready((state, metrics))
    if i >= warmup:
      times.append(time.perf_counter() - start)
  if profile_dir:
    holder = [state]

    def run():
      holder[0], out = compiled(holder[0], data)
      jax.block_until_ready((holder[0], out))

    print(profiling.profile(compiled, run, profile_dir))
  return times, flops, params


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--config', default='configs/rhp.py',
                 help='config file, optionally with a config string')
  p.add_argument('--size', type=int, default=256)
  p.add_argument('--batch', type=int, default=1)
  p.add_argument('--steps', type=int, default=5, help='timed train steps')
  p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
  p.add_argument('--half-precision', action=argparse.BooleanOptionalAction,
                 default=None, help='bf16 compute with float32 master '
                 'weights (default: as the config says)')
  p.add_argument('--conv', default=None, choices=kernels.CHOICES,
                 help='model.conv and model.conv_transpose (default: the '
                 'config\'s; \'xla\' is what \'auto\' picks on GPU/TPU)')
  p.add_argument('--profile', metavar='DIR', default=None,
                 help='trace two more steps into DIR and print where the '
                 'time goes, per XLA op')
  args = p.parse_args(argv)
  malloc_tuned = host_memory.tune_malloc()
  xla_env.apply_defaults()  # as train.py does
  config = config_utils.load_config_file(args.config)
  # As train.py: compiles not timed here are reused by later runs.
  compile_cache.configure(config.get('compilation_cache_dir', 'auto'))
  config.batch_size = args.batch
  if args.half_precision is not None:
    config.half_precision = args.half_precision
  if args.conv is not None:
    config.model.conv = config.model.conv_transpose = args.conv
  if config.num_train_steps <= 0:
    config.num_train_steps = 1000  # only shapes the lr schedule
  times, (flops, direct_flops), (params_g, params_d) = time_train_step(
      config, args.size, args.batch, args.warmup, args.steps,
      args.profile)
  median = statistics.median(times)
  peak = matmul_peak_flops()
  model = config.model
  print(json.dumps({
      'framework': 'jax', 'jax': jax.__version__,
      'device': jax.devices()[0].device_kind, 'model': model.name,
      'size': args.size, 'batch': args.batch, 'num_downs': model.num_downs,
      'attn_level': None if model.name == 'pix2pix' else (
          model.attn_level if model.attn_level > 0 else model.num_downs),
      'conv_transpose': model.conv_transpose,
      'conv': model.conv,
      'half_precision': bool(config.half_precision),
      'malloc_tuned': malloc_tuned,
      'ms_per_step_median': round(1e3 * median, 2),
      'ms_per_step_min': round(1e3 * min(times), 2),
      'img_per_s': round(args.batch / median, 4),
      'params_G': params_g, 'params_D': params_d,
      'gflop_per_step': round(flops / 1e9, 2),
      'direct_gflop_per_step': round(direct_flops / 1e9, 2),
      'matmul_peak_gflops': round(peak / 1e9, 1),
      'fraction_of_peak': round(flops / median / peak, 3),
      'direct_fraction_of_peak': round(direct_flops / median / peak, 3),
      'peak_device_mb': peak_device_megabytes(),
  }))


if __name__ == '__main__':
  main()
