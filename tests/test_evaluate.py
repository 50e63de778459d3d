"""magjax.evaluation and eval.py: restore, crops / tiled evaluation, outputs."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import eval_helpers
from magjax.evaluation import evaluate
from magjax.evaluation import inference
from magjax.evaluation import metrics as metrics_lib
from magjax.evaluation import results
from magjax_common.errors import UserError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP = 6


def _source(num, synthetic=True, height=40, width=48):
  source = eval_helpers.memory_source(num, height, width, seed=1,
                                      synthetic=synthetic)
  for i, example in enumerate(source):
    example['pair_id'] = f'201210{i + 1:02d}T000000'.encode()  # TFDS: bytes
    example['t_aia'] = f'2012-10-{i + 1:02d}T00:00:00'
  return source


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('rhp'))
  config = eval_helpers.tiny_config('rhp')
  config.eval_mode = 'both'
  eval_helpers.save_checkpoint(workdir, config, step=STEP)
  source = _source(4)
  result = evaluate.evaluate(config, workdir, source=source,
                             dataset_name='sdo_ar/synthetic (test)')
  return config, workdir, source, result


def test_metrics_json_fields_and_summary_shapes(run):
  config, workdir, source, result = run
  on_disk = results.read(workdir)
  assert on_disk['checkpoint_step'] == STEP
  assert on_disk['synthetic'] is True and on_disk['data_label'] == 'SYNTHETIC'
  assert on_disk['dataset'] == 'sdo_ar/synthetic (test)'
  assert on_disk['split'] == 'test' and on_disk['num_examples'] == 4
  assert on_disk['model'] == 'rhp'
  assert on_disk['eval_modes'] == ['crops', 'tiled']
  assert on_disk['primary_mode'] == 'crops'
  assert on_disk['config_hash'] == result['config_hash']
  assert len(on_disk['config_hash']) == 12
  conventions = on_disk['metric_conventions']
  assert conventions['ssim_paper']['c1'] == 2.55
  assert conventions['ssim_wang']['c2'] == pytest.approx(58.5225)
  assert conventions['cc_binning'] == config.cc_binning
  for mode in ('crops', 'tiled'):
    rows = on_disk['samples'][mode]
    assert [r['pair_id'] for r in rows] == [
        f'201210{i + 1:02d}T000000' for i in range(4)]
    summary = on_disk['summary'][mode]
    assert set(summary) == set(metrics_lib.METRIC_NAMES)
    for name in metrics_lib.METRIC_NAMES:
      stat = summary[name]
      assert set(stat) == {'mean', 'std', 'se', 'n'}
      values = np.array([r[name] for r in rows], float)
      values = values[~np.isnan(values)]
      assert stat['n'] == values.size
      if values.size:
        assert stat['mean'] == pytest.approx(values.mean())
        assert stat['std'] == pytest.approx(values.std())  # population std
      if values.size > 1:
        assert stat['se'] == pytest.approx(values.std(ddof=1)
                                           / np.sqrt(values.size))
  # the baselines, scored on the same samples
  for name in ('zero', 'hale'):
    for mode in ('crops', 'tiled'):
      rows = on_disk['baselines'][name]['samples'][mode]
      assert [r['pair_id'] for r in rows] == [
          r['pair_id'] for r in on_disk['samples'][mode]]
      assert on_disk['baselines'][name]['summary'][mode]['psnr']['n'] == 4
  assert all('crop' in r for r in on_disk['samples']['crops'])
  # Strict JSON (no NaN tokens).
  with open(os.path.join(workdir, 'eval', 'metrics.json')) as f:
    json.loads(f.read(), parse_constant=lambda c: pytest.fail(c))


def test_markdown_states_data_and_step(run):
  _, workdir, _, _ = run
  with open(os.path.join(workdir, 'eval', 'metrics.md')) as f:
    text = f.read()
  assert 'SYNTHETIC' in text
  assert f'step **{STEP}**' in text
  assert '| crops | 4 |' in text and '| tiled | 4 |' in text


def test_markdown_states_the_conventions_the_run_used(run):
  """Not the paper's defaults when the config says otherwise."""
  config, _, _, result = run
  config = eval_helpers.tiny_config('rhp')
  config.hmi_saturation, config.cc_binning = 300.0, 4
  config.ssim_window, config.strong_field = 7, 250.0
  changed = dict(result, metric_conventions=metrics_lib.conventions(config))
  text = results.markdown(changed)
  assert '±300 G' in text and '4×4 binning' in text and 'CC (4×4)' in text
  assert '7×7 Gaussian window' in text and '|B| > 250 G' in text
  assert '±200 G' not in text and '2×2' not in text
  assert 'c1 = 2.55, c2 = 7.65' in text  # the paper's constants, as used
  default = results.markdown(result)
  assert '±200 G' in default and '2×2 binning' in default


def test_crop_rows_match_a_direct_computation(run):
  """Row 2 of the crops mode = G on that crop, denormalised, scored."""
  config, workdir, source, result = run
  variables, step = inference.restore_generator(config, workdir)
  assert step == STEP
  fn = inference.GeneratorFn(config, variables, batch_size=3)
  example = source[2]
  top, left = result['samples']['crops'][2]['crop']
  assert (top, left) == evaluate.crop_offset(config.seed, 2, (40, 48), 32)
  window = np.s_[top:top + 32, left:left + 32]
  x = inference.network_input(example['aia'], example['mask'], config)
  pred = fn(x[None][(slice(None),) + window])[0, ..., 0] * 200.0
  expected = metrics_lib.sample_metrics(
      pred, example['hmi'][window][..., 0], example['mask'][window][..., 0],
      **metrics_lib.metric_kwargs(config))
  for name in metrics_lib.METRIC_NAMES:
    np.testing.assert_allclose(result['samples']['crops'][2][name],
                               expected[name], rtol=1e-5)


def test_samples_npz_for_the_report(run):
  _, workdir, _, _ = run
  with np.load(os.path.join(workdir, 'eval', 'samples.npz')) as data:
    assert data['pred'].shape == data['hmi'].shape == data['aia'].shape
    assert data['pred'].shape == (2, 40, 48)  # eval_keep_samples = 2
    assert data['mask'].dtype == bool
    # Evenly spread over the sorted pair ids: the first and the last.
    assert list(data['pair_id']) == ['20121001T000000', '20121004T000000']
    assert np.isfinite(data['pred']).all()
    assert np.all(np.abs(data['pred']) <= 200.0)
    assert np.isnan(data['hmi'][~data['mask']]).all()
    assert 'HGLN-CAR' in str(data['wcs_header'][0])
    assert data['synthetic'].all()
    assert set(json.loads(str(data['metrics'][0]))) == set(
        metrics_lib.METRIC_NAMES)


def test_crop_offsets_are_pure_and_inside():
  a = [evaluate.crop_offset(0, i, (800, 900), 512) for i in range(50)]
  assert a == [evaluate.crop_offset(0, i, (800, 900), 512) for i in range(50)]
  assert len(set(a)) > 40
  assert all(0 <= t <= 288 and 0 <= l <= 388 for t, l in a)
  assert a != [evaluate.crop_offset(1, i, (800, 900), 512) for i in range(50)]


def test_eval_modes():
  config = eval_helpers.tiny_config('rhp')
  for value, modes in (('crops', ('crops',)), ('tiled', ('tiled',)),
                       ('both', ('crops', 'tiled')),
                       ('tiled,crops', ('tiled', 'crops'))):
    config.eval_mode = value
    assert evaluate.eval_modes(config) == modes
  config.eval_mode = 'whole'
  with pytest.raises(UserError, match='whole'):
    evaluate.eval_modes(config)


def test_real_and_unknown_data_labels(run, tmp_path):
  config, workdir, _, _ = run
  config = eval_helpers.tiny_config('rhp')
  config.eval_mode = 'crops'
  config.eval_keep_samples = 0
  out = tmp_path / 'w'
  eval_helpers.save_checkpoint(str(out), config, step=3)
  real = evaluate.evaluate(config, str(out), source=_source(2, False))
  assert real['synthetic'] is False and real['data_label'] == 'real'
  assert real['checkpoint_step'] == 3
  unknown = evaluate.evaluate(config, str(out), split='validation',
                              source=_source(2, None))
  assert unknown['synthetic'] is None and unknown['data_label'] == 'UNKNOWN'
  assert results.read(str(out))['split'] == 'validation'
  assert not (out / 'eval' / 'samples.npz').exists()


def test_missing_checkpoint_and_step(tmp_path):
  config = eval_helpers.tiny_config('rhp')
  with pytest.raises(UserError, match='no such workdir'):
    evaluate.evaluate(config, str(tmp_path / 'nope'), source=_source(1))
  with pytest.raises(UserError, match='no checkpoint'):
    evaluate.evaluate(config, str(tmp_path), source=_source(1))


def test_eval_cli_one_line_error(tmp_path):
  proc = subprocess.run(
      [sys.executable, 'eval.py', f'--workdir={tmp_path / "nope"}',
       '--config=configs/rhp.py:tiny'],
      cwd=ROOT, capture_output=True, text=True, timeout=120,
      env=dict(os.environ, JAX_PLATFORMS='cpu'))
  assert proc.returncode == 2
  assert proc.stderr.strip().splitlines() == [
      f"error: no such workdir '{tmp_path / 'nope'}'"]


@pytest.mark.slow
def test_evaluate_after_real_training(tmp_path):
  """train.train_and_evaluate for 2 steps, then evaluate its checkpoint."""
  from magjax.training import train  # pylint: disable=g-import-not-at-top
  config = eval_helpers.tiny_config('pix2pix')
  config.num_train_steps = 2
  config.eval_mode = 'tiled'
  source = _source(3)
  train.train_and_evaluate(config, str(tmp_path), source=source)
  result = evaluate.evaluate(None, str(tmp_path), source=source)
  assert result['checkpoint_step'] == 2
  assert result['summary']['tiled']['psnr']['n'] == 3
  assert np.isfinite(result['summary']['tiled']['psnr']['mean'])
