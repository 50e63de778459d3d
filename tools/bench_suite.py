"""The benchmark suite: magjax against PyTorch (training and inference),
the input pipeline, data prep, batch predict.

  python -m tools.bench_suite [--sizes 256 512] [--models pix2pix cat rhp] \
      [--steps 5] [--warmup 2] [--passes 1] [--threads N] \
      [--torch-python .venv-torch/bin/python] [--torch-ref PATH] \
      [--json-out .cache/bench/results.json]

One run, each benchmark a subprocess (fresh process, the last JSON line of
its output parsed):

1. Train steps, batch 1: for each size, for each model, shared/bench's
   `torch_ref.py` (the torch venv's python, `--threads N`), then
   `python -m tools.bench` with the same steps and warm-up. Frameworks and
   models alternate, so a slow spell of the machine hits both frameworks.
   With --passes 2 the second pass runs the whole sequence in reverse (JAX
   before PyTorch); the table gives the median over passes.
2. `python -m tools.input_bench` (the paper config: crop 512, batch 32 and
   batch 1) and `python -m tools.prep_bench` (seconds per 4096^2 pair).
3. Inference (tools/infer_suite.py): whole patches and tiles per second of
   the paper-size and the demo's RHP generator, batch 1 and 8, JAX beside
   PyTorch's eval-mode forward, alternating, peak memory per process.
4. `python -m tools.predict_bench`: batch predict's files/minute with its
   time split, one-file predict cold and warm.
`--sections` picks some of train, input, inference, predict.

N (--threads) defaults to the cores this process may run on, which is what
JAX uses; a smaller N pins every subprocess to N cores (taskset). The
PyTorch reference is ../shared/bench/torch_ref.py from the repository root
($MAGJAX_TORCH_REF or --torch-ref to override). Exit codes: 0, 1 when a
benchmark failed (one line each, the others still run), 2 for a missing
torch venv or torch_ref.py.
"""

import argparse
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from importlib import metadata

from magjax_common import fileio
from tools import infer_suite

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_TORCH_PYTHON = os.path.join(ROOT, '.venv-torch', 'bin', 'python')
DEFAULT_TORCH_REF = os.path.join(os.path.dirname(ROOT), 'shared', 'bench',
                                 'torch_ref.py')
ENV_TORCH_REF = 'MAGJAX_TORCH_REF'
INPUT_CONFIG = 'configs/rhp.py'  # the paper's settings: crop 512, batch 32
INPUT_CROP = 512
INPUT_BATCHES = (1, 32)
LOAD_WARNING = 1.5  # 1-minute load average above which timings are suspect
FRAMEWORKS = ('pytorch', 'jax')
SECTIONS = ('train', 'input', 'inference', 'predict')


class SuiteError(Exception):
  """A benchmark subprocess failed: a one-line message naming the command."""


def last_json(text):
  """The last line of `text` that is a JSON object, as a dict.

  Raises:
    ValueError: no line of `text` is a JSON object.
  """
  for line in reversed(text.strip().splitlines()):
    line = line.strip()
    if not line.startswith('{'):
      continue
    try:
      value = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(value, dict):
      return value
  raise ValueError('no JSON line in its output')


def _tail(text, limit=300):
  """The last non-empty line of `text`, at most `limit` characters."""
  lines = [line.strip() for line in (text or '').splitlines() if line.strip()]
  return lines[-1][-limit:] if lines else ''


def run_command(cmd):
  """Runs `cmd` in the repository root; returns its stdout.

  Raises:
    SuiteError: the command could not start or exited non-zero (the message
      names the command and the last line of its stderr).
  """
  try:
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          check=False)
  except OSError as e:
    raise SuiteError(f'`{shlex.join(cmd)}` could not start: {e}') from e
  if proc.returncode != 0:
    tail = _tail(proc.stderr) or _tail(proc.stdout) or '(no output)'
    raise SuiteError(f'`{shlex.join(cmd)}` failed (exit {proc.returncode}): '
                     f'{tail}')
  return proc.stdout


def run_json(runner, cmd):
  """The last JSON line of `runner(cmd)`'s output; SuiteError if none."""
  stdout = runner(cmd)
  try:
    return last_json(stdout)
  except ValueError as e:
    raise SuiteError(f'`{shlex.join(cmd)}`: {e} '
                     f'(last line: {_tail(stdout) or "none"})') from e


def run_order(sizes, models, passes):
  """[(pass, size, model, framework)] in the order the steps are timed.

  Even passes: for size, for model: PyTorch, then JAX. Odd passes: the same
  sequence reversed (JAX first), so drift of the machine cancels out.
  """
  forward = [(size, model, framework) for size in sizes for model in models
             for framework in FRAMEWORKS]
  order = []
  for k in range(passes):
    sequence = forward if k % 2 == 0 else forward[::-1]
    order.extend((k, size, model, framework)
                 for size, model, framework in sequence)
  return order


def step_command(args, framework, model, size):
  """The train-step benchmark command of one framework (batch 1)."""
  common = ['--size', str(size), '--batch', '1', '--steps', str(args.steps),
            '--warmup', str(args.warmup)]
  if framework == 'pytorch':
    return [args.torch_python, args.torch_ref, '--model', model, *common,
            '--threads', str(args.threads)]
  return [sys.executable, '-m', 'tools.bench', f'--config=configs/{model}.py',
          *common]


def machine_info():
  """CPU model (/proc/cpuinfo), core counts and platform."""
  cpu = platform.processor() or 'unknown'
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith('model name'):
          cpu = line.split(':', 1)[1].strip()
          break
  except OSError:
    pass
  return {'cpu': cpu, 'cores': os.cpu_count(),
          'available_cores': len(os.sched_getaffinity(0)),
          'platform': platform.platform()}


def _version(package):
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def torch_version(runner, torch_python):
  """torch's version in the torch venv (package metadata: no torch import).

  Raises:
    SuiteError: torch is not installed there.
  """
  try:
    out = runner([torch_python, '-c', 'import importlib.metadata as m; '
                  "print(m.version('torch'))"])
  except SuiteError as e:
    raise SuiteError(f'no usable torch in {torch_python}: run '
                     f'`make bench-venv` ({e})') from e
  return _tail(out) or None


def _median(values):
  values = [v for v in values if v is not None]
  return statistics.median(values) if values else None


def _results(runs, size, model, framework):
  """The parsed results of the successful runs of one table cell."""
  return [r['result'] for r in runs if r['result'] is not None and
          (r['size'], r['model'], r['framework']) == (size, model, framework)]


def summarize_steps(runs, sizes, models):
  """One row per (model, size): medians over passes, ratio PyTorch / JAX."""
  rows = []
  for size in sizes:
    for model in models:
      torch_runs = _results(runs, size, model, 'pytorch')
      jax_runs = _results(runs, size, model, 'jax')
      torch_ms = _median([r.get('ms_per_step_median') for r in torch_runs])
      jax_ms = _median([r.get('ms_per_step_median') for r in jax_runs])
      rows.append({
          'model': model, 'size': size,
          'pytorch_ms_per_step': torch_ms, 'jax_ms_per_step': jax_ms,
          'pytorch_over_jax': (torch_ms / jax_ms if torch_ms and jax_ms
                               else None),
          'jax_gflop_per_step': _median(
              [r.get('gflop_per_step') for r in jax_runs]),
          'jax_fraction_of_peak': _median(
              [r.get('fraction_of_peak') for r in jax_runs]),
          'direct_gflop_per_step': _median(
              [r.get('direct_gflop_per_step') for r in jax_runs]),
          'jax_direct_fraction_of_peak': _median(
              [r.get('direct_fraction_of_peak') for r in jax_runs]),
          'passes': {'pytorch': len(torch_runs), 'jax': len(jax_runs)},
      })
  return rows


def _fmt(value, spec, unit=''):
  """`value` formatted (with its unit), or 'failed' when it is missing."""
  return 'failed' if value is None else format(value, spec) + unit


def markdown_table(header, rows):
  """A markdown table; the first column left-aligned, the others right."""
  lines = ['| ' + ' | '.join(header) + ' |',
           '|' + '|'.join([':---'] + ['---:'] * (len(header) - 1)) + '|']
  lines += ['| ' + ' | '.join(str(c) for c in row) + ' |' for row in rows]
  return '\n'.join(lines)


def steps_table(rows):
  """The train-step table (markdown)."""
  return markdown_table(
      ['model', 'size', 'PyTorch ms/step', 'JAX ms/step', 'PyTorch/JAX',
       'model GFLOP/step', 'JAX executed GFLOP/step',
       'JAX model FLOP/s / matmul peak', 'JAX executed FLOP/s / matmul peak'],
      [[r['model'], r['size'], _fmt(r['pytorch_ms_per_step'], '.0f'),
        _fmt(r['jax_ms_per_step'], '.0f'), _fmt(r['pytorch_over_jax'], '.2f'),
        _fmt(r['direct_gflop_per_step'], '.1f'),
        _fmt(r['jax_gflop_per_step'], '.1f'),
        _fmt(r['jax_direct_fraction_of_peak'], '.3f'),
        _fmt(r['jax_fraction_of_peak'], '.3f')] for r in rows])


def step_basis(rows, batch, size=INPUT_CROP):
  """(train step ms at `batch`, label): the fastest JAX batch-1 step at
  `size` measured in the table, x batch for batch > 1 (an estimate)."""
  measured = [r for r in rows
              if r['size'] == size and r['jax_ms_per_step'] is not None]
  if not measured:
    return None, f'no {size}^2 JAX step measured'
  fastest = min(measured, key=lambda r: r['jax_ms_per_step'])
  if batch == 1:
    return (fastest['jax_ms_per_step'],
            f'measured ({fastest["model"]} {size}^2, batch 1)')
  return (batch * fastest['jax_ms_per_step'],
          f'ESTIMATE: {batch} x the batch-1 step ({fastest["model"]} '
          f'{size}^2)')


def summarize_input(input_results, rows):
  """Input pipeline rows: batches/s against the JAX train step's rate."""
  out = []
  for batch, result in input_results:
    step_ms, basis = step_basis(rows, batch)
    per_s = result.get('batches_per_s') if result else None
    out.append({
        'batch': batch, 'crop_size': INPUT_CROP, 'batches_per_s': per_s,
        'data': result.get('data') if result else None,
        'dataset': result.get('dataset_full_name') if result else None,
        'jax_step_ms': step_ms, 'jax_step_basis': basis,
        'estimate': batch > 1,
        'times_faster_than_step': (per_s * step_ms / 1e3
                                   if per_s and step_ms else None),
    })
  return out


def input_table(input_rows, prep):
  """The input pipeline / data prep table (markdown)."""
  table = []
  for r in input_rows:
    faster = _fmt(r['times_faster_than_step'], '.1f',
                  'x (estimate)' if r['estimate'] else 'x')
    step = (f'{r["jax_step_ms"]:.0f} ms, {r["jax_step_basis"]}'
            if r['jax_step_ms'] is not None else r['jax_step_basis'])
    label = f', {r["data"]}' if r['data'] else ''
    table.append([f'input pipeline, batch {r["batch"]}, crop {r["crop_size"]}'
                  f'{label}', _fmt(r['batches_per_s'], '.2f', ' batches/s'),
                  step, faster])
  seconds = prep.get('seconds_per_pair') if prep else None
  table.append(['data prep, one 4096^2 AIA + HMI pair, 1 core',
                _fmt(seconds, '.2f', ' s/pair'), '-', '-'])
  return markdown_table(['what', 'rate', 'JAX train step at that batch',
                         'times faster than the step'], table)


def _load():
  return [round(x, 2) for x in os.getloadavg()]


def _error(message):
  print(f'error: {message}', file=sys.stderr, flush=True)


def _progress(message):
  print(message, file=sys.stderr, flush=True)


def resolve_paths(args):
  """Fills args.torch_python / args.torch_ref; a one-line reason if missing."""
  args.torch_python = os.path.abspath(args.torch_python or
                                     DEFAULT_TORCH_PYTHON)
  if not (os.path.isfile(args.torch_python)
          and os.access(args.torch_python, os.X_OK)):
    return (f'no PyTorch venv python at {args.torch_python}: run '
            '`make bench-venv` (or pass --torch-python PATH)')
  if args.torch_ref is None:
    args.torch_ref = os.environ.get(ENV_TORCH_REF) or DEFAULT_TORCH_REF
  args.torch_ref = os.path.abspath(args.torch_ref)
  if not os.path.isfile(args.torch_ref):
    return (f'no torch_ref.py at {args.torch_ref} (pass --torch-ref PATH or '
            f'set {ENV_TORCH_REF})')
  return None


def pinning(threads):
  """A `taskset` prefix pinning to `threads` cores ([] when all are used)."""
  cpus = sorted(os.sched_getaffinity(0))
  if threads >= len(cpus):
    return []
  return ['taskset', '-c', ','.join(str(c) for c in cpus[:threads])]


def parse_args(argv):
  p = argparse.ArgumentParser(prog='python -m tools.bench_suite',
                              description=__doc__.splitlines()[0])
  p.add_argument('--sizes', type=int, nargs='+', default=[256, 512])
  p.add_argument('--models', nargs='+', default=['pix2pix', 'cat', 'rhp'],
                 choices=['pix2pix', 'cat', 'rhp'])
  p.add_argument('--steps', type=int, default=5, help='timed train steps')
  p.add_argument('--warmup', type=int, default=2, help='untimed steps first')
  p.add_argument('--passes', type=int, default=1,
                 help='2: a second pass in reverse order (medians reported)')
  p.add_argument('--threads', type=int, default=None,
                 help='torch threads = cores for JAX (default: all available)')
  p.add_argument('--torch-python', default=None,
                 help='python of the torch venv (default: .venv-torch/bin/'
                 'python in the repository)')
  p.add_argument('--torch-ref', default=None,
                 help=f'torch_ref.py (default: ${ENV_TORCH_REF}, else '
                 '../shared/bench/torch_ref.py from the repository root)')
  p.add_argument('--json-out', default=None,
                 help='write all results as JSON here (atomic)')
  p.add_argument('--sections', nargs='+', choices=SECTIONS,
                 default=list(SECTIONS),
                 help='what to run (default: all)')
  p.add_argument('--predict-files', type=int, default=20,
                 help='files of the batch predict benchmark')
  args = p.parse_args(argv)
  available = len(os.sched_getaffinity(0))
  if args.threads is None:
    args.threads = available
  if not 1 <= args.threads <= available:
    p.error(f'--threads must be in 1..{available} (the available cores)')
  if args.passes < 1 or args.steps < 1 or args.warmup < 0:
    p.error('need --passes >= 1, --steps >= 1 and --warmup >= 0')
  if args.threads < available and not shutil.which('taskset'):
    p.error('--threads below the available cores needs taskset')
  return args


def _timed_run(attempt, prefix, cmd, fields):
  """`fields` + the command, its wall time and its parsed result."""
  start = time.monotonic()
  result = attempt(cmd)
  return {**fields, 'command': shlex.join(prefix + cmd),
          'wall_s': round(time.monotonic() - start, 1), 'result': result}


def _train_section(args, prefix, attempt):
  """Train steps, batch 1, JAX beside PyTorch; (runs, rows)."""
  runs = []
  order = run_order(args.sizes, args.models, args.passes)
  for i, (k, size, model, framework) in enumerate(order, 1):
    run = _timed_run(attempt, prefix, step_command(args, framework, model,
                                                   size),
                     {'pass': k, 'framework': framework, 'model': model,
                      'size': size})
    runs.append(run)
    if run['result'] is not None:
      _progress(f'[{i}/{len(order)}] {framework} {model} {size}: '
                f'{run["result"].get("ms_per_step_median")} ms/step')
  rows = summarize_steps(runs, args.sizes, args.models)
  passes = f', median of {args.passes} passes' if args.passes > 1 else ''
  print(f'\n## Train step, batch 1 ({args.steps} timed after {args.warmup} '
        f'warm-up steps{passes})\n')
  print(steps_table(rows))
  print('\nPyTorch/JAX > 1: JAX is faster. Model GFLOP: XLA\'s count for '
        'the step with direct convolutions (what PyTorch executes); executed: '
        'the compiled step\'s (Winograd convolutions execute fewer). FLOP/s '
        '/ matmul peak: per second over the float32 matmul rate measured in '
        'the same JAX run.')
  sys.stdout.flush()
  return runs, rows


def _input_section(attempt, rows):
  """The input pipeline and data prep; (results, rows, prep)."""
  input_results = []
  for batch in INPUT_BATCHES:
    cmd = [sys.executable, '-m', 'tools.input_bench',
           f'--config={INPUT_CONFIG}', '--batch', str(batch),
           '--crop', str(INPUT_CROP)]
    input_results.append((batch, attempt(cmd)))
  prep = attempt([sys.executable, '-m', 'tools.prep_bench'])
  input_rows = summarize_input(input_results, rows)
  print('\n## Input pipeline and data prep\n')
  print(input_table(input_rows, prep))
  return input_results, input_rows, prep


def _inference_section(args, prefix, attempt):
  """Generator inference, JAX beside PyTorch (tools/infer_suite.py)."""
  runs = []
  sequence = infer_suite.order(args.passes)
  for i, (k, label, path, batch, framework) in enumerate(sequence, 1):
    cmd = infer_suite.command(args, sys.executable, framework, path, batch)
    run = _timed_run(attempt, prefix, cmd,
                     {'pass': k, 'label': label, 'config': path,
                      'batch': batch, 'framework': framework})
    runs.append(run)
    if run['result'] is not None:
      _progress(f'[{i}/{len(sequence)}] inference {framework} {label} batch '
                f'{batch}: {run["result"].get("patches_per_s")} patches/s')
  rows = infer_suite.summarize(runs)
  passes = f', median of {args.passes} passes' if args.passes > 1 else ''
  print(f'\n## Inference: whole patches, eval mode, random weights{passes}'
        '\n')
  print(infer_suite.table(rows, markdown_table))
  print('\nJAX/PyTorch > 1: JAX is faster. "Same malloc": the PyTorch '
        "reference with glibc's malloc set as magjax's entry points set it "
        '(magjax/host_memory.py), the comparison on equal terms. A pass '
        'generates the fewest whole patches (at least '
        f'{infer_suite.PATCHES}) whose tiles fill whole batches, sharing '
        'them as batch predict does (both frameworks compute the same '
        'tiles); overlap: config.eval_tile_overlap.')
  sys.stdout.flush()
  return runs, rows


def _predict_section(args, attempt):
  """End-to-end batch predict and one-file cold / warm."""
  result = attempt([sys.executable, '-m', 'tools.predict_bench', '--files',
                    str(args.predict_files)])
  print('\n## Batch predict, end to end\n')
  print(infer_suite.predict_table(result, markdown_table))
  sys.stdout.flush()
  return result


def main(argv=None, runner=run_command):
  """Runs the suite; returns the exit code. `runner(cmd) -> stdout` runs
  one command (injected by tests)."""
  args = parse_args(argv)
  problem = resolve_paths(args)
  if problem:
    _error(problem)
    return 2
  prefix = pinning(args.threads)
  errors = []

  def attempt(cmd):
    """run_json(cmd) with the pinning prefix; None (error recorded) on failure."""
    try:
      return run_json(runner, prefix + cmd)
    except SuiteError as e:
      errors.append(str(e))
      _error(e)
      return None

  info = machine_info()
  load_start = _load()
  try:
    torch = torch_version(runner, args.torch_python)
  except SuiteError as e:
    _error(e)
    return 2
  versions = {'python': platform.python_version(), 'jax': _version('jax'),
              'jaxlib': _version('jaxlib'), 'torch': torch}
  print('# magjax benchmark suite\n')
  print(f'machine: {info["cpu"]}, {info["cores"]} cores '
        f'({info["available_cores"]} available), {info["platform"]}')
  print(f'versions: jax {versions["jax"]} (jaxlib {versions["jaxlib"]}), '
        f'torch {torch} ({args.torch_python})')
  print(f'threads: {args.threads} (torch --threads {args.threads}; JAX runs '
        f'on the same {args.threads} cores)')
  print('load average at start: ' + ' '.join(f'{x:.2f}' for x in load_start))
  if load_start[0] > LOAD_WARNING:
    print(f'WARNING: load average {load_start[0]:.2f} > {LOAD_WARNING} at '
          'start: the machine is busy, timings need a quiet machine '
          '(PyTorch runs 3-4x slower when a thread is descheduled)')
  sys.stdout.flush()

  runs, rows, input_results, input_rows, prep = [], [], [], [], None
  if 'train' in args.sections:
    runs, rows = _train_section(args, prefix, attempt)
  if 'input' in args.sections:
    input_results, input_rows, prep = _input_section(attempt, rows)
  infer_runs, infer_rows, predict = [], [], None
  if 'inference' in args.sections:
    infer_runs, infer_rows = _inference_section(args, prefix, attempt)
  if 'predict' in args.sections:
    predict = _predict_section(args, attempt)
  load_end = _load()
  print('\nload average at end (includes this suite\'s own runs): '
        + ' '.join(f'{x:.2f}' for x in load_end))

  if args.json_out:
    results = {
        'machine': info, 'versions': versions,
        'settings': {'sizes': args.sizes, 'models': args.models,
                     'steps': args.steps, 'warmup': args.warmup,
                     'passes': args.passes, 'threads': args.threads,
                     'batch': 1, 'torch_python': args.torch_python,
                     'torch_ref': args.torch_ref},
        'load_average_start': load_start, 'load_average_end': load_end,
        'runs': runs, 'train_step': rows,
        'input_pipeline': {
            'config': INPUT_CONFIG, 'rows': input_rows,
            'results': [r for _, r in input_results]},
        'data_prep': prep, 'inference': {'runs': infer_runs,
                                         'rows': infer_rows},
        'batch_predict': predict, 'errors': errors,
    }
    with fileio.atomic_write(args.json_out, 'w') as f:
      json.dump(results, f, indent=2)
      f.write('\n')
    print(f'wrote {args.json_out}')
  return 1 if errors else 0


if __name__ == '__main__':
  sys.exit(main())
