"""magjax.xla_env: the XLA flags magjax sets unless the user did."""

import os
import subprocess
import sys

from magjax import xla_env


def test_defaults_are_appended_to_the_users_flags():
  flags = xla_env.with_defaults('--xla_dump_to=/tmp/x')
  assert flags.split() == ['--xla_dump_to=/tmp/x', *xla_env.DEFAULT_FLAGS]


def test_a_flag_the_user_set_keeps_the_users_value():
  name = xla_env.DEFAULT_FLAGS[0].split('=')[0]
  assert xla_env.with_defaults(f'{name}=false') == f'{name}=false'


def test_apply_defaults_sets_the_environment_once():
  environ = {}
  first = xla_env.apply_defaults(environ)
  assert environ['XLA_FLAGS'] == first == ' '.join(xla_env.DEFAULT_FLAGS)
  assert xla_env.apply_defaults(environ) == first


def test_this_xla_knows_every_default_flag():
  # XLA aborts on an unknown flag in XLA_FLAGS, on any backend.
  env = dict(os.environ, XLA_FLAGS=' '.join(xla_env.DEFAULT_FLAGS),
             JAX_PLATFORMS='cpu')
  proc = subprocess.run(
      [sys.executable, '-c', 'import jax; print(jax.numpy.ones(2).sum())'],
      env=env, capture_output=True, text=True, timeout=120, check=False)
  assert proc.returncode == 0, proc.stderr[-500:]
  assert proc.stdout.strip() == '2.0'
