"""Counts of the fault-injection and bad-input tests, for `make faults`.

Each test appends one JSON line to .cache/faults/ledger.jsonl (or to
$MAGJAX_FAULT_LEDGER); tests/faults/summarize.py prints the table.
Fields: test, faults (injected), recovered (runs that recovered), lost
(files lost or corrupted), bad_inputs (tried), clear_errors (one-line
`error:` answers / reasoned skips); for a measured refusal also peak_mib
(the refusing process's peak resident memory) and bound_mib (the bound it
must stay under).
"""
import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DEFAULT = os.path.join(ROOT, '.cache', 'faults', 'ledger.jsonl')


def path():
  return os.environ.get('MAGJAX_FAULT_LEDGER', DEFAULT)


def record(test, faults=0, recovered=0, lost=0, bad_inputs=0,
           clear_errors=0, peak_mib=None, bound_mib=None):
  """Appends one line (a single O_APPEND write, so concurrent-safe)."""
  entry = {'test': test, 'faults': faults, 'recovered': recovered,
           'lost': lost, 'bad_inputs': bad_inputs,
           'clear_errors': clear_errors}
  if peak_mib is not None:
    entry.update(peak_mib=round(peak_mib, 1), bound_mib=bound_mib)
  line = json.dumps(entry) + '\n'
  os.makedirs(os.path.dirname(path()), exist_ok=True)
  fd = os.open(path(), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    os.write(fd, line.encode())
  finally:
    os.close(fd)
