"""XLA settings magjax sets by default, before JAX starts its backend.

docs/PERFORMANCE.md ("GPU settings") gives the reason for each, and for
the settings left at JAX's defaults (XLA_PYTHON_CLIENT_MEM_FRACTION 0.75,
preallocation on, autotuning level 4).

* `--xla_gpu_enable_latency_hiding_scheduler=true`: XLA:GPU schedules a
  data-parallel step's gradient all-reduces to overlap with the backward
  pass instead of running them after it. No effect on one device, nor
  outside XLA:GPU (every XLA backend parses the GPU flags; an unknown flag
  would abort the process, so this one is tested on CPU too).

A flag the user already put in XLA_FLAGS (either value) is left as it is.
"""

import os

DEFAULT_FLAGS = ('--xla_gpu_enable_latency_hiding_scheduler=true',)


def with_defaults(xla_flags):
  """`xla_flags` (the XLA_FLAGS string) with every DEFAULT_FLAGS entry
  whose flag name it does not mention appended."""
  flags = (xla_flags or '').split()
  names = {flag.split('=', 1)[0] for flag in flags}
  for flag in DEFAULT_FLAGS:
    if flag.split('=', 1)[0] not in names:
      flags.append(flag)
  return ' '.join(flags)


def apply_defaults(environ=None):
  """Sets XLA_FLAGS to with_defaults(its value); returns the new value.

  Call first in an entry point: XLA reads XLA_FLAGS once, when the first
  backend starts.
  """
  environ = os.environ if environ is None else environ
  environ['XLA_FLAGS'] = with_defaults(environ.get('XLA_FLAGS', ''))
  return environ['XLA_FLAGS']
