"""Fault injection into training (slow): SIGKILL / SIGTERM at 10 seeded
random moments, some while a checkpoint is being written; every restart
resumes from the latest checkpoint, and the final state equals an
uninterrupted run's, leaf for leaf. NaN in a batch: stop naming the step
with the last good checkpoint intact, or skip under nan_policy 'skip'.

Children are tests/train_child.py (magjax.training.train.run on :tiny, in-memory
source, slow-read hook) with a shared compilation cache; each is killed on
the way out whatever happens.
"""

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import ledger
import train_helpers
from magjax import checkpoints
from magjax.training import train_state

pytestmark = pytest.mark.slow

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = os.path.join(TESTS, 'train_child.py')
FAST_XLA = ('--xla_backend_optimization_level=0 '
            '--xla_llvm_disable_expensive_passes=true')
STEPS = 16
KILLS = 10
OVERRIDES = {'num_train_steps': STEPS, 'checkpoint_every_steps': 1,
             'log_every_steps': 1}


@pytest.fixture(scope='module', name='env')
def _env(tmp_path_factory):
  env = dict(os.environ)
  env.update({
      'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': FAST_XLA,
      'JAX_COMPILATION_CACHE_DIR': str(tmp_path_factory.mktemp('jax_cache')),
      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
      'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
      'PYTHONUNBUFFERED': '1'})
  return env


@contextlib.contextmanager
def _child(workdir, spec, env, log):
  """train_child.py with stdout+stderr to `log`; killed on the way out."""
  with open(log, 'w') as out:
    proc = subprocess.Popen(
        [sys.executable, CHILD, str(workdir), json.dumps(spec)], env=env,
        stdout=out, stderr=subprocess.STDOUT, cwd=TESTS)
  try:
    yield proc
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()


def _load(path):
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


def _latest(workdir):
  if not os.path.isdir(os.path.join(workdir, 'checkpoints')):
    return None
  return checkpoints.Checkpointer(workdir, read_only=True).latest_step()


@pytest.fixture(scope='module', name='straight')
def _straight(tmp_path_factory, env):
  root = tmp_path_factory.mktemp('straight')
  spec = {'overrides': OVERRIDES, 'dump': str(root / 'final.npz')}
  with _child(root / 'wd', spec, env, root / 'log') as proc:
    code = proc.wait(timeout=300)
  assert code == 0, (root / 'log').read_text()[-2000:]
  return _load(root / 'final.npz')


def _wait_for(log, text, proc, timeout=120):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if text in log.read_text():
      return True
    if proc.poll() is not None:
      return False
    time.sleep(0.01)
  return False


def _kill_during_checkpoint_write(workdir, proc, sig, timeout=30):
  """Sends `sig` as soon as a tmp (unfinished) checkpoint dir appears."""
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and proc.poll() is None:
    try:
      names = os.listdir(ckpt_dir)
    except FileNotFoundError:
      names = []
    if any('tmp' in n for n in names):
      proc.send_signal(sig)
      return True
    time.sleep(0.001)
  return False


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM],
                         ids=['sigkill', 'sigterm'])
def test_signals_at_random_moments_then_resume_equals_straight_run(
    straight, tmp_path, env, sig):
  """Signals until KILLS were injected; a workdir whose run completes
  (a round) is compared with the straight run and a new round begins."""
  rng = random.Random(8 + sig)
  rounds = 1
  workdir = tmp_path / 'wd1'
  spec = {'slow': 0.1, 'overrides': OVERRIDES}
  injected = recovered = in_write = mismatched = 0
  pending = False   # a fault awaits its restart
  attempt = 0
  while True:
    attempt += 1
    assert attempt < 4 * KILLS, 'runs finish before they can be signalled'
    before = _latest(workdir)
    log = tmp_path / f'log{attempt}'
    dump = tmp_path / f'dump{attempt}.npz'
    with _child(workdir, dict(spec, dump=str(dump)), env, log) as proc:
      started = _wait_for(log, 'step ', proc)
      if before is not None and before < STEPS:  # found the checkpoint
        assert _wait_for(log, 'resumed from step', proc), log.read_text()
        assert f'resumed from step {before} ' in log.read_text(), \
            log.read_text()[-2000:]
      # A restart after a fault recovered: it resumed from the latest
      # checkpoint (or, killed before the first one, started afresh).
      if pending and (started or proc.poll() == 0):
        recovered += 1
        pending = False
      hit = False
      if started and injected < KILLS:
        if injected % 3 == 1:  # a third of them while a checkpoint is written
          hit = _kill_during_checkpoint_write(str(workdir), proc, sig)
          in_write += hit
        else:
          time.sleep(rng.uniform(0.0, 1.0))
          if proc.poll() is None:
            proc.send_signal(sig)
            hit = True
      code = proc.wait(timeout=300)
    text = log.read_text()
    if hit:
      injected += 1
      pending = True
      if sig == signal.SIGKILL:
        assert code in (-signal.SIGKILL, 0), text[-2000:]
      else:  # graceful: checkpoint at the next step, exit 0, no traceback
        assert code == 0, text[-2000:]
        assert 'Traceback' not in text, text[-2000:]
      _latest(workdir)  # readable after every kill (raises otherwise)
    final = _load(dump) if code == 0 and dump.exists() else None
    if final is not None and int(final['.step']) == STEPS:  # round done
      if hit:  # signalled at its last step: it saved the final state
        recovered += 1
        pending = False
      mismatched += sum(not np.array_equal(final[k], straight[k])
                        for k in straight)
      if injected >= KILLS:
        break
      rounds += 1
      workdir = tmp_path / f'wd{rounds}'
  name = {signal.SIGKILL: 'SIGKILL', signal.SIGTERM: 'SIGTERM'}[sig]
  ledger.record(f'train: {name} ({in_write} in ckpt write)',
                faults=injected, recovered=recovered, lost=mismatched)
  assert injected == KILLS
  assert in_write >= 1
  assert mismatched == 0
  assert recovered == injected, (recovered, injected)


def test_nan_batch_stops_naming_the_step_or_is_skipped(tmp_path, env):
  config = train_helpers.load_config('rhp', 'tiny')
  example, bad_step = train_helpers.step_of_first_use(config)
  spec = {'nan_at': example, 'overrides': dict(OVERRIDES, num_train_steps=4)}
  with _child(tmp_path / 'stop', spec, env, tmp_path / 'stop.log') as proc:
    code = proc.wait(timeout=300)
  text = (tmp_path / 'stop.log').read_text()
  assert code == 1, text[-2000:]
  assert f'error: non-finite loss at step {bad_step};' in text
  assert 'Traceback' not in text
  config.num_train_steps = 4
  ckpt = checkpoints.Checkpointer(tmp_path / 'stop', read_only=True)
  assert ckpt.latest_step() == bad_step
  state, _ = ckpt.restore(train_state.abstract_train_state(config))
  intact = all(np.isfinite(x).all()
               for x in jax.tree.leaves((state.g_params, state.d_params)))
  spec = {'nan_at': example, 'dump': str(tmp_path / 'skip.npz'),
          'overrides': dict(OVERRIDES, num_train_steps=4,
                            nan_policy='skip')}
  with _child(tmp_path / 'skip', spec, env, tmp_path / 'skip.log') as proc:
    code = proc.wait(timeout=300)
  assert code == 0, (tmp_path / 'skip.log').read_text()[-2000:]
  final = _load(tmp_path / 'skip.npz')
  finite = all(np.isfinite(v).all() for v in final.values())
  ledger.record('train: NaN batch (stop, skip)', faults=2,
                recovered=int(intact) + int(finite),
                lost=int(not intact) + int(not finite))
  assert intact and finite and int(final['.step']) == 4


def test_a_busy_workdir_refuses_a_second_run_and_a_killed_ones_lock_is_taken(
    tmp_path, env):
  """Two runs in one workdir: the second stops with one line naming the
  first; after the first is SIGKILLed, a third takes its lock over and
  finishes."""
  workdir = tmp_path / 'run'
  lock = workdir / 'run.lock'
  spec = {'slow': 0.5, 'overrides': dict(OVERRIDES, num_train_steps=4)}
  with _child(workdir, spec, env, tmp_path / 'a.log') as first:
    deadline = time.time() + 120
    while not lock.exists() and time.time() < deadline:
      time.sleep(0.1)
    assert lock.exists(), (tmp_path / 'a.log').read_text()[-2000:]
    with _child(workdir, spec, env, tmp_path / 'b.log') as second:
      code = second.wait(timeout=300)
    text = (tmp_path / 'b.log').read_text().strip().splitlines()
    refused = (code == 2 and len(text) == 1 and 'in use by' in text[0]
               and f'pid {first.pid}' in text[0])
    first.kill()
    first.wait()
  spec = {'overrides': dict(OVERRIDES, num_train_steps=4)}
  with _child(workdir, spec, env, tmp_path / 'c.log') as third:
    code = third.wait(timeout=300)
  log = (tmp_path / 'c.log').read_text()
  finished = code == 0 and _latest(workdir) == 4
  # the fault: the lock holder killed; the second run: a refused input
  ledger.record('train: workdir in use, lock of a killed run', faults=1,
                recovered=int(finished), lost=int(not finished),
                bad_inputs=1, clear_errors=int(refused))
  assert refused, text
  assert finished and 'took over the lock' in log, log[-2000:]
  assert not lock.exists()
