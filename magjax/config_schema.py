"""What every config field may hold, checked before any work starts.

`check(config)` walks the config and raises one `UserError` line naming the
field, the value and what is allowed (`config field model.dropout = 1.5:
must be a number in [0, 1)`); then the relations between fields that need
no data (crop_size against num_downs and the discriminator's depth, the
attention level against the depth). Checks that need the data or the
devices (the crop fits the examples, the batch divides over the devices)
stay in `config_utils.validate`.

Every field of configs/default.py has a rule in RULES (a test walks the
config and tries a bad value of each kind); a field no rule names is
refused too, so a setting cannot be added without saying what it may hold.
Pure Python: the commands check their config before importing JAX.
"""

import math

from magjax_common.errors import UserError

# model.conv / model.conv_transpose: kernels.CHOICES (kernels imports JAX;
# tests/test_config_schema.py keeps the two equal).
CONV_CHOICES = ('auto', 'xla', 'matmul', 'winograd')
MODEL_NAMES = ('pix2pix', 'cat', 'rhp')  # magjax.models.MODEL_NAMES


class ConfigError(UserError, ValueError):
  """A setting out of its range (one line; a ValueError for callers that
  check configs as values)."""


class Int:
  """An integer in [lo, hi] (None: unbounded), or one of `special`."""

  def __init__(self, lo=None, hi=None, special=()):
    self.lo, self.hi, self.special = lo, hi, tuple(special)

  def ok(self, value):
    if isinstance(value, bool) or not isinstance(value, int):
      return False
    return value in self.special or (
        (self.lo is None or value >= self.lo)
        and (self.hi is None or value <= self.hi))

  def allowed(self):
    if self.lo is not None and self.hi is not None:
      text = f'an integer in [{self.lo}, {self.hi}]'
    elif self.lo is not None:
      text = f'an integer >= {self.lo}'
    elif self.hi is not None:
      text = f'an integer <= {self.hi}'
    else:
      text = 'an integer'
    return text + ''.join(f' or {s}' for s in self.special)


class Float:
  """A finite number within bounds; `open_lo` / `open_hi` exclude them."""

  def __init__(self, lo=None, hi=None, open_lo=False, open_hi=False):
    self.lo, self.hi, self.open_lo, self.open_hi = lo, hi, open_lo, open_hi

  def ok(self, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return False
    if not math.isfinite(value):
      return False
    if self.lo is not None and (value < self.lo or
                                (self.open_lo and value == self.lo)):
      return False
    return self.hi is None or not (value > self.hi or
                                   (self.open_hi and value == self.hi))

  def allowed(self):
    if self.lo is None and self.hi is None:
      return 'a finite number'
    if self.hi is None:
      return f'a number {">" if self.open_lo else ">="} {self.lo:g}'
    if self.lo is None:
      return f'a number {"<" if self.open_hi else "<="} {self.hi:g}'
    return (f'a number in {"(" if self.open_lo else "["}{self.lo:g}, '
            f'{self.hi:g}{")" if self.open_hi else "]"}')


class Choice:
  """One of the listed values."""

  def __init__(self, *values):
    self.values = values

  def ok(self, value):
    return not isinstance(value, bool) and value in self.values or (
        isinstance(value, bool) and value in self.values
        and any(isinstance(v, bool) for v in self.values))

  def allowed(self):
    return 'one of ' + ', '.join(repr(v) for v in self.values)


class Bool:

  def ok(self, value):
    return isinstance(value, bool)

  def allowed(self):
    return 'True or False'


class Text:
  """A string (a name, a path, an address); `empty` allows ''."""

  def __init__(self, empty=False):
    self.empty = empty

  def ok(self, value):
    return isinstance(value, str) and (self.empty or value.strip() != '')

  def allowed(self):
    return 'a string' if self.empty else 'a non-empty string'


class Optional:
  """None, or what `rule` allows (fields training records, e.g. synthetic)."""

  def __init__(self, rule):
    self.rule = rule

  def ok(self, value):
    return value is None or self.rule.ok(value)

  def allowed(self):
    return f'None or {self.rule.allowed()}'


POSITIVE = Float(0, open_lo=True)
STEPS = Int(1)
FRACTION = Float(0, 1)

RULES = {
    'seed': Int(0, 2 ** 32 - 1),
    # data
    'dataset': Text(), 'data_dir': Text(), 'train_split': Text(),
    'eval_split': Text(), 'validation_split': Text(),
    'crop_size': Int(1, 8192),
    'patch_binning': Int(1, 16),
    'hmi_saturation': POSITIVE,
    'aia_floor': POSITIVE,
    'aia_log_min': Float(), 'aia_log_max': Float(),
    'aia_quiet_sun': POSITIVE,
    'prefetch': Int(1, 64),
    'aia_fill': Float(-1, 1), 'hmi_fill': Float(-1, 1),
    'input_cache': Choice('auto', 'device', 'host', 'off'),
    'input_cache_max_mb': Float(0),
    # training
    'batch_size': Int(1),
    'per_device_batch_size': Int(0),
    'num_epochs': Int(1),
    'num_train_steps': Int(1, special=(-1,)),
    'learning_rate': Float(0, 1, open_lo=True),
    'b1': Float(0, 1, open_hi=True), 'b2': Float(0, 1, open_hi=True),
    'adam_eps': POSITIVE,
    'lr_constant_fraction': FRACTION,
    'gan_mode': Choice('vanilla', 'lsgan'),
    'lambda_l1': Float(0),
    'nan_policy': Choice('stop', 'skip'),
    'half_precision': Bool(),
    'max_train_seconds': Float(0),
    'compilation_cache_dir': Text(),
    'stop_after_steps': Int(0),
    # logging and checkpoints
    'log_every_steps': STEPS, 'sample_every_steps': STEPS,
    'checkpoint_every_steps': STEPS, 'keep_checkpoints': STEPS,
    # evaluation
    'eval_mode': Choice('crops', 'tiled', 'both'),
    'eval_tile_overlap': Int(0),
    'eval_batch_size': Int(0),
    'eval_keep_samples': Int(0),
    'ssim_window': Int(3),
    'ssim_sigma': POSITIVE,
    'cc_binning': Int(1, 64),
    'strong_field': POSITIVE,
    'eval_every_steps': Int(0),
    'validation_examples': Int(1, special=(-1,)),
    'baseline_north_leading_sign': Choice(-1.0, 1.0),
    'baseline_region_gauss': POSITIVE,
    'baseline_smooth_deg': POSITIVE,
    'baseline_fit_examples': Int(1),
    # distributed
    'distributed.initialize': Bool(),
    'distributed.coordinator_address': Text(empty=True),
    'distributed.num_processes': Int(1, special=(-1,)),
    'distributed.process_id': Int(0, special=(-1,)),
    # model
    'model.name': Choice(*MODEL_NAMES),
    'model.input_nc': Int(1, 64), 'model.output_nc': Int(1, 64),
    'model.ngf': Int(1, 4096), 'model.ndf': Int(1, 4096),
    'model.num_downs': Int(1, 13),
    'model.attn_level': Int(1, special=(-1,)),
    'model.key_reduction': Int(1), 'model.value_reduction': Int(1),
    'model.dropout': Float(0, 1, open_hi=True),
    'model.norm': Choice('batch', 'none'),
    'model.n_layers_d': Int(1, 12),
    'model.init_std': POSITIVE,
    'model.bn_momentum': FRACTION,
    'model.bn_epsilon': POSITIVE,
    'model.bn_unbiased_running_var': Bool(),
    'model.sn_epsilon': POSITIVE,
    'model.conv': Choice(*CONV_CHOICES),
    'model.conv_transpose': Choice(*CONV_CHOICES),
    # recorded by training with each checkpoint (absent from configs/)
    'synthetic': Optional(Bool()),
    'dataset_version': Optional(Text()),
}


def fields(config, prefix=''):
  """[(dotted name, value)] of every leaf of a ConfigDict / dict."""
  out = []
  for key in sorted(config.keys()):
    value = config[key]
    if hasattr(value, 'keys'):
      out += fields(value, f'{prefix}{key}.')
    else:
      out.append((f'{prefix}{key}', value))
  return out


def check(config, saved=False):
  """Raises ConfigError (one line) for the first field out of its range.

  `saved`: the config stored with a checkpoint, where fields of another
  magjax version are history, not typos (they are passed over).
  Returns the config, for chaining.
  """
  for name, value in fields(config):
    rule = RULES.get(name)
    if rule is None and saved:
      continue
    if rule is None:
      raise ConfigError(f'config field {name} is not a magjax setting (no '
                      'rule in magjax/config_schema.py says what it may hold)')
    if not rule.ok(value):
      raise ConfigError(f'config field {name} = {value!r}: must be '
                      f'{rule.allowed()}')
  _check_relations(config)
  return config


def _check_relations(config):
  """Relations between fields that need no data."""
  def bad(message):
    raise ConfigError(f'config: {message}')
  model = config.model
  if config.crop_size % (2 ** model.num_downs):
    bad(f'crop_size {config.crop_size} is not a multiple of 2**num_downs = '
        f'{2 ** model.num_downs} (model.num_downs {model.num_downs})')
  if model.attn_level != -1 and model.attn_level > model.num_downs:
    bad(f'model.attn_level {model.attn_level} is deeper than model.num_downs '
        f'{model.num_downs}')
  if config.aia_log_max <= config.aia_log_min:
    bad(f'aia_log_max {config.aia_log_max:g} must exceed aia_log_min '
        f'{config.aia_log_min:g}')
  if config.ssim_window % 2 == 0:
    bad(f'ssim_window {config.ssim_window} must be odd')
  if config.ssim_window > config.crop_size:
    bad(f'ssim_window {config.ssim_window} exceeds crop_size '
        f'{config.crop_size}')
  if (config.crop_size >> model.n_layers_d) - 2 < 1:  # discriminator.py
    bad(f'model.n_layers_d {model.n_layers_d} leaves the discriminator no '
        f'logit on a {config.crop_size}^2 crop')
  dist = config.distributed
  if dist.num_processes > 0 and dist.process_id >= dist.num_processes:
    bad(f'distributed.process_id {dist.process_id} is not below '
        f'distributed.num_processes {dist.num_processes}')
