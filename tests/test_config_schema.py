"""magjax.config_schema: every setting has a rule; a value out of range is
one line naming the field, the value and what is allowed."""

import glob
import math
import os
import subprocess
import sys

import ml_collections
import pytest

from magjax import config_schema
from magjax import config_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VARIANTS = [f'{path}{arg}' for path in sorted(glob.glob(
    os.path.join(ROOT, 'configs', '[a-z]*.py')))
            if not path.endswith('default.py')
            for arg in ('', ':cpu', ':tiny', ':gpu8', ':tpu')]


def _default():
  return config_utils.load_config_file(os.path.join(ROOT, 'configs',
                                                    'rhp.py'))


@pytest.mark.parametrize('spec', VARIANTS,
                         ids=[os.path.basename(v) for v in VARIANTS])
def test_every_variant_passes_and_every_field_has_a_rule(spec):
  config = config_utils.load_config_file(spec)
  assert config_schema.check(config) is config
  names = {name for name, _ in config_schema.fields(config)}
  assert names <= set(config_schema.RULES)


def _bad_values(rule):
  """Values of each kind the rule must refuse."""
  if isinstance(rule, config_schema.Optional):
    return [v for v in _bad_values(rule.rule) if v is not None]
  if isinstance(rule, config_schema.Int):
    out = [1.5, 'many', True, None]
    if rule.lo is not None:
      out.append(min([rule.lo - 1] + [s - 1 for s in rule.special]))
    if rule.hi is not None:
      out.append(rule.hi + 1)
    return out
  if isinstance(rule, config_schema.Float):
    out = [math.nan, math.inf, 'fast', None]
    if rule.lo is not None:
      out.append(rule.lo if rule.open_lo else rule.lo - 0.5)
    if rule.hi is not None:
      out.append(rule.hi if rule.open_hi else rule.hi + 0.5)
    return out
  if isinstance(rule, config_schema.Choice):
    return ['nonsense', 7, None]
  if isinstance(rule, config_schema.Bool):
    return ['False', 0, None]
  if isinstance(rule, config_schema.Text):
    return [5, None] + ([] if rule.empty else ['', '  '])
  raise AssertionError(f'no bad values for {rule}')


def _with(config, name, value):
  data = config.to_dict()
  node = data
  *parents, leaf = name.split('.')
  for key in parents:
    node = node[key]
  node[leaf] = value
  return ml_collections.ConfigDict(data)


def test_a_bad_value_of_each_kind_in_each_field_is_one_line():
  config = _default()
  config.synthetic = True
  config.dataset_version = '2.0.0'
  tried = 0
  for name, _ in config_schema.fields(config):
    rule = config_schema.RULES[name]
    for value in _bad_values(rule):
      with pytest.raises(config_schema.ConfigError) as info:
        config_schema.check(_with(config, name, value))
      message = str(info.value)
      assert message == (f'config field {name} = {value!r}: must be '
                         f'{rule.allowed()}'), message
      assert '\n' not in message
      tried += 1
  assert tried > 300


def test_allowed_texts_read_as_ranges():
  assert config_schema.RULES['model.dropout'].allowed() == (
      'a number in [0, 1)')
  assert config_schema.RULES['num_train_steps'].allowed() == (
      'an integer >= 1 or -1')
  assert config_schema.RULES['learning_rate'].allowed() == (
      'a number in (0, 1]')


def test_a_field_without_a_rule_is_refused():
  config = _default()
  config.crop_szie = 256
  with pytest.raises(config_schema.ConfigError,
                     match='config field crop_szie is not a magjax setting'):
    config_schema.check(config)


@pytest.mark.parametrize('change, message', [
    ({'crop_size': 500}, 'crop_size 500 is not a multiple of 2\\*\\*num_downs'),
    ({'model.attn_level': 9}, 'model.attn_level 9 is deeper than model.num_downs'),
    ({'aia_log_max': -1.0}, 'aia_log_max -1 must exceed aia_log_min 0'),
    ({'ssim_window': 10}, 'ssim_window 10 must be odd'),
    ({'model.n_layers_d': 9}, 'model.n_layers_d 9 leaves the discriminator no '
                              'logit'),
    ({'distributed.num_processes': 2, 'distributed.process_id': 2},
     'distributed.process_id 2 is not below'),
])
def test_fields_that_contradict_each_other_are_one_line(change, message):
  config = _default()
  for name, value in change.items():
    config = _with(config, name, value)
  with pytest.raises(config_schema.ConfigError, match='^config: ' + message):
    config_schema.check(config)


def test_the_schema_names_the_models_and_kernels_the_code_has():
  from magjax import kernels, models  # pylint: disable=g-import-not-at-top
  assert config_schema.CONV_CHOICES == kernels.CHOICES
  assert config_schema.MODEL_NAMES == models.MODEL_NAMES


def test_train_py_refuses_a_bad_setting_in_one_line_before_any_work(tmp_path):
  workdir = tmp_path / 'run'
  proc = subprocess.run(
      [sys.executable, os.path.join(ROOT, 'train.py'),
       '--config=configs/rhp.py:tiny', f'--workdir={workdir}',
       '--config.model.dropout=1.5'],
      cwd=ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), check=False)
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      'error: config field model.dropout = 1.5: must be a number in [0, 1)']
  assert not workdir.exists()


def test_a_checkpoints_fields_of_another_version_are_passed_over():
  config = _default()
  config.retired_setting = 3
  assert config_schema.check(config, saved=True) is config
  config.model.dropout = 2.0
  with pytest.raises(config_schema.ConfigError, match='model.dropout'):
    config_schema.check(config, saved=True)
