"""Date split of the pairs: which calendar days go to train/validation/test.

A split is a name and an inclusive range of month-days, the same every year.
The default is the paper's (Sun, Xu et al. 2023): train 1 Jan - 30 Aug,
validation September, test October - December.  31 August falls in no
split, exactly as the paper states it; pairs outside every range are
recorded as skipped, not silently moved.
"""

from __future__ import annotations

import dataclasses
import datetime
import re

from astropy.time import Time

_SPEC = re.compile(r'^([A-Za-z_][A-Za-z0-9_]*)=(\d\d)-(\d\d):(\d\d)-(\d\d)$')
# A leap year, so that 02-29 is a valid bound.
_REF_YEAR = 2012


@dataclasses.dataclass(frozen=True)
class Split:
  """``name`` covers ``start`` .. ``end`` (month, day), both inclusive."""

  name: str
  start: tuple[int, int]
  end: tuple[int, int]

  def contains(self, month: int, day: int) -> bool:
    return self.start <= (month, day) <= self.end

  def spec(self) -> str:
    return (f'{self.name}={self.start[0]:02d}-{self.start[1]:02d}:'
            f'{self.end[0]:02d}-{self.end[1]:02d}')


DEFAULT_SPECS = ('train=01-01:08-30', 'validation=09-01:09-30',
                 'test=10-01:12-31')


def parse_split(spec: str) -> Split:
  """``'train=01-01:08-30'`` -> :class:`Split`; ``ValueError`` if malformed."""
  match = _SPEC.match(spec.strip())
  if not match:
    raise ValueError(f'bad split {spec!r}: expected NAME=MM-DD:MM-DD, '
                     'e.g. train=01-01:08-30')
  name = match.group(1)
  m0, d0, m1, d1 = (int(g) for g in match.groups()[1:])
  for m, d in ((m0, d0), (m1, d1)):
    try:
      datetime.date(_REF_YEAR, m, d)
    except ValueError:
      raise ValueError(f'bad split {spec!r}: {m:02d}-{d:02d} is not a '
                       'calendar day') from None
  if (m0, d0) > (m1, d1):
    raise ValueError(f'bad split {spec!r}: start after end')
  return Split(name, (m0, d0), (m1, d1))


def parse_splits(specs) -> list[Split]:
  """Parses several specs; rejects overlapping ranges and repeated names."""
  splits = [parse_split(s) for s in specs]
  names = [s.name for s in splits]
  if len(set(names)) != len(names):
    raise ValueError(f'split names repeat: {", ".join(names)}')
  ordered = sorted(splits, key=lambda s: s.start)
  for a, b in zip(ordered, ordered[1:]):
    if b.start <= a.end:
      raise ValueError(f'splits overlap: {a.spec()} and {b.spec()}')
  return splits


def assign_split(time: Time, splits) -> str | None:
  """Name of the split holding the UTC calendar day of ``time``, or None."""
  # ymdhms, not to_datetime(): the latter fails on leap seconds (2012-06-30).
  ymdhms = time.utc.ymdhms
  month, day = int(ymdhms['month']), int(ymdhms['day'])
  for split in splits:
    if split.contains(month, day):
      return split.name
  return None
