"""Far-side magnetograms scored against the truth, which no peer can do.

  python -m tools.farside_validation --workdir runs/rhp \\
      [--dates 2012-10-05,2012-10-20,...] [--size 1024] \\
      [--json docs/farside_validation.json]

A model trained on the SDO view (AIA 304 -> HMI) of the SYNTHETIC Sun
generates magnetograms from the 304 A views of the same instants seen by
SDO/AIA, STEREO-A and -B/EUVI, SOHO/EIT and Solar Orbiter/EUI/FSI
(`data_prep.synthesize --observer ... --truth`), through predict's own
path (calibration, the patch on the observer's central meridian, binning
to the model's resolution, tiled inference), once with the calibration on
('auto') and once off ('none': counts per second only). Each result is
scored against the ground-truth LOS magnetogram that observer sees
(noise-free, on the same patch grid, clipped to +-hmi_saturation): CC
(2x2 binned, as evaluation), CC of |B|, RMSE in G, over the patch pixels
valid in both. Default dates: the test split (October - December), none
of which the model trained on. Prints a markdown table (mean +- standard
error over dates) and writes the per-date numbers as JSON.
"""

import argparse
import json
import sys
import tempfile
import time
import warnings

import numpy as np

from data_prep import patches, synthesize
from magjax import checkpoints, input_pipeline, predict
from magjax.evaluation import inference, metrics
from magjax_common import fileio
from magjax_common.errors import UserError, fail

OBSERVERS = ('sdo', 'stereo-a', 'stereo-b', 'soho', 'solo')
NAMES = {'sdo': 'SDO/AIA', 'stereo-a': 'STEREO-A/EUVI',
         'stereo-b': 'STEREO-B/EUVI', 'soho': 'SOHO/EIT', 'solo': 'SolO/FSI'}
CALIBRATIONS = ('auto', 'none')
DATES = ('2012-10-05', '2012-10-20', '2012-11-05', '2012-11-20',
         '2012-12-05', '2012-12-20')
METRICS = ('cc', 'cc_abs', 'rmse')


def truth_patch(path, config):
  """The truth magnetogram on the patch grid at the model's resolution."""
  import sunpy.map  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    pmap = patches.extract_patch(sunpy.map.Map(str(path)))
  saturation = float(config.hmi_saturation)
  truth = np.clip(pmap.data, -saturation, saturation)
  valid = np.isfinite(truth)
  k = int(config.patch_binning)
  if k == 1:
    return np.where(valid, truth, np.nan)
  binned, ok = input_pipeline.bin_image(np.where(valid, truth, 0.0), valid, k)
  return np.where(ok, binned, np.nan)


def score(pred, truth, config):
  ok = np.isfinite(pred) & np.isfinite(truth)
  if ok.sum() < 100:
    return {m: float('nan') for m in METRICS} | {'valid': int(ok.sum())}
  p, t = np.where(ok, pred, 0.0), np.where(ok, truth, 0.0)
  binning = int(config.cc_binning)
  return {'cc': metrics.pearson_cc_binned(p, t, ok, binning),
          'cc_abs': metrics.pearson_cc_binned(np.abs(p), np.abs(t), ok,
                                              binning),
          'rmse': metrics.rmse_gauss(p, t, ok), 'valid': int(ok.sum())}


def run(workdir, dates, size, seed=0, log=print, observers=OBSERVERS):
  """[{date, observer, calibration, cc, cc_abs, rmse, valid, ...}]."""
  config, step = checkpoints.saved_config(workdir)
  variables, step = inference.restore_generator(config, workdir, step)
  reference = config.get('aia_quiet_sun', None)
  rows = []
  with tempfile.TemporaryDirectory(prefix='farside-') as tmp:
    for date in dates:
      for observer in observers:
        paths = synthesize.synthesize_frame(f'{date}T00:00:00', size, seed,
                                            tmp, observer, truth=True)
        image, truth_path = paths[0], paths[-1]
        truth = truth_patch(truth_path, config)
        for calibration in CALIBRATIONS:
          start = time.time()
          aia, header, _, smap = predict.load_input_patch(
              str(image), calibration, reference)
          aia, header = predict.bin_patch(aia, header,
                                          int(config.patch_binning))
          mean, _ = predict.generate(config, variables, aia)
          row = {'date': date, 'observer': observer,
                 'instrument': header.get('SRC_INST'),
                 'calibration': calibration,
                 'observer_lon': float(header['HGLN_OBS']),
                 'patch_lon': float(header['CRVAL1']),
                 'gain': float(header.get('CALGAIN', 1.0)),
                 **score(mean, truth, config),
                 'seconds': round(time.time() - start, 2)}
          del smap
          rows.append(row)
          log(f'{date} {observer:9s} {calibration:5s} lon '
              f'{row["observer_lon"]:+7.1f}  CC {row["cc"]:.3f}  CC|B| '
              f'{row["cc_abs"]:.3f}  RMSE {row["rmse"]:.1f} G')
  return {'workdir': workdir, 'model': str(config.model.name),
          'checkpoint_step': int(step), 'synthetic': True, 'size': size,
          'dates': list(dates), 'rows': rows}


def table(result):
  """Markdown: mean +- SE over dates per observer and calibration."""
  lines = ['| view | calibration | mean Stonyhurst lon | CC (2×2) | CC of '
           '\\|B\\| | RMSE (G) |', '|---|---|---|---|---|---|']
  for observer in OBSERVERS:
    for calibration in CALIBRATIONS:
      rows = [r for r in result['rows'] if r['observer'] == observer
              and r['calibration'] == calibration]
      if not rows:
        continue
      cells = []
      for metric in METRICS:
        values = np.array([r[metric] for r in rows], float)
        se = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 \
            else float('nan')
        digits = 1 if metric == 'rmse' else 3
        cells.append(f'{values.mean():.{digits}f} ± {se:.{digits}f}')
      lon = np.mean([r['observer_lon'] for r in rows])
      lines.append(f'| {NAMES[observer]} | {calibration} | {lon:+.0f}° | '
                   + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m tools.farside_validation',
                                   description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--dates', default=','.join(DATES))
  parser.add_argument('--size', type=int, default=1024)
  parser.add_argument('--json', default=None, help='write the rows here')
  args = parser.parse_args(argv)
  try:
    dates = [d.strip() for d in args.dates.split(',') if d.strip()]
    if not 64 <= args.size <= 4096:
      raise UserError(f'--size {args.size}: expected 64..4096 pixels')
    result = run(args.workdir, dates, args.size)
    result['table'] = table(result)
    if args.json:
      fileio.write_bytes_atomic(args.json,
                                (json.dumps(result, indent=1) + '\n').encode())
  except UserError as e:
    return fail(e)
  print('SYNTHETIC data; model trained on the SDO view only')
  print(result['table'])
  return 0


if __name__ == '__main__':
  sys.exit(main())
