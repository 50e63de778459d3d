"""Prints the `make faults` table from the ledger (tests/faults/ledger.py).

  python tests/faults/summarize.py [LEDGER]

Exit code 1 when a file was lost, a run did not recover, a bad input got
no clear error or a measured refusal went over its memory bound; 0
otherwise. Measured refusals (peak_mib) get a table of their own.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ledger  # pylint: disable=wrong-import-position

FIELDS = ('faults', 'recovered', 'lost', 'bad_inputs', 'clear_errors')
TITLES = ('faults injected', 'runs recovered', 'files lost',
          'bad inputs tried', 'clear errors given')


def main(argv):
  path = argv[0] if argv else ledger.path()
  if not os.path.exists(path):
    print(f'error: no ledger at {path} (run the fault suite first)',
          file=sys.stderr)
    return 1
  rows, peaks = {}, {}
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
      except ValueError:
        continue
      if 'peak_mib' in entry:
        old = peaks.get(entry['test'], (0.0, entry['bound_mib']))
        peaks[entry['test']] = (max(old[0], entry['peak_mib']),
                                entry['bound_mib'])
        if not any(entry.get(key) for key in FIELDS):
          continue
      row = rows.setdefault(entry['test'], dict.fromkeys(FIELDS, 0))
      for key in FIELDS:
        row[key] += int(entry.get(key, 0))
  width = max([len('test')] + [len(t) for t in rows])
  head = f'{"test":<{width}} | ' + ' | '.join(TITLES)
  print(head)
  print('-' * len(head))
  total = dict.fromkeys(FIELDS, 0)
  for name in sorted(rows):
    row = rows[name]
    for key in FIELDS:
      total[key] += row[key]
    print(f'{name:<{width}} | ' + ' | '.join(
        f'{row[k]:>{len(t)}}' for k, t in zip(FIELDS, TITLES)))
  print('-' * len(head))
  print(f'{"TOTAL":<{width}} | ' + ' | '.join(
      f'{total[k]:>{len(t)}}' for k, t in zip(FIELDS, TITLES)))
  over = print_peaks(peaks)
  bad = (total['lost'] or total['recovered'] < total['faults']
         or total['clear_errors'] < total['bad_inputs'] or over)
  return 1 if bad else 0


def print_peaks(peaks):
  """The peak-memory table of measured refusals; returns how many went
  over their bound."""
  if not peaks:
    return 0
  width = max(len(t) for t in peaks)
  head = f'{"refusal":<{width}} | peak RSS MiB | bound MiB | under bound'
  print()
  print(head)
  print('-' * len(head))
  over = 0
  for name in sorted(peaks):
    peak, bound = peaks[name]
    over += peak >= bound
    print(f'{name:<{width}} | {peak:>12.0f} | {bound:>9.0f} | '
          f'{"yes" if peak < bound else "NO":>11}')
  return over


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
