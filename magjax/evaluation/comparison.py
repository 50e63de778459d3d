"""The models beside the baselines, with standard errors and significance.

`summary_rows(runs, mode)`: one row per model run and per baseline (taken
from the first run that holds them: they depend on the data and the crop
protocol, not on the model), as `report/summary.json` stores them:
{name, kind ('model' | 'baseline'), split, mode, cc, cc_se, cc_abs,
cc_abs_se, psnr, ssim, n}; `_se` is the standard error of the mean over
the samples. The zero field's correlations are undefined (a constant
field) and counted as 0 with no error.

`significance(runs, mode)`: paired differences of signed CC and CC of |B|
over the same samples (crops or patches) between every model and every
baseline and between the models: mean difference, its standard error and
whether it exceeds two of them.
"""

import math

import numpy as np

from magjax.evaluation import baselines as baselines_lib

METRICS = (('cc', 'cc_binned'), ('cc_abs', 'cc_abs_binned'),
           ('psnr', 'psnr'), ('ssim', 'ssim_paper'))
ZERO_CORRELATION = ('cc_binned', 'cc_abs_binned')


def _baseline_source(runs, mode):
  for result in runs:
    if mode in result.get('baselines', {}).get('hale', {}).get('summary', {}):
      return result
  return None


def _row(name, kind, result, summary, mode):
  row = {'name': name, 'kind': kind, 'split': result['split'], 'mode': mode}
  for key, metric in METRICS:
    stat = summary.get(metric, {})
    mean, se = stat.get('mean', math.nan), stat.get('se', math.nan)
    if name == 'zero' and metric in ZERO_CORRELATION:
      mean, se = 0.0, 0.0
    row[key] = float(mean)
    if key in ('cc', 'cc_abs'):
      row[key + '_se'] = float(se)
  row['n'] = int(summary.get('psnr', {}).get('n', 0))
  return row


def summary_rows(runs, mode=None):
  """The rows of summary.json (module docstring), models first."""
  rows = []
  for result in runs:
    m = mode or result['primary_mode']
    if m in result['summary']:
      rows.append(_row(result['model'], 'model', result,
                       result['summary'][m], m))
  source = _baseline_source(runs, mode or (runs[0]['primary_mode']
                                           if runs else None))
  if source is not None:
    m = mode or source['primary_mode']
    for name in baselines_lib.NAMES:
      rows.append(_row(name, 'baseline', source,
                       source['baselines'][name]['summary'][m], m))
  return rows


def _values(rows, metric, zero):
  out = {}
  for r in rows:
    v = r.get(metric, math.nan)
    if zero and metric in ZERO_CORRELATION:
      v = 0.0
    out[int(r['index'])] = float(v)
  return out


def paired(a_rows, b_rows, metric, b_is_zero=False):
  """(mean of a - b, its standard error, n) over the samples both hold."""
  a = _values(a_rows, metric, False)
  b = _values(b_rows, metric, b_is_zero)
  d = np.array([a[i] - b[i] for i in sorted(set(a) & set(b))
                if math.isfinite(a[i]) and math.isfinite(b[i])])
  if d.size < 2:
    return math.nan, math.nan, int(d.size)
  return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)), d.size


def significance(runs, mode=None):
  """[(a, b, metric key, mean a - b, its se, n, significant)] for every
  model against every later model and every baseline."""
  m = mode or (runs[0]['primary_mode'] if runs else None)
  models = [(r['model'], r['samples'][m]) for r in runs
            if m in r.get('samples', {})]
  source = _baseline_source(runs, m)
  base = ([(name, source['baselines'][name]['samples'][m])
           for name in baselines_lib.NAMES] if source is not None else [])
  out = []
  for i, (a_name, a_rows) in enumerate(models):
    for b_name, b_rows in models[i + 1:] + base:
      for key, metric in METRICS[:2]:
        mean, se, n = paired(a_rows, b_rows, metric, b_name == 'zero')
        out.append((a_name, b_name, key, mean, se, n,
                    bool(math.isfinite(se) and abs(mean) > 2 * se)))
  return out
