"""Inference speed of the generator: whole patches and tiles per second.

  python -m tools.infer_bench --config=configs/rhp.py[:cpu] --batch 8 \\
      [--patches 2] [--repeats 3] [--warmup 1]

The generator of the config (random weights: speed does not depend on
them) in eval mode, jitted for a fixed batch of tiles (config.crop_size,
overlap config.eval_tile_overlap, as predict and eval.py 'tiled'), on
`--patches` whole patches of the model's grid (800 x 900 / patch_binning)
whose tiles share batches as batch predict's do. After the warm-up, the
median of `--repeats` timed passes. The last output line is JSON:
patches_per_s, tiles_per_s, ms_per_patch, tiles_per_patch, peak_rss_mb
(this process's peak resident memory). `tools/torch_infer.py` measures the
PyTorch reference the same way.
"""

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np

from data_prep.grid import PATCH_SHAPE
from magjax import config_utils
from magjax import host_memory
from magjax.evaluation import inference
from magjax.models import build_generator
from tools import infer_timing


def patch_shape(patch_binning):
  return tuple(n // int(patch_binning) for n in PATCH_SHAPE)


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m tools.infer_bench',
                              description=__doc__.splitlines()[0])
  p.add_argument('--config', required=True, help='configs/rhp.py[:cpu]')
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--patches', type=int, default=2)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--warmup', type=int, default=1)
  args = p.parse_args(argv)
  host_memory.tune_malloc()  # as predict and eval.py run the generator
  config = config_utils.load_config_file(args.config)
  tile, overlap = int(config.crop_size), inference.tile_overlap(config)
  shape = patch_shape(config.patch_binning)
  gen = build_generator(config.model)
  x = jnp.zeros((1, tile, tile, int(config.model.input_nc)), jnp.float32)
  variables = jax.jit(lambda k: gen.init(k, x, train=False))(
      jax.random.key(0))
  fn = inference.GeneratorFn(config, variables, args.batch)
  rng = np.random.default_rng(0)
  images = [rng.uniform(-1, 1, shape + (1,)).astype(np.float32)
            for _ in range(args.patches)]
  seconds, tiles = infer_timing.measure(fn, args.batch, images, tile, overlap,
                                       args.warmup, args.repeats)
  print(json.dumps(infer_timing.result(
      'jax', seconds, tiles, args.patches, args.batch, tile, overlap, shape,
      config=args.config, model=str(config.model.name),
      jax=jax.__version__)))
  return 0


if __name__ == '__main__':
  sys.exit(main())
