"""evaluate(config, workdir): Table-1 metrics of a checkpoint on a split.

  python eval.py --config=configs/rhp.py --workdir=runs/rhp [--step=N]
      [--split=validation]

The checkpoint (latest, or `step`) is restored read-only against an abstract
TrainState (`jax.eval_shape` of `create_train_state`); G runs in eval mode
(BatchNorm running statistics, dropout off). Each example of the split is
evaluated in one or both of two ways, chosen by `config.eval_mode`:

- 'crops' (the paper's way): one `config.crop_size`^2 crop per example, its
  offset drawn from `np.random.default_rng([config.seed, 2, index])`
  (stream 2; training crops use stream 1), so every run and every model sees
  the same crops of the same examples;
- 'tiled': the whole (800, 900) patch by tiled inference with overlap
  blending (`tiling.tiled_apply`, tile `config.crop_size`, overlap
  `config.eval_tile_overlap`, reduced to tile // 2 when it does not fit);
- 'both' (or a list such as ['crops', 'tiled']): both, the first listed
  ('crops' for 'both') being the primary mode of the summary.

The output is denormalised to gauss (x `config.hmi_saturation`) and scored
with `metrics.sample_metrics` (masked pixels excluded), then summarised as
mean +- std (population std; NaN samples excluded, `n` counts the rest).

Written to `<workdir>/eval/` (each file atomically, tmp + os.replace):
- `metrics.json`: per-sample rows and the summary per mode, the data set name,
  the SYNTHETIC flag read from the examples, split, checkpoint step, eval
  modes, config hash and the metric conventions. Non-finite numbers are
  written as the strings 'nan', 'inf', '-inf' (strict JSON);
  `read_metrics` turns them back into floats.
- `metrics.md`: the summary in Markdown, stating the data (SYNTHETIC or real)
  and the checkpoint step.
- `samples.npz`: a few whole-patch examples (AIA, observed HMI, tiled
  prediction in gauss, mask, pair ids, times, patch WCS header text) for the
  report's figure; chosen evenly over the sorted pair ids, so the runs of the
  three models keep the same test times.
"""

import datetime
import functools
import io
import json
import math
import os
import sys

from absl import logging
import jax
import ml_collections
import numpy as np

import magjax
from magjax import checkpoints
from magjax import fileio
from magjax import input_pipeline
from magjax import metrics as metrics_lib
from magjax import provenance
from magjax import steps
from magjax import tiling
from magjax import train_state as train_state_lib

MODES = ('crops', 'tiled')
EVAL_SUBDIR = 'eval'
FORMAT = 'magjax.eval/1'
CROP_STREAM = 2  # np.random.default_rng([seed, CROP_STREAM, index])
DEFAULT_KEEP_SAMPLES = 3


class EvalError(Exception):
  """Bad config, workdir, checkpoint or data: a one-line message, exit 2."""


# ------------------------------------------------------------------ config

def eval_modes(config):
  """The requested modes as a tuple, primary first.

  `config.eval_mode`: 'crops', 'tiled', 'both' (= ('crops', 'tiled')), or a
  list / comma-separated string of those.
  """
  value = config.get('eval_mode', 'crops')
  if isinstance(value, str):
    value = MODES if value == 'both' else [
        v.strip() for v in value.split(',') if v.strip()]
  modes = []
  for mode in value:
    if mode not in MODES:
      raise EvalError(f'eval_mode {mode!r} is not one of {MODES} or "both"')
    if mode not in modes:
      modes.append(mode)
  if not modes:
    raise EvalError('eval_mode is empty')
  return tuple(modes)


def tile_overlap(config):
  """config.eval_tile_overlap, reduced to tile // 2 when it does not fit."""
  tile = int(config.crop_size)
  return max(0, min(int(config.get('eval_tile_overlap', tile // 8)),
                    tile // 2))


def inference_batch_size(config, tile):
  """config.eval_batch_size, else about 2 * 512^2 pixels per call (1..64)."""
  size = int(config.get('eval_batch_size', 0) or 0)
  if size > 0:
    return size
  return int(max(1, min(64, (2 * 512 * 512) // (tile * tile))))


def crop_offset(seed, index, image_shape, crop):
  """(top, left) of example `index`'s evaluation crop (pure)."""
  height, width = image_shape
  rng = np.random.default_rng([int(seed), CROP_STREAM, int(index)])
  top = int(rng.integers(0, height - crop + 1))
  left = int(rng.integers(0, width - crop + 1))
  return top, left


# -------------------------------------------------------------- restoring

def abstract_state(config):
  """The TrainState structure of `config` as jax.ShapeDtypeStruct leaves."""
  crop = int(config.crop_size)
  num_steps = int(config.num_train_steps)
  if num_steps <= 0:  # the schedule does not change the state's structure
    num_steps = 1
  init = functools.partial(train_state_lib.create_train_state, config,
                           image_shape=(crop, crop), num_train_steps=num_steps)
  return jax.eval_shape(init, jax.random.key(int(config.seed)))


def restore_generator(config, workdir, step=None):
  """(G variables, step, meta) of checkpoint `step` (default: the latest).

  Raises:
    EvalError: no workdir / checkpoint / step, or a checkpoint that does not
      match `config`'s model.
  """
  if not os.path.isdir(workdir):
    raise EvalError(f'no such workdir {workdir!r}')
  available = provenance.checkpoint_steps(workdir)
  if not available:
    raise EvalError(f'no checkpoint in {checkpoints.directory(workdir)!r} '
                    '(train first)')
  if step is not None and step not in available:
    raise EvalError(f'no checkpoint at step {step} in '
                    f'{checkpoints.directory(workdir)!r} (available: '
                    f'{available})')
  checkpoints.quiet_orbax()
  _quiet_orbax_warnings()
  try:
    target = abstract_state(config)
  except (ValueError, TypeError) as e:
    raise EvalError(f'cannot build the model of the config: '
                    f'{_first_line(e)}') from e
  try:
    ckpt = checkpoints.Checkpointer(workdir, read_only=True)
    state, meta = ckpt.restore(target, step)
  except FileNotFoundError as e:
    raise EvalError(_first_line(e)) from e
  except Exception as e:  # pylint: disable=broad-except  # orbax: many kinds
    raise EvalError(
        f'checkpoint in {checkpoints.directory(workdir)!r} does not match '
        f'the config (model {config.model.name!r}, ngf {config.model.ngf}, '
        f'num_downs {config.model.num_downs}): {_first_line(e)}') from e
  restored_step = int(jax.device_get(state.step))
  return steps.generator_variables(state), restored_step, meta


# -------------------------------------------------------------- inference

def normalized_input(aia, mask, config):
  """(H, W, 1) float32 network input: scaled AIA, fill where not valid."""
  aia = np.asarray(aia, np.float32)
  if aia.ndim == 2:
    aia = aia[..., None]
  mask = np.asarray(mask, bool).reshape(aia.shape)
  valid = mask & np.isfinite(aia)
  scaled = input_pipeline.normalize_aia(np.where(valid, aia, 0.0), config)
  return np.where(valid, scaled,
                  np.float32(config.aia_fill)).astype(np.float32)


def make_generator_fn(config, variables, batch_size, rng=None):
  """fn(images (N, h, w, C)) -> G's output (N, h, w, C_out), NumPy float32.

  One jitted G (eval mode) of fixed batch `batch_size`: inputs are padded
  to it and split into chunks of it. With `rng` (a typed key), dropout stays
  active (Monte-Carlo dropout); each call folds a call counter into the key,
  so the tiles of one image get independent dropout masks, deterministically.
  """
  if rng is None:
    apply = jax.jit(lambda v, x: steps.predict_step(v, x, config))
  else:
    apply = jax.jit(lambda v, x, k: steps.predict_step(v, x, config, k))
  calls = [0]

  def fn(images):
    images = np.asarray(images, np.float32)
    outputs = []
    for start in range(0, images.shape[0], batch_size):
      chunk = images[start:start + batch_size]
      n = chunk.shape[0]
      if n < batch_size:
        chunk = np.concatenate(
            [chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
      if rng is None:
        out = apply(variables, chunk)
      else:
        out = apply(variables, chunk, jax.random.fold_in(rng, calls[0]))
      calls[0] += 1
      outputs.append(np.asarray(jax.device_get(out), np.float32)[:n])
    return np.concatenate(outputs)

  return fn


def predict_tiled(fn, aia_norm, config):
  """Whole-image prediction in [-1, 1] by overlap-blended tiles."""
  return tiling.tiled_apply(fn, aia_norm, int(config.crop_size),
                            tile_overlap(config),
                            batch_size=inference_batch_size(
                                config, int(config.crop_size)))


# ---------------------------------------------------------------- helpers

def _text(value, default=''):
  if value is None:
    return default
  if isinstance(value, bytes):
    return value.decode('utf-8', 'replace')
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


def _gauss(pred_norm, config):
  return np.asarray(pred_norm, np.float64)[..., 0] * float(
      config.hmi_saturation)


def _arrays(example):
  aia = np.asarray(example['aia'], np.float32)
  hmi = np.asarray(example['hmi'], np.float32)
  mask = np.asarray(example['mask'], bool)
  if aia.ndim == 2:
    aia, hmi, mask = aia[..., None], hmi[..., None], mask[..., None]
  return aia, hmi, mask


dataset_label = input_pipeline.data_label  # 'SYNTHETIC', 'real', 'UNKNOWN'


def _combine_synthetic(flags):
  known = [f for f in flags if f is not None]
  if not known:
    return None
  return any(known)  # one synthetic example makes the result synthetic


def metric_conventions(config):
  kw = metrics_lib.metric_kwargs(config)
  return {
      'image_scale': (f'gauss clipped to +-{kw["saturation"]:g} G and mapped '
                      'to 0..255 for psnr, ssim_*, cc_binned'),
      'psnr': '10 log10(255^2 / MSE)',
      'ssim_paper': {'c1': metrics_lib.SSIM_PAPER[0],
                     'c2': metrics_lib.SSIM_PAPER[1],
                     'note': 'constants as printed in Sun, Xu et al. 2023'},
      'ssim_wang': {'c1': metrics_lib.SSIM_WANG[0],
                    'c2': metrics_lib.SSIM_WANG[1],
                    'note': 'Wang et al. 2004, (K L)^2'},
      'ssim_window': kw['ssim_window'], 'ssim_sigma': kw['ssim_sigma'],
      'cc_binning': kw['binning'],
      'strong_field_gauss': kw['strong_field'],
      'physical': 'rmse_gauss, flux_ratio, polarity_agreement, strong_cc '
                  'in gauss, unclipped',
      'mask': 'pixels outside the mask (off-disk / invalid) excluded',
      'summary': 'mean and population std (ddof 0) over samples; NaN '
                 'samples excluded, n counts the rest',
  }


def _choose_keep(pair_ids, count):
  """Indices of `count` examples evenly spread over the sorted pair ids."""
  if count <= 0 or not pair_ids:
    return []
  order = sorted(range(len(pair_ids)), key=lambda i: pair_ids[i])
  if count >= len(order):
    return order
  positions = np.round(np.linspace(0, len(order) - 1, count)).astype(int)
  return [order[p] for p in positions]


# ---------------------------------------------------------------- evaluate

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
    EvalError: one-line message for bad config, checkpoint or data.
  """
  if config is None:
    try:
      config, _ = provenance.checkpoint_config(workdir, step)
    except (FileNotFoundError, ValueError) as e:
      raise EvalError(_first_line(e)) from e
  config = ml_collections.ConfigDict(config.to_dict())
  modes = eval_modes(config)
  split = split or config.get('eval_split', 'test')
  variables, restored_step, _ = restore_generator(config, workdir, step)

  if source is None:
    try:
      source = input_pipeline.load_source(config, split)
    except (ValueError, FileNotFoundError) as e:
      raise EvalError(_first_line(e)) from e
    if dataset_name is None:
      info = getattr(source, 'dataset_info', None)
      dataset_name = getattr(info, 'full_name', None) or config.dataset
  dataset_name = dataset_name or 'in-memory source'
  if len(source) == 0:
    raise EvalError(f'split {split!r} of {dataset_name} holds no example')

  crop = int(config.crop_size)
  depth = int(config.model.num_downs)
  if crop % (2 ** depth):
    raise EvalError(f'crop_size {crop} is not divisible by 2**num_downs = '
                    f'{2 ** depth}')
  batch = inference_batch_size(config, crop)
  fn = make_generator_fn(config, variables, batch)
  kwargs = metrics_lib.metric_kwargs(config)

  rows = {mode: [] for mode in modes}
  infos = []
  pending = []  # crops waiting for a full batch: (row, input, hmi, mask)

  def flush_crops():
    if not pending:
      return
    preds = fn(np.stack([p[1] for p in pending]))
    for (row, _, target, valid), pred in zip(pending, preds):
      row.update(metrics_lib.sample_metrics(_gauss(pred, config), target,
                                            valid, **kwargs))
      rows['crops'].append(row)
    pending.clear()

  for index in range(len(source)):
    example = source[index]
    info = _example_info(example, index)
    infos.append(info)
    aia, hmi, mask = _arrays(example)
    height, width = aia.shape[:2]
    if min(height, width) < crop and 'crops' in modes:
      raise EvalError(f'crop_size {crop} does not fit in the {height}x'
                      f'{width} examples')
    x = normalized_input(aia, mask, config)
    if 'crops' in modes:  # batched across examples
      top, left = crop_offset(config.seed, index, (height, width), crop)
      window = np.s_[top:top + crop, left:left + crop]
      pending.append((dict(info, crop=[top, left]), x[window],
                      hmi[window][..., 0], mask[window][..., 0]))
      if len(pending) == batch:
        flush_crops()
    if 'tiled' in modes:
      pred = _gauss(predict_tiled(fn, x, config), config)
      row = dict(info)
      row.update(metrics_lib.sample_metrics(pred, hmi[..., 0], mask[..., 0],
                                            **kwargs))
      rows['tiled'].append(row)
    _progress(index + 1, len(source))
  flush_crops()

  synthetic = _combine_synthetic([i['synthetic'] for i in infos])
  result = {
      'format': FORMAT,
      'dataset': dataset_name,
      'synthetic': synthetic,
      'data_label': dataset_label(synthetic),
      'split': split,
      'num_examples': len(source),
      'checkpoint_step': restored_step,
      'workdir': os.path.abspath(workdir),
      'model': str(config.model.name),
      'config_hash': provenance.config_hash(config),
      'eval_modes': list(modes),
      'primary_mode': modes[0],
      'crop_size': crop,
      'tile': crop,
      'tile_overlap': tile_overlap(config),
      'seed': int(config.seed),
      'metric_conventions': metric_conventions(config),
      'summary': {mode: metrics_lib.summarise(
          [{k: r[k] for k in metrics_lib.METRIC_NAMES} for r in rows[mode]])
                  for mode in modes},
      'samples': rows,
      'magjax_version': magjax.version(),
      'created_utc': datetime.datetime.now(datetime.timezone.utc).strftime(
          '%Y-%m-%dT%H:%M:%SZ'),
  }
  out_dir = os.path.join(workdir, EVAL_SUBDIR)
  os.makedirs(out_dir, exist_ok=True)
  keep = _choose_keep([i['pair_id'] for i in infos],
                      int(config.get('eval_keep_samples',
                                     DEFAULT_KEEP_SAMPLES)))
  if keep:
    fileio.write_bytes_atomic(os.path.join(out_dir, 'samples.npz'),
                  _samples_npz(source, keep, fn, config, kwargs))
  fileio.write_bytes_atomic(os.path.join(out_dir, 'metrics.json'),
                (json.dumps(_jsonable(result), indent=1) + '\n').encode())
  fileio.write_bytes_atomic(os.path.join(out_dir, 'metrics.md'),
                markdown_summary(result).encode())
  return result


def _samples_npz(source, keep, fn, config, kwargs):
  """npz bytes of the kept whole-patch examples and their tiled predictions."""
  arrays = {k: [] for k in ('aia', 'hmi', 'pred', 'mask')}
  meta = {k: [] for k in ('pair_id', 't_aia', 'wcs_header', 'metrics')}
  synthetic = []
  for index in keep:
    example = source[index]
    info = _example_info(example, index)
    aia, hmi, mask = _arrays(example)
    pred = _gauss(predict_tiled(fn, normalized_input(aia, mask, config),
                                config), config)
    m = mask[..., 0]
    arrays['aia'].append(np.where(m, aia[..., 0], np.nan).astype(np.float32))
    arrays['hmi'].append(np.where(m, hmi[..., 0], np.nan).astype(np.float32))
    arrays['pred'].append(pred.astype(np.float32))
    arrays['mask'].append(m)
    meta['pair_id'].append(info['pair_id'])
    meta['t_aia'].append(info['t_aia'])
    header = provenance.patch_geometry_header(info['t_aia'] or None,
                                              shape=m.shape)
    meta['wcs_header'].append(header.tostring())
    meta['metrics'].append(json.dumps(_jsonable(
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


# ----------------------------------------------------------------- outputs

def _fmt(value, digits=2):
  value = float(value)
  if math.isnan(value):
    return 'n/a'
  return f'{value:.{digits}f}'


def format_mean_std(stat, digits=2):
  """'m ± s' of a summarise() entry ('n/a' when undefined)."""
  mean, std = float(stat['mean']), float(stat['std'])
  if math.isnan(mean):
    return 'n/a'
  if math.isnan(std):
    return _fmt(mean, digits)
  return f'{_fmt(mean, digits)} ± {_fmt(std, digits)}'


METRIC_TITLES = (
    ('psnr', 'PSNR (dB)', 2), ('ssim_paper', 'SSIM (paper c)', 3),
    ('cc_binned', 'CC (2×2)', 3), ('ssim_wang', 'SSIM (Wang c)', 3),
    ('rmse_gauss', 'RMSE (G)', 1), ('flux_ratio', 'flux ratio', 3),
    ('polarity_agreement', 'polarity agr.', 3),
    ('strong_cc', 'strong-field CC', 3))


def markdown_summary(result):
  """The Markdown summary of one evaluation."""
  label = result['data_label']
  data_line = {
      'SYNTHETIC': 'SYNTHETIC data (data_prep.synthetic), not SDO '
                   'observations: these numbers say nothing about real '
                   'magnetograms.',
      'real': 'real SDO AIA 304 / HMI LOS data.',
      'UNKNOWN': 'data of unknown provenance (the examples carry no '
                 'synthetic flag).'}[label]
  lines = [
      f'# magjax evaluation: {result["model"]} ({label})', '',
      f'- data set: **{label}** — {result["dataset"]}, split '
      f'`{result["split"]}`, {result["num_examples"]} examples; '
      f'{data_line}',
      f'- checkpoint: step **{result["checkpoint_step"]}** of '
      f'`{result["workdir"]}`',
      f'- config hash `{result["config_hash"]}`, seed {result["seed"]}; '
      f'crops {result["crop_size"]}² (seeded), tiles '
      f'{result["tile"]}² with overlap {result["tile_overlap"]}',
      '- metrics: PSNR, SSIM and CC on ±200 G mapped to 0..255; SSIM with '
      'the paper\'s printed constants (c1 = 2.55, c2 = 7.65) and with Wang '
      'et al.\'s; CC after 2×2 binning; physical metrics in gauss; masked '
      'pixels excluded; mean ± population std over the samples.', '',
      '| eval mode | n | ' + ' | '.join(t for _, t, _ in METRIC_TITLES)
      + ' |',
      '|---|---|' + '---|' * len(METRIC_TITLES)]
  for mode in result['eval_modes']:
    summary = result['summary'][mode]
    n = summary.get('psnr', {}).get('n', 0)
    cells = [format_mean_std(summary[k], d) if k in summary else 'n/a'
             for k, _, d in METRIC_TITLES]
    lines.append(f'| {mode} | {n} | ' + ' | '.join(cells) + ' |')
  lines.append('')
  return '\n'.join(lines)


def _jsonable(value):
  """Strict-JSON copy: non-finite floats as 'nan' / 'inf' / '-inf'."""
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, (bool, np.bool_)):
    return bool(value)
  if isinstance(value, (int, np.integer)):
    return int(value)
  if isinstance(value, (float, np.floating)):
    value = float(value)
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


def read_metrics(path):
  """metrics.json (a file or an eval / run directory) as a dict.

  Raises:
    FileNotFoundError: no metrics.json there.
    ValueError: not a magjax evaluation.
  """
  if os.path.isdir(path):
    candidate = os.path.join(path, EVAL_SUBDIR, 'metrics.json')
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


def _progress(done, total):
  if total >= 10 and (done % max(1, total // 10) == 0 or done == total):
    print(f'evaluated {done}/{total}', file=sys.stderr, flush=True)


def _quiet_orbax_warnings():
  """Read-only restores make orbax warn twice on stderr: keep errors only."""
  logging.set_verbosity(logging.ERROR)


def _first_line(e):
  lines = [l for l in str(e).splitlines() if l.strip()]
  return lines[0].strip() if lines else type(e).__name__


def run(config, workdir, step=None, split=None, source=None):
  """evaluate() with one-line errors; prints the summary; returns exit code."""
  try:
    result = evaluate(config, workdir, step, split, source)
  except EvalError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(markdown_summary(result))
  print(f'wrote {os.path.join(workdir, EVAL_SUBDIR, "metrics.json")}')
  return 0
