"""Runs `python ARGS...` and writes its peak resident memory in KiB (the
largest of that process and of those it waited for: a build's workers)
to the file $PEAK_RSS_FILE; the exit code is the command's.

  PEAK_RSS_FILE=peak.txt python tests/faults/peak_rss.py -m MODULE ARGS...

Measured from this small process because a child started by a large one
(pytest holding JAX) inherits its parent's high-water mark at exec
(Linux counts the old memory map in ru_maxrss), which would hide the
command's own peak.
"""
import os
import resource
import subprocess
import sys


def main(argv):
  rc = subprocess.call([sys.executable, *argv])
  peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
  with open(os.environ['PEAK_RSS_FILE'], 'w') as f:
    f.write(f'{peak}\n')
  return rc


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
