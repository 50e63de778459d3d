"""The PyTorch reference's inference speed, measured as tools/infer_bench.py
measures JAX's: run with the torch venv's python from the repository root.

  .venv-torch/bin/python tools/torch_infer.py --torch-ref ../shared/bench/torch_ref.py \\
      --model rhp --ngf 64 --num-downs 8 --tile 512 --overlap 64 \\
      --height 800 --width 900 --batch 8 [--patches 2] [--threads 2]

The generator that `torch_ref.build` makes (junyanz init, seeded), in eval
mode (BatchNorm running statistics, dropout off) under
`torch.inference_mode()`, NHWC tiles in and out as magjax's GeneratorFn
takes them; the protocol (tiles of `--patches` patches sharing batches,
warm-up, median of repeats, peak resident memory) is
tools/infer_timing.py's. `--tune-malloc` sets glibc's malloc as magjax's
entry points do (magjax/host_memory.py): the reference as shipped leaves
it alone, and its forward passes page-fault their fresh activations in.
Last output line: JSON.
"""

import argparse
import importlib.util
import json
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # magjax.evaluation.tiling: NumPy only
from magjax import host_memory  # pylint: disable=g-import-not-at-top,wrong-import-position  # ctypes only
from tools import infer_timing  # pylint: disable=g-import-not-at-top,wrong-import-position


def load_torch_ref(path):
  spec = importlib.util.spec_from_file_location('torch_ref', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--torch-ref', required=True)
  p.add_argument('--model', default='rhp')
  p.add_argument('--ngf', type=int, default=64)
  p.add_argument('--num-downs', type=int, default=8)
  p.add_argument('--attn-level', type=int, default=None)
  p.add_argument('--tile', type=int, required=True)
  p.add_argument('--overlap', type=int, required=True)
  p.add_argument('--height', type=int, required=True)
  p.add_argument('--width', type=int, required=True)
  p.add_argument('--batch', type=int, default=8)
  p.add_argument('--patches', type=int, default=2)
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--threads', type=int, default=2)
  p.add_argument('--tune-malloc', action='store_true',
                 help="glibc's malloc set as magjax's entry points set it "
                 '(magjax/host_memory.py), for a comparison on equal terms')
  args = p.parse_args(argv)
  malloc_tuned = args.tune_malloc and host_memory.tune_malloc()
  if args.tune_malloc and not malloc_tuned:
    p.error('--tune-malloc: this C library has no glibc mallopt')
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  ref = load_torch_ref(args.torch_ref)
  generator, _ = ref.build(args.model, ngf=args.ngf, num_downs=args.num_downs,
                           attn_level=args.attn_level)
  generator.eval()

  def fn(tiles):
    with torch.inference_mode():
      x = torch.from_numpy(np.ascontiguousarray(tiles.transpose(0, 3, 1, 2)))
      return generator(x).numpy().transpose(0, 2, 3, 1)

  rng = np.random.default_rng(0)
  shape = (args.height, args.width)
  images = [rng.uniform(-1, 1, shape + (1,)).astype(np.float32)
            for _ in range(args.patches)]
  seconds, tiles = infer_timing.measure(fn, args.batch, images, args.tile,
                                        args.overlap, args.warmup,
                                        args.repeats)
  print(json.dumps(infer_timing.result(
      'pytorch', seconds, tiles, args.patches, args.batch, args.tile,
      args.overlap, shape, model=args.model, torch=torch.__version__,
      threads=args.threads, malloc_tuned=bool(malloc_tuned))))
  return 0


if __name__ == '__main__':
  sys.exit(main())
