"""JAX's persistent compilation cache, on by default, so that a second
`predict`, `eval.py` or training start does not compile again what the
first one compiled.

The setting (config.compilation_cache_dir, predict's --compilation-cache):
  'auto'  $MAGJAX_COMPILATION_CACHE if set (a directory, or 'off'), else
          $XDG_CACHE_HOME/magjax/jax (default ~/.cache/magjax/jax);
  'off'   (or '') no persistent cache;
  a path  that directory.

JAX keys each entry by the computation, the backend, its version and the
compile options, so a cache shared by runs, configs and JAX versions only
ever returns what was compiled for the same program. Entries of every size
and compile time are kept (the defaults skip compiles under 1 s, which
are most of the demo's). A directory that cannot be created or written
costs the cache, never the run: one warning line, then JAX without it.
"""

import os
import sys

ENV = 'MAGJAX_COMPILATION_CACHE'
OFF = ('', 'off', 'none', 'false', '0')


def default_dir():
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(
      os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'magjax', 'jax')


def resolve(setting):
  """The cache directory a setting names, or None for no cache."""
  setting = '' if setting is None else str(setting).strip()
  if setting.lower() == 'auto':
    setting = os.environ.get(ENV, default_dir()).strip()
  if setting.lower() in OFF:
    return None
  return os.path.abspath(os.path.expanduser(setting))


def configure(setting='auto', log=None):
  """Points JAX's persistent compilation cache at `setting` (see the
  module docstring) before the first compile; returns the directory or
  None. Never raises for an unusable directory."""
  directory = resolve(setting)
  if directory is None:
    return None
  try:
    os.makedirs(directory, exist_ok=True)
    probe = os.path.join(directory, f'.probe-{os.getpid()}')
    with open(probe, 'w', encoding='utf-8') as f:
      f.write('')
    os.remove(probe)
  except OSError as e:
    message = (f'warning: compilation cache {directory} is not usable '
               f'({e.strerror or e}); compiling without it')
    (log or (lambda m: print(m, file=sys.stderr)))(message)
    return None
  import jax  # pylint: disable=g-import-not-at-top
  jax.config.update('jax_compilation_cache_dir', directory)
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)
  return directory
