"""Test-session settings.

JAX's persistent compilation cache (magjax/compile_cache.py) is off for the
suite: entry points called in-process would otherwise turn it on for the
whole pytest process, and serialising every test's compiles costs more
than the suite's few repeated compiles save. Tests of the cache pass
their own directory.
"""

import os


def pytest_configure(config):  # pylint: disable=unused-argument
  os.environ.setdefault('MAGJAX_COMPILATION_CACHE', 'off')
