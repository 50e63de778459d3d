"""Pairing AIA with HMI by observation time (data_prep.pairing)."""

import numpy as np
import pytest
from astropy.time import Time, TimeDelta
from hypothesis import given, settings, strategies as st

from data_prep import fitsio
from data_prep.pairing import (Observation, pair_id_from_time,
                               pair_observations, read_observation)

T0 = Time('2012-03-01T00:00:00', scale='utc')


def aia(path, seconds):
  return Observation(path, 'aia', T0 + TimeDelta(seconds, format='sec'))


def hmi(path, seconds):
  return Observation(path, 'hmi', T0 + TimeDelta(seconds, format='sec'))


def test_tolerance_is_inclusive_and_configurable():
  obs = [aia('a1', 0), hmi('h1', 60), aia('a2', 720), hmi('h2', 720 + 61)]
  pairs, unpaired = pair_observations(obs, tolerance_s=60)
  assert [(p.aia.path, p.hmi.path) for p in pairs] == [('a1', 'h1')]
  assert pairs[0].dt == pytest.approx(60, abs=1e-3)
  assert {(u.path, u.reason) for u in unpaired} == {
      ('a2', 'no HMI file within 60 s'), ('h2', 'no AIA file within 60 s')}
  pairs, unpaired = pair_observations(obs, tolerance_s=61.5)
  assert len(pairs) == 2 and not unpaired


def test_hmi_tai_time_is_compared_on_one_scale_with_aia_utc():
  # 2012-03: TAI - UTC = 34 s.  HMI T_OBS 00:00:40_TAI is 00:00:06 UTC.
  t_aia = fitsio.observation_time('aia', {'T_OBS': '2012-03-01T00:00:00Z'})
  t_hmi = fitsio.observation_time('hmi', {'T_OBS': '2012.03.01_00:00:40_TAI'})
  pairs, unpaired = pair_observations(
      [Observation('a', 'aia', t_aia), Observation('h', 'hmi', t_hmi)],
      tolerance_s=10)
  assert len(pairs) == 1 and not unpaired
  assert pairs[0].dt == pytest.approx(6.0, abs=1e-3)
  # Read naively as UTC, the same HMI stamp would be 40 s away: unpaired.
  naive = Observation('h', 'hmi', Time('2012-03-01T00:00:40', scale='utc'))
  pairs, unpaired = pair_observations(
      [Observation('a', 'aia', t_aia), naive], tolerance_s=10)
  assert not pairs and len(unpaired) == 2


def test_one_to_one_nearest_first():
  # h1 is nearest to a2 (5 s); a1 (15 s from h1) must not steal it, and
  # then takes nothing: its only candidate is used.
  obs = [aia('a1', 0), aia('a2', 20), hmi('h1', 15)]
  pairs, unpaired = pair_observations(obs, tolerance_s=60)
  assert [(p.aia.path, p.hmi.path) for p in pairs] == [('a2', 'h1')]
  assert len(unpaired) == 1 and unpaired[0].path == 'a1'
  assert unpaired[0].reason == ('every HMI file within 60 s is paired with '
                                'a closer AIA file')


def test_pairs_sorted_by_aia_time_and_input_order_irrelevant():
  obs = [hmi('h2', 730), aia('a2', 720), hmi('h1', 10), aia('a1', 0)]
  pairs, _ = pair_observations(obs)
  assert [p.aia.path for p in pairs] == ['a1', 'a2']
  pairs_rev, _ = pair_observations(obs[::-1])
  assert pairs == pairs_rev


def test_pair_id_is_aia_utc_time():
  # An HMI-style TAI stamp: 00:12:34 TAI is 00:12:00 UTC.
  t = fitsio.observation_time('hmi', {'T_OBS': '2012.03.01_00:12:34_TAI'})
  assert pair_id_from_time(t) == '20120301T001200'
  assert pair_id_from_time(T0) == '20120301T000000'


def test_unreadable_header_reported_with_dataerror_message(tmp_path):
  bad = tmp_path / 'not_fits.fits'
  bad.write_text('this is not a FITS file')
  result = read_observation(str(bad), 'aia')
  assert result.kind == 'aia' and result.path == str(bad)
  assert result.reason.startswith('unreadable header: ')
  assert 'not_fits.fits' in result.reason and '\n' not in result.reason


def test_unexpected_header_error_is_reported_not_raised(monkeypatch):
  def broken(path):
    raise KeyError('CRPIX1')
  monkeypatch.setattr(fitsio, 'read_sdo_header', broken)
  result = read_observation('/x/hmi.fits', 'hmi')
  assert result.reason == "unreadable header: KeyError: 'CRPIX1'"


def test_negative_tolerance_rejected():
  with pytest.raises(ValueError, match='tolerance'):
    pair_observations([], tolerance_s=-1)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3000), max_size=12),
       st.lists(st.integers(0, 3000), max_size=12),
       st.integers(0, 200))
def test_matching_properties(aia_s, hmi_s, tol):
  obs = ([aia(f'a{i}', s) for i, s in enumerate(aia_s)]
         + [hmi(f'h{i}', s) for i, s in enumerate(hmi_s)])
  pairs, unpaired = pair_observations(obs, tolerance_s=tol)
  used = [p.aia.path for p in pairs] + [p.hmi.path for p in pairs]
  # Every file is accounted for exactly once.
  assert sorted(used + [u.path for u in unpaired]) == sorted(o.path for o in obs)
  assert all(abs(p.dt) <= tol + 1e-6 for p in pairs)
  # Maximal: no unpaired AIA has an unpaired HMI within the tolerance.
  left_aia = [o for o in obs if o.kind == 'aia' and o.path not in used]
  left_hmi = np.array([(o.time - T0).sec for o in obs
                       if o.kind == 'hmi' and o.path not in used])
  for o in left_aia:
    assert not np.any(np.abs(left_hmi - (o.time - T0).sec) <= tol - 1e-6)
