"""The learning curve of a run: validation CC and CC of |B| against steps,
with the baselines on the same validation crops as horizontal lines.

  python -m tools.learning_curve --workdir runs/rhp_long \\
      --out docs/learning_curve.png [--json docs/learning_curve.json]

Reads the `validation/*` scalars training wrote to the workdir's
TensorBoard events (train_and_evaluate, every eval_every_steps) and scores
the baselines (evaluation/baselines.py) on the validation split by the same
seeded-crop protocol. SYNTHETIC runs say so on the figure.
"""

import argparse
import json
import os
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position

from magjax import checkpoints  # pylint: disable=wrong-import-position
from magjax import config_utils  # pylint: disable=wrong-import-position
from magjax.evaluation import evaluate  # pylint: disable=wrong-import-position
from magjax.evaluation import results  # pylint: disable=wrong-import-position
from magjax.training import tb  # pylint: disable=wrong-import-position
from magjax_common import fileio  # pylint: disable=wrong-import-position
from magjax_common.errors import UserError, fail  # pylint: disable=wrong-import-position

CURVES = (('cc_binned', 'signed CC (2×2)'), ('cc_abs_binned', 'CC of |B|'))
BASELINES = (('hale', 'physics baseline (Hale-signed brightness)', '--'),
             ('zero', 'zero field', ':'))


def curve_data(workdir):
  """{'steps', 'cc_binned', 'cc_abs_binned', baselines, config facts}."""
  config, step = checkpoints.saved_config(workdir)
  scalars = tb.read_scalars(workdir)
  missing = [m for m, _ in CURVES if f'validation/{m}' not in scalars]
  if missing:
    raise UserError(f'{workdir}: no validation/{missing[0]} in its '
                    'TensorBoard events (trained with eval_every_steps=0?)')
  data = {'workdir': workdir, 'model': str(config.model.name),
          'checkpoint_step': step,
          'synthetic': config_utils.trained_on_synthetic(config),
          'validation_split': str(config.validation_split)}
  for metric, _ in CURVES:
    points = scalars[f'validation/{metric}']
    data['steps'] = [s for s, _ in points]
    data[metric] = [v for _, v in points]
  base = evaluate.baseline_metrics(config, config.validation_split)
  data['baselines'] = {
      name: {metric: (0.0 if name == 'zero' else
                      base[name]['summary']['crops'][metric]['mean'])
             for metric, _ in CURVES} for name, _, _ in BASELINES}
  return data


def plot(data, path):
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
  for ax, (metric, title) in zip(axes, CURVES):
    ax.plot(data['steps'], data[metric], 'o-', ms=3, label=data['model'])
    for name, label, style in BASELINES:
      ax.axhline(data['baselines'][name][metric], ls=style, color='grey',
                 label=label)
    ax.set_xlabel('training step')
    ax.set_title(f'{title}, {data["validation_split"]} split')
    ax.set_ylim(-0.2, 1.0)
    ax.grid(alpha=0.3)
  axes[0].legend(loc='lower right', fontsize=8)
  label = ('SYNTHETIC data (not SDO observations)' if data['synthetic']
           else 'SDO data')
  fig.suptitle(f'learning curve of {data["model"]} — {label}',
               color='firebrick' if data['synthetic'] else 'black')
  fig.tight_layout()
  tmp = path + '.tmp.png'
  fig.savefig(tmp, dpi=110)
  plt.close(fig)
  os.replace(tmp, path)


def main(argv=None):
  parser = argparse.ArgumentParser(prog='python -m tools.learning_curve',
                                   description=__doc__.splitlines()[0])
  parser.add_argument('--workdir', required=True)
  parser.add_argument('--out', required=True, help='PNG path')
  parser.add_argument('--json', default=None, help='also the numbers here')
  args = parser.parse_args(argv)
  try:
    data = curve_data(args.workdir)
    plot(data, args.out)
    if args.json:
      fileio.write_bytes_atomic(args.json, (json.dumps(
          results.jsonable(data), indent=1) + '\n').encode())
  except UserError as e:
    return fail(e)
  print(f'wrote {args.out}: {len(data["steps"])} validation points, last '
        f'CC {data["cc_binned"][-1]:.3f}, CC |B| '
        f'{data["cc_abs_binned"][-1]:.3f}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
