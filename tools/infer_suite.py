"""The inference part of `make bench` (tools/bench_suite.py runs it).

1. Generator inference, whole patches by overlap-blended tiles (eval
   mode, random weights): the paper-size RHP (512^2 tiles, 800 x 900
   patches) and the demo's :cpu RHP (128^2 tiles, 200 x 225 patches), at
   batch 1 and 8, JAX (`tools.infer_bench`) beside the PyTorch reference's
   eval-mode forward of the same network (`tools/torch_infer.py` with
   ../shared/bench/torch_ref.py), alternating, each a fresh process;
   peak resident memory per process. PyTorch runs twice: as shipped, and
   with glibc's malloc set as magjax's entry points set it
   (`--tune-malloc`, magjax/host_memory.py), so that the ratio that
   counts compares the frameworks on equal terms.
2. `tools.predict_bench`: batch predict's files/minute on synthetic
   full-disk files with its time split, and one-file predict cold / warm.
"""

import math
import statistics

from data_prep.grid import PATCH_SHAPE
from magjax import config_utils
from magjax.evaluation import inference
from magjax.evaluation import tiling

CONFIGS = (('paper RHP', 'configs/rhp.py'), ('demo RHP', 'configs/rhp.py:cpu'))
BATCHES = (1, 8)
PATCHES = 2  # at least this many whole patches per timed pass
# 'pytorch-malloc': the reference with magjax's malloc settings.
FRAMEWORKS = ('pytorch', 'pytorch-malloc', 'jax')


def order(passes, configs=CONFIGS, batches=BATCHES):
  """[(pass, label, config path, batch, framework)], reversed on odd
  passes so that a drift of the machine hits both frameworks."""
  forward = [(label, path, batch, framework) for label, path in configs
             for batch in batches for framework in FRAMEWORKS]
  out = []
  for k in range(passes):
    sequence = forward if k % 2 == 0 else forward[::-1]
    out.extend((k, *row) for row in sequence)
  return out


def tiles_per_patch(config):
  """Tiles of one whole patch (800 x 900 / patch_binning) of the config."""
  height, width = (n // int(config.patch_binning) for n in PATCH_SHAPE)
  tile, overlap = int(config.crop_size), inference.tile_overlap(config)
  return (len(tiling.tile_positions(height, tile, overlap))
          * len(tiling.tile_positions(width, tile, overlap)))


def patches_per_pass(config, batch):
  """The fewest whole patches, at least PATCHES, whose tiles fill whole
  batches. Both frameworks then compute the same tiles: JAX's generator
  is compiled for a fixed batch and pads a last, partial one (as a long
  batch predict run does once, at its very end), PyTorch's runs it short;
  with 2 demo patches (18 tiles) at batch 8 JAX computed 24 tiles and
  PyTorch 18."""
  per_patch = tiles_per_patch(config)
  whole = batch // math.gcd(per_patch, batch)
  return whole * -(-PATCHES // whole)


def command(args, python, framework, config_path, batch, repeats=3):
  """The benchmark command of one framework for one config and batch."""
  config = config_utils.load_config_file(config_path)
  common = ['--batch', str(batch), '--patches',
            str(patches_per_pass(config, batch)), '--repeats', str(repeats),
            '--warmup', '1']
  if framework == 'jax':
    return [python, '-m', 'tools.infer_bench', f'--config={config_path}',
            *common]
  model = config.model
  height, width = (n // int(config.patch_binning) for n in PATCH_SHAPE)
  cmd = [args.torch_python, 'tools/torch_infer.py', '--torch-ref',
         args.torch_ref, '--model', str(model.name), '--ngf',
         str(model.ngf), '--num-downs', str(model.num_downs), '--tile',
         str(config.crop_size), '--overlap',
         str(inference.tile_overlap(config)), '--height', str(height),
         '--width', str(width), '--threads', str(args.threads), *common]
  if int(model.attn_level) >= 0:
    cmd += ['--attn-level', str(model.attn_level)]
  if framework == 'pytorch-malloc':
    cmd.append('--tune-malloc')
  return cmd


def _median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def summarize(runs):
  """One row per (config, batch): medians over passes, JAX / PyTorch."""
  rows = []
  keys = []
  for run in runs:
    key = (run['label'], run['config'], run['batch'])
    if key not in keys:
      keys.append(key)
  for label, path, batch in keys:
    cell = {}
    for framework in FRAMEWORKS:
      results = [r['result'] for r in runs if r['result'] and
                 (r['label'], r['batch'], r['framework']) ==
                 (label, batch, framework)]
      cell[framework] = {
          name: _median([r.get(name) for r in results])
          for name in ('patches_per_s', 'tiles_per_s', 'peak_rss_mb')}
      for name in ('tile', 'tiles_per_patch'):  # the same in every pass
        cell[framework][name] = next(
            (r[name] for r in results if r.get(name) is not None), None)
    torch_rate = cell['pytorch']['patches_per_s']
    tuned_rate = cell['pytorch-malloc']['patches_per_s']
    jax_rate = cell['jax']['patches_per_s']
    rows.append({'model': label, 'config': path, 'batch': batch,
                 'tile': cell['jax']['tile'] or cell['pytorch']['tile'],
                 'tiles_per_patch': (cell['jax']['tiles_per_patch']
                                     or cell['pytorch']['tiles_per_patch']),
                 'pytorch': cell['pytorch'],
                 'pytorch_malloc': cell['pytorch-malloc'], 'jax': cell['jax'],
                 'jax_over_pytorch': (jax_rate / torch_rate
                                      if jax_rate and torch_rate else None),
                 'jax_over_pytorch_malloc': (
                     jax_rate / tuned_rate if jax_rate and tuned_rate
                     else None)})
  return rows


def _f(value, spec):
  return 'failed' if value is None else format(value, spec)


def table(rows, markdown_table):
  return markdown_table(
      ['model', 'tile', 'tiles/patch', 'batch', 'PyTorch patches/s',
       'PyTorch, malloc as magjax', 'JAX patches/s', 'JAX/PyTorch',
       'JAX/PyTorch, same malloc', 'PyTorch tiles/s (as shipped / malloc)',
       'JAX tiles/s', 'peak RSS PyTorch / malloc / JAX (MB)'],
      [[r['model'], f'{r["tile"]}²' if r['tile'] else '?',
        r['tiles_per_patch'], r['batch'],
        _f(r['pytorch']['patches_per_s'], '.3f'),
        _f(r['pytorch_malloc']['patches_per_s'], '.3f'),
        _f(r['jax']['patches_per_s'], '.3f'),
        _f(r['jax_over_pytorch'], '.2f'),
        _f(r['jax_over_pytorch_malloc'], '.2f'),
        f'{_f(r["pytorch"]["tiles_per_s"], ".2f")} / '
        f'{_f(r["pytorch_malloc"]["tiles_per_s"], ".2f")}',
        _f(r['jax']['tiles_per_s'], '.2f'),
        f'{_f(r["pytorch"]["peak_rss_mb"], ".0f")} / '
        f'{_f(r["pytorch_malloc"]["peak_rss_mb"], ".0f")} / '
        f'{_f(r["jax"]["peak_rss_mb"], ".0f")}'] for r in rows])


def predict_table(result, markdown_table):
  if not result:
    return 'batch predict: failed'
  s = result['seconds']
  rss = result['one_file_peak_rss_mb']
  return markdown_table(
      ['what', 'value'],
      [['model', result['workdir']],
       [f'batch predict, {result["files"]} synthetic {result["size"]}² AIA '
        f'files, --batch {result["batch"]}',
        f'{result["files_per_min"]:.1f} files/min '
        f'({result["batch_wall_s"]:.1f} s wall)'],
       [f'  reading + calibrating + patching ({result.get("readers", 1)} '
        'reader processes, overlapped; summed over inputs)',
        f'{s["read"]:.1f} s'],
       ['  inference (main thread)', f'{s["infer"]:.1f} s'],
       ['  writing (1 thread, overlapped)', f'{s["write"]:.1f} s'],
       ['  limited by', {'read': 'reading and patching', 'infer':
                         'inference', 'write': 'writing'}[
                             result['limited_by']]],
       ['  peak resident memory', f'{result["batch_peak_rss_mb"]:.0f} MB'],
       ['one-file predict, cold (empty compilation cache)',
        f'{result["one_file_cold_s"]:.2f} s ({rss["cold"]:.0f} MB)'],
       ['one-file predict, warm (cache filled; median of '
        f'{len(result.get("one_file_warm_runs_s", [0]))})',
        f'{result["one_file_warm_s"]:.2f} s ({rss["warm"]:.0f} MB)']])
