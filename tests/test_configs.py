"""configs/*.py, config_utils and the train.py flags (overrides, errors)."""

import json
import os
import subprocess
import sys

import pytest
import train_helpers

from magjax import config_utils
from magjax_common.errors import UserError


@pytest.mark.parametrize('variant', ['pix2pix', 'cat', 'rhp'])
def test_variants_set_the_model_and_keep_the_paper_settings(variant):
  config = train_helpers.load_config(variant, None)
  assert config.model.name == variant
  assert (config.crop_size, config.batch_size, config.num_epochs) == (512, 32,
                                                                      200)
  assert config.num_train_steps == -1
  assert (config.model.ngf, config.model.num_downs) == (64, 8)


def test_cpu_and_tiny_strings_shrink_the_run():
  cpu = train_helpers.load_config('rhp', 'cpu')
  tiny = train_helpers.load_config('cat', 'tiny')
  assert cpu.model.name == 'rhp' and tiny.model.name == 'cat'
  assert cpu.crop_size < 512 and cpu.num_train_steps > 0
  assert (tiny.crop_size, tiny.model.ngf, tiny.model.ndf,
          tiny.model.num_downs, tiny.batch_size) == (32, 8, 8, 5, 2)
  for config in (cpu, tiny):
    config_utils.validate(config, (800, 900), num_devices=1, num_processes=1)


def test_unknown_config_string_is_an_error():
  with pytest.raises(UserError, match="unknown config string 'foo'"):
    train_helpers.load_config('rhp', 'foo')


def test_num_train_steps_is_derived_from_epochs_when_minus_one():
  config = train_helpers.load_config('rhp', None)
  assert config_utils.num_train_steps(config, 1000) == 200 * (1000 // 32)
  config.num_train_steps = 17
  assert config_utils.num_train_steps(config, 1000) == 17
  config.num_train_steps = -1
  with pytest.raises(ValueError, match='exceeds the 10 training examples'):
    config_utils.num_train_steps(config, 10)
  config.num_train_steps = 0
  with pytest.raises(ValueError, match='num_train_steps'):
    config_utils.num_train_steps(config, 1000)


@pytest.mark.parametrize('change, message', [
    ({'crop_size': 1024}, 'does not fit'),
    ({'crop_size': 500}, 'not a multiple of 2\\*\\*num_downs'),
    ({'batch_size': 3}, 'multiple of the 2 devices'),
    ({'nan_policy': 'ignore'}, 'nan_policy'),
    ({'log_every_steps': 0}, 'log_every_steps'),
    ({'eval_every_steps': -1}, 'eval_every_steps'),
    ({'eval_batch_size': -2}, 'eval_batch_size'),
    ({'validation_examples': 0}, 'validation_examples'),
])
def test_validate_rejects_unusable_configs(change, message):
  config = train_helpers.load_config('rhp', None)
  config.update(change)
  with pytest.raises(ValueError, match=message):
    config_utils.validate(config, (800, 900), num_devices=2, num_processes=1)


def _parse(*overrides, variant='rhp.py:cpu'):
  return train_helpers.parse_config(f'configs/{variant}', overrides)


def test_overrides_parse_numbers_and_booleans():
  config = _parse('--config.batch_size=8', '--config.model.ngf=16',
                  '--config.model.bn_unbiased_running_var=False',
                  '--config.half_precision=True')
  assert config.batch_size == 8 and config.model.ngf == 16
  assert config.model.bn_unbiased_running_var is False
  assert config.half_precision is True
  assert config.model.name == 'rhp' and config.crop_size == 128


def test_every_evaluation_setting_is_a_config_field_that_parses():
  config = _parse('--config.eval_batch_size=8', '--config.eval_keep_samples=0',
                  '--config.eval_every_steps=0', '--config.eval_mode=both',
                  '--config.validation_examples=-1',
                  '--config.validation_split=test', '--config.cc_binning=4',
                  '--config.eval_tile_overlap=16')
  assert (config.eval_batch_size, config.eval_keep_samples,
          config.eval_every_steps, config.validation_examples) == (8, 0, 0, -1)
  assert (config.eval_mode, config.validation_split, config.cc_binning,
          config.eval_tile_overlap) == ('both', 'test', 4, 16)


def test_config_files_load_from_any_working_directory(tmp_path):
  """configs/ is a package: the variants' `from configs import default`
  needs no sys.path patch (python -m magjax.predict --config from /tmp)."""
  script = ('from magjax import config_utils; import sys; '
            'print(config_utils.load_config_file(sys.argv[1]).model.name)')
  result = subprocess.run(
      [sys.executable, '-c', script,
       os.path.join(train_helpers.ROOT, 'configs', 'cat.py:tiny')],
      cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
  assert result.returncode == 0, result.stderr
  assert result.stdout.strip() == 'cat'


def test_a_config_saved_before_a_field_existed_gets_its_default():
  """A magjax 0.2 checkpoint's config: no evaluation fields yet, and a
  transposed-convolution method name of the old vocabulary."""
  saved = config_utils.to_json(train_helpers.load_config('cat', 'cpu'))
  data = json.loads(saved)
  for name in ('eval_batch_size', 'eval_keep_samples', 'eval_every_steps',
               'validation_split', 'validation_examples'):
    del data[name]
  data['model']['conv_transpose'] = 'subpixel'
  data['synthetic'] = True  # recorded by training, not in the defaults
  config = config_utils.config_from_json(json.dumps(data))
  assert (config.eval_batch_size, config.eval_every_steps,
          config.validation_split) == (0, 1000, 'validation')
  assert config.model.conv_transpose == 'xla'
  assert (config.model.name, config.crop_size, config.synthetic) == (
      'cat', 128, True)
  with pytest.raises(ValueError, match='no usable config'):
    config_utils.config_from_json('{"seed": 1}')


def _train_py(*args, tmp_path):
  return subprocess.run(
      [sys.executable, os.path.join(train_helpers.ROOT, 'train.py'),
       f'--workdir={tmp_path}', *args],
      cwd=train_helpers.ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'), check=False)


@pytest.mark.parametrize('args, message', [
    (['--config=configs/rhp.py:tiny', '--config.no_such=1'],
     "error: unknown config field 'no_such'"),
    (['--config=configs/rhp.py:tiny', '--config.model.ngff=1'],
     "error: unknown config field 'ngff'"),
    (['--config=configs/rhp.py:foo'], "unknown config string 'foo'"),
    (['--config=configs/nope.py'], 'No such file'),
    (['--config=configs/rhp.py:tiny', '--config.batch_size=x'],
     'error: flag --config.batch_size=x'),
    (['--config=configs/rhp.py:tiny', '--config.data_dir=/nonexistent'],
     "error: no sdo_ar data set under '/nonexistent'"),
])
def test_cli_errors_are_one_line_with_exit_code_2(args, message, tmp_path):
  result = _train_py(*args, tmp_path=tmp_path)
  assert result.returncode == 2, result.stderr
  errors = [l for l in result.stderr.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and message in errors[0], result.stderr
  assert 'Traceback' not in result.stderr


@pytest.mark.parametrize('variant', ['pix2pix', 'cat', 'rhp'])
@pytest.mark.parametrize('string, devices, batch', [
    ('gpu8', 8, 32), ('gpu8', 16, 64), ('tpu', 8, 32), ('tpu', 32, 128)])
def test_cluster_strings_resolve_the_batch_from_the_device_count(
    variant, string, devices, batch):
  config = train_helpers.load_config(variant, string)
  assert config.model.name == variant
  assert (config.crop_size, config.model.num_downs) == (512, 8)
  assert config.half_precision is (string == 'tpu')
  assert config_utils.global_batch_size(config, devices) == batch
  config.batch_size = config_utils.global_batch_size(config, devices)
  config_utils.validate(config, (800, 900), num_devices=devices,
                        num_processes=devices // 8)


def test_per_device_batch_size_zero_keeps_batch_size():
  config = train_helpers.load_config('rhp', None)
  assert config.per_device_batch_size == 0
  assert config_utils.global_batch_size(config, 8) == 32
  config.per_device_batch_size = -1
  with pytest.raises(ValueError, match='per_device_batch_size'):
    config_utils.global_batch_size(config, 8)


def test_gpu8_parses_with_cluster_overrides():
  config = _parse('--config.distributed.initialize=True',
                  '--config.half_precision=True',
                  '--config.per_device_batch_size=2', variant='rhp.py:gpu8')
  assert config.distributed.initialize is True
  assert config_utils.global_batch_size(config, 8) == 16
