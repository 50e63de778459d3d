"""`make gpu-check`: the one prepared GPU run (about 8 minutes on one GPU).

  python3 -m tools.gpu_check [--dry-run] [--budget-s 480] [--out DIR]

From a fresh copy of the tree on a GPU machine (PyPI reachable), in order,
each phase timed, a failed phase recorded and the others run:

1. env: `.venv-gpu` (`pip install -e . "jax[cuda12]==<pyproject's jax>"`)
   and `.venv-gpu-torch` (`torch==2.13.0`, the shared bench's pin; PyPI's
   Linux wheel bundles CUDA), installed in parallel; a stamp skips a done
   install on a rerun.
2. data: data/tfds when it holds sdo_ar, else a REDUCED SYNTHETIC sdo_ar
   (every 12th day of 2012 instead of every 3rd: about 31 pairs) built
   with all cores, in the background of phase 3.
3. train step: the three models at 512^2, batch 32, float32 and bf16
   (half_precision): `tools.bench` (JAX) and `tools/torch_gpu.py` around
   ../shared/bench/torch_ref.py (PyTorch), alternating, on the same GPU.
   MFU: the step's direct-convolution FLOPs (tools.bench) over the peak of
   tools/gpu_peaks.py for the dtype (n/a for a device not in it).
4. input pipeline: `tools.input_bench` at crop 512, batch 32, with the
   patch cache on the device and in host memory.
5. train: `train.py --config=configs/rhp.py:gpu8` for 300 steps on that
   data, checkpoint every 100; SIGKILL once a checkpoint is on disk, the
   same command again resumes from it and finishes.
6. eval: `eval.py` on that checkpoint (test split).

Prints one table and writes it as JSON to $OUT/gpu_check.json (else
.cache/gpu-check/gpu_check.json). `--dry-run` (`make gpu-check
GPU_CHECK_DRY_RUN=1`): the same phases on the CPU at tiny sizes, with the
existing .venv and .venv-torch (the PyTorch rows are skipped without it),
a two-pair data set and the :tiny configs; a default-suite test runs it.
Runs on the system python3 before any environment exists: stdlib only.
Exit code 0 when every phase passed, 1 otherwise.
"""

import argparse
import concurrent.futures
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from tools import gpu_peaks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = ('rhp', 'pix2pix', 'cat')  # the paper's model first
DTYPES = ('float32', 'bfloat16')
TORCH_PIN = 'torch==2.13.0'  # ../shared/bench/README.md
TORCH_REF = os.path.join(os.path.dirname(ROOT), 'shared', 'bench',
                         'torch_ref.py')

# XLA's convolutions, what model.conv 'auto' picks on a GPU, in the dry run
# too: the CPU's Winograd and dot forms would only add compile time there.
XLA_CONV = ('--config.model.conv=xla', '--config.model.conv_transpose=xla')

# Sizes of the GPU run and of the dry run: one table, two columns.
SIZES = {
    'gpu': dict(size=512, batch=32, steps=10, warmup=3, config='',
                torch_arch=[], train_config='configs/rhp.py:gpu8',
                train_steps=300, checkpoint_every=100, input_batches=30,
                data_every='12d', data_end='2012-12-31', data_size=1024,
                splits=[], device='cuda', reserve_s=180,
                torch_threads=max(1, len(os.sched_getaffinity(0)))),
    'dry': dict(size=32, batch=2, steps=2, warmup=1, config=':tiny',
                torch_arch=['--ngf', '8', '--ndf', '8', '--num-downs', '5'],
                train_config='configs/rhp.py:tiny', train_steps=300,
                checkpoint_every=100, input_batches=5, data_every='3d',
                data_end='2012-01-04', data_size=256,
                splits=['train=01-01:01-02', 'validation=01-07:01-08',
                        'test=01-03:01-06'], device='cpu', reserve_s=45,
                # one thread: the data set builds beside it
                torch_threads=1),
}


class Check:
  """The phases' results and timings, and the shared deadline."""

  def __init__(self, dry_run, budget_s, work, models=MODELS, dtypes=DTYPES):
    self.dry_run = dry_run
    self.models, self.dtypes = models, dtypes
    self.sizes = SIZES['dry' if dry_run else 'gpu']
    self.deadline = time.monotonic() + budget_s
    self.started = time.monotonic()
    self.work = work
    self.logs = os.path.join(work, 'logs')
    os.makedirs(self.logs, exist_ok=True)
    self.phases = []  # {'phase', 'seconds', 'ok', 'note'}
    self.results = {'bench': [], 'input': [], 'train': {}, 'eval': {}}
    self.jax_python = self.torch_python = None
    self.data_dir = None
    # One persistent compilation cache for every step of the check: the
    # resumed run and eval reuse what the first run compiled.
    self.env = dict(os.environ, MAGJAX_COMPILATION_CACHE=os.path.join(
        work, 'jax-cache'))

  def left(self):
    return self.deadline - time.monotonic()

  @contextlib.contextmanager
  def earlier_deadline(self, seconds_before):
    """Within: the deadline `seconds_before` the real one (time kept for
    the phases after)."""
    deadline = self.deadline
    self.deadline -= seconds_before
    try:
      yield
    finally:
      self.deadline = deadline

  def phase(self, name, fn):
    """Runs fn() as phase `name` unless the budget is spent; records it."""
    start = time.monotonic()
    if self.left() <= 0:
      self.phases.append({'phase': name, 'seconds': 0.0, 'ok': False,
                          'note': 'skipped: time budget spent'})
      return None
    try:
      value, note = fn(), ''
      ok = True
    except CheckError as e:
      value, note, ok = None, str(e), False
    seconds = time.monotonic() - start
    self.phases.append({'phase': name, 'seconds': round(seconds, 1),
                        'ok': ok, 'note': note})
    print(f'[{time.monotonic() - self.started:6.1f} s] {name}: '
          f'{"ok" if ok else "FAILED"} in {seconds:.1f} s'
          + (f' ({note})' if note else ''), flush=True)
    return value

  def run(self, name, cmd, timeout=None):
    """Runs `cmd` in ROOT, its output to logs/<name>.log; the output.

    Raises:
      CheckError: non-zero exit or past the time left (names the log).
    """
    log = os.path.join(self.logs, f'{name}.log')
    if self.left() <= 0:
      raise CheckError(f'{name}: skipped, time budget spent')
    timeout = min(timeout or self.left(), self.left())
    with open(log, 'w', encoding='utf-8') as f:
      try:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              env=self.env, timeout=timeout, check=False)
      except subprocess.TimeoutExpired as e:
        f.write(_text(e.stdout))
        raise CheckError(f'{name}: timed out after {timeout:.0f} s '
                         f'(log {log})') from e
      f.write(proc.stdout)
    if proc.returncode != 0:
      raise CheckError(f'{name}: exit {proc.returncode}: '
                       f'{_last_line(proc.stdout)} (log {log})')
    return proc.stdout


class CheckError(Exception):
  """A phase failed: one line."""


def _text(data):
  if isinstance(data, bytes):
    return data.decode('utf-8', 'replace')
  return data or ''


def _last_line(text):
  lines = [line for line in (text or '').splitlines() if line.strip()]
  return lines[-1][-300:] if lines else '(no output)'


def last_json(text):
  """The last line of `text` that parses as a JSON object."""
  for line in reversed((text or '').splitlines()):
    if line.startswith('{'):
      try:
        return json.loads(line)
      except json.JSONDecodeError:
        continue
  raise CheckError(f'no JSON line in the output: {_last_line(text)}')


def pinned_jax_version(pyproject=os.path.join(ROOT, 'pyproject.toml')):
  """The lowest jax version pyproject.toml allows (the one tested here)."""
  with open(pyproject, encoding='utf-8') as f:
    match = re.search(r'"jax>=([0-9.]+)', f.read())
  if not match:
    raise CheckError('no "jax>=..." requirement in pyproject.toml')
  return match.group(1)


# ------------------------------------------------------------------ phases


def setup_env(check):
  """The JAX and the PyTorch environments (dry run: the existing ones)."""
  if check.dry_run:
    jax_python = os.path.join(ROOT, '.venv', 'bin', 'python')
    check.jax_python = jax_python if os.path.exists(jax_python) else (
        sys.executable)
    torch_python = os.path.join(ROOT, '.venv-torch', 'bin', 'python')
    check.torch_python = (torch_python if os.path.exists(torch_python)
                          else None)
    return {'jax_python': check.jax_python,
            'torch_python': check.torch_python}
  installs = {
      '.venv-gpu': ['-e', '.', f'jax[cuda12]=={pinned_jax_version()}'],
      '.venv-gpu-torch': [TORCH_PIN, 'numpy'],
  }
  seconds = {}
  with concurrent.futures.ThreadPoolExecutor(len(installs)) as pool:
    futures = {name: pool.submit(_install, check, name, packages)
               for name, packages in installs.items()}
    errors = []
    for name, future in futures.items():
      try:
        seconds[name] = future.result()
      except CheckError as e:
        errors.append(str(e))
  check.jax_python = os.path.join(ROOT, '.venv-gpu', 'bin', 'python')
  if '.venv-gpu-torch' in seconds:
    check.torch_python = os.path.join(ROOT, '.venv-gpu-torch', 'bin',
                                      'python')
  check.results['env_seconds'] = seconds
  if errors:
    raise CheckError('; '.join(errors))
  return seconds


def _install(check, name, packages):
  """Creates venv `name` and pip-installs `packages`; seconds taken."""
  start = time.monotonic()
  venv = os.path.join(ROOT, name)
  stamp = os.path.join(venv, '.installed')
  if os.path.exists(stamp):
    return 0.0
  python = os.path.join(venv, 'bin', 'python')
  if not os.path.exists(python):
    check.run(f'venv{name}', [sys.executable, '-m', 'venv', venv])
  check.run(f'pip{name}', [python, '-m', 'pip', 'install', '--quiet',
                           '--disable-pip-version-check', *packages])
  with open(stamp, 'w', encoding='ascii') as f:
    f.write(' '.join(packages) + '\n')
  return round(time.monotonic() - start, 1)


def data_commands(check):
  """[(name, argv)] building the reduced SYNTHETIC sdo_ar under work/."""
  s, py, root = check.sizes, check.jax_python, os.path.join(check.work,
                                                            'data')
  workers = str(max(1, len(os.sched_getaffinity(0))))
  split_args = [arg for split in s['splits'] for arg in ('--split', split)]
  return [
      ('synthesize', [py, '-m', 'data_prep.synthesize', '--out',
                      f'{root}/raw', '--start', '2012-01-01', '--end',
                      s['data_end'], '--every', s['data_every'], '--size',
                      str(s['data_size']), '--seed', '0', '--workers',
                      workers]),
      ('prepare', [py, '-m', 'data_prep.prepare', 'build', '--raw',
                   f'{root}/raw', '--out', f'{root}/patches', '--workers',
                   workers, *split_args]),
      ('sdo_ar', [py, '-m', 'magjax.datasets.sdo_ar.build', '--patches',
                  f'{root}/patches', '--data_dir', f'{root}/tfds']),
  ]


def build_data(check):
  """data/tfds if it holds sdo_ar (not in a dry run), else the reduced set."""
  existing = os.path.join(ROOT, 'data', 'tfds')
  if not check.dry_run and os.path.isdir(os.path.join(existing, 'sdo_ar')):
    check.data_dir = existing
    return {'data_dir': existing, 'built': False}
  for name, cmd in data_commands(check):
    check.run(f'data_{name}', cmd)
  check.data_dir = os.path.join(check.work, 'data', 'tfds')
  return {'data_dir': check.data_dir, 'built': True,
          'note': 'REDUCED SYNTHETIC set: every '
                  f'{check.sizes["data_every"]} to {check.sizes["data_end"]}'}


def bench_step(check):
  """JAX and PyTorch train steps, alternating, every model and dtype."""
  s = check.sizes
  failures = []
  for model in check.models:
    for dtype in check.dtypes:
      order = ('pytorch', 'jax') if dtype == 'float32' else ('jax', 'pytorch')
      for framework in order:
        try:
          row = _bench_one(check, framework, model, dtype)
        except CheckError as e:
          failures.append(str(e))
          row = {'framework': framework, 'model': model, 'dtype': dtype,
                 'error': str(e)}
        check.results['bench'].append(row)
  _add_mfu(check.results['bench'])
  if failures:
    raise CheckError(f'{len(failures)} benchmark(s) failed: {failures[0]}')
  return None


def _bench_one(check, framework, model, dtype):
  s = check.sizes
  name = f'bench_{framework}_{model}_{dtype}'
  common = ['--size', str(s['size']), '--batch', str(s['batch']),
            '--steps', str(s['steps']), '--warmup', str(s['warmup'])]
  if framework == 'jax':
    cmd = [check.jax_python, '-m', 'tools.bench',
           f'--config=configs/{model}.py{s["config"]}', *common,
           '--conv', 'xla',
           '--half-precision' if dtype == 'bfloat16' else
           '--no-half-precision']
  else:
    if check.torch_python is None:
      return {'framework': framework, 'model': model, 'dtype': dtype,
              'error': 'skipped: no torch environment (make bench-venv)'}
    ref = os.environ.get('MAGJAX_TORCH_REF', TORCH_REF)
    cmd = [check.torch_python, 'tools/torch_gpu.py', '--torch-ref', ref,
           '--device', s['device'],
           *(['--bf16'] if dtype == 'bfloat16' else []), '--', '--model',
           model, *common, '--threads', str(s['torch_threads']),
           *s['torch_arch']]
  result = last_json(check.run(name, cmd))
  return {'framework': framework, 'model': model, 'dtype': dtype,
          'device': result.get('device'),
          'ms_per_step': result.get('ms_per_step_median'),
          'img_per_s': result.get('img_per_s'),
          'direct_gflop_per_step': result.get('direct_gflop_per_step'),
          'peak_device_mb': result.get('peak_device_mb')}


def _add_mfu(rows):
  """MFU of every row from the JAX row's FLOPs of the same model and dtype
  (the same networks) and its device kind."""
  jax_rows = {(r['model'], r['dtype']): r for r in rows
              if r['framework'] == 'jax' and 'error' not in r}
  for row in rows:
    ref = jax_rows.get((row['model'], row['dtype']))
    if 'error' in row or ref is None:
      continue
    flops = (ref.get('direct_gflop_per_step') or 0) * 1e9
    seconds = (row.get('ms_per_step') or 0) / 1e3
    value = gpu_peaks.mfu(flops, seconds, ref.get('device'), row['dtype'])
    _, peak_name = gpu_peaks.peak_flops(ref.get('device'), row['dtype'])
    row['mfu'] = round(value, 4) if value is not None else None
    row['mfu_peak'] = peak_name


def bench_input(check):
  """tools.input_bench with the patch cache on the device and on the host."""
  s = check.sizes
  for cache in ('device', 'host'):
    cmd = [check.jax_python, '-m', 'tools.input_bench',
           f'--config={s["train_config"]}', '--batch', str(s['batch']),
           '--crop', str(s['size']), '--batches', str(s['input_batches']),
           '--warmup', '2', '--cache', cache, '--data-dir', check.data_dir]
    r = last_json(check.run(f'input_{cache}', cmd))
    check.results['input'].append({
        key: r.get(key) for key in (
            'input_cache', 'batch', 'crop_size', 'examples', 'crops_per_s',
            'cores_used', 'crops_per_s_per_core', 'host_rss_mb',
            'host_cache_mb', 'cache_mb', 'cache_fill_s', 'cores_available')})


def train_kill_resume(check):
  """300 steps of the :gpu8-style run: killed after its first checkpoint,
  resumed by the same command, finished."""
  s = check.sizes
  workdir = os.path.join(check.work, 'train')
  shutil.rmtree(workdir, ignore_errors=True)
  cmd = [check.jax_python, 'train.py', f'--config={s["train_config"]}',
         f'--workdir={workdir}',
         f'--config.num_train_steps={s["train_steps"]}',
         f'--config.checkpoint_every_steps={s["checkpoint_every"]}',
         f'--config.log_every_steps={s["checkpoint_every"] // 2}',
         f'--config.sample_every_steps={s["train_steps"]}',
         '--config.eval_every_steps=0', f'--config.data_dir={check.data_dir}',
         *XLA_CONV]
  killed_at = _run_until_checkpoint(check, cmd, workdir)
  out = check.run('train_resume', cmd)
  resumed = re.search(r'resumed from step (\d+)', out)
  rates = re.findall(r'([0-9.]+) steps/s', out)
  done = f'step {s["train_steps"]}/{s["train_steps"]}' in out
  steps = committed_steps(os.path.join(workdir, 'checkpoints'))
  check.results['train'] = {
      'config': s['train_config'], 'steps': s['train_steps'],
      'killed_after_checkpoint': killed_at,
      'resumed_from': int(resumed.group(1)) if resumed else None,
      'finished': done,
      'steps_per_s_last': float(rates[-1]) if rates else None,
      'global_batch': _saved_batch(workdir, steps[-1]) if steps else None,
      'workdir': workdir}
  if not resumed or not done or killed_at is None:
    raise CheckError(f'kill/resume not confirmed: killed after checkpoint '
                     f'{killed_at}, resumed {bool(resumed)}, finished {done}')
  return check.results['train']


def _run_until_checkpoint(check, cmd, workdir):
  """Starts `cmd`; SIGKILLs it once a checkpoint is committed (orbax's
  commit marker in its step directory, as checkpoints.list_steps reads
  it) and the run has logged a later step; that checkpoint's step."""
  log = os.path.join(check.logs, 'train_first.log')
  with open(log, 'w', encoding='utf-8') as f:
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, env=check.env,
                            stderr=subprocess.STDOUT)
    try:
      while proc.poll() is None and check.left() > 0:
        steps = committed_steps(os.path.join(workdir, 'checkpoints'))
        if steps and _logged_step(log) > steps[-1]:
          proc.send_signal(signal.SIGKILL)
          proc.wait()
          return steps[-1]
        time.sleep(0.05)
    finally:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  raise CheckError(f'the first run ended (exit {proc.returncode}) before a '
                   f'checkpoint could be killed after (log {log})')


def committed_steps(root):
  """Sorted steps under `root` whose directory orbax has committed."""
  steps = []
  for name in _listdir(root):
    if name.isdigit() and any(
        os.path.isfile(os.path.join(root, name, marker))
        for marker in ('commit_success.txt', '_CHECKPOINT_METADATA')):
      steps.append(int(name))
  return sorted(steps)


def _logged_step(log):
  """The last `step N/` progress line's N in the log (0 if none)."""
  try:
    with open(log, encoding='utf-8', errors='replace') as f:
      found = re.findall(r'^step (\d+)/', f.read(), re.MULTILINE)
  except OSError:
    return 0
  return int(found[-1]) if found else 0


def _saved_batch(workdir, step):
  """The global batch in the config saved with checkpoint `step`."""
  path = os.path.join(workdir, 'checkpoints', str(step), 'meta', 'metadata')
  try:
    with open(path, encoding='utf-8') as f:
      return int(json.load(f)['config']['batch_size'])
  except (OSError, ValueError, KeyError, TypeError):
    return None


def _listdir(path):
  try:
    return os.listdir(path)
  except OSError:
    return []


def evaluate(check):
  """eval.py on the checkpoint of phase 5; its metrics."""
  workdir = check.results['train'].get('workdir')
  if not workdir:
    raise CheckError('no trained workdir')
  check.run('eval', [check.jax_python, 'eval.py', f'--workdir={workdir}'])
  with open(os.path.join(workdir, 'eval', 'metrics.json'),
            encoding='utf-8') as f:
    metrics = json.load(f)
  check.results['eval'] = metrics
  return None


# ------------------------------------------------------------------- table


def table(check):
  """The one table: train steps, input pipeline, training run, phases."""
  lines = ['| what | framework | dtype | images/s | ms/step | MFU (peak) '
           '| input crops/s (per core) | peak GPU MiB |',
           '|---|---|---|---:|---:|---:|---:|---:|']
  for r in check.results['bench']:
    if 'error' in r:
      lines.append(f'| {r["model"]} step | {r["framework"]} | {r["dtype"]} '
                   f'| {r["error"][:60]} | | | | |')
      continue
    mfu = (f'{100 * r["mfu"]:.1f} % ({r["mfu_peak"]})' if r.get('mfu')
           is not None else 'n/a')
    lines.append(f'| {r["model"]} step | {r["framework"]} | {r["dtype"]} | '
                 f'{_num(r["img_per_s"])} | {_num(r["ms_per_step"])} | '
                 f'{mfu} | | {_num(r["peak_device_mb"])} |')
  for r in check.results['input']:
    lines.append(f'| input pipeline, {r["input_cache"]} cache | jax | | | | '
                 f'| {_num(r["crops_per_s"])} '
                 f'({_num(r["crops_per_s_per_core"])}) | |')
  t = check.results['train']
  if t:
    rate = t.get('steps_per_s_last')
    images = (rate * t['global_batch'] if rate and t.get('global_batch')
              else None)
    lines.append(f'| train {t["config"]}, {t["steps"]} steps, killed at '
                 f'{t["killed_after_checkpoint"]}, resumed from '
                 f'{t["resumed_from"]} | jax | float32 | {_num(images)} | '
                 f'{_num(1e3 / rate if rate else None)} | | | |')
  summary = check.results['eval'].get('summary', {}).get('crops', {})
  if summary:
    values = ', '.join(f'{key} {summary[key]["mean"]:.3g}' for key in (
        'cc_binned', 'psnr', 'ssim_paper', 'rmse_gauss') if key in summary)
    lines.append(f'| eval of step {check.results["eval"].get("checkpoint_step")}'
                 f' ({check.results["eval"].get("data_label")} '
                 f'{check.results["eval"].get("split")}, '
                 f'{check.results["eval"].get("num_examples")} patches): '
                 f'{values} | jax | | | | | | |')
  lines.append('')
  lines.append('| phase | seconds | result |')
  lines.append('|---|---:|---|')
  for p in check.phases:
    lines.append(f'| {p["phase"]} | {p["seconds"]} | '
                 f'{"ok" if p["ok"] else "FAILED"} {p["note"][:120]} |')
  return '\n'.join(lines)


def _num(value):
  if value is None:
    return 'n/a'
  return f'{value:.3g}' if value < 100 else f'{value:.0f}'


def main(argv=None):
  p = argparse.ArgumentParser(prog='python3 -m tools.gpu_check',
                              description=__doc__.splitlines()[0])
  p.add_argument('--dry-run', action='store_true',
                 help='the same phases on the CPU at tiny sizes')
  p.add_argument('--budget-s', type=float, default=None,
                 help='wall-clock budget; later phases are skipped past it '
                 '(default 470, dry run 175)')
  p.add_argument('--out', default=os.environ.get('OUT') or None,
                 help='directory for gpu_check.json (default $OUT, else '
                 '.cache/gpu-check)')
  p.add_argument('--models', nargs='+', choices=MODELS, default=MODELS,
                 help='models of the train-step benchmark (default: all)')
  p.add_argument('--dtypes', nargs='+', choices=DTYPES, default=DTYPES,
                 help='compute dtypes of the train-step benchmark (default: '
                 'both)')
  p.add_argument('--work', default=os.path.join(ROOT, '.cache', 'gpu-check'),
                 help='working directory (data, runs, logs)')
  args = p.parse_args(argv)
  budget = args.budget_s or (175.0 if args.dry_run else 470.0)
  check = Check(args.dry_run, budget, args.work, tuple(args.models),
                tuple(args.dtypes))
  print(f'gpu-check{" (DRY RUN on the CPU, tiny sizes)" if args.dry_run else ""}'
        f': budget {budget:.0f} s, work in {args.work}', flush=True)
  check.phase('env', lambda: setup_env(check))
  if check.jax_python is None or not os.path.exists(check.jax_python):
    check.jax_python = None
  if check.jax_python:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
      # The data set builds on the CPU while the GPU runs the benchmarks.
      data = pool.submit(check.phase, 'data', lambda: build_data(check))
      with check.earlier_deadline(check.sizes['reserve_s']):
        check.phase('train step', lambda: bench_step(check))
      data.result()
    if check.data_dir:
      check.phase('input pipeline', lambda: bench_input(check))
      check.phase('train, kill, resume', lambda: train_kill_resume(check))
      if check.results['train'].get('finished'):
        check.phase('eval', lambda: evaluate(check))
  text = table(check)
  print('\n' + text, flush=True)
  out_dir = args.out or args.work
  os.makedirs(out_dir, exist_ok=True)
  report = {'dry_run': args.dry_run, 'budget_s': budget,
            'seconds': round(time.monotonic() - check.started, 1),
            'phases': check.phases, **check.results, 'table': text}
  path = os.path.join(out_dir, 'gpu_check.json')
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(report, f, indent=1)
  ok = all(phase['ok'] for phase in check.phases) and len(check.phases) >= 6
  print(f'gpu-check {"passed" if ok else "FAILED"} in {report["seconds"]} s; '
        f'{path}', flush=True)
  return 0 if ok else 1


if __name__ == '__main__':
  sys.exit(main())
