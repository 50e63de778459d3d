"""evaluate(config, workdir): Table-1 metrics of a checkpoint on a split.

  python eval.py --config=configs/rhp.py --workdir=runs/rhp [--step=N]
      [--split=validation]

The generator of checkpoint `step` (default: the latest) is restored
read-only (`inference.restore_generator`) and run in eval mode. Each example
of the split is evaluated in one or both of two ways, chosen by
`config.eval_mode`:

- 'crops' (the paper's way): one `config.crop_size`^2 crop per example, its
  offset drawn from `np.random.default_rng([config.seed, 2, index])`
  (stream 2; training crops use stream 1), so every run and every model sees
  the same crops of the same examples;
- 'tiled': the whole (800, 900) patch by tiled inference with overlap
  blending (tile `config.crop_size`, overlap `config.eval_tile_overlap`,
  reduced to tile // 2 when it does not fit);
- 'both' (or a list such as ['crops', 'tiled']): both, the first listed
  ('crops' for 'both') being the primary mode of the summary.

The output is denormalised to gauss (x `config.hmi_saturation`) and scored
with `metrics.sample_metrics` (masked pixels excluded), then summarised as
mean +- std (population std; NaN samples excluded, `n` counts the rest).

Written to `<workdir>/eval/` (`results.write`): `metrics.json` (per-sample
rows and the summary per mode, the data set name, the SYNTHETIC flag read
from the examples, split, checkpoint step, eval modes, config hash and the
metric conventions), `metrics.md`, and `samples.npz`: `config.
eval_keep_samples` whole-patch examples (AIA, observed HMI, tiled prediction
in gauss, mask, pair ids, times, patch WCS header text) for the report's
figures, chosen evenly over the sorted pair ids, so the runs of the three
models keep the same test times.

The baselines of `baselines.py` (the zero field and the Hale-signed
brightness estimate, its map fitted on the training split) are scored on
the same crops and patches, into `metrics.json`'s `baselines`.

`validation_metrics` is the 'crops' protocol on at most
`config.validation_examples` examples, for training's periodic evaluation.
"""

import datetime
import io
import json
import os
import sys

import ml_collections
import numpy as np

import magjax
from magjax import checkpoints
from magjax import config_utils
from magjax import input_pipeline
from magjax.evaluation import baselines as baselines_lib
from magjax.evaluation import inference
from magjax.evaluation import metrics as metrics_lib
from magjax.evaluation import results
from magjax_common.errors import UserError, fail

MODES = ('crops', 'tiled')
CROP_STREAM = 2  # np.random.default_rng([seed, CROP_STREAM, index])
# The metrics training logs from its validation crops (all are computed).
VALIDATION_METRICS = ('psnr', 'ssim_paper', 'cc_binned', 'cc_abs_binned',
                      'rmse_gauss')


def eval_modes(config):
  """The requested modes as a tuple, primary first.

  `config.eval_mode`: 'crops', 'tiled', 'both' (= ('crops', 'tiled')), or a
  list / comma-separated string of those.
  """
  value = config.eval_mode
  if isinstance(value, str):
    value = MODES if value == 'both' else [
        v.strip() for v in value.split(',') if v.strip()]
  modes = []
  for mode in value:
    if mode not in MODES:
      raise UserError(f'eval_mode {mode!r} is not one of {MODES} or "both"')
    if mode not in modes:
      modes.append(mode)
  if not modes:
    raise UserError('eval_mode is empty')
  return tuple(modes)


def crop_offset(seed, index, image_shape, crop):
  """(top, left) of example `index`'s evaluation crop (pure)."""
  height, width = image_shape
  rng = np.random.default_rng([int(seed), CROP_STREAM, int(index)])
  top = int(rng.integers(0, height - crop + 1))
  left = int(rng.integers(0, width - crop + 1))
  return top, left


def _text(value, default=''):
  if value is None:
    return default
  if isinstance(value, np.ndarray):
    value = value.item() if value.size == 1 else value
  if isinstance(value, bytes):
    return value.decode('utf-8', 'replace')
  return str(value)


def _example_info(example, index):
  synthetic = example.get('synthetic') if hasattr(example, 'get') else None
  return {
      'index': int(index),
      'pair_id': _text(example.get('pair_id'), f'{index:06d}'),
      't_aia': _text(example.get('t_aia')),
      'synthetic': None if synthetic is None else bool(np.asarray(synthetic)),
  }


def _arrays(example):
  aia = np.asarray(example['aia'], np.float32)
  hmi = np.asarray(example['hmi'], np.float32)
  mask = np.asarray(example['mask'], bool)
  if aia.ndim == 2:
    aia, hmi, mask = aia[..., None], hmi[..., None], mask[..., None]
  return aia, hmi, mask


def _combine_synthetic(flags):
  known = [f for f in flags if f is not None]
  if not known:
    return None
  return any(known)  # one synthetic example makes the result synthetic


def _choose_keep(pair_ids, count):
  """Indices of `count` examples evenly spread over the sorted pair ids."""
  if count <= 0 or not pair_ids:
    return []
  order = sorted(range(len(pair_ids)), key=lambda i: pair_ids[i])
  if count >= len(order):
    return order
  positions = np.round(np.linspace(0, len(order) - 1, count)).astype(int)
  return [order[p] for p in positions]


def _check_crop(config, image_shape, must_fit=True):
  """UserError unless crop_size suits the network (and fits the images)."""
  crop = int(config.crop_size)
  depth = int(config.model.num_downs)
  if crop < 1 or crop % (2 ** depth):
    raise UserError(f'crop_size {crop} is not a positive multiple of '
                    f'2**num_downs = {2 ** depth}')
  if must_fit and min(image_shape) < crop:
    raise UserError(f'crop_size {crop} does not fit in the '
                    f'{image_shape[0]}x{image_shape[1]} examples')


class CropScorer:
  """Scores seeded evaluation crops in batches of the generator's size.

  `add(info, example_index, aia, hmi, mask)` queues the example's crop;
  full batches go through `fn` at once; `finish()` flushes and returns the
  scored rows (info + crop offset + metrics) in order.
  """

  def __init__(self, fn, config):
    self._fn = fn
    self._config = config
    self._kwargs = metrics_lib.metric_kwargs(config)
    self._pending = []
    self.rows = []

  def add(self, info, aia, hmi, mask):
    crop = int(self._config.crop_size)
    top, left = crop_offset(self._config.seed, info['index'], aia.shape[:2],
                            crop)
    window = np.s_[top:top + crop, left:left + crop]
    x = inference.network_input(aia[window], mask[window], self._config)
    self._pending.append((dict(info, crop=[top, left]), x,
                          hmi[window][..., 0], mask[window][..., 0]))
    if len(self._pending) == self._fn.batch_size:
      self._flush()

  def _flush(self):
    if not self._pending:
      return
    preds = self._fn(np.stack([p[1] for p in self._pending]))
    for (row, _, target, valid), pred in zip(self._pending, preds):
      row.update(metrics_lib.sample_metrics(
          inference.to_gauss(pred, self._config), target, valid,
          **self._kwargs))
      self.rows.append(row)
    self._pending.clear()

  def finish(self):
    self._flush()
    return self.rows


def brightness_map(config, source, train_source=None):
  """The baseline's AIA -> |B| map, fitted on `train_source` (else on
  `source`): config.baseline_fit_examples examples, evenly spread."""
  fit_on = train_source if train_source is not None else source
  picks = validation_indices(len(fit_on), int(config.baseline_fit_examples))
  triples = []
  for index in picks:
    aia, hmi, mask = _arrays(fit_on[index])
    triples.append((aia[..., 0], hmi[..., 0], mask[..., 0]))
  return baselines_lib.BrightnessMap.fit(triples,
                                         float(config.hmi_saturation))


class BaselineScorer:
  """The baselines' metrics on the same crops / patches as the model's."""

  def __init__(self, config, bmap, modes):
    self._config = config
    self._bmap = bmap
    self._kwargs = metrics_lib.metric_kwargs(config)
    self.rows = {name: {mode: [] for mode in modes}
                 for name in baselines_lib.NAMES}

  def add(self, info, aia, hmi, mask, crop_window=None):
    config = self._config
    binning = int(config.patch_binning)
    fields = {
        'zero': baselines_lib.zero_field(aia.shape[:2]),
        'hale': baselines_lib.hale_field(aia[..., 0], mask[..., 0],
                                         self._bmap, config, binning)}
    for name, field in fields.items():
      for mode, rows in self.rows[name].items():
        window = crop_window if mode == 'crops' else np.s_[:, :]
        rows.append(dict(info, **metrics_lib.sample_metrics(
            field[window], hmi[..., 0][window], mask[..., 0][window],
            **self._kwargs)))

  def result(self):
    return {name: {
        'summary': {mode: metrics_lib.summarise(
            [{k: r[k] for k in metrics_lib.METRIC_NAMES} for r in rows])
                    for mode, rows in by_mode.items()},
        'samples': by_mode} for name, by_mode in self.rows.items()}


def _load(config, split):
  """(`split`, the binned training split) of config.dataset; UserError."""
  try:
    return (input_pipeline.load_source(config, split),
            input_pipeline.with_binning(
                input_pipeline.load_source(config, config.train_split),
                config))
  except (ValueError, FileNotFoundError) as e:
    raise UserError(str(e)) from e


def baseline_metrics(config, split, source=None, train_source=None):
  """The baselines' result (BaselineScorer.result) on `split` by the
  'crops' protocol, on the examples validation_metrics uses."""
  if source is None:
    source, train_source = _load(config, split)
  source = input_pipeline.with_binning(source, config)
  crop = int(config.crop_size)
  scorer = BaselineScorer(config, brightness_map(config, source,
                                                 train_source), ('crops',))
  for index in validation_indices(len(source), config.validation_examples):
    aia, hmi, mask = _arrays(source[index])
    top, left = crop_offset(config.seed, index, aia.shape[:2], crop)
    scorer.add({'index': index}, aia, hmi, mask,
               np.s_[top:top + crop, left:left + crop])
  return scorer.result()


def validation_indices(num_examples, count):
  """At most `count` (-1: all) example indices, evenly spread (pure)."""
  if count < 0 or count >= num_examples:
    return list(range(num_examples))
  return sorted({int(i) for i in np.round(
      np.linspace(0, num_examples - 1, count)).astype(int)})


def validation_metrics(fn, source, config):
  """{metric: mean} of the 'crops' protocol on the validation examples.

  fn: a generator function with a `batch_size` (inference.GeneratorFn, or
  training's own compiled G). The examples: `validation_indices(len(source),
  config.validation_examples)`; NaN samples are left out of the means.
  """
  _check_crop(config, input_pipeline.image_shape(source))
  scorer = CropScorer(fn, config)
  for index in validation_indices(len(source), config.validation_examples):
    example = source[index]
    scorer.add({'index': index}, *_arrays(example))
  summary = metrics_lib.summarise(
      [{k: r[k] for k in metrics_lib.METRIC_NAMES} for r in scorer.finish()])
  return {k: summary[k]['mean'] for k in VALIDATION_METRICS}


def evaluate(config, workdir, step=None, split=None, source=None,
             dataset_name=None):
  """Evaluates checkpoint `step` of `workdir` on `split`; returns the result.

  Args:
    config: the ConfigDict (configs/*.py), or None for the checkpoint's own.
    workdir: the training workdir; results go to `<workdir>/eval/`.
    step: checkpoint step; None for the latest.
    split: data split; None for config.eval_split ('test').
    source: a random-access source of examples (input_pipeline), e.g. an
      in-memory list in tests; None reads `split` of config.dataset.
    dataset_name: the data set's name for the outputs (default: derived).

  Returns:
    The dict written to metrics.json (non-finite numbers as floats).

  Raises:
    UserError: one-line message for bad config, checkpoint or data.
  """
  if step is None:  # the newest intact checkpoint (damaged ones said)
    step = checkpoints.intact_step(workdir, say=checkpoints.note)
  saved, _ = checkpoints.saved_config(workdir, step)
  config = ml_collections.ConfigDict((config or saved).to_dict())
  modes = eval_modes(config)
  split = split or config.eval_split
  variables, restored_step = inference.restore_generator(config, workdir,
                                                         step)
  train_source = None
  if source is None:
    source, train_source = _load(config, split)
    if dataset_name is None:
      info = getattr(source, 'dataset_info', None)
      dataset_name = getattr(info, 'full_name', None) or config.dataset
  dataset_name = dataset_name or 'in-memory source'
  input_pipeline.check_trained_version(saved, source, workdir)
  source = input_pipeline.with_binning(source, config)
  if len(source) == 0:
    raise UserError(f'split {split!r} of {dataset_name} holds no example')
  _check_crop(config, input_pipeline.image_shape(source),
              must_fit='crops' in modes)  # tiles of small images are padded

  fn = inference.GeneratorFn(config, variables,
                             inference.inference_batch_size(config))
  kwargs = metrics_lib.metric_kwargs(config)
  crops = CropScorer(fn, config)
  baselines = BaselineScorer(config, brightness_map(config, source,
                                                    train_source), modes)
  crop = int(config.crop_size)
  tiled_rows, infos = [], []
  for index in range(len(source)):
    example = source[index]
    info = _example_info(example, index)
    infos.append(info)
    aia, hmi, mask = _arrays(example)
    window = None
    if 'crops' in modes:
      crops.add(info, aia, hmi, mask)
      top, left = crop_offset(config.seed, index, aia.shape[:2], crop)
      window = np.s_[top:top + crop, left:left + crop]
    baselines.add(info, aia, hmi, mask, window)
    if 'tiled' in modes:
      pred = inference.to_gauss(inference.predict_tiled(
          fn, inference.network_input(aia, mask, config), config), config)
      tiled_rows.append(dict(info, **metrics_lib.sample_metrics(
          pred, hmi[..., 0], mask[..., 0], **kwargs)))
    _progress(index + 1, len(source))
  rows = {'crops': crops.finish(), 'tiled': tiled_rows}
  rows = {mode: rows[mode] for mode in modes}

  synthetic = _combine_synthetic([i['synthetic'] for i in infos])
  result = {
      'format': results.FORMAT,
      'dataset': dataset_name,
      'synthetic': synthetic,
      'data_label': input_pipeline.data_label(synthetic),
      'split': split,
      'num_examples': len(source),
      'checkpoint_step': restored_step,
      'workdir': os.path.abspath(workdir),
      'model': str(config.model.name),
      'config_hash': config_utils.config_hash(config),
      'eval_modes': list(modes),
      'primary_mode': modes[0],
      'crop_size': int(config.crop_size),
      'patch_binning': int(config.patch_binning),
      'tile': int(config.crop_size),
      'tile_overlap': inference.tile_overlap(config),
      'seed': int(config.seed),
      'metric_conventions': metrics_lib.conventions(config),
      'summary': {mode: metrics_lib.summarise(
          [{k: r[k] for k in metrics_lib.METRIC_NAMES} for r in rows[mode]])
                  for mode in modes},
      'samples': rows,
      'baselines': baselines.result(),
      'magjax_version': magjax.version(),
      'created_utc': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
  }
  keep = _choose_keep([i['pair_id'] for i in infos],
                      int(config.eval_keep_samples))
  samples = _samples_npz(source, keep, fn, config, kwargs) if keep else None
  try:
    results.write(workdir, result, samples)
  except OSError as e:
    raise UserError(f'{results.eval_dir(workdir)}: cannot write '
                    f'({e.strerror or e})') from e
  return result


def _samples_npz(source, keep, fn, config, kwargs):
  """npz bytes of the kept whole-patch examples and their tiled predictions."""
  from data_prep import grid  # pylint: disable=g-import-not-at-top
  arrays = {k: [] for k in ('aia', 'hmi', 'pred', 'mask')}
  meta = {k: [] for k in ('pair_id', 't_aia', 'wcs_header', 'metrics')}
  synthetic = []
  for index in keep:
    example = source[index]
    info = _example_info(example, index)
    aia, hmi, mask = _arrays(example)
    pred = inference.to_gauss(inference.predict_tiled(
        fn, inference.network_input(aia, mask, config), config), config)
    m = mask[..., 0]
    arrays['aia'].append(np.where(m, aia[..., 0], np.nan).astype(np.float32))
    arrays['hmi'].append(np.where(m, hmi[..., 0], np.nan).astype(np.float32))
    arrays['pred'].append(pred.astype(np.float32))
    arrays['mask'].append(m)
    meta['pair_id'].append(info['pair_id'])
    meta['t_aia'].append(info['t_aia'])
    header = grid.grid_header(
        info['t_aia'] or None, shape=m.shape,
        scale_deg=grid.PATCH_SCALE_DEG * int(config.patch_binning))
    meta['wcs_header'].append(header.tostring())
    meta['metrics'].append(json.dumps(results.jsonable(
        metrics_lib.sample_metrics(pred, hmi[..., 0], m, **kwargs))))
    synthetic.append(bool(info['synthetic']))
  buffer = io.BytesIO()
  np.savez_compressed(
      buffer, **{k: np.stack(v) for k, v in arrays.items()},
      **{k: np.array(v, dtype=str) for k, v in meta.items()},
      synthetic=np.array(synthetic, bool),
      model=np.array(str(config.model.name)),
      pred_mode=np.array('tiled'))
  return buffer.getvalue()


def _progress(done, total):
  if total >= 10 and (done % max(1, total // 10) == 0 or done == total):
    print(f'evaluated {done}/{total}', file=sys.stderr, flush=True)


def run(config, workdir, step=None, split=None, source=None):
  """evaluate() with one-line errors; prints the summary; returns exit code."""
  try:
    result = evaluate(config, workdir, step, split, source)
  except UserError as e:
    return fail(e)
  print(results.markdown(result))
  print(f'wrote {os.path.join(results.eval_dir(workdir), "metrics.json")}')
  return 0
