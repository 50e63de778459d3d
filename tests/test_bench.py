"""The train-step benchmark prints torch_ref's JSON fields with real counts."""

import json

from magjax import bench


def test_bench_prints_torch_ref_fields_and_fixture_param_counts(capsys):
  # rhp at num_downs 5 (tiny) has attention at the innermost level: the
  # rhp_tiny_innermost fixture's counts (shared/bench/README.md).
  bench.main(['--config=configs/rhp.py:tiny', '--size', '32', '--batch', '2',
              '--steps', '2', '--warmup', '1'])
  result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  for field in ('ms_per_step_median', 'ms_per_step_min', 'img_per_s',
                'params_G', 'params_D', 'gflop_per_step',
                'matmul_peak_gflops', 'fraction_of_peak'):
    assert field in result
  assert (result['params_G'], result['params_D']) == (328618, 44521)
  assert result['ms_per_step_min'] <= result['ms_per_step_median']
  assert result['gflop_per_step'] > 0 and result['matmul_peak_gflops'] > 0
