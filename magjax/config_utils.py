"""The config: loading, checking, derived values, identity (pure functions).

- `load_config_file('configs/rhp.py:cpu')`: what `config_flags` does, for
  the module CLIs (`python -m magjax.predict --config ...`) and the tools;
- `global_batch_size`, `num_train_steps`, `validate`: derived values and
  checks before training;
- `to_json`, `config_from_json`, `config_hash`: the text stored next to
  every checkpoint, read back, and its short hash that names results;
- `trained_on_synthetic(config)`: whether the training data is the
  SYNTHETIC `sdo_ar` build (the rule of `input_pipeline.load_source`: the
  data set `sdo_ar` is read with its default builder config, `synthetic`;
  only an explicit `sdo_ar/real`, or a field `synthetic = False` recorded by
  training from the data, is real).
"""

import hashlib
import importlib.util
import json
import os

import ml_collections

from magjax import config_schema
from magjax_common.errors import UserError, one_line


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

  Every field's range first (config_schema.check: its ConfigError is a
  ValueError too), then what depends on the data and the devices.

  Args:
    config: the training ConfigDict.
    image_shape: (height, width) of the examples of the source.
    num_devices: global device count (the batch is split over them).
    num_processes: JAX process count (each loads its slice of the batch).
  """
  config_schema.check(config)
  height, width = image_shape
  if config.crop_size > min(height, width):
    raise ValueError(f'crop_size {config.crop_size} does not fit in the '
                     f'{height}x{width} examples')
  if config.batch_size % num_devices:
    raise ValueError(f'batch_size {config.batch_size} is not a positive '
                     f'multiple of the {num_devices} devices')
  if config.batch_size % num_processes:
    raise ValueError(f'batch_size {config.batch_size} is not divisible by '
                     f'the {num_processes} processes')


def to_json(config):
  """The config as JSON text (stored next to every checkpoint)."""
  return ml_collections.ConfigDict(config).to_json_best_effort(
      sort_keys=True, indent=2)


# What magjax 0.2 checkpoints may hold in model.conv_transpose, before
# kernels.METHODS became the one vocabulary of both convolutions.
LEGACY_CONV_TRANSPOSE = {'subpixel': 'xla', 'lax': 'xla'}


def config_from_json(data):
  """A ConfigDict from the JSON (text or dict) stored with a checkpoint.

  Fields added to configs/default.py after the checkpoint was written take
  their defaults, and 0.2's transposed-convolution method names map to
  kernels.METHODS, so an older workdir still evaluates.

  Raises:
    ValueError: no usable config in it.
  """
  if isinstance(data, str):
    data = json.loads(data)
  if not isinstance(data, dict) or 'model' not in data:
    raise ValueError('the checkpoint meta holds no usable config')
  from configs import default  # pylint: disable=g-import-not-at-top
  config = default.get_config()
  try:
    config.update(data)
  except (TypeError, ValueError):  # a field whose type changed since
    config = ml_collections.ConfigDict(data)
  model = config.model
  model.conv_transpose = LEGACY_CONV_TRANSPOSE.get(model.conv_transpose,
                                                   model.conv_transpose)
  return config


def config_hash(config):
  """First 12 hex digits of sha256 of the config's canonical JSON."""
  return hashlib.sha256(to_json(config).encode('utf-8')).hexdigest()[:12]


def trained_on_synthetic(config):
  """True when `config`'s data set is the SYNTHETIC `sdo_ar` build."""
  if config.get('synthetic') is not None:  # recorded by train.py from the data
    return bool(config.synthetic)
  name = str(config.get('dataset', 'sdo_ar'))
  builder_config = name.split('/', 1)[1] if '/' in name else 'synthetic'
  return builder_config != 'real'


def load_config_file(spec):
  """`get_config(arg)` of 'path/to/config.py[:arg]', as config_flags does.

  The variants import `configs.default`, which the install provides.

  Raises:
    UserError: no such file, no get_config, or get_config failed.
  """
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise UserError(f'no such config file {path!r}')
  module_spec = importlib.util.spec_from_file_location('_magjax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
  except Exception as e:  # pylint: disable=broad-except  # user code
    raise UserError(f'config {spec!r} failed: {one_line(e)}') from e
