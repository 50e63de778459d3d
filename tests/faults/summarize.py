"""Prints the `make faults` table from the ledger (tests/faults/ledger.py).

  python tests/faults/summarize.py [LEDGER]

Exit code 1 when a file was lost, a run did not recover or a bad input got
no clear error; 0 otherwise.
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
  rows = {}
  with open(path) as f:
    for line in f:
      try:
        entry = json.loads(line)
      except ValueError:
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
  bad = (total['lost'] or total['recovered'] < total['faults']
         or total['clear_errors'] < total['bad_inputs'])
  return 1 if bad else 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
