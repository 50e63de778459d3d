"""host_memory.tune_malloc: applied on glibc, skipped when asked."""

import subprocess
import sys

from magjax import host_memory


def _run(code, env=None):
  return subprocess.run([sys.executable, '-c', code], capture_output=True,
                        text=True, env=env, check=True).stdout.strip()


def test_tune_malloc_applies_on_glibc_and_large_buffers_still_work():
  # In a child process: the settings are process-wide.
  out = _run('from magjax import host_memory\n'
             'import numpy as np\n'
             'ok = host_memory.tune_malloc()\n'
             'a = np.ones(64 * 2**20 // 8); del a\n'  # a 64 MB block, freed
             'b = np.ones(64 * 2**20 // 8)\n'
             'print(ok, float(b.sum()))')
  applied, total = out.split()
  assert applied == 'True'  # these machines run glibc
  assert float(total) == 64 * 2 ** 20 // 8


def test_disable_variable_leaves_malloc_alone(monkeypatch):
  monkeypatch.setenv(host_memory.DISABLE_ENV, '1')
  assert host_memory.tune_malloc() is False
