"""Evaluation results on disk: `<workdir>/eval/metrics.json`, `metrics.md`.

- `write(workdir, result, samples_npz=None)`: each file atomically (tmp +
  os.replace); non-finite numbers as the strings 'nan', 'inf', '-inf'
  (strict JSON).
- `read(path)`: metrics.json of a file, an eval directory or a run
  directory, with those strings turned back into floats.
- `markdown(result)`: the summary in Markdown, stating the data (SYNTHETIC
  or real), the checkpoint step and the metric conventions the run used
  (`result['metric_conventions']`, from `metrics.conventions`).
"""

import json
import math
import os

from magjax.evaluation import metrics as metrics_lib
from magjax_common import fileio

FORMAT = 'magjax.eval/1'
EVAL_SUBDIR = 'eval'

DATA_LINES = {
    'SYNTHETIC': 'SYNTHETIC data (data_prep.synthetic), not SDO observations: '
                 'these numbers say nothing about real magnetograms.',
    'real': 'real SDO AIA 304 / HMI LOS data.',
    'UNKNOWN': 'data of unknown provenance (the examples carry no synthetic '
               'flag).'}


def eval_dir(workdir):
  return os.path.join(workdir, EVAL_SUBDIR)


def format_mean_std(stat, digits=2):
  """'m ± s' of a metrics.summarise() entry ('n/a' when undefined)."""
  mean, std = float(stat['mean']), float(stat['std'])
  if math.isnan(mean):
    return 'n/a'
  if math.isnan(std):
    return f'{mean:.{digits}f}'
  return f'{mean:.{digits}f} ± {std:.{digits}f}'


def metric_titles(conventions):
  """((metric, column title, digits), ...) of the Markdown tables."""
  k = conventions.get('cc_binning', 2)
  return (
      ('psnr', 'PSNR (dB)', 2), ('ssim_paper', 'SSIM (paper c)', 3),
      ('cc_binned', f'CC ({k}×{k})', 3), ('cc_abs_binned', 'CC \\|B\\|', 3),
      ('ssim_wang', 'SSIM (Wang c)', 3),
      ('rmse_gauss', 'RMSE (G)', 1), ('flux_ratio', 'flux ratio', 3),
      ('polarity_agreement', 'polarity agr.', 3),
      ('strong_cc', 'strong-field CC', 3))


def conventions_text(conventions):
  """One sentence on how the metrics were computed (from the result)."""
  sat = conventions.get('saturation_gauss', 200.0)
  paper = conventions.get('ssim_paper', {})
  k = conventions.get('cc_binning', 2)
  return (
      f'PSNR, SSIM and CC on ±{sat:g} G mapped to 0..255; SSIM '
      f'({conventions.get("ssim_window", 11)}×'
      f'{conventions.get("ssim_window", 11)} Gaussian window, σ = '
      f'{conventions.get("ssim_sigma", 1.5):g}) with the paper\'s printed '
      f'constants (c1 = {paper.get("c1", metrics_lib.SSIM_PAPER[0]):g}, '
      f'c2 = {paper.get("c2", metrics_lib.SSIM_PAPER[1]):g}) and with Wang '
      f'et al.\'s; CC after {k}×{k} binning; physical metrics in gauss '
      f'(strong field |B| > {conventions.get("strong_field_gauss", 100):g} '
      'G); masked pixels excluded; mean ± population std over the samples.')


def markdown(result):
  """The Markdown summary of one evaluation."""
  label = result['data_label']
  conventions = result.get('metric_conventions', {})
  titles = metric_titles(conventions)
  lines = [
      f'# magjax evaluation: {result["model"]} ({label})', '',
      f'- data set: **{label}** — {result["dataset"]}, split '
      f'`{result["split"]}`, {result["num_examples"]} examples; '
      f'{DATA_LINES[label]}',
      f'- checkpoint: step **{result["checkpoint_step"]}** of '
      f'`{result["workdir"]}`',
      f'- config hash `{result["config_hash"]}`, seed {result["seed"]}; '
      f'patches binned {result.get("patch_binning", 1)}×'
      f'{result.get("patch_binning", 1)}; crops {result["crop_size"]}² '
      f'(seeded), tiles {result["tile"]}² with overlap '
      f'{result["tile_overlap"]}',
      f'- metrics: {conventions_text(conventions)}', '',
      '| eval mode | n | ' + ' | '.join(t for _, t, _ in titles) + ' |',
      '|---|---|' + '---|' * len(titles)]
  for mode in result['eval_modes']:
    summary = result['summary'][mode]
    n = summary.get('psnr', {}).get('n', 0)
    cells = [format_mean_std(summary[k], d) if k in summary else 'n/a'
             for k, _, d in titles]
    lines.append(f'| {mode} | {n} | ' + ' | '.join(cells) + ' |')
  lines.append('')
  return '\n'.join(lines)


def jsonable(value):
  """Strict-JSON copy: non-finite floats as 'nan' / 'inf' / '-inf'."""
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [jsonable(v) for v in value]
  if hasattr(value, 'dtype') and getattr(value, 'shape', None) == ():
    value = value.item()  # NumPy scalars
  if isinstance(value, bool):
    return value
  if isinstance(value, int):
    return int(value)
  if isinstance(value, float):
    if math.isnan(value):
      return 'nan'
    if math.isinf(value):
      return 'inf' if value > 0 else '-inf'
    return value
  return value


_NONFINITE = {'nan': math.nan, 'inf': math.inf, '-inf': -math.inf}


def _restore_floats(value):
  if isinstance(value, dict):
    return {k: _restore_floats(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_restore_floats(v) for v in value]
  if isinstance(value, str) and value in _NONFINITE:
    return _NONFINITE[value]
  return value


def write(workdir, result, samples_npz=None):
  """Writes eval/samples.npz (bytes, when given), metrics.json, metrics.md:
  all of them or, the disk refusing one, none (WriteError, exit code 3)."""
  out = eval_dir(workdir)
  files = {} if samples_npz is None else {
      os.path.join(out, 'samples.npz'): samples_npz}
  files[os.path.join(out, 'metrics.json')] = (
      json.dumps(jsonable(result), indent=1) + '\n').encode()
  files[os.path.join(out, 'metrics.md')] = markdown(result).encode()
  fileio.write_files_atomic(files, f'the evaluation results in {out}')
  return os.path.join(out, 'metrics.json')


def read(path):
  """metrics.json (a file or an eval / run directory) as a dict.

  Raises:
    FileNotFoundError: no metrics.json there.
    ValueError: not a magjax evaluation.
  """
  if os.path.isdir(path):
    candidate = os.path.join(eval_dir(path), 'metrics.json')
    path = candidate if os.path.exists(candidate) else os.path.join(
        path, 'metrics.json')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no metrics.json at {path!r} (run eval.py)')
  with open(path, encoding='utf-8') as f:
    try:
      data = json.load(f)
    except json.JSONDecodeError as e:
      raise ValueError(f'{path}: not JSON ({e.msg} at line {e.lineno})') \
          from e
  if not isinstance(data, dict) or data.get('format') != FORMAT:
    raise ValueError(f'{path}: not a magjax evaluation ({FORMAT})')
  return _restore_floats(data)
