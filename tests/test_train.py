"""magjax.training.train end to end on :tiny configs, each run in a child process.

Children (tests/train_child.py) share a persistent compilation cache and a
cheap XLA optimisation level so that runs after the first compile in
seconds; every child is killed if a test fails while it runs.
"""

import contextlib
import json
import glob
import os
import signal
import socket
import struct
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
import train_helpers

from magjax import checkpoints
from magjax.training import train
from magjax.training import train_state
from magjax_common.errors import UserError
from tensorboardX.proto import event_pb2

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     'train_child.py')
FAST_XLA = ('--xla_backend_optimization_level=0 '
            '--xla_llvm_disable_expensive_passes=true')
STEPS = 4


@pytest.fixture(scope='module', name='env')
def _env(tmp_path_factory):
  env = dict(os.environ)
  env.update({
      'JAX_PLATFORMS': 'cpu',
      'XLA_FLAGS': FAST_XLA,
      'JAX_COMPILATION_CACHE_DIR': str(tmp_path_factory.mktemp('jax_cache')),
      'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS': '0',
      'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES': '0',
      'PYTHONUNBUFFERED': '1',
  })
  return env


@contextlib.contextmanager
def _child(workdir, spec, env, devices=1):
  """A running train_child.py; killed on the way out if still alive."""
  env = dict(env)
  if devices > 1:
    env['XLA_FLAGS'] += f' --xla_force_host_platform_device_count={devices}'
  proc = subprocess.Popen(
      [sys.executable, CHILD, str(workdir), json.dumps(spec)],
      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    yield proc
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait()


def _finish(proc, timeout=240):
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def _load(path):
  with np.load(path) as data:
    return {k: data[k] for k in data.files}


@pytest.fixture(scope='module', name='straight')
def _straight(tmp_path_factory, env):
  """STEPS steps on 1 device and on 2 devices, run side by side."""
  root = tmp_path_factory.mktemp('straight')
  spec = {'overrides': {'num_train_steps': STEPS}, 'eval': True}
  with _child(root / 'one', dict(spec, dump=str(root / 'one.npz')),
              env) as one, \
       _child(root / 'two', dict(spec, dump=str(root / 'two.npz')), env,
              devices=2) as two:
    results = [_finish(one), _finish(two)]
  for code, out, err in results:
    assert code == 0, err[-2000:]
    assert f'done: step {STEPS}/{STEPS}' in out
    assert 'training rhp on SYNTHETIC data' in out
    assert 'generator: 328,618 parameters' in out  # clu.parameter_overview
  return _load(root / 'one.npz'), _load(root / 'two.npz'), root / 'one'


def test_two_devices_give_the_one_device_result(straight):
  one, two, _ = straight
  assert one.keys() == two.keys()
  assert int(one['.step']) == STEPS
  for key in one:
    np.testing.assert_allclose(two[key], one[key], rtol=1e-4, atol=1e-5,
                               err_msg=key)


def _free_port():
  with socket.socket() as sock:
    sock.bind(('127.0.0.1', 0))
    return sock.getsockname()[1]


@pytest.mark.slow  # 25 s; two devices in one process stay in the default suite
def test_two_processes_give_the_one_process_result(straight, tmp_path, env):
  """jax.distributed on localhost: 2 processes x 1 CPU device, one workdir."""
  one, _, _ = straight
  address = f'127.0.0.1:{_free_port()}'
  spec = {'overrides': {'num_train_steps': STEPS}, 'eval': True,
          'dump': str(tmp_path / 'multi.npz')}
  with contextlib.ExitStack() as stack:  # both killed if anything fails
    procs = [stack.enter_context(_child(
        tmp_path / 'run', spec,
        dict(env, MAGJAX_COORDINATOR_ADDRESS=address,
             MAGJAX_NUM_PROCESSES='2', MAGJAX_PROCESS_ID=str(i))))
             for i in range(2)]
    results = [_finish(proc) for proc in procs]
  for code, _, err in results:
    assert code == 0, err[-2000:]
  assert f'done: step {STEPS}/{STEPS}' in results[0][1]
  assert 'step ' not in results[1][1]  # only process 0 logs
  # the validation crops are split over the processes and gathered back
  assert results[0][1].count('validation at step ') == 2
  multi = _load(tmp_path / 'multi.npz')
  assert multi.keys() == one.keys()
  for key in one:
    np.testing.assert_allclose(multi[key], one[key], rtol=1e-5, atol=1e-5,
                               err_msg=key)


def test_per_device_batch_size_sets_the_global_batch(straight, tmp_path,
                                                      env):
  one, _, _ = straight
  spec = {'overrides': {'num_train_steps': STEPS, 'batch_size': 999,
                        'per_device_batch_size': 2},
          'dump': str(tmp_path / 'final.npz')}
  with _child(tmp_path / 'run', spec, env) as proc:
    code, _, err = _finish(proc)
  assert code == 0, err[-2000:]
  final = _load(tmp_path / 'final.npz')
  for key in one:  # 2 x 1 device: the batch of 2 of the straight run
    np.testing.assert_array_equal(final[key], one[key], err_msg=key)


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_at_the_same_step(tmp_path, env):
  address = f'127.0.0.1:{_free_port()}'
  spec = {'slow': 0.5, 'overrides': {'num_train_steps': 3 * STEPS,
                                     'log_every_steps': 1}}
  with contextlib.ExitStack() as stack:  # both killed if anything fails
    procs = [stack.enter_context(_child(
        tmp_path, spec,
        dict(env, MAGJAX_COORDINATOR_ADDRESS=address,
             MAGJAX_NUM_PROCESSES='2', MAGJAX_PROCESS_ID=str(i))))
             for i in range(2)]
    for line in procs[0].stdout:  # process 0 logs; wait until it trains
      if line.startswith('step 1/'):
        break
    procs[1].send_signal(signal.SIGTERM)  # the other process only
    results = [_finish(proc) for proc in procs]
  for code, _, err in results:
    assert code == 0, err[-2000:]
  out = results[0][1]
  assert 'received a signal (another process): checkpoint saved at step' in out
  saved = int(out.split('checkpoint saved at step ')[1].split(';')[0])
  assert 1 <= saved < 3 * STEPS
  assert checkpoints.Checkpointer(tmp_path,
                                  read_only=True).latest_step() == saved


def test_distributed_settings_from_config_then_environment():
  config = train_helpers.load_config('rhp', 'tiny')
  assert train.distributed_kwargs(config, {}) is None
  environ = {'MAGJAX_COORDINATOR_ADDRESS': 'h:1234',
             'MAGJAX_NUM_PROCESSES': '4', 'MAGJAX_PROCESS_ID': '3'}
  assert train.distributed_kwargs(config, environ) == {
      'coordinator_address': 'h:1234', 'num_processes': 4, 'process_id': 3}
  config.distributed.initialize = True
  assert train.distributed_kwargs(config, {}) == {}  # JAX auto-detects
  config.distributed.process_id = 0
  config.distributed.coordinator_address = 'c:1'
  assert train.distributed_kwargs(config, environ) == {
      'coordinator_address': 'c:1', 'num_processes': 4, 'process_id': 0}
  with pytest.raises(UserError, match='MAGJAX_NUM_PROCESSES'):
    train.distributed_kwargs(config, {'MAGJAX_NUM_PROCESSES': 'two'})


def test_stop_and_resume_equals_the_straight_run(straight, tmp_path, env):
  one, _, _ = straight
  spec = {'overrides': {'num_train_steps': STEPS,
                        'stop_after_steps': STEPS // 2}}
  with _child(tmp_path, spec, env) as proc:
    code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  assert f'checkpoint saved at step {STEPS // 2}/{STEPS}' in out
  meta = checkpoints.Checkpointer(tmp_path, read_only=True).read_meta()
  assert meta['config']['synthetic'] is True  # the data's flag, for predict
  # another model on the same workdir: refused before anything is touched
  with _child(tmp_path, {'variant': 'pix2pix'}, env) as proc:
    code, _, err = _finish(proc)
  assert code == 2 and 'holds checkpoints of a different model' in err, err
  spec = {'overrides': {'num_train_steps': STEPS},
          'dump': str(tmp_path / 'resumed.npz')}
  with _child(tmp_path, spec, env) as proc:
    code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  assert f'resumed from step {STEPS // 2}' in out
  resumed = _load(tmp_path / 'resumed.npz')
  assert resumed.keys() == one.keys()
  # parameter for parameter: networks, batch stats, Adam moments and counts
  # (hence the lr schedule), step and RNG
  for key in one:
    np.testing.assert_array_equal(resumed[key], one[key], err_msg=key)


@pytest.mark.slow  # 18 s; make faults kills at random moments, stop+resume stays default
def test_sigkill_and_resume_equals_the_straight_run(straight, tmp_path, env):
  one, _, _ = straight
  # Checkpoints at steps 2 and 4; reads of 1 s per example (2 s a step)
  # leave time to SIGKILL the run once its step-2 checkpoint is on disk,
  # while it trains step 4.
  spec = {'slow': 1.0, 'overrides': {'num_train_steps': STEPS,
                                     'checkpoint_every_steps': 2,
                                     'log_every_steps': 1}}
  with _child(tmp_path, spec, env) as proc:
    for line in proc.stdout:
      if line.startswith('step 3/'):
        break
    for _ in range(50):  # orbax finalises the async save by a rename
      if checkpoints.Checkpointer(tmp_path,
                                  read_only=True).latest_step() == 2:
        break
      time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  assert proc.returncode == -signal.SIGKILL
  assert checkpoints.Checkpointer(tmp_path,
                                  read_only=True).latest_step() == 2
  spec = {'overrides': {'num_train_steps': STEPS,
                        'checkpoint_every_steps': 2},
          'dump': str(tmp_path / 'resumed.npz')}
  with _child(tmp_path, spec, env) as proc:
    code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  assert 'resumed from step ' in out
  resumed = _load(tmp_path / 'resumed.npz')
  for key in one:
    np.testing.assert_array_equal(resumed[key], one[key], err_msg=key)


def test_nan_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path,
                                                                 env):
  config = train_helpers.load_config('rhp', 'tiny')
  example, bad_step = train_helpers.step_of_first_use(config)
  assert bad_step >= 1
  spec = {'nan_at': example,
          'overrides': {'num_train_steps': STEPS, 'checkpoint_every_steps': 1}}
  with _child(tmp_path, spec, env) as proc:
    code, out, err = _finish(proc)
  assert code == 1, out + err
  assert f'error: non-finite loss at step {bad_step};' in err
  assert 'Traceback' not in err
  config.num_train_steps = STEPS
  ckpt = checkpoints.Checkpointer(tmp_path, read_only=True)
  assert ckpt.latest_step() == bad_step
  state, meta = ckpt.restore(train_state.abstract_train_state(config))
  assert meta['data_position'] == bad_step
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state.g_params))


@pytest.fixture(scope='module', name='skipped')
def _skipped(tmp_path_factory, env):
  """(final state, the skipped step) of a straight run with a NaN batch
  under nan_policy 'skip'."""
  root = tmp_path_factory.mktemp('skip')
  config = train_helpers.load_config('rhp', 'tiny')
  example, bad_step = train_helpers.step_of_first_use(config)
  spec = {'nan_at': example, 'dump': str(root / 'final.npz'),
          'overrides': {'num_train_steps': STEPS, 'nan_policy': 'skip'}}
  with _child(root, spec, env) as proc:
    code, _, err = _finish(proc)
  assert code == 0, err[-2000:]
  return _load(root / 'final.npz'), bad_step


def test_nan_skip_policy_skips_and_finishes(skipped):
  final, _ = skipped
  assert int(final['.step']) == STEPS
  for key, value in final.items():
    assert np.isfinite(value).all(), key


def test_a_skipped_step_counts_as_data_stop_and_resume_equal_no_stop(
    skipped, straight, tmp_path, env):
  """Stopped right after the skipped step, the checkpoint's step is the
  data position (no batch replayed on resume) and the resumed run equals
  the run that was not stopped, leaf for leaf."""
  final, bad_step = skipped
  one, _, _ = straight
  config = train_helpers.load_config('rhp', 'tiny')
  example, _ = train_helpers.step_of_first_use(config)
  overrides = {'num_train_steps': STEPS, 'nan_policy': 'skip'}
  spec = {'nan_at': example,
          'overrides': dict(overrides, stop_after_steps=bad_step + 1)}
  with _child(tmp_path, spec, env) as proc:
    code, _, err = _finish(proc)
  assert code == 0, err[-2000:]
  config.num_train_steps = STEPS
  ckpt = checkpoints.Checkpointer(tmp_path, read_only=True)
  state, meta = ckpt.restore(train_state.abstract_train_state(config))
  assert int(state.step) == meta['data_position'] == bad_step + 1
  spec = {'nan_at': example, 'overrides': overrides,
          'dump': str(tmp_path / 'resumed.npz')}
  with _child(tmp_path, spec, env) as proc:
    code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  assert f'resumed from step {bad_step + 1}' in out
  resumed = _load(tmp_path / 'resumed.npz')
  for key in final:
    np.testing.assert_array_equal(resumed[key], final[key], err_msg=key)
  # the skipped update left its mark: not the run without a NaN
  assert any(not np.array_equal(final[k], one[k]) for k in one
             if 'g_params' in k)


def test_sigterm_saves_at_the_next_step_and_exits_cleanly(tmp_path, env):
  # Same graph as the other runs (cache hit); reads of 0.5 s per example
  # leave time to signal the run while it trains.
  spec = {'slow': 0.5, 'overrides': {'num_train_steps': STEPS,
                                     'log_every_steps': 1}}
  with _child(tmp_path, spec, env) as proc:
    for line in proc.stdout:  # wait until training runs
      if line.startswith('step 1/'):
        break
    proc.send_signal(signal.SIGTERM)
    code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  assert 'received SIGTERM: checkpoint saved at step ' in out
  saved = int(out.split('checkpoint saved at step ')[1].split(';')[0])
  assert 1 <= saved < STEPS
  assert checkpoints.Checkpointer(tmp_path,
                                  read_only=True).latest_step() == saved


def test_max_train_seconds_checkpoints_and_stops(tmp_path, env):
  # Reading the first batch alone takes 2 x 0.5 s > 1 s: stops after step 1.
  spec = {'slow': 0.5, 'overrides': {'num_train_steps': STEPS,
                                     'max_train_seconds': 1.0}}
  with _child(tmp_path, spec, env) as proc:
    code, out, err = _finish(proc)
  assert code == 0, err[-2000:]
  assert 'max_train_seconds=1 reached: checkpoint saved at step 1;' in out
  assert checkpoints.Checkpointer(tmp_path, read_only=True).all_steps() == [1]


def _events(workdir):
  """Events of the workdir's TensorBoard files (TFRecord framing)."""
  events = []
  for path in glob.glob(os.path.join(workdir, 'events.out.tfevents.*')):
    with open(path, 'rb') as f:
      data = f.read()
    offset = 0
    while offset < len(data):
      (length,) = struct.unpack('<Q', data[offset:offset + 8])
      event = event_pb2.Event()
      event.ParseFromString(data[offset + 12:offset + 12 + length])
      events.append(event)
      offset += 12 + length + 4
  return events


def test_scalars_and_sample_images_reach_tensorboard(straight):
  _, _, workdir = straight
  tags = {}
  for event in _events(workdir):
    for value in event.summary.value:
      tags.setdefault(value.tag, []).append(event.step)
      if value.HasField('image'):
        assert value.image.width == 3 * 32  # AIA | true HMI | generated
  config = train_helpers.load_config('rhp', 'tiny')
  logged = list(range(config.log_every_steps, STEPS + 1,
                      config.log_every_steps))
  for tag in ('loss_g', 'loss_d', 'd_real', 'd_fake', 'gamma', 'lr',
              'steps_per_sec', 'skipped_steps'):
    assert tags.get(tag) == logged, (tag, sorted(tags))
  # validation every eval_every_steps and at the last step
  evaluated = sorted({*range(config.eval_every_steps, STEPS + 1,
                             config.eval_every_steps), STEPS})
  for name in ('psnr', 'ssim_paper', 'cc_binned', 'rmse_gauss'):
    assert tags.get(f'validation/{name}') == evaluated, sorted(tags)
  assert tags['samples/aia_true_generated'] == [config.sample_every_steps,
                                                STEPS]
