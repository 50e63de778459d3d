"""tools/gpu_check.py (make gpu-check): its dry run on the CPU, end to end,
so the prepared GPU run cannot rot; the MFU arithmetic."""

import json
import os
import subprocess
import sys

import pytest
import train_helpers

from tools import gpu_check
from tools import gpu_peaks

ROOT = train_helpers.ROOT


def _dry_run(tmp_path, *args):
  """Runs the dry run in a subprocess; (exit code, output, report)."""
  proc = subprocess.run(
      [sys.executable, '-m', 'tools.gpu_check', '--dry-run', '--work',
       str(tmp_path / 'work'), '--out', str(tmp_path / 'out'), *args],
      cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
      env=dict(os.environ, OUT=''))
  path = tmp_path / 'out' / 'gpu_check.json'
  report = json.loads(path.read_text()) if path.exists() else {}
  return proc.returncode, proc.stdout + proc.stderr, report


def _check_report(report, models, dtypes=('float32', 'bfloat16')):
  assert [p['phase'] for p in report['phases']] == [
      'env', 'data', 'train step', 'input pipeline', 'train, kill, resume',
      'eval'] or sorted(p['phase'] for p in report['phases']) == sorted(
          ['env', 'data', 'train step', 'input pipeline',
           'train, kill, resume', 'eval'])
  assert all(p['ok'] for p in report['phases']), report['phases']
  jax_rows = [r for r in report['bench'] if r['framework'] == 'jax']
  assert {(r['model'], r['dtype']) for r in jax_rows} == {
      (m, d) for m in models for d in dtypes}
  assert all(r['img_per_s'] > 0 and r['direct_gflop_per_step'] > 0
             for r in jax_rows)
  assert all(r['mfu'] is None for r in jax_rows)  # a CPU has no peak entry
  assert {r['input_cache'] for r in report['input']} == {'device', 'host'}
  assert all(r['crops_per_s_per_core'] > 0 for r in report['input'])
  train = report['train']
  assert train['finished'] and train['global_batch'] == 2
  assert train['resumed_from'] == train['killed_after_checkpoint'] >= 100
  assert report['eval']['checkpoint_step'] == 300
  assert report['eval']['data_label'] == 'SYNTHETIC'
  assert '| phase | seconds | result |' in report['table']


def test_the_dry_run_passes_every_phase_on_the_cpu(tmp_path):
  # Every phase, with one model's bf16 step benchmarked (the float32 step
  # compiles and runs in the training phase): about a minute on 2 quiet
  # cores. The slow test below runs all of it, as `make gpu-check
  # GPU_CHECK_DRY_RUN=1` does.
  rc, out, report = _dry_run(tmp_path, '--models', 'rhp', '--dtypes',
                             'bfloat16', '--budget-s', '600')
  assert rc == 0, out[-2000:]
  assert 'gpu-check passed' in out
  _check_report(report, ['rhp'], ['bfloat16'])


@pytest.mark.slow
def test_the_full_dry_run_passes_in_under_three_minutes(tmp_path):
  # The dry run's own budget (175 s) skips, and so fails, any phase past it.
  rc, out, report = _dry_run(tmp_path)
  assert rc == 0, out[-2000:]
  _check_report(report, list(gpu_check.MODELS))


def test_mfu_uses_the_peak_of_the_dtype_and_is_unknown_elsewhere():
  # 342.5 GFLOP per image x 32 images in 0.1 s on an H100 SXM
  flops = 342.5e9 * 32
  bf16 = gpu_peaks.mfu(flops, 0.1, 'NVIDIA H100 80GB HBM3', 'bfloat16')
  assert bf16 == pytest.approx(flops / 0.1 / 989e12)
  f32 = gpu_peaks.mfu(flops, 0.1, 'NVIDIA H200', 'float32')
  assert f32 == pytest.approx(flops / 0.1 / 494e12)  # TF32 tensor cores
  assert gpu_peaks.peak_flops('NVIDIA H100 PCIe', 'bfloat16')[0] == 756e12
  assert gpu_peaks.mfu(flops, 0.1, 'cpu', 'bfloat16') is None
  assert gpu_peaks.mfu(flops, 0.1, 'NVIDIA B200', 'bfloat16') is None


def test_every_row_takes_its_flops_from_the_jax_row_of_its_model():
  rows = [
      {'framework': 'jax', 'model': 'rhp', 'dtype': 'bfloat16',
       'device': 'NVIDIA A100-SXM4-80GB', 'ms_per_step': 100.0,
       'direct_gflop_per_step': 3120.0},
      {'framework': 'pytorch', 'model': 'rhp', 'dtype': 'bfloat16',
       'device': 'NVIDIA A100-SXM4-80GB', 'ms_per_step': 200.0,
       'direct_gflop_per_step': None},
      {'framework': 'pytorch', 'model': 'cat', 'dtype': 'bfloat16',
       'error': 'skipped'}]
  gpu_check._add_mfu(rows)  # pylint: disable=protected-access
  assert rows[0]['mfu'] == pytest.approx(0.1)  # 3.12 TFLOP / 0.1 s / 312
  assert rows[1]['mfu'] == pytest.approx(0.05)
  assert rows[0]['mfu_peak'] == 'A100 bfloat16'
  assert 'mfu' not in rows[2]


def test_the_gpu_environment_pins_the_jax_the_project_is_tested_with():
  from importlib import metadata  # pylint: disable=g-import-not-at-top
  assert gpu_check.pinned_jax_version() == metadata.version('jax')
