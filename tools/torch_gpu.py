"""shared/bench/torch_ref.py on a GPU (or the CPU), float32 or bf16 autocast.

  .venv-gpu-torch/bin/python tools/torch_gpu.py --torch-ref PATH \
      [--device cuda] [--bf16] -- <torch_ref.py timing arguments>

torch_ref.py builds its networks and data on the default device and times
steps without synchronising, which on a GPU times only the launches. This
wrapper runs torch_ref's own `main` unchanged with three things around it:
the default device set to --device (its seeded data made on the CPU, then
moved, so the values are those of a CPU run), `torch.cuda.synchronize()`
after each train step, and with --bf16 each step under
`torch.autocast(dtype=torch.bfloat16)` (bf16 compute, float32 weights and
Adam: JAX's half_precision). cuDNN's autotuner is on
(`torch.backends.cudnn.benchmark`), the usual GPU setting; the warm-up
steps absorb it. Prints torch_ref's JSON line with `device`, `dtype` and
`peak_device_mb` (torch.cuda.max_memory_allocated) added. Runs in the
torch environment: stdlib and torch only.
"""

import argparse
import contextlib
import importlib.util
import io
import json
import sys

import torch


def load(path):
  spec = importlib.util.spec_from_file_location('torch_ref', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def wrap(ref, device, bf16):
  """Patches torch_ref's data and train step for `device` and the dtype."""
  pair, step = ref.random_pair, ref.train_step
  cuda = device.type == 'cuda'

  def random_pair(*args, **kwargs):
    with torch.device('cpu'):
      a, b = pair(*args, **kwargs)
    return a.to(device), b.to(device)

  def train_step(*args):
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
      out = step(*args)
    if cuda:
      torch.cuda.synchronize(device)
    return out

  ref.random_pair, ref.train_step = random_pair, train_step


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--torch-ref', required=True, help='path of torch_ref.py')
  p.add_argument('--device', default='cuda')
  p.add_argument('--bf16', action='store_true')
  p.add_argument('ref_args', nargs=argparse.REMAINDER)
  args = p.parse_args(argv)
  ref_args = [a for a in args.ref_args if a != '--']
  device = torch.device(args.device)
  if device.type == 'cuda':
    if not torch.cuda.is_available():
      print(f'error: torch {torch.__version__} sees no CUDA device',
            file=sys.stderr)
      return 2
    torch.backends.cudnn.benchmark = True
    torch.cuda.reset_peak_memory_stats(device)
  ref = load(args.torch_ref)
  wrap(ref, device, args.bf16)
  torch.set_default_device(device)
  out = io.StringIO()
  sys.argv = ['torch_ref.py'] + ref_args
  with contextlib.redirect_stdout(out):
    ref.main()
  result = json.loads(out.getvalue().strip().splitlines()[-1])
  result.update(
      device=(torch.cuda.get_device_name(device) if device.type == 'cuda'
              else 'cpu'),
      dtype='bfloat16' if args.bf16 else 'float32',
      peak_device_mb=(round(torch.cuda.max_memory_allocated(device) / 2 ** 20,
                            1) if device.type == 'cuda' else None))
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
