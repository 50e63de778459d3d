"""Faults of a long run's storage (slow): a damaged checkpoint, a full disk
while a checkpoint, an event file, evaluation results or the report are
written. Each gets one line; nothing intact is lost; the run resumes.

The full disk is a 24 MB tmpfs mounted in a mount namespace of its own
(`unshare -rm`, no root needed); where user namespaces are not allowed the
same scenario runs with RLIMIT_FSIZE (writes fail with EFBIG instead of
ENOSPC). See tests/faults/disk_child.py.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

import eval_helpers
import ledger
import train_helpers
from magjax import checkpoints
from magjax.evaluation import evaluate
from magjax.training import train

pytestmark = pytest.mark.slow

FAULTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(FAULTS))
CHILD = os.path.join(FAULTS, 'disk_child.py')
FAST_XLA = ('--xla_backend_optimization_level=0 '
            '--xla_llvm_disable_expensive_passes=true')


def _env(cache):
  return dict(os.environ, JAX_PLATFORMS='cpu', XLA_FLAGS=FAST_XLA,
              JAX_COMPILATION_CACHE_DIR=str(cache),
              JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
              MAGJAX_COMPILATION_CACHE='off', PYTHONUNBUFFERED='1')


def _namespaces_work(tmp_path):
  probe = tmp_path / 'probe'
  probe.mkdir()
  return subprocess.run(
      ['unshare', '-rm', 'sh', '-c',
       f'mount -t tmpfs -o size=1m tmpfs {probe}'],
      capture_output=True, check=False).returncode == 0 if shutil.which(
          'unshare') else False


@pytest.fixture(scope='module', name='disk')
def _disk(tmp_path_factory):
  """disk_child.py's scenario; its result dict."""
  root = tmp_path_factory.mktemp('disk_faults')
  disk, result = root / 'disk', root / 'result.json'
  disk.mkdir()
  env = _env(root / 'jax_cache')
  if _namespaces_work(root):
    argv = ['unshare', '-rm', 'sh', '-c',
            f'mount -t tmpfs -o size=24m tmpfs {disk} && exec '
            f'{sys.executable} {CHILD} scenario {disk} {result}']
  else:
    argv = [sys.executable, CHILD, 'scenario', str(disk), str(result),
            '--rlimit']
  proc = subprocess.run(argv, env=env, capture_output=True, text=True,
                        timeout=1500, check=False)
  assert proc.returncode == 0 and result.exists(), proc.stderr[-3000:]
  return json.loads(result.read_text())


def _one_line(run, code, *words):
  """The run exited `code` with exactly one error line holding `words`,
  nothing after it and no traceback."""
  return (run['code'] == code and len(run['errors']) == 1
          and all(w in run['errors'][0] for w in words)
          and not run['after_error'] and run['tracebacks'] == 0)


def test_a_full_disk_during_a_checkpoint_save_is_one_line_and_resumes(disk):
  assert disk['first']['code'] == 0, disk['first']
  save, resume = disk['save'], disk['resume']
  clear = _one_line(save, 3, 'could not save checkpoint 6',
                    'last good checkpoint: step 3')
  intact = (save['steps'] == [3] and not save['tmp_dirs']
            and save['damage_3'] is None)
  finished = resume['code'] == 0 and resume['steps'][-1] == 6
  ledger.record(f'train: disk full during a checkpoint save '
                f'[{disk["mode"]}]', faults=1, recovered=int(finished),
                lost=int(not intact), bad_inputs=1, clear_errors=int(clear))
  assert clear, save
  assert intact, save
  assert finished, resume


def test_a_full_disk_at_an_event_write_is_one_line_and_events_stay_readable(
    disk):
  events = disk['events']
  clear = _one_line(events, 3, 'could not write TensorBoard events',
                    'last good checkpoint: step 3')
  readable = events['readable'] is True
  ledger.record(f'train: disk full at a TensorBoard event write '
                f'[{disk["mode"]}]', faults=1,
                recovered=int(disk['resume']['code'] == 0),
                lost=int(not readable), bad_inputs=1, clear_errors=int(clear))
  assert clear, events
  assert readable, events


def test_a_full_disk_while_evaluating_or_reporting_changes_nothing(disk):
  assert disk['eval_ok']['code'] == 0, disk['eval_ok']
  assert disk['report_ok']['code'] == 0, disk['report_ok']
  runs = (disk['eval_full'], disk['report_full'])
  clear = [_one_line(disk['eval_full'], 3, 'could not write',
                     'none of the evaluation results'),
           _one_line(disk['report_full'], 3, 'could not write',
                     'none of the report')]
  unchanged = [r['unchanged'] for r in runs]
  ledger.record(f'eval.py, report: disk full while writing [{disk["mode"]}]',
                faults=2, recovered=sum(unchanged),
                lost=2 - sum(unchanged), bad_inputs=2,
                clear_errors=sum(clear))
  assert all(clear), runs
  assert all(unchanged), runs


def _harm(step_dir, how):
  files = [os.path.join(r, n) for r, _, names in os.walk(step_dir)
           for n in names if n not in ('commit_success.txt',
                                       '_CHECKPOINT_METADATA',
                                       checkpoints.MANIFEST)]
  victim = max(files, key=os.path.getsize)
  with open(victim, 'r+b') as f:
    if how == 'truncated':
      f.truncate(os.path.getsize(victim) // 3)
    else:  # one byte flipped in the middle (a storage fault)
      f.seek(os.path.getsize(victim) // 2)
      byte = f.read(1)
      f.seek(-1, os.SEEK_CUR)
      f.write(bytes([byte[0] ^ 0xFF]))
  return victim


@pytest.mark.parametrize('how', ['truncated', 'flipped'])
def test_a_damaged_latest_checkpoint_is_named_skipped_and_kept(
    tmp_path, how, capfd):
  """Training resumes from the previous checkpoint after one line, keeps
  the damaged one; evaluation uses the intact one and says so; eval.py
  --step on the damaged one is one line, exit 2."""
  config = train_helpers.load_config('rhp', 'tiny')
  config.num_train_steps, config.checkpoint_every_steps = 9, 3
  config.eval_every_steps = 0
  workdir = str(tmp_path / 'run')
  source = train_helpers.memory_source()
  config.stop_after_steps = 6
  assert train.run(config, workdir, source) == 0
  damaged_dir = checkpoints.step_directory(workdir, 6)
  _harm(damaged_dir, how)
  capfd.readouterr()

  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'eval.py'), f'--workdir={workdir}',
       '--step=6'], cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), check=False)
  refused = (proc.returncode == 2 and proc.stdout == ''
             and len(proc.stderr.strip().splitlines()) == 1
             and 'checkpoint 6' in proc.stderr and 'is damaged' in proc.stderr
             and 'newest intact checkpoint: 3' in proc.stderr)

  result = evaluate.evaluate(None, workdir,
                             source=train_helpers.memory_source(2, seed=5))
  said = capfd.readouterr().err
  used_intact = (result['checkpoint_step'] == 3
                 and 'checkpoint 6 is damaged' in said
                 and 'using checkpoint 3' in said)

  saved = {name: open(os.path.join(damaged_dir, name), 'rb').read()
           for name in os.listdir(damaged_dir)
           if os.path.isfile(os.path.join(damaged_dir, name))}
  config.stop_after_steps = 0
  code = train.run(config, workdir, source)
  out = capfd.readouterr().out
  aside = os.path.join(workdir, checkpoints.DAMAGED_SUBDIR, '6')
  kept = os.path.isdir(aside) and all(
      open(os.path.join(aside, n), 'rb').read() == data
      for n, data in saved.items())
  resumed = (code == 0 and checkpoints.list_steps(workdir)[-1] == 9
             and 'checkpoint 6 is damaged' in out
             and 'resuming from checkpoint 3' in out)
  ledger.record(f'train, eval.py: latest checkpoint {how}', faults=1,
                recovered=int(resumed and used_intact), lost=int(not kept),
                bad_inputs=1, clear_errors=int(refused))
  assert refused, proc.stderr
  assert used_intact, said
  assert kept
  assert resumed, out


def test_out_of_range_settings_are_one_line_before_any_work(tmp_path):
  """train.py, eval.py and predict with a bad --config value."""
  workdir = tmp_path / 'run'
  eval_helpers.save_checkpoint(str(tmp_path / 'trained'),
                               eval_helpers.tiny_config(), step=1)
  runs = [
      ['train.py', '--config=configs/rhp.py:tiny', f'--workdir={workdir}',
       '--config.model.dropout=1.5'],
      ['train.py', '--config=configs/rhp.py:tiny', f'--workdir={workdir}',
       '--config.learning_rate=nan'],
      ['train.py', '--config=configs/rhp.py:tiny', f'--workdir={workdir}',
       '--config.crop_size=48'],
      ['eval.py', '--config=configs/rhp.py:tiny',
       f'--workdir={tmp_path / "trained"}', '--config.eval_mode=fast'],
  ]
  clear = 0
  for argv in runs:
    proc = subprocess.run([sys.executable] + argv, cwd=ROOT,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, JAX_PLATFORMS='cpu'),
                          check=False)
    lines = proc.stderr.strip().splitlines()
    clear += int(proc.returncode == 2 and len(lines) == 1
                 and lines[0].startswith('error: config')
                 and not workdir.exists())
  ledger.record('config: settings out of range', bad_inputs=len(runs),
                clear_errors=clear)
  assert clear == len(runs)
