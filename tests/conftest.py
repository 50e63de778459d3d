"""Test-session settings.

JAX's persistent compilation cache (magjax/compile_cache.py) goes to a
directory of this session, removed at its end: the suite shares compiled
programs between its subprocesses and never writes into the user's
~/.cache. Tests of the cache itself pass their own directory.
"""

import os
import shutil
import tempfile

_SESSION_CACHE = tempfile.mkdtemp(prefix='magjax-test-jax-cache-')


def pytest_configure(config):  # pylint: disable=unused-argument
  os.environ.setdefault('MAGJAX_COMPILATION_CACHE', _SESSION_CACHE)


def pytest_unconfigure(config):  # pylint: disable=unused-argument
  shutil.rmtree(_SESSION_CACHE, ignore_errors=True)
