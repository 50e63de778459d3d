"""Pair AIA 304 and HMI LOS full-disk files by observation time.

Two steps, both pure apart from the header reads of :func:`scan`:

* :func:`scan` reads only the FITS headers under ``RAW/aia`` and ``RAW/hmi``
  (``data_prep.fitsio.read_sdo_header``) and turns each file into an
  :class:`Observation`; a file whose header cannot be read or validated becomes
  an :class:`Unpaired` entry carrying the ``DataError`` message.
* :func:`pair_observations` matches AIA to HMI one-to-one: every candidate
  (AIA, HMI) with ``|t_hmi - t_aia| <= tolerance`` is ranked by ``|dt|`` and
  accepted greedily, nearest first, each file used at most once.  Times are
  astropy ``Time`` objects, so an HMI ``T_OBS`` in TAI and an AIA ``DATE-OBS``
  in UTC are compared on one time scale (the 34-37 s TAI-UTC offset is not an
  accident waiting to happen).

Files left over are reported with the reason why.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import Callable, Iterable, Sequence

import numpy as np
from astropy.time import Time

KINDS = ('aia', 'hmi')


@dataclasses.dataclass(frozen=True)
class Observation:
  """One readable full-disk file: its path, instrument kind and time."""

  path: str
  kind: str  # 'aia' or 'hmi'
  time: Time


@dataclasses.dataclass(frozen=True)
class Pair:
  """An AIA file matched with an HMI file; ``dt`` = t_hmi - t_aia in seconds."""

  aia: Observation
  hmi: Observation
  dt: float

  @property
  def pair_id(self) -> str:
    """AIA observation time (UTC) as ``YYYYMMDDTHHMMSS``."""
    return pair_id_from_time(self.aia.time)


@dataclasses.dataclass(frozen=True)
class Unpaired:
  """A file that got no partner, and why."""

  path: str
  kind: str
  reason: str


def pair_id_from_time(t: Time) -> str:
  """UTC time -> ``YYYYMMDDTHHMMSS`` (seconds truncated, as in file names)."""
  return t.utc.strftime('%Y%m%dT%H%M%S')


def find_fits(raw_dir: str, kind: str) -> list[str]:
  """Sorted ``RAW/<kind>/**/*.fits`` paths."""
  pattern = os.path.join(raw_dir, kind, '**', '*.fits')
  return sorted(glob.glob(pattern, recursive=True))


def read_observation(path: str, expected_kind: str) -> Observation | Unpaired:
  """Reads one header; a bad file becomes :class:`Unpaired` with the reason."""
  # Imported here so the matching logic stays importable on its own.
  from data_prep import fitsio

  try:
    kind, header = fitsio.read_sdo_header(path)
    time = fitsio.observation_time(kind, header, path)
  except fitsio.DataError as e:
    return Unpaired(path, expected_kind, f'unreadable header: {e}')
  except Exception as e:  # pylint: disable=broad-except
    # One odd file must not abort a scan of thousands: report it instead.
    message = ' '.join(f'{type(e).__name__}: {e}'.split())
    return Unpaired(path, expected_kind, f'unreadable header: {message}')
  if kind != expected_kind:
    return Unpaired(path, expected_kind,
                    f'unreadable header: {kind.upper()} file in the '
                    f'{expected_kind} tree')
  return Observation(path, kind, time)


def scan(raw_dir: str, map_fn: Callable = map,
         ) -> tuple[list[Observation], list[Unpaired]]:
  """Reads every header under ``raw_dir/aia`` and ``raw_dir/hmi``.

  ``map_fn(read_observation, paths, kinds)`` does the reads: the builtin
  ``map``, or an executor's ``map`` to read headers in parallel (a header
  costs ~10-30 ms with astropy; a year at 12-min cadence is 88,000 files).
  """
  paths, kinds = [], []
  for kind in KINDS:
    found = find_fits(raw_dir, kind)
    paths += found
    kinds += [kind] * len(found)
  observations: list[Observation] = []
  bad: list[Unpaired] = []
  for result in map_fn(read_observation, paths, kinds):
    (observations if isinstance(result, Observation) else bad).append(result)
  return observations, bad


def _seconds(observations: Sequence[Observation]) -> np.ndarray:
  """Observation times as float seconds (TAI) since J2000, vectorised."""
  if not observations:
    return np.zeros(0)
  times = Time([o.time.tai for o in observations], scale='tai')
  return (times - Time('2000-01-01T12:00:00', scale='tai')).to_value('s')


def pair_observations(
    observations: Iterable[Observation], tolerance_s: float = 60.0,
) -> tuple[list[Pair], list[Unpaired]]:
  """One-to-one nearest-in-time matching of AIA to HMI within a tolerance.

  Returns the pairs sorted by AIA time and the files left unpaired, each with
  a reason: no partner within the tolerance, or every partner within the
  tolerance taken by a closer match.
  """
  if tolerance_s < 0:
    raise ValueError(f'tolerance must be >= 0 s, got {tolerance_s}')
  observations = list(observations)
  aia = sorted((o for o in observations if o.kind == 'aia'),
               key=lambda o: (o.time.tai.jd1, o.time.tai.jd2, o.path))
  hmi = sorted((o for o in observations if o.kind == 'hmi'),
               key=lambda o: (o.time.tai.jd1, o.time.tai.jd2, o.path))
  t_aia, t_hmi = _seconds(aia), _seconds(hmi)

  # Candidate edges: for each AIA, the HMI files inside the window.
  lo = np.searchsorted(t_hmi, t_aia - tolerance_s, side='left')
  hi = np.searchsorted(t_hmi, t_aia + tolerance_s, side='right')
  edges = [(abs(t_hmi[j] - t_aia[i]), i, j)
           for i in range(len(aia)) for j in range(lo[i], hi[i])]
  edges.sort()

  used_aia: set[int] = set()
  used_hmi: set[int] = set()
  pairs: list[Pair] = []
  for _, i, j in edges:
    if i in used_aia or j in used_hmi:
      continue
    used_aia.add(i)
    used_hmi.add(j)
    pairs.append(Pair(aia[i], hmi[j], float(t_hmi[j] - t_aia[i])))
  pairs.sort(key=lambda p: (p.aia.time.tai.jd1, p.aia.time.tai.jd2))

  had_candidate_aia = {i for _, i, _ in edges}
  had_candidate_hmi = {j for _, _, j in edges}
  unpaired: list[Unpaired] = []
  for group, used, had, other in ((aia, used_aia, had_candidate_aia, 'HMI'),
                                  (hmi, used_hmi, had_candidate_hmi, 'AIA')):
    for k, obs in enumerate(group):
      if k in used:
        continue
      if k in had:
        reason = (f'every {other} file within {tolerance_s:g} s is paired '
                  f'with a closer {obs.kind.upper()} file')
      else:
        reason = f'no {other} file within {tolerance_s:g} s'
      unpaired.append(Unpaired(obs.path, obs.kind, reason))
  return pairs, unpaired
