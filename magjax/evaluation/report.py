"""Comparison report: our three models beside the paper's Table 1.

  python -m magjax.evaluation.report runs/pix2pix runs/cat runs/rhp --out report/
      [--figures 2] [--pair-id 20121005T000000 ...]

Reads each run's `eval/metrics.json` and `eval/samples.npz` (written by
`eval.py`) and writes, each file atomically:

- `<out>/README.md`: a Table-1-style table. The paper's rows are labelled
  "published, real 2012 SDO data" (Sun, Xu et al. 2023, Table 1); ours name
  their data (SYNTHETIC or real), checkpoint step and evaluation mode.
  PSNR, SSIM (the paper's printed constants) and CC (2x2 binning) as mean
  +- std, then a second table with SSIM (Wang et al. constants) and the
  physical metrics in gauss, which the paper does not report. Numbers on
  SYNTHETIC data are not comparable to the paper's.
- `<out>/figure_<pair_id>.png`: Figures 4-5 style panels (AIA input,
  observed HMI, the generated magnetograms and their differences) for test
  times common to all runs (`figures.comparison_figure`).
- `<out>/table.md`: the first table alone (for pasting).
- `<out>/summary.json`: the models and the baselines (the zero field and
  the Hale-signed brightness estimate, `baselines.py`) with signed CC, CC
  of |B|, PSNR, SSIM and standard errors, machine-readable
  (`comparison.summary_rows`); README.md shows them as a table and says
  which differences exceed two standard errors.

Exit codes: 0 written, 2 a run without evaluation or a bad argument (one
line `error: ...` on stderr).
"""

import argparse
import io
import json
import os
import sys

import numpy as np

from magjax.evaluation import comparison
from magjax.evaluation import evaluate
from magjax.evaluation import figures
from magjax.evaluation import results
from magjax_common import fileio
from magjax_common.errors import UserError, fail

# Sun, Xu et al. (2023), Table 1: mean +- std over their test set
# (October-December 2012, real SDO/AIA 304 and HMI LOS data).
PAPER_TABLE1 = {
    'pix2pix': {'psnr': (19.80, 1.65), 'ssim_paper': (0.59, 0.04),
                'cc_binned': (0.49, 0.11)},
    'cat': {'psnr': (20.49, 1.35), 'ssim_paper': (0.64, 0.04),
            'cc_binned': (0.58, 0.10)},
    'rhp': {'psnr': (21.03, 1.71), 'ssim_paper': (0.65, 0.03),
            'cc_binned': (0.59, 0.10)},
}
PAPER_LABEL = 'published, real 2012 SDO data'
TABLE1_METRICS = (('psnr', 'PSNR (dB)', 2), ('ssim_paper', 'SSIM', 2),
                  ('cc_binned', 'CC (2×2)', 2), ('cc_abs_binned', 'CC \\|B\\|', 2))
BASELINE_TITLES = {'zero': 'zero field (B = 0)',
                   'hale': 'physics baseline: 304 brightness -> \\|B\\|, '
                           'signed by Hale\'s law'}
EXTRA_METRICS = (('ssim_wang', 'SSIM (Wang c)', 3),
                 ('rmse_gauss', 'RMSE (G)', 1),
                 ('flux_ratio', 'unsigned flux ratio', 3),
                 ('polarity_agreement', 'polarity agreement', 3),
                 ('strong_cc', 'strong-field CC', 3))


def load_run(path):
  """(metrics dict, samples dict or None) of one run directory."""
  try:
    result = results.read(path)
  except (FileNotFoundError, ValueError) as e:
    raise UserError(str(e)) from e
  eval_dir = (results.eval_dir(path)
              if os.path.isdir(results.eval_dir(path))
              else path if os.path.isdir(path) else os.path.dirname(path))
  samples_path = os.path.join(eval_dir, 'samples.npz')
  samples = None
  if os.path.isfile(samples_path):
    try:
      with np.load(samples_path, allow_pickle=False) as data:
        samples = {k: data[k] for k in data.files}
    except Exception as e:  # pylint: disable=broad-except  # zip/npy errors
      raise UserError(f'{samples_path}: unreadable ({e})') from e
  return result, samples


def _cell(stat, digits):
  if stat is None:
    return '—'
  return results.format_mean_std(stat, digits)


def _paper_cell(values, digits):
  if values is None:
    return '—'
  return f'{values[0]:.{digits}f} ± {values[1]:.{digits}f}'


def _run_label(result):
  label = result['data_label']
  data = {'SYNTHETIC': '**SYNTHETIC** data', 'real': 'real SDO data',
          'UNKNOWN': 'data of UNKNOWN provenance'}[label]
  return data


def table1(runs, mode=None):
  """The Table-1-style Markdown table (list of lines)."""
  head = ('| model | results | data | eval | n | '
          + ' | '.join(t for _, t, _ in TABLE1_METRICS) + ' |')
  lines = [head, '|' + '---|' * (5 + len(TABLE1_METRICS))]
  for name in figures.order_models(list(PAPER_TABLE1)):
    cells = [_paper_cell(PAPER_TABLE1[name].get(k), d)
             for k, _, d in TABLE1_METRICS]
    lines.append(f'| {figures.model_title(name)} | Sun, Xu et al. 2023, '
                 f'Table 1 | {PAPER_LABEL} | 512² crops | test set | '
                 + ' | '.join(cells) + ' |')
  for result in runs:
    for m in _modes(result, mode):
      summary = result['summary'][m]
      n = summary.get('psnr', {}).get('n', result['num_examples'])
      cells = [_cell(summary.get(k), d) for k, _, d in TABLE1_METRICS]
      lines.append(
          f'| {figures.model_title(result["model"])} | magjax (ours), step '
          f'{result["checkpoint_step"]} | {_run_label(result)} '
          f'({result["dataset"]}, {result["split"]}) | {_mode_text(result, m)}'
          f' | {n} | ' + ' | '.join(cells) + ' |')
  return lines


def _mean_se(value, se, digits=3):
  if not np.isfinite(value):
    return 'n/a'
  return (f'{value:.{digits}f} ± {se:.{digits}f}' if np.isfinite(se)
          else f'{value:.{digits}f}')


def baseline_table(rows):
  """Models and baselines: mean ± standard error of the mean."""
  lines = ['| | kind | eval | n | CC (signed) | CC \\|B\\| | PSNR (dB) | SSIM |',
           '|---|---|---|---|---|---|---|---|']
  for r in rows:
    title = (figures.model_title(r['name']) if r['kind'] == 'model'
             else BASELINE_TITLES.get(r['name'], r['name']))
    lines.append(
        f'| {title} | {r["kind"]} | {r["mode"]} | {r["n"]} | '
        f'{_mean_se(r["cc"], r["cc_se"])} | '
        f'{_mean_se(r["cc_abs"], r["cc_abs_se"])} | {r["psnr"]:.2f} | '
        f'{r["ssim"]:.3f} |')
  return lines


def significance_lines(runs, mode=None):
  """One line per comparison: the paired difference and its verdict."""
  def title(name):
    return (figures.model_title(name) if name not in BASELINE_TITLES
            else f'the {"zero field" if name == "zero" else "physics baseline"}')
  lines = []
  for a, b, key, mean, se, n, significant in comparison.significance(
      runs, mode):
    what = 'signed CC' if key == 'cc' else 'CC of |B|'
    if not np.isfinite(mean):
      continue
    verdict = ('**significant** (more than 2 standard errors)' if significant
               else 'not significant (within 2 standard errors)')
    lines.append(f'- {figures.model_title(a)} − {title(b)}, {what}: '
                 f'{mean:+.3f} ± {se:.3f} over {n} paired samples: '
                 f'{verdict}.')
  return lines


def extra_table(runs, mode=None):
  """Metrics the paper does not report (ours only)."""
  lines = ['| model | data | eval | '
           + ' | '.join(t for _, t, _ in EXTRA_METRICS) + ' |',
           '|' + '---|' * (3 + len(EXTRA_METRICS))]
  for result in runs:
    for m in _modes(result, mode):
      summary = result['summary'][m]
      cells = [_cell(summary.get(k), d) for k, _, d in EXTRA_METRICS]
      lines.append(f'| {figures.model_title(result["model"])} | '
                   f'{result["data_label"]} | {_mode_text(result, m)} | '
                   + ' | '.join(cells) + ' |')
  return lines


def _modes(result, mode):
  if mode is None:
    return result['eval_modes']
  return [mode] if mode in result['eval_modes'] else []


def _mode_text(result, mode):
  k = int(result.get('patch_binning', 1))
  binned = f' of {k}×{k}-binned patches' if k > 1 else ''
  if mode == 'crops':
    return f'{result["crop_size"]}² crops{binned} (seeded)'
  return (f'whole patch{binned}, tiled {result["tile"]}² / overlap '
          f'{result["tile_overlap"]}')


def common_pair_ids(samples_list):
  """Pair ids present in every run's samples, sorted."""
  sets = [set(str(p) for p in s['pair_id']) for s in samples_list]
  return sorted(set.intersection(*sets)) if sets else []


def write_figures(runs, samples_list, out_dir, count, pair_ids=None):
  """{path: PNG bytes} of figure_<pair_id>.png for up to `count` common
  test times (written by make_report with the text files)."""
  if not samples_list or any(s is None for s in samples_list):
    return {}
  common = common_pair_ids(samples_list)
  chosen = ([p for p in pair_ids if p in common] if pair_ids
            else common[:count])
  pngs = {}
  for pair_id in chosen:
    preds, metrics = {}, {}
    base = None
    for result, samples in zip(runs, samples_list):
      i = [str(p) for p in samples['pair_id']].index(pair_id)
      name = result['model']
      if name in preds:  # two runs of one variant: keep both, distinctly
        name = f'{name} ({result["workdir"]})'
      preds[name] = samples['pred'][i]
      metrics[name] = json.loads(str(samples['metrics'][i]))
      if base is None:
        base = (samples, i, result)
    samples, i, result = base
    synthetic = (bool(samples['synthetic'][i]) if 'synthetic' in samples
                 else result['synthetic'])
    t_aia = str(samples['t_aia'][i])
    path = os.path.join(out_dir, f'figure_{_safe(pair_id)}.png')
    png = io.BytesIO()
    figures.comparison_figure(
        png, samples['aia'][i], samples['hmi'][i], preds,
        mask=samples['mask'][i], header=str(samples['wcs_header'][i]),
        title=f'test time {pair_id}' + (f' (AIA {t_aia} UTC)' if t_aia
                                        else ''),
        synthetic=synthetic, metrics=metrics,
        saturation=result['metric_conventions'].get('saturation_gauss',
                                                    200.0))
    pngs[path] = png.getvalue()
  return pngs


def _safe(text):
  return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in text)


def render(runs, figure_paths, out_dir, mode=None):
  """The README.md text."""
  labels = sorted({r['data_label'] for r in runs})
  synthetic = 'SYNTHETIC' in labels
  lines = ['# magjax: AIA 304 Å → HMI LOS magnetograms, comparison with '
           'Sun, Xu et al. (2023)', '']
  if synthetic:
    lines += [
        '> **Our results below are on SYNTHETIC data** (the embedded data '
        'set made by `data_prep.synthetic`, not SDO observations). They '
        'test the pipeline end to end; they are **not comparable** to the '
        'paper\'s numbers, which are published results on real 2012 SDO '
        'data.', '']
  lines += [
      '## Table 1: PSNR, SSIM and CC (mean ± std over the test set)', '',
      'Rows "Sun, Xu et al. 2023, Table 1" are the paper\'s '
      f'**{PAPER_LABEL}** (test set October–December 2012); rows "magjax '
      '(ours)" are this project\'s evaluations, labelled with their data.',
      '']
  lines += table1(runs, mode)
  rows = comparison.summary_rows(runs, mode)
  if any(r['kind'] == 'baseline' for r in rows):
    lines += [
        '', '## Against the baselines (mean ± standard error of the mean)',
        '',
        'Two baselines on the same samples: the zero field (its '
        'correlations are undefined and counted as 0) and a physics '
        'baseline, |B| from the 304 Å brightness by the training data\'s '
        'monotone relation, signed by Hale\'s law (the western part of each '
        'bright region gets its hemisphere\'s leading polarity). A '
        'difference is called significant when the paired mean difference '
        'exceeds two standard errors.', '']
    lines += baseline_table(rows)
    lines += [''] + significance_lines(runs, mode)
  lines += ['', '## Further metrics (ours only; not reported by the paper)',
            '']
  lines += extra_table(runs, mode)
  lines += ['', '## Runs', '']
  for r in runs:
    lines.append(
        f'- {figures.model_title(r["model"])}: `{r["workdir"]}`, checkpoint '
        f'step {r["checkpoint_step"]}, config hash `{r["config_hash"]}`, '
        f'{r["data_label"]} data `{r["dataset"]}` split `{r["split"]}` '
        f'({r["num_examples"]} examples), evaluated {r["created_utc"]}')
  lines += ['', '## Conventions', '']
  for text in sorted({results.conventions_text(r['metric_conventions'])
                      for r in runs}):
    lines.append(f'- Ours: {text}')
  lines += [
      '- "SSIM" in Table 1 uses the paper\'s printed constants (K·L, '
      'L = 255); "SSIM (Wang c)" uses Wang et al.\'s (K·L)²; the paper\'s '
      'rows use ±200 G, its printed constants and 2×2 binning.',
      '- Eval "crops (seeded)" is the paper\'s protocol (one crop per '
      'test patch, offsets seeded by example); "whole patch, tiled" '
      'scores the full 800 × 900 patch generated by overlap-blended tiles.',
      '']
  if figure_paths:
    lines += ['## Figures (as the paper\'s Figures 4–5)', '',
              'AIA 304 Å input, observed HMI, the generated magnetograms '
              'and their differences (generated − observed), whole patches '
              'by tiled inference' + (' — SYNTHETIC data' if synthetic
                                      else '') + '.', '']
    for path in figure_paths:
      name = os.path.basename(path)
      lines += [f'![{name}]({name})', '']
  return '\n'.join(lines)


def make_report(run_dirs, out_dir, figure_count=2, pair_ids=None, mode=None):
  """Writes README.md, table.md and the figures; returns the README path."""
  if not run_dirs:
    raise UserError('no run directory given')
  loaded = [load_run(d) for d in run_dirs]
  runs = [r for r, _ in loaded]
  if mode is not None and not any(mode in r['eval_modes'] for r in runs):
    raise UserError(f'no run was evaluated in mode {mode!r}')
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f'{out_dir}: cannot create ({e.strerror})') from e
  samples_list = [s for _, s in loaded]
  pngs = write_figures(runs, samples_list, out_dir, figure_count, pair_ids)
  figure_paths = list(pngs)
  text = render(runs, figure_paths, out_dir, mode)
  if figure_count and not figure_paths:
    missing = [d for d, s in zip(run_dirs, samples_list) if s is None]
    reason = (f'no eval/samples.npz in {", ".join(missing)}' if missing
              else 'no test time common to all runs'
              + (f' among {pair_ids}' if pair_ids else ''))
    text += f'\nNo figure: {reason}.\n'
    print(f'report: no figure ({reason})', file=sys.stderr)
  readme = os.path.join(out_dir, 'README.md')
  summary = {'data_label': sorted({r['data_label'] for r in runs}),
             'rows': comparison.summary_rows(runs, mode)}
  fileio.write_files_atomic(dict(pngs, **{
      readme: text.encode(),
      os.path.join(out_dir, 'table.md'): (
          '\n'.join(table1(runs, mode)) + '\n').encode(),
      os.path.join(out_dir, 'summary.json'): (
          json.dumps(results.jsonable(summary), indent=1) + '\n').encode(),
  }), f'the report in {out_dir}')
  return readme, figure_paths


def main(argv=None):
  parser = argparse.ArgumentParser(
      prog='python -m magjax.evaluation.report',
      description='Table-1-style comparison of evaluated runs with the '
      'paper, and Figure 4-5 style figures.')
  parser.add_argument('runs', nargs='+', help='run workdirs (with eval/)')
  parser.add_argument('--out', required=True, help='output directory')
  parser.add_argument('--figures', type=int, default=2,
                      help='number of test times to draw (default 2)')
  parser.add_argument('--pair-id', action='append', default=None,
                      help='draw this test time (repeatable)')
  parser.add_argument('--mode', choices=evaluate.MODES, default=None,
                      help='only this evaluation mode (default: all)')
  args = parser.parse_args(sys.argv[1:] if argv is None else argv)
  try:
    readme, figure_paths = make_report(args.runs, args.out, args.figures,
                                       args.pair_id, args.mode)
  except UserError as e:
    return fail(e)
  print(f'wrote {readme}' + ''.join(f', {p}' for p in figure_paths))
  return 0


if __name__ == '__main__':
  sys.exit(main())
