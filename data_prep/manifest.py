"""The patch manifest: ``OUT/manifest.jsonl``, one JSON object per line.

Written by one process only (the parent of ``prepare build``), one line per
event, each line flushed and fsynced before the next pair is reported, so a
killed run loses at most the line it was writing.  Such a torn last line
(no trailing newline, or not valid JSON) is ignored on read and cut off
before the next append.  Later lines override earlier ones for the same key
(:func:`latest_by_pair`), which is how a resumed run supersedes a retried
pair.
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable

MANIFEST_NAME = 'manifest.jsonl'


def read_manifest(path: str) -> list[dict[str, Any]]:
  """All complete records of a manifest; [] when it does not exist.

  A torn last line (no trailing newline) is ignored; an unparsable complete
  line is corruption that no crash of ours produces, so it raises
  ``ValueError`` naming it.
  """
  if not os.path.exists(path):
    return []
  with open(path, 'rb') as f:
    data = f.read()
  lines = data.split(b'\n')
  lines.pop()  # the torn tail; b'' when the file ends with a newline
  records = []
  for number, line in enumerate(lines, start=1):
    if not line.strip():
      continue
    try:
      records.append(json.loads(line))
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: line {number} is not JSON ({e.msg})') from None
  return records


def latest_by_pair(records: Iterable[dict[str, Any]]) -> dict[str, dict]:
  """``pair_id -> last record`` for the records that have a pair id."""
  latest: dict[str, dict] = {}
  for record in records:
    if record.get('pair_id'):
      latest[record['pair_id']] = record
  return latest


class ManifestWriter:
  """Appends records durably; repairs a torn tail left by a killed writer."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    _truncate_torn_tail(path)
    self._file = open(path, 'a', encoding='utf-8')

  def append(self, record: dict[str, Any]) -> None:
    """Writes one line, then flushes and fsyncs it."""
    self._file.write(json.dumps(record, sort_keys=True) + '\n')
    self._file.flush()
    os.fsync(self._file.fileno())

  def close(self) -> None:
    self._file.close()

  def __enter__(self) -> 'ManifestWriter':
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def _truncate_torn_tail(path: str) -> None:
  """Cuts everything after the last newline (a line killed mid-write)."""
  if not os.path.exists(path):
    return
  with open(path, 'rb+') as f:
    data = f.read()
    if not data or data.endswith(b'\n'):
      return
    f.truncate(data.rfind(b'\n') + 1)
    f.flush()
    os.fsync(f.fileno())
