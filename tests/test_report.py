"""magjax.evaluation.report / figures on three fake evaluation directories."""

import json
import os

import matplotlib.image
import numpy as np
import pytest

from data_prep import grid
from magjax import input_pipeline
from magjax.evaluation import figures as figures_lib
from magjax.evaluation import metrics as metrics_lib
from magjax.evaluation import report
from magjax.evaluation import results

SHAPE = (80, 90)


def _summary(psnr, ssim, cc):
  out = {}
  for name in metrics_lib.METRIC_NAMES:
    out[name] = {'mean': 0.5, 'std': 0.1, 'n': 2}
  out['psnr'] = {'mean': psnr, 'std': 1.25, 'n': 2}
  out['ssim_paper'] = {'mean': ssim, 'std': 0.02, 'n': 2}
  out['cc_binned'] = {'mean': cc, 'std': 0.05, 'n': 2}
  out['strong_cc'] = {'mean': float('nan'), 'std': float('nan'), 'n': 0}
  return out


def _fake_run(root, model, psnr, pair_ids, synthetic=True, step=1000):
  """An eval/ directory as evaluate() writes it (metrics.json, samples)."""
  workdir = os.path.join(root, model)
  eval_dir = os.path.join(workdir, 'eval')
  os.makedirs(eval_dir)
  result = {
      'format': results.FORMAT, 'dataset': 'sdo_ar/synthetic',
      'synthetic': synthetic,
      'data_label': input_pipeline.data_label(synthetic), 'split': 'test',
      'num_examples': 2, 'checkpoint_step': step, 'workdir': workdir,
      'model': model, 'config_hash': 'abcdef012345',
      'eval_modes': ['crops', 'tiled'], 'primary_mode': 'crops',
      'crop_size': 512, 'tile': 512, 'tile_overlap': 64, 'seed': 0,
      'metric_conventions': {'cc_binning': 2, 'strong_field_gauss': 100.0},
      'summary': {'crops': _summary(psnr, 0.6123, 0.4567),
                  'tiled': _summary(psnr - 1, 0.5, 0.4)},
      'samples': {'crops': [], 'tiled': []},
      'magjax_version': '0.1.0', 'created_utc': '2026-11-25T00:00:00Z'}
  with open(os.path.join(eval_dir, 'metrics.json'), 'w') as f:
    json.dump(results.jsonable(result), f)
  rng = np.random.default_rng(len(model))
  n = len(pair_ids)
  yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
  mask = np.broadcast_to((xx - 45) ** 2 + (yy - 40) ** 2 < 38 ** 2,
                         (n,) + SHAPE)
  hmi = np.where(mask, rng.normal(0, 80, (n,) + SHAPE), np.nan)
  header = grid.grid_header('2012-10-01T00:00:00', SHAPE)
  np.savez(
      os.path.join(eval_dir, 'samples.npz'),
      aia=np.where(mask, 10 ** rng.uniform(1, 3, (n,) + SHAPE), np.nan),
      hmi=hmi, pred=rng.normal(0, 60, (n,) + SHAPE), mask=mask,
      pair_id=np.array(pair_ids), t_aia=np.array(['2012-10-01T00:00:00'] * n),
      wcs_header=np.array([header.tostring()] * n),
      metrics=np.array([json.dumps({'psnr': psnr, 'ssim_paper': 0.6,
                                    'cc_binned': 0.4, 'rmse_gauss': 55.0})]
                       * n),
      synthetic=np.array([synthetic] * n), model=np.array(model),
      pred_mode=np.array('tiled'))
  return workdir


@pytest.fixture()
def runs(tmp_path):
  ids = ['20121001T000000', '20121101T000000']
  return [_fake_run(tmp_path, 'pix2pix', 18.5, ids),
          _fake_run(tmp_path, 'cat', 19.25, ids + ['20121201T000000']),
          _fake_run(tmp_path, 'rhp', 20.75, ids[1:])]


def test_report_table_and_figure(runs, tmp_path, capsys):
  out = tmp_path / 'report'
  assert report.main(runs + ['--out', str(out), '--figures', '2']) == 0
  text = (out / 'README.md').read_text()
  # The paper's published Table 1, labelled as such.
  for cell in ('19.80 ± 1.65', '0.59 ± 0.04', '0.49 ± 0.11',
               '20.49 ± 1.35', '0.64 ± 0.04', '0.58 ± 0.10',
               '21.03 ± 1.71', '0.65 ± 0.03', '0.59 ± 0.10'):
    assert cell in text
  paper_rows = [l for l in text.splitlines() if 'Sun, Xu et al. 2023, Table 1 |'
                in l]
  assert len(paper_rows) == 3
  assert all('published, real 2012 SDO data' in l for l in paper_rows)
  # Ours, labelled SYNTHETIC, one row per run and eval mode.
  ours = [l for l in text.splitlines()
          if l.startswith('|') and 'magjax (ours)' in l]
  assert len(ours) == 6
  assert all('**SYNTHETIC**' in l for l in ours)
  assert any('20.75 ± 1.25' in l and '0.61 ± 0.02' in l and '0.46 ± 0.05' in l
             for l in ours)
  assert 'not comparable' in text
  # Wang SSIM and the physical metrics; an undefined metric is n/a.
  assert 'SSIM (Wang c)' in text and 'RMSE (G)' in text and 'n/a' in text
  # Figure for the only test time common to all three runs.
  figure = out / 'figure_20121101T000000.png'
  assert figure.exists()
  assert not (out / 'figure_20121001T000000.png').exists()
  assert '![figure_20121101T000000.png](figure_20121101T000000.png)' in text
  image = matplotlib.image.imread(str(figure))
  assert image.shape[0] > 400 and image.shape[1] > 1000
  assert (out / 'table.md').read_text().count('\n') == 2 + 3 + 6
  assert 'figure_20121101T000000.png' in capsys.readouterr().out
  # summary.json: one row per model (these runs hold no baselines)
  summary = json.loads((out / 'summary.json').read_text())
  assert summary['data_label'] == ['SYNTHETIC']
  assert [(r['name'], r['kind'], r['split']) for r in summary['rows']] == [
      ('pix2pix', 'model', 'test'), ('cat', 'model', 'test'),
      ('rhp', 'model', 'test')]
  assert summary['rows'][2]['cc'] == pytest.approx(0.4567)


def test_report_on_real_data_has_no_synthetic_banner(tmp_path):
  run = _fake_run(tmp_path, 'rhp', 21.5, ['20121001T000000'],
                  synthetic=False)
  readme, figures = report.make_report([run], str(tmp_path / 'out'))
  text = open(readme).read()
  assert 'SYNTHETIC' not in text
  assert 'real SDO data' in text
  assert len(figures) == 1


def test_missing_evaluation_is_one_line_error(runs, tmp_path, capsys):
  code = report.main(runs + [str(tmp_path / 'nope'), '--out',
                             str(tmp_path / 'o')])
  assert code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith('error: no metrics.json')
  assert not (tmp_path / 'o' / 'README.md').exists()


def test_lonlat_extent_of_the_patch_grid():
  header = grid.grid_header(None, (800, 900))
  assert figures_lib.lonlat_extent(header, (800, 900)) == pytest.approx(
      (-45.0, 45.0, -40.0, 40.0))


def test_pair_id_choice_and_no_common_time(runs, tmp_path):
  out = tmp_path / 'chosen'
  assert report.main(runs[:2] + ['--out', str(out), '--pair-id',
                                  '20121001T000000']) == 0
  assert [p.name for p in out.glob('*.png')] == ['figure_20121001T000000.png']
  out = tmp_path / 'none'
  readme, figures = report.make_report(runs, str(out),
                                       pair_ids=['20121201T000000'])
  assert figures == []
  assert 'No figure: no test time common to all runs' in open(readme).read()
