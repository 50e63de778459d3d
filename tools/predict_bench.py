"""End-to-end `python -m magjax.predict` on synthetic full-disk files:
files per minute of a batch, where its time goes, and one-file predict
cold and warm (the persistent compilation cache empty, then filled;
warm: the median of three runs).

  python -m tools.predict_bench [--workdir runs/rhp] [--files 20] \\
      [--size 1024] [--batch 8]

Inputs: `--files` SYNTHETIC AIA 304 full-disk files at `--size`
(data_prep.synthesize, one every 6 h from 2012-10-01; written before any
timing). Model: --workdir's latest checkpoint (default runs/rhp, the
demo's :cpu RHP; when missing, --config's model with its initial weights is
saved to a temporary workdir: speed does not depend on the weights). Each
command is a subprocess (its own start-up, as a user sees it) with its
own compilation cache directory; wall time and the child's peak resident
memory are measured here, the read / inference / write split summed from
the run's predictions.jsonl. The last output line is JSON.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGES = ('read', 'infer', 'write')
WARM_RUNS = 3  # one-file predict with the cache filled: the median


def synthetic_inputs(directory, files, size):
  from data_prep import synthesize  # pylint: disable=g-import-not-at-top
  paths = []
  for i in range(files):
    when = f'2012-10-{1 + i // 4:02d}T{6 * (i % 4):02d}:00:00'
    paths.append(str(synthesize.synthesize_pair(when, size, 0, directory,
                                                bad_fraction=0)[0]))
  return paths


def initial_workdir(directory, config_path):
  """A workdir with step 0 of `config_path`'s model at its initial
  weights."""
  import jax  # pylint: disable=g-import-not-at-top
  from magjax import checkpoints, config_utils  # pylint: disable=g-import-not-at-top
  from magjax.training import train_state  # pylint: disable=g-import-not-at-top
  config = config_utils.load_config_file(config_path)
  config.num_train_steps = max(1, int(config.num_train_steps))
  crop = int(config.crop_size)
  state = train_state.create_train_state(config, jax.random.key(0),
                                         (crop, crop, 1))
  ckpt = checkpoints.Checkpointer(directory)
  ckpt.save(state, config)
  ckpt.close()
  return directory


def timed(cmd, env):
  """(wall seconds, this child's peak RSS in MB, stdout); raises on
  failure. os.wait4 gives the child's own resource usage."""
  start = time.perf_counter()
  with tempfile.TemporaryFile('w+') as out, tempfile.TemporaryFile('w+') as err:
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err,
                            text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    out.seek(0)
    err.seek(0)
    stdout, stderr = out.read(), err.read()
  if proc.returncode != 0:
    raise RuntimeError(f'{" ".join(cmd)} failed ({proc.returncode}): '
                       f'{stderr.strip().splitlines()[-1:]}')
  return wall, round(usage.ru_maxrss / 1024.0, 1), stdout


def split(index_path):
  """{stage: seconds summed over the index's 'ok' lines}."""
  totals = dict.fromkeys(STAGES, 0.0)
  with open(index_path, encoding='utf-8') as f:
    for line in f:
      row = json.loads(line)
      if row['status'] == 'ok':
        for stage in STAGES:
          totals[stage] += row['seconds'][stage]
  return totals


def main(argv=None):
  p = argparse.ArgumentParser(prog='python -m tools.predict_bench',
                              description=__doc__.splitlines()[0])
  p.add_argument('--workdir', default=os.path.join(ROOT, 'runs', 'rhp'))
  p.add_argument('--config', default='configs/rhp.py:cpu',
                 help='the model saved at its initial weights when '
                 '--workdir has no checkpoint')
  p.add_argument('--files', type=int, default=20)
  p.add_argument('--size', type=int, default=1024)
  p.add_argument('--batch', type=int, default=8)
  args = p.parse_args(argv)
  with tempfile.TemporaryDirectory(prefix='predict-bench-') as tmp:
    workdir = args.workdir
    if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
      workdir = initial_workdir(os.path.join(tmp, 'workdir'), args.config)
    inputs = synthetic_inputs(os.path.join(tmp, 'raw'), args.files,
                              args.size)
    base = [sys.executable, '-m', 'magjax.predict', '--workdir', workdir]
    env = dict(os.environ, MAGJAX_COMPILATION_CACHE=os.path.join(
        tmp, 'cache'))
    one = [*base, '--input', inputs[0]]
    cold, cold_rss, _ = timed([*one, '--output', os.path.join(tmp, 'c.fits')],
                              env)
    warms = [timed([*one, '--output', os.path.join(tmp, f'w{i}.fits')], env)
             for i in range(WARM_RUNS)]
    warm = statistics.median(w[0] for w in warms)
    warm_rss = max(w[1] for w in warms)
    out = os.path.join(tmp, 'out')
    wall, batch_rss, stdout = timed(
        [*base, '--input', os.path.join(tmp, 'raw', 'aia'), '--output', out,
         '--batch', str(args.batch)], env)
    seconds = split(os.path.join(out, 'predictions.jsonl'))
  from magjax import predict_batch  # pylint: disable=g-import-not-at-top
  readers = min(predict_batch.READERS, args.files)
  # per stage: seconds of its threads over their number (readers overlap)
  limit = max(seconds, key=lambda k: seconds[k] / (readers if k == 'read'
                                                   else 1))
  result = {
      'workdir': (args.workdir if workdir == args.workdir
                  else f'{args.config}, initial weights'),
      'files': args.files, 'size': args.size, 'batch': args.batch,
      'one_file_cold_s': round(cold, 2), 'one_file_warm_s': round(warm, 2),
      'one_file_warm_runs_s': [round(w[0], 2) for w in warms],
      'one_file_peak_rss_mb': {'cold': cold_rss, 'warm': warm_rss},
      'batch_wall_s': round(wall, 2),
      'files_per_min': round(60 * args.files / wall, 2),
      'batch_peak_rss_mb': batch_rss,
      'seconds': {k: round(v, 2) for k, v in seconds.items()},
      'readers': readers,
      'limited_by': limit, 'summary': stdout.strip().splitlines()[-1]}
  print(json.dumps(result))
  return 0


if __name__ == '__main__':
  sys.exit(main())
