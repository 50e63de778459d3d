"""Checks and derived values of a training config (pure functions)."""

import ml_collections

NAN_POLICIES = ('stop', 'skip')


def global_batch_size(config, num_devices):
  """per_device_batch_size x num_devices when set (> 0), else batch_size."""
  if config.per_device_batch_size < 0:
    raise ValueError('per_device_batch_size must be >= 0, got '
                     f'{config.per_device_batch_size}')
  if config.per_device_batch_size:
    return int(config.per_device_batch_size * num_devices)
  return int(config.batch_size)


def num_train_steps(config, num_train_examples):
  """`config.num_train_steps`, or num_epochs * examples / batch when -1."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  if config.num_train_steps != -1:
    raise ValueError(
        f'num_train_steps must be > 0 or -1, got {config.num_train_steps}')
  steps_per_epoch = num_train_examples // config.batch_size
  if steps_per_epoch < 1:
    raise ValueError(f'batch_size {config.batch_size} exceeds the '
                     f'{num_train_examples} training examples')
  return int(config.num_epochs * steps_per_epoch)


def validate(config, image_shape, num_devices, num_processes):
  """Raises ValueError (one line) for a config that cannot train.

  Args:
    config: the training ConfigDict.
    image_shape: (height, width) of the examples of the source.
    num_devices: global device count (the batch is split over them).
    num_processes: JAX process count (each loads its slice of the batch).
  """
  height, width = image_shape
  if config.crop_size < 1 or config.crop_size > min(height, width):
    raise ValueError(f'crop_size {config.crop_size} does not fit in the '
                     f'{height}x{width} examples')
  depth = config.model.num_downs
  if config.crop_size % (2 ** depth):
    raise ValueError(f'crop_size {config.crop_size} is not divisible by '
                     f'2**num_downs = {2 ** depth}')
  if config.batch_size < 1 or config.batch_size % num_devices:
    raise ValueError(f'batch_size {config.batch_size} is not a positive '
                     f'multiple of the {num_devices} devices')
  if config.batch_size % num_processes:
    raise ValueError(f'batch_size {config.batch_size} is not divisible by '
                     f'the {num_processes} processes')
  if config.nan_policy not in NAN_POLICIES:
    raise ValueError(f'nan_policy must be one of {NAN_POLICIES}, '
                     f'got {config.nan_policy!r}')
  for name in ('log_every_steps', 'checkpoint_every_steps',
               'sample_every_steps', 'keep_checkpoints'):
    if config[name] < 1:
      raise ValueError(f'{name} must be >= 1, got {config[name]}')
  if config.aia_log_max <= config.aia_log_min or config.hmi_saturation <= 0:
    raise ValueError('need aia_log_max > aia_log_min and hmi_saturation > 0')


def to_json(config):
  """The config as JSON text (stored next to every checkpoint)."""
  return ml_collections.ConfigDict(config).to_json_best_effort(
      sort_keys=True, indent=2)
