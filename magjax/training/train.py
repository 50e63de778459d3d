"""train_and_evaluate(config, workdir): the training loop.

One jit-compiled `train_step` (state donated) over a `jax.sharding.Mesh` of
all devices: the batch is sharded along the 'data' axis, the state is
replicated. The run resumes from the latest checkpoint of the workdir; the
input pipeline is a pure function of (seed, step), so the step is the whole
data position. SIGTERM / SIGINT, `max_train_seconds` and `stop_after_steps`
checkpoint at the next step boundary and return normally.

It evaluates too, as its name says: every `eval_every_steps` (and at the
last step) the generator in eval mode scores the validation split by
eval.py's seeded-crop protocol (`evaluation.evaluate.validation_metrics`,
at most `validation_examples` examples), with the step's own compiled G
(no second compile); PSNR, SSIM, CC (binned) and RMSE go to TensorBoard
(`validation/*`) and the console. Training losses are averaged between log
lines with `clu.metrics` (skipped non-finite steps left out), and the
parameter overview of both networks (`clu.parameter_overview`) is printed
at a fresh start and written to TensorBoard.

Multi-host (docs/CLUSTER.md): jax.distributed is initialised from
config.distributed or the MAGJAX_* variables (else JAX's auto-detection);
the mesh spans all processes' devices, each process loads its rows of every
batch, only process 0 logs, all take part in checkpoints, and the stop
decision is all-gathered every step so every process stops at the same one.
"""

import functools
import json
import os
import signal
import sys
import threading
import time

from absl import logging
from clu import metrics as clu_metrics
from clu import parameter_overview
import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from magjax import checkpoints
from magjax import config_schema
from magjax import config_utils
from magjax import input_pipeline
from magjax import workdir_lock
from magjax.evaluation import evaluate
from magjax.evaluation import inference
from magjax.training import steps
from magjax.training import tb
from magjax.training import train_state as train_state_lib
from magjax_common.errors import UserError, WriteError, fail, one_line


class NonFiniteLossError(Exception):
  """A non-finite loss under nan_policy='stop': exit code 1."""


# Environment variables read when the config leaves a field unset.
ENV_COORDINATOR = 'MAGJAX_COORDINATOR_ADDRESS'
ENV_NUM_PROCESSES = 'MAGJAX_NUM_PROCESSES'
ENV_PROCESS_ID = 'MAGJAX_PROCESS_ID'


def distributed_kwargs(config, environ=None):
  """jax.distributed.initialize keyword arguments, or None (single process).

  Initialises when config.distributed.initialize is set or MAGJAX_*
  variables name a coordinator. Each of coordinator_address, num_processes
  and process_id comes from the config field when set, else from
  MAGJAX_COORDINATOR_ADDRESS / MAGJAX_NUM_PROCESSES / MAGJAX_PROCESS_ID,
  else is left to JAX's cluster auto-detection (SLURM, Open MPI, Cloud TPU,
  ...), which fills every missing argument.

  Raises:
    UserError: a MAGJAX_* variable that is not an integer where one is due.
  """
  environ = os.environ if environ is None else environ
  dist = config.distributed
  if not (dist.initialize or environ.get(ENV_COORDINATOR)):
    return None
  kwargs = {}
  address = dist.coordinator_address or environ.get(ENV_COORDINATOR, '')
  if address:
    kwargs['coordinator_address'] = address
  for key, field_set, field, var in (
      ('num_processes', dist.num_processes > 0, dist.num_processes,
       ENV_NUM_PROCESSES),
      ('process_id', dist.process_id >= 0, dist.process_id, ENV_PROCESS_ID)):
    if field_set:
      kwargs[key] = int(field)
    elif environ.get(var, ''):
      try:
        kwargs[key] = int(environ[var])
      except ValueError:
        raise UserError(f'{var}={environ[var]!r} is not an integer') from None
  return kwargs


def maybe_initialize_distributed(config):
  """jax.distributed.initialize when the config or environment asks.

  See distributed_kwargs. A no-op when already initialised.

  Raises:
    UserError: bad settings, or the coordinator could not be set up.
  """
  kwargs = distributed_kwargs(config)
  if kwargs is None or jax.distributed.is_initialized():
    return
  try:
    jax.distributed.initialize(**kwargs)
  except (ValueError, RuntimeError) as e:
    raise UserError(f'jax.distributed.initialize({kwargs}): '
                    f'{one_line(e)}') from e


def agreed_stop(local_code):
  """The largest stop code of all processes (0: go on).

  Every process calls it at every step, so all stop at the same step even
  when a signal or the clock reaches only some of them.
  """
  if jax.process_count() == 1:
    return local_code
  codes = multihost_utils.process_allgather(np.int32(local_code))
  return int(np.max(codes))


class StopRequest:
  """Turns SIGTERM / SIGINT into a flag the loop reads at step boundaries.

  A second signal exits at once.
  """

  def __init__(self):
    self.signal_name = None
    self._previous = {}

  def __enter__(self):
    if threading.current_thread() is threading.main_thread():
      for sig in (signal.SIGTERM, signal.SIGINT):
        self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self.signal_name:  # a second signal: leave now (checkpoints are atomic)
      _print(f'received {name} again: exiting without saving', sys.stderr)
      raise SystemExit(128 + signum)
    self.signal_name = name
    _print(f'received {name}: saving a checkpoint at the next step '
           '(send again to exit at once)')

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def make_train_step(config, state_sharding, batch_sharding):
  """jit(steps.train_step) with the state donated and explicit shardings;
  its metrics come back as a clu Collection (train_metrics_class) and the
  step's `finite` flag."""
  collection = train_metrics_class(config)

  def step_fn(state, batch):
    new_state, metrics = steps.train_step(state, batch, config)
    finite = metrics.pop('finite')
    # Shape (1,): clu's masks want a leading axis. Skipped steps are masked.
    values = {k: v.astype(np.float32)[None] for k, v in metrics.items()}
    return new_state, collection.single_from_model_output(
        mask=finite[None], **values), finite
  return jax.jit(step_fn, donate_argnums=0,
                 in_shardings=(state_sharding, batch_sharding),
                 out_shardings=(state_sharding, state_sharding,
                                state_sharding))


def train_metrics_class(config):
  """The clu Collection averaging every metric of steps.train_step."""
  return clu_metrics.Collection.create(
      **{name: clu_metrics.Average.from_output(name)
         for name in steps.metric_names(config)})


def _resolve(config, source):
  """A copy of config with batch_size and num_train_steps derived.

  batch_size becomes per_device_batch_size x jax.device_count() when
  per_device_batch_size > 0 (configs :gpu8, :tpu). `synthetic` records the
  data's SYNTHETIC flag: it is saved with every checkpoint, and predict
  writes it as TRAINSYN.

  Raises:
    UserError: a config unfit for the source or devices.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  try:
    shape = input_pipeline.image_shape(source)
    config.batch_size = config_utils.global_batch_size(config,
                                                       jax.device_count())
    config_utils.validate(config, shape, jax.device_count(),
                          jax.process_count())
    config.num_train_steps = config_utils.num_train_steps(config, len(source))
    config.synthetic = input_pipeline.synthetic_flag(source)
    config.dataset_version = input_pipeline.dataset_version(source)
  except ValueError as e:
    raise UserError(str(e)) from e
  return config


def _check_same_model(config, saved, workdir):
  """UserError unless the workdir's checkpoint has this model and crop."""
  current = json.loads(config_utils.to_json(config))
  for key in ('model', 'crop_size', 'patch_binning'):
    if saved.get(key) != current[key]:
      raise UserError(
          f'{workdir} holds checkpoints of a different {key} '
          f'({saved.get(key)} != {current[key]}): use another --workdir')


def train_and_evaluate(config, workdir, source=None, eval_source=None):
  """Trains (or resumes) in `workdir`, evaluating on the way; returns the
  final TrainState.

  Args:
    config: the ConfigDict (configs/*.py).
    workdir: checkpoints, TensorBoard events and the config go here.
    source: a random-access source of examples (see input_pipeline); None
      reads config.train_split of config.dataset.
    eval_source: the examples of the periodic evaluation; None reads
      config.validation_split when `source` is None too (and
      eval_every_steps > 0), else there is none.

  Raises:
    UserError: bad config or unreadable data.
    NonFiniteLossError: non-finite loss with nan_policy 'stop'.
  """
  started = time.monotonic()  # max_train_seconds counts compile time too
  config_schema.check(config)  # every setting in range before any work
  maybe_initialize_distributed(config)
  checkpoints.quiet_orbax()  # and TFDS's INFO lines
  if source is None:
    source = _load(config, config.train_split)
    if eval_source is None and config.eval_every_steps > 0:
      eval_source = _load(config, config.validation_split,
                          hint=' (or set --config.eval_every_steps=0)')
  source = input_pipeline.with_binning(source, config)
  if eval_source is not None:
    eval_source = input_pipeline.with_binning(eval_source, config)
  config = _resolve(config, source)
  # Installed before the (long) compile, so an early SIGTERM is not lost.
  with StopRequest() as stop:
    return _train(config, workdir, source, eval_source, stop, started)


def _load(config, split, hint=''):
  try:
    return input_pipeline.load_source(config, split)
  except (ValueError, FileNotFoundError) as e:
    raise UserError(f'{one_line(e)}{hint}') from e


class _CompiledGenerator:
  """Training's compiled G (eval mode, global batch) as the generator
  function of evaluation.evaluate: NumPy images in, NumPy outputs out on
  every process, so the validation crops need no second compile."""

  def __init__(self, apply, sharding, batch_size):
    self.batch_size = batch_size
    self.apply = apply  # (state, global aia batch) -> G(aia), jitted
    self._sharding = sharding
    self.state = None  # the state whose G `__call__` runs

  def __call__(self, images):
    n = images.shape[0]
    pad = np.repeat(images[-1:], self.batch_size - n, axis=0)
    images = np.concatenate([images, pad]).astype(np.float32)
    count, index = jax.process_count(), jax.process_index()
    rows = self.batch_size // count
    local = images[index * rows:(index + 1) * rows]
    out = self.apply(self.state, input_pipeline.to_global(
        {'aia': local}, self._sharding)['aia'])
    if count > 1:
      out = multihost_utils.process_allgather(out, tiled=True)
    return np.asarray(out, np.float32)[:n]


def _initial_state(config, workdir, ckpt, sharding, source):
  """(state, fresh): the workdir's latest checkpoint, or a new state."""
  if ckpt.latest_step() is None:
    return jax.jit(
        functools.partial(train_state_lib.create_train_state, config,
                          image_shape=(config.crop_size, config.crop_size)),
        out_shardings=sharding)(jax.random.key(config.seed)), True
  saved = ckpt.read_meta()['config']
  input_pipeline.check_trained_version(saved, source, workdir)
  _check_same_model(config, saved, workdir)
  state, meta = ckpt.restore(
      train_state_lib.abstract_train_state(config, sharding))
  _print(f'resumed from step {meta["data_position"]} in '
         f'{checkpoints.directory(workdir)}')
  return state, False


def _overview(state, writer, step):
  """clu's parameter tables of G and D: counts on the console, the tables in
  TensorBoard (text 'parameters')."""
  tables = []
  for name, params in (('generator', state.g_params),
                       ('discriminator', state.d_params)):
    count = parameter_overview.count_parameters(params)
    _print(f'{name}: {count:,} parameters')
    tables.append(f'{name}\n' + parameter_overview.get_parameter_overview(
        params, include_stats=False))
  writer.text(step, 'parameters', '\n\n'.join(tables))


def _train(config, workdir, source, eval_source, stop, started):
  """The loop of train_and_evaluate, `config` resolved."""
  total = config.num_train_steps
  stop_at = (min(total, config.stop_after_steps) if config.stop_after_steps
             else total)

  mesh = jax.sharding.Mesh(np.asarray(jax.devices()), ('data',))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  batch_sharding = jax.sharding.NamedSharding(
      mesh, jax.sharding.PartitionSpec('data'))
  if jax.process_index() == 0:  # damaged checkpoints moved aside, said
    checkpoints.set_aside_damaged(workdir, _print)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices('magjax: checkpoints verified')
  ckpt = checkpoints.Checkpointer(workdir, keep=config.keep_checkpoints)
  try:
    state, fresh = _initial_state(config, workdir, ckpt, replicated, source)
  except UserError:
    ckpt.close()
    raise
  start = int(jax.device_get(state.step))
  if start >= stop_at:
    _print(f'nothing to do: step {start} >= {stop_at}')
    ckpt.close()
    return state

  train_step = make_train_step(config, replicated, batch_sharding)
  generator = _CompiledGenerator(
      jax.jit(lambda state, aia: inference.generate(
          steps.generator_variables(state), aia, config),
              in_shardings=(replicated, batch_sharding)),
      batch_sharding, config.batch_size)
  try:
    writer = tb.Writer(workdir)
  except WriteError as e:
    ckpt.close()
    raise _with_last_checkpoint(e, ckpt, workdir) from e
  label = input_pipeline.data_label(config.synthetic)
  _print(f'training {config.model.name} on {label} data ({config.dataset}, '
         f'{config.train_split}) from step {start} to {stop_at}')
  writer.text(start, 'data', f'{label} data: {config.dataset} '
              f'{config.train_split}')
  if fresh:
    _overview(state, writer, start)
  progress = tb.Progress(total, start)
  deadline = (started + config.max_train_seconds
              if config.max_train_seconds > 0 else None)
  window, skipped, saved_step = None, 0, None
  data = input_pipeline.Prefetcher(
      input_pipeline.batches(source, config, start, stop_at, batch_sharding),
      config.prefetch)
  try:
    for step, batch in data:
      state, step_metrics, finite = train_step(state, batch)
      done = step + 1
      if step == start:
        progress.restart(done)  # steps/s and ETA without the compile time
      if not jax.device_get(finite):  # one host sync per step
        if config.nan_policy == 'stop':
          raise NonFiniteLossError(
              f'non-finite loss at step {step}; stopped without saving '
              f'(last good checkpoint: step {ckpt.latest_step()} in '
              f'{checkpoints.directory(workdir)})')
        skipped += 1
        logging.warning('non-finite loss at step %d: update skipped', step)
      window = step_metrics if window is None else window.merge(step_metrics)

      if done % config.log_every_steps == 0 or done == stop_at:
        scalars = {k: float(v) for k, v in window.compute().items()}
        scalars['steps_per_sec'] = progress.update(done, scalars)
        scalars['skipped_steps'] = skipped
        writer.scalars(done, scalars)
        window = None
      if done % config.sample_every_steps == 0 or done == stop_at:
        generated = generator.apply(state, batch['aia'])
        # The first local shard: addressable on every process (multi-host).
        writer.images(done, {'samples/aia_true_generated': tb.sample_strip(
            *(np.asarray(x.addressable_data(0))
              for x in (batch['aia'], batch['hmi'], generated)))})
      if eval_source is not None and config.eval_every_steps > 0 and (
          done % config.eval_every_steps == 0 or done == stop_at):
        generator.state = state
        _validate(generator, eval_source, config, writer, done)
      reason = _stop_reason(stop, deadline, config)
      if (done % config.checkpoint_every_steps == 0 or done == stop_at
          or reason):
        saved_step = ckpt.save(state, config)
      if reason:
        ckpt.wait()
        _print(f'{reason}: checkpoint saved at step {saved_step}; '
               'rerun the same command to resume')
        break
  except checkpoints.CheckpointSaveError:
    raise
  except WriteError as e:  # events: say what the checkpoints still hold
    ckpt.wait()
    raise _with_last_checkpoint(e, ckpt, workdir) from e
  finally:
    data.close()
    writer.close()
    ckpt.close()  # waits for a pending asynchronous save
  if saved_step == total:
    _print(f'done: step {total}/{total}, checkpoint in '
           f'{checkpoints.directory(workdir)}')
  elif saved_step == stop_at:
    _print(f'stop_after_steps={stop_at} reached: checkpoint saved at step '
           f'{stop_at}/{total}; rerun without it to continue')
  return state


def _with_last_checkpoint(error, ckpt, workdir):
  """A WriteError (event file) that names the last good checkpoint."""
  return WriteError(f'{error} (last good checkpoint: step '
                    f'{ckpt.latest_step()} in '
                    f'{checkpoints.directory(workdir)})')


def _validate(generator, eval_source, config, writer, step):
  """Validation metrics of the current G: TensorBoard and one console line."""
  values = evaluate.validation_metrics(generator, eval_source, config)
  writer.scalars(step, {f'validation/{k}': v for k, v in values.items()})
  _print(f'validation at step {step} ({config.validation_split}): '
         + ' '.join(f'{k}={v:.4g}' for k, v in values.items()))


_STOP_SIGNAL, _STOP_DEADLINE = 2, 1


def _stop_reason(stop, deadline, config):
  """Why all processes stop after this step (agreed), or None."""
  code = 0
  if stop.signal_name:
    code = _STOP_SIGNAL
  elif deadline is not None and time.monotonic() > deadline:
    code = _STOP_DEADLINE
  agreed = agreed_stop(code)
  if agreed == 0:
    return None
  if agreed == _STOP_SIGNAL:
    return f'received {stop.signal_name or "a signal (another process)"}'
  return f'max_train_seconds={config.max_train_seconds:g} reached'


def run(config, workdir, source=None, eval_source=None):
  """train_and_evaluate with one-line errors, holding the workdir's run
  lock (magjax/workdir_lock.py; process 0 of a multi-host run); returns
  the exit code."""
  try:
    config_schema.check(config)  # before the lock, the data, the compile
    checkpoints.quiet_orbax()  # absl INFO lines (JAX's backend probe too)
    maybe_initialize_distributed(config)  # before jax.process_index()
    with workdir_lock.WorkdirLock(workdir,
                                  enabled=jax.process_index() == 0) as lock:
      if lock.took_over:
        _print(f'note: took over the lock of a run that is gone: '
               f'{workdir_lock.describe(lock.took_over)}')
      train_and_evaluate(config, workdir, source, eval_source)
  except UserError as e:
    return fail(e) if jax.process_index() == 0 else e.exit_code
  except NonFiniteLossError as e:
    _print(f'error: {e}', sys.stderr)
    return 1
  return 0


def _print(message, stream=None):
  if jax.process_index() == 0:
    print(message, file=stream or sys.stdout, flush=True)
