"""The baselines (evaluation/baselines.py) and the significance of the
differences between models and baselines (evaluation/comparison.py)."""

import math

import ml_collections
import numpy as np
import pytest

from magjax.evaluation import baselines, comparison


def _config():
  return ml_collections.ConfigDict(dict(
      baseline_north_leading_sign=-1.0, baseline_region_gauss=20.0,
      baseline_smooth_deg=0.4))


def test_brightness_map_is_the_monotone_quantile_match():
  rng = np.random.default_rng(0)
  b = rng.exponential(30.0, (50, 50))
  aia = 20.0 + 3.0 * b ** 0.8  # any monotone relation
  bmap = baselines.BrightnessMap.fit([(aia, b, np.ones_like(b, bool))], 200.0)
  np.testing.assert_allclose(bmap(aia), np.clip(b, 0, 200), rtol=0.02,
                             atol=0.5)  # |B| saturates as HMI is clipped
  assert np.all(np.diff(bmap(np.linspace(20, 500, 50))) >= 0)


def test_hale_field_gives_the_western_part_the_leading_polarity():
  """A bright region in the north: west (larger lon, larger column) gets
  the northern leading polarity (negative in cycle 24), east positive; the
  same region in the south the opposite."""
  shape = (200, 225)  # the :cpu binned patch, 0.4 deg/px
  lon, lat = baselines.patch_lonlat(shape, binning=4)
  for lat0, west_sign in ((15.0, -1.0), (-15.0, 1.0)):
    blob = np.exp(-((lon - 5) ** 2 + (lat - lat0) ** 2) / (2 * 3.0 ** 2))
    aia = 20 + 500 * blob
    bmap = baselines.BrightnessMap(np.array([20.0, 520.0]),
                                   np.array([0.0, 500.0]))
    field = baselines.hale_field(aia, np.ones(shape, bool), bmap, _config(),
                                 binning=4)
    row = int(np.argmin(np.abs(lat[:, 0] - lat0)))
    west = field[row, np.argmin(np.abs(lon[0] - 8))]
    east = field[row, np.argmin(np.abs(lon[0] - 2))]
    assert np.sign(west) == west_sign and np.sign(east) == -west_sign
  assert np.all(baselines.zero_field(shape) == 0)


def _rows(values):
  return [{'index': i, 'cc_binned': v, 'cc_abs_binned': v}
          for i, v in enumerate(values)]


def test_paired_differences_and_their_standard_error():
  a = _rows([0.5, 0.6, 0.7, 0.8])
  b = _rows([0.4, 0.5, 0.6, 0.8])
  mean, se, n = comparison.paired(a, b, 'cc_binned')
  d = np.array([0.1, 0.1, 0.1, 0.0])
  assert (mean, n) == (pytest.approx(d.mean()), 4)
  assert se == pytest.approx(d.std(ddof=1) / 2)
  zero = _rows([math.nan] * 4)  # the zero field: undefined, counted as 0
  mean, _, n = comparison.paired(a, zero, 'cc_binned', b_is_zero=True)
  assert (mean, n) == (pytest.approx(0.65), 4)


def _result(model, values, baseline_values=None):
  summary = {'cc_binned': {'mean': float(np.mean(values)), 'se': 0.01,
                           'n': len(values)},
             'cc_abs_binned': {'mean': 0.8, 'se': 0.01, 'n': len(values)},
             'psnr': {'mean': 27.0, 'se': 0.1, 'n': len(values)},
             'ssim_paper': {'mean': 0.2, 'se': 0.01, 'n': len(values)}}
  result = {'model': model, 'split': 'test', 'primary_mode': 'crops',
            'summary': {'crops': summary},
            'samples': {'crops': _rows(values)}}
  if baseline_values is not None:
    result['baselines'] = {name: {
        'summary': {'crops': dict(summary, cc_binned={
            'mean': float(np.nanmean(v)) if name == 'hale' else math.nan,
            'se': 0.05, 'n': len(v)})},
        'samples': {'crops': _rows(v)}}
                           for name, v in baseline_values.items()}
  return result


def test_summary_rows_and_significance_of_models_and_baselines():
  runs = [_result('pix2pix', [0.70, 0.72, 0.74, 0.76, 0.71]),
          _result('rhp', [0.71, 0.73, 0.75, 0.77, 0.72],
                  {'zero': [math.nan] * 5, 'hale': [0.3, 0.2, 0.35, 0.25,
                                                    0.3]})]
  rows = comparison.summary_rows(runs)
  assert [(r['name'], r['kind']) for r in rows] == [
      ('pix2pix', 'model'), ('rhp', 'model'), ('zero', 'baseline'),
      ('hale', 'baseline')]
  assert set(rows[0]) >= {'name', 'kind', 'split', 'cc', 'cc_se', 'cc_abs',
                          'cc_abs_se', 'psnr', 'ssim', 'n'}
  assert rows[2]['cc'] == 0.0 and rows[2]['cc_se'] == 0.0
  verdicts = {(a, b, k): s for a, b, k, _, _, _, s in
              comparison.significance(runs)}
  assert verdicts['rhp', 'hale', 'cc']  # +0.45, tiny spread
  assert verdicts['rhp', 'zero', 'cc']
  assert verdicts['pix2pix', 'rhp', 'cc']  # -0.01 every time: se 0
  assert verdicts['pix2pix', 'hale', 'cc_abs']
