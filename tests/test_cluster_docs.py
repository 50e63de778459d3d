"""docs/CLUSTER.md names only real flags and config fields."""

import argparse
import os
import re

import pytest
import train_helpers

from data_prep import build

DOC = os.path.join(train_helpers.ROOT, 'docs', 'CLUSTER.md')


def _text():
  with open(DOC, encoding='utf-8') as f:
    return f.read()


def _commands(text, marker):
  """Each command of a code block containing `marker` (continuations joined),
  from `marker` on."""
  blocks = re.findall(r'```sh\n(.*?)```', text, flags=re.S)
  joined = re.sub(r'\\\n\s*', ' ', '\n'.join(blocks))
  return [marker + line.split(marker, 1)[1]
          for line in joined.splitlines() if marker in line]


def _parse_config(config_arg, overrides):
  return train_helpers.parse_config(config_arg, overrides)


def test_every_train_command_parses_against_its_config():
  commands = _commands(_text(), 'train.py ')
  assert len(commands) >= 3  # SLURM, explicit variables, Cloud TPU
  seen = set()
  for command in commands:
    command = command.strip().strip('"')
    config_arg = re.search(r'--config=(\S+)', command).group(1).strip('"')
    overrides = [m.strip('"') for m in
                 re.findall(r'--config\.[\w.]+=\S+', command)]
    for flag in re.findall(r'(?<!\S)--([\w.]+)', command):
      assert flag in ('config', 'workdir') or flag.startswith('config.'), (
          flag, command)
    config = _parse_config(config_arg, overrides)  # unknown field: error
    seen.update(overrides)
    assert config.crop_size == 512
  assert '--config.distributed.initialize=True' in seen


def test_unknown_field_would_be_caught():
  with pytest.raises(Exception):
    _parse_config('configs/rhp.py:gpu8', ['--config.no_such_field=1'])


def test_every_prepare_build_command_parses():
  commands = _commands(_text(), 'data_prep.prepare build')
  assert any('--scheduler local' in c for c in commands)
  parser = argparse.ArgumentParser()
  build.add_arguments(parser)
  for command in commands:
    args = command[len('data_prep.prepare build'):]
    args = re.sub(r'"\$\(.*\)"', 'ADDRESS', args).split()
    parsed = parser.parse_args(args)  # exits on an unknown flag
    assert parsed.scheduler
