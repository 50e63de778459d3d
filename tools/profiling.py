"""Where a compiled step spends its time: a jax.profiler trace, summed per op.

Used by `python -m tools.bench ... --profile DIR`: it writes the trace
(open it with TensorBoard's or xprof's profile plugin), the optimised HLO
(DIR/step.hlo.txt) and prints the ops with the most time, each with its
HLO shape and the JAX source op, grouped by kind. XLA:CPU names its
per-op events after the HLO instructions, and jax.profiler.ProfileData reads
the trace without TensorBoard, so this is the profile in one table.
"""

import collections
import glob
import os
import re

import jax
from jax.profiler import ProfileData

# Events that only wrap or wait for the per-op ones.
_WRAPPERS = ('ThunkExecutor', 'SlinkyThreadPool', 'ThreadpoolListener',
             'end: ')
_INSTRUCTION = re.compile(
    r'^\s*(?:ROOT )?%([\w.\-]+) = (\S+) [\w\-]+\((.*)$', re.M)


def hlo_index(hlo_text):
  """{instruction name: (shape, JAX op_name)} of an HLO module's text."""
  index = {}
  for name, shape, rest in _INSTRUCTION.findall(hlo_text):
    op = re.search(r'op_name="([^"]+)"', rest)
    index[name] = (shape, op.group(1) if op else '')
  return index


def op_times(trace_dir, repeats):
  """{event name: ms per run} summed over the XLA threads of a trace."""
  paths = glob.glob(os.path.join(trace_dir, '**', '*.xplane.pb'),
                    recursive=True)
  if not paths:
    raise FileNotFoundError(f'no *.xplane.pb under {trace_dir}')
  data = ProfileData.from_file(max(paths, key=os.path.getmtime))
  totals = collections.Counter()
  for plane in data.planes:
    for line in plane.lines:
      if 'XLA' not in line.name:  # the runtime's threads, not Python's
        continue
      for event in line.events:
        if not event.name.startswith(_WRAPPERS):
          totals[event.name] += event.duration_ns / 1e6 / repeats
  return totals


def kind_of(name):
  """'convolution.12' -> 'convolution', 'ynn_fusion.3' -> 'ynn_fusion'."""
  return name.rsplit('.', 1)[0] if name[-1].isdigit() else name


def profile(compiled, run, out_dir, repeats=2, top=25):
  """Trace `repeats` calls of run(); write trace + HLO; return the report.

  Args:
    compiled: the jax `Compiled` step (for its HLO text).
    run: a function running the step once and blocking on its result.
    out_dir: directory for the trace and step.hlo.txt.
  """
  os.makedirs(out_dir, exist_ok=True)
  hlo = compiled.as_text()
  with open(os.path.join(out_dir, 'step.hlo.txt'), 'w') as f:
    f.write(hlo)
  with jax.profiler.trace(out_dir):
    for _ in range(repeats):
      run()
  times = op_times(out_dir, repeats)
  index = hlo_index(hlo)
  by_kind = collections.Counter()
  for name, ms in times.items():
    by_kind[kind_of(name)] += ms
  lines = [f'op time per step, summed over threads: {sum(times.values()):.1f}'
           ' ms', '', '| kind | ms |', '|---|---|']
  lines += [f'| {k} | {v:.1f} |' for k, v in by_kind.most_common(top) if v]
  lines += ['', '| op | ms | shape | JAX op |', '|---|---|---|---|']
  for name, ms in times.most_common(top):
    shape, op = index.get(name, ('', ''))
    lines.append(f'| {name} | {ms:.1f} | {shape} | {op[-60:]} |')
  return '\n'.join(lines)
