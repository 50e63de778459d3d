"""Every import of the project points downwards (docs/ARCHITECTURE.md).

The layers, bottom first; a module may import its own layer and those
below, never one above (imports inside functions count too):

  0  magjax_common            atomic writes, UserError, version
  1  data_prep                FITS -> patches; imports no magjax
  2  magjax.kernels           how convolutions are computed
  3  magjax.models            the networks
  4  magjax (package), config_utils, input_pipeline, datasets,
     checkpoints, cli, host_memory, configs
  5  magjax.evaluation        inference, metrics, results, report
  6  magjax.training          state, step, loop (may evaluate)
  7  magjax.predict,          FITS in, FITS out
     magjax.synchronic
  8  train.py, eval.py        entry points
  9  tools                    benchmarks, fidelity report (not installed)

A module that is in no layer fails too, so a new module gets one.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ('magjax_common', 'data_prep', 'magjax', 'configs', 'tools')
ENTRY_POINTS = ('train', 'eval')
LAYERS = (
    ('magjax_common',),
    ('data_prep',),
    ('magjax.kernels',),
    ('magjax.models',),
    ('magjax', 'magjax.config_utils', 'magjax.config_schema',
     'magjax.input_pipeline',
     'magjax.compile_cache', 'magjax.workdir_lock', 'magjax.input_cache',
     'magjax.xla_env',
     'magjax.datasets', 'magjax.checkpoints', 'magjax.cli',
     'magjax.host_memory', 'configs'),
    ('magjax.evaluation',),
    ('magjax.training',),
    ('magjax.predict', 'magjax.predict_batch', 'magjax.synchronic'),
    ENTRY_POINTS,
    ('tools',),
)


def layer_of(module):
  """The rank of a module: its longest prefix in LAYERS (None if none).

  'magjax' alone names the package's __init__, not everything under it.
  """
  best, rank = -1, None
  for index, prefixes in enumerate(LAYERS):
    for prefix in prefixes:
      exact = prefix == 'magjax'
      if module == prefix or (not exact and module.startswith(prefix + '.')):
        if len(prefix) > best:
          best, rank = len(prefix), index
  return rank


def project_sources(root=ROOT):
  """{module name: source text} of every project .py file."""
  sources = {}
  for package in PACKAGES:
    for dirpath, _, files in os.walk(os.path.join(root, package)):
      for name in files:
        if name.endswith('.py'):
          path = os.path.join(dirpath, name)
          module = os.path.relpath(path, root)[:-3].replace(os.sep, '.')
          if module.endswith('.__init__'):
            module = module[:-len('.__init__')]
          with open(path, encoding='utf-8') as f:
            sources[module] = f.read()
  for name in ENTRY_POINTS:
    with open(os.path.join(root, f'{name}.py'), encoding='utf-8') as f:
      sources[name] = f.read()
  return sources


def imported_modules(module, source, known):
  """[(line, imported project module)] of `source` (module `module`)."""
  package = module if _is_package(module, known) else module.rpartition('.')[0]
  out = []
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      names = [(node.lineno, alias.name) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:  # relative: resolve against this module's package
        parts = package.split('.')
        parts = parts[:len(parts) - node.level + 1]
        base = '.'.join(parts + ([base] if base else []))
      names = []
      for alias in node.names:
        full = f'{base}.{alias.name}'
        names.append((node.lineno, full if full in known else base))
    else:
      continue
    for line, name in names:
      if name.split('.')[0] in PACKAGES + ENTRY_POINTS:
        while name not in known and '.' in name:
          name = name.rpartition('.')[0]
        out.append((line, name))
  return out


def _is_package(module, known):
  return any(other.startswith(module + '.') for other in known)


def upward_imports(sources):
  """['module:line imports other (layer a -> b)'] for every violation, and
  'module: in no layer' for unmapped modules."""
  problems = []
  known = set(sources)
  for module, source in sorted(sources.items()):
    rank = layer_of(module)
    if rank is None:
      problems.append(f'{module}: in no layer of tests/test_import_layers.py')
      continue
    for line, name in imported_modules(module, source, known):
      other = layer_of(name)
      if other is not None and other > rank:
        problems.append(f'{module}:{line} imports {name} (layer {rank} -> '
                        f'{other})')
  return problems


def test_the_project_imports_only_downwards():
  sources = project_sources()
  assert {'magjax.models.unet', 'magjax.training.train', 'data_prep.fitsio',
          'magjax.evaluation.inference', 'tools.bench'} <= set(sources)
  assert upward_imports(sources) == []


@pytest.mark.parametrize('module,line', [
    ('data_prep.fitsio', 'from magjax import checkpoints'),
    ('data_prep.patches', 'import magjax'),
    ('magjax.models.unet', 'from magjax.training import steps'),
    ('magjax.models.layers', 'from magjax.evaluation import inference'),
    ('magjax.kernels.direct', 'from magjax import models'),
    ('magjax.evaluation.evaluate', 'from magjax.training import train'),
    ('magjax.training.train', 'from tools import bench'),
    ('magjax.checkpoints', '  from magjax.training import train_state'),
    ('magjax.models.attention', 'from ..training import steps'),
])
def test_an_upward_import_is_reported(module, line):
  sources = project_sources()
  body = line if not line.startswith(' ') else (
      'def f():\n' + line)
  sources[module] = sources[module] + '\n' + body + '\n'
  problems = upward_imports(sources)
  assert len(problems) == 1 and problems[0].startswith(f'{module}:'), problems


def test_a_module_outside_every_layer_is_reported():
  sources = project_sources()
  sources['gadgets'] = 'import os\n'
  assert upward_imports(sources) == [
      'gadgets: in no layer of tests/test_import_layers.py']
