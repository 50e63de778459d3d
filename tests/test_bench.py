"""The train-step benchmark prints torch_ref's JSON fields with real counts."""

import functools
import glob
import json

import jax
import jax.numpy as jnp
import pytest

from magjax import config_utils
from magjax.training import steps, train_state
from tools import bench


@pytest.mark.slow  # 21 s; the bench tool is timed by make bench
def test_bench_prints_torch_ref_fields_and_fixture_param_counts(
    capsys, tmp_path):
  # rhp at num_downs 5 (tiny) has attention at the innermost level: the
  # rhp_tiny_innermost fixture's counts (shared/bench/README.md).
  bench.main(['--config=configs/rhp.py:tiny', '--size', '32', '--batch', '2',
              '--steps', '2', '--warmup', '1', '--profile', str(tmp_path)])
  out = capsys.readouterr().out.strip()
  result = json.loads(out.splitlines()[-1])
  # --profile: the trace, the HLO and a per-op table naming the model's ops
  assert glob.glob(str(tmp_path / '**' / '*.xplane.pb'), recursive=True)
  assert (tmp_path / 'step.hlo.txt').read_text().startswith('HloModule')
  assert '| kind | ms |' in out
  assert any('UNetGenerator' in l or 'PatchDiscriminator' in l
             for l in out.splitlines() if l.startswith('| '))
  for field in ('ms_per_step_median', 'ms_per_step_min', 'img_per_s',
                'params_G', 'params_D', 'gflop_per_step',
                'direct_gflop_per_step', 'matmul_peak_gflops',
                'fraction_of_peak', 'direct_fraction_of_peak'):
    assert field in result
  assert (result['params_G'], result['params_D']) == (328618, 44521)
  assert result['ms_per_step_min'] <= result['ms_per_step_median']
  assert result['gflop_per_step'] > 0 and result['matmul_peak_gflops'] > 0
  assert result['direct_gflop_per_step'] > 0


def test_direct_conv_flops_count_the_model_not_the_method():
  """Winograd executes fewer FLOPs than the direct convolutions it replaces;
  direct_conv_flops counts the latter whatever method the config asks for."""
  config = config_utils.load_config_file('configs/pix2pix.py:tiny')
  config.model.ngf = config.model.ndf = 16
  config.model.conv = config.model.conv_transpose = 'winograd'
  state = jax.eval_shape(functools.partial(
      train_state.create_train_state, config, image_shape=(64, 64)),
                         jax.random.key(0))  # shapes suffice to lower
  data = {k: jax.ShapeDtypeStruct((2, 64, 64, 1), jnp.float32)
          for k in ('aia', 'hmi')}
  step = jax.jit(lambda s, b: steps.train_step(s, b, config))
  executed = bench._flops(step.lower(state, data).cost_analysis())
  direct = bench.direct_conv_flops(config, state, data)
  assert config.model.conv == 'winograd'  # the config is left as it was
  assert 0 < executed < 0.8 * direct
