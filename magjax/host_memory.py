"""Keep freed host memory in the process, so XLA:CPU steps do not page-fault.

XLA:CPU allocates a step's large buffers (kernels of 4x4x1024x512 floats
are 32 MB; the step's temporaries more) with malloc. glibc serves requests
above its mmap threshold (at most 32 MB, and any request a thread arena
cannot hold) with a fresh mmap and returns them to the kernel on free, so
every step touches them again page by page: writing a new 32 MB array took
12.8 ms instead of 3.1 ms, and a 256^2 train step was 10 % slower
(docs/PERFORMANCE.md). One arena, no mmap for large blocks and no trimming
keep those pages in the process from step to step (the resident size stays
at its peak, as it would on an accelerator host anyway).

glibc has no Python binding for mallopt, hence ctypes. Elsewhere (macOS,
musl) `tune_malloc` does nothing and says so.
"""

import ctypes
import ctypes.util
import os

# mallopt parameters from glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
_LARGE = 2 ** 31 - 1  # bytes: never trim, never mmap (mallopt takes an int)
DISABLE_ENV = 'MAGJAX_NO_MALLOC_TUNING'


def tune_malloc():
  """Set glibc's malloc for long-running XLA:CPU work; True if applied.

  Call before JAX creates its thread pools (first in an entry point). Set
  MAGJAX_NO_MALLOC_TUNING=1 to leave malloc alone.
  """
  if os.environ.get(DISABLE_ENV, '') not in ('', '0'):
    return False
  name = ctypes.util.find_library('c')
  try:
    libc = ctypes.CDLL(name or 'libc.so.6')
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
  mallopt.restype = ctypes.c_int
  return all(mallopt(param, value) == 1 for param, value in (
      (M_ARENA_MAX, 1), (M_MMAP_THRESHOLD, _LARGE),
      (M_TRIM_THRESHOLD, _LARGE)))
