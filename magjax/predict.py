"""Generates an HMI-like LOS magnetogram (FITS, gauss) from a 304 A image.

  python -m magjax.predict --workdir runs/rhp --input img304.fits \
      --output magnetogram.fits [--step N] [--samples N] [--config PATH] \
      [--frame patch|disk] [--calibration auto|quiet-sun|none] \
      [--batch N] [--compilation-cache DIR|auto|off]
  python -m magjax.predict --workdir runs/rhp --input DIR 'glob*.fits' \
      a.fits ... --output OUTDIR      (a batch: magjax/predict_batch.py)

Input: a full-disk 304 A FITS file of SDO/AIA, STEREO-A/B SECCHI/EUVI,
SOHO/EIT or Solar Orbiter EUI/FSI (levels 1 and 2; `data_prep.imagers`),
or an AIA patch already prepared by `python -m data_prep.prepare patch`
(recognised by its heliographic CAR WCS: CTYPE1 'HGLN-CAR'). A full-disk
image is brought to the AIA 304 DN/s scale the model was trained on
(`data_prep.calibrate.load_304`: AIA per second only, exactly as data
preparation; the others also x (DSUN_OBS / 1 AU)^2 and a quiet-Sun gain
to config.aia_quiet_sun; `--calibration quiet-sun` applies the gain to AIA
too, `none` to nobody) and mapped to the (800, 900) heliographic patch
centred on the observer's own central meridian (`data_prep.patches`): a
STEREO-A image at Stonyhurst longitude +120 gives a far-side patch centred
there. `--frame disk` also writes OUTPUT_disk.fits: the result resampled
onto the input's own helioprojective pixels (a full-disk magnetogram like
HMI's, NaN where nothing was generated), all outputs or none.

Several inputs, a directory or a pattern make a batch into the --output
directory, with an index predictions.jsonl, resume and a progress line
(exit 1 when some input failed, each recorded with its reason). One
compiled generator serves every input; JAX's persistent compilation cache
(magjax/compile_cache.py, on by default) serves the next run.

Model: the checkpoint (latest, or --step) of --workdir, restored read-only.
The config is the one saved with the checkpoint (its orbax `meta`), unless
--config names a config file ('configs/rhp.py:cpu').

Generation: the whole patch by tiled inference with overlap blending
(tile = config.crop_size, overlap config.eval_tile_overlap), G in eval mode
(BatchNorm running statistics, dropout off): deterministic. The inference
path is evaluation's (`magjax.evaluation.inference`): the same restore and
the same input normalisation as eval.py and training.

Uncertainty (--samples N, N >= 2): pix2pix (Isola et al. 2017) keeps dropout
active at test time as its only source of noise. Here the default output is
deterministic (dropout off), and --samples N draws N generations with
dropout active (Monte-Carlo dropout; BatchNorm still uses its running
statistics, so samples differ only by dropout), with independent dropout
masks per tile and sample (keys folded from --seed). The primary HDU then
holds the per-pixel mean and a second image HDU 'STDDEV' the per-pixel
sample standard deviation (ddof = 1), both in gauss with the same WCS.
The spread measures the model's dropout variability, not the error
against HMI.

Output: float32 FITS in gauss (BUNIT 'G'), NaN where the input patch is NaN
(off the visible disk or missing data), the patch's WCS (Stonyhurst CAR,
0.1 deg/px x config.patch_binning), the observer (HGLN_OBS, HGLT_OBS,
DSUN_OBS, RSUN_REF) and observation time (DATE-OBS, DATE-AVG), so that
sunpy places it on the Sun, and provenance keywords: MODEL, CKPTSTEP,
CFGHASH, TRAINSYN (trained on SYNTHETIC data), SRC_FILE, SRC_INST, the
calibration (CALMODE, CALEXPT, CALDFAC, CALQSIN, CALQSREF, CALGAIN), MJXVER,
NSAMPLES, TILE, TILEOVLP, SYNTHETIC (the input is synthetic), HISTORY
lines. Written atomically (tmp file + os.replace).

Errors (another instrument or wavelength, an HMI file, a header without
the observer's position, an image too small to hold a patch or larger
than its instrument writes, a date outside the instrument's life, a disk
mostly missing, near-constant or saturated (`data_prep.limits`), a corrupt
file, a missing workdir / checkpoint, a bad config): one line `error: ...`
on stderr, exit code 2, no output file.
"""

import argparse
import datetime
import os
import sys
import time
import warnings

import numpy as np

from magjax import checkpoints
from magjax import compile_cache
from magjax import config_schema
from magjax import config_utils
from magjax import host_memory
from magjax import predict_batch
from magjax_common.errors import UserError, fail, one_line

AIA_WAVELENGTH = 304

# Input header cards not carried into the generated magnetogram.
_DROP_KEYS = frozenset((
    'SIMPLE', 'BITPIX', 'NAXIS', 'NAXIS1', 'NAXIS2', 'EXTEND', 'BSCALE',
    'BZERO', 'BLANK', 'CHECKSUM', 'DATASUM', 'BUNIT', 'BTYPE', 'TELESCOP',
    'INSTRUME', 'DETECTOR', 'WAVELNTH', 'WAVEUNIT', 'WAVE_STR', 'EXPTIME',
    'CONTENT', 'QUALITY', 'LVL_NUM', 'PATCHVER', 'HISTORY', 'COMMENT',
    'XTENSION', 'PCOUNT', 'GCOUNT', 'EXTNAME', 'ZIMAGE', 'DATAMIN', 'DATAMAX',
    'SRC_FILE', 'DATE', 'SYNTHETIC'))


# ------------------------------------------------------------------ input

def _raw_header(path):
  """Header of the first 2-D image HDU; UserError if unreadable."""
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  from data_prep import fitsio  # pylint: disable=g-import-not-at-top
  name = os.path.basename(path)
  if not os.path.isfile(path):
    raise UserError(f'{path}: no such file')
  with open(path, 'rb') as f:
    if f.read(9) != b'SIMPLE  =':
      raise UserError(f'{name}: not a FITS file')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      with fits.open(path, memmap=False) as hdul:
        for hdu in hdul:
          if (isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU,
                               fits.CompImageHDU))
              and hdu.header.get('NAXIS', 0) == 2):
            fitsio.check_cards(path, hdu.header)
            fitsio.check_cards(path, hdul[0].header)
            header = hdu.header.copy()
            if isinstance(hdu, fits.PrimaryHDU) or len(hdul) == 1:
              return header
            primary = hdul[0].header
            for key in ('SYNTHETIC', 'TELESCOP', 'INSTRUME'):
              if key in primary and key not in header:
                header[key] = primary[key]
            return header
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # astropy: many kinds
    raise UserError(f'{name}: corrupt FITS file ({one_line(e)})') from e
  raise UserError(f'{name}: no 2-D image in any HDU')


def _is_patch(header):
  ctype1 = str(header.get('CTYPE1', '')).upper()
  ctype2 = str(header.get('CTYPE2', '')).upper()
  return ctype1.startswith('HGLN') and ctype2.startswith('HGLT')


def check_input(path, header):
  """UserError unless `header` is a full-disk 304 A image of a supported
  imager (`data_prep.imagers`) or an AIA 304 patch of data_prep."""
  from data_prep import fitsio, imagers  # pylint: disable=g-import-not-at-top
  name = os.path.basename(path)
  if not _is_patch(header):
    imagers.validate(path, header)
    return
  fitsio.check_size(path, header)
  kind = fitsio.detect_kind(header)
  if kind != 'aia':
    raise UserError(
        f'{name}: a patch of {imagers.label(header)} data, expected a '
        f'full-disk image or an SDO/AIA {AIA_WAVELENGTH} A patch of '
        'data_prep')
  wavelength = header.get('WAVELNTH')
  try:
    wavelength = float(wavelength)
  except (TypeError, ValueError):
    raise UserError(f'{name}: AIA header lacks a numeric WAVELNTH '
                    f'({wavelength!r})') from None
  if wavelength != AIA_WAVELENGTH:
    raise UserError(f'{name}: AIA WAVELNTH is {wavelength:g} A, expected '
                    f'{AIA_WAVELENGTH} A (the model translates 304 A '
                    'images)')


def load_input_patch(path, calibration='auto', reference=None):
  """(data float32 (H, W), header, route, full-disk map or None) of the
  304 A patch to translate.

  A prepared AIA patch is read as is; a full-disk image of any supported
  imager is calibrated to the AIA 304 DN/s scale
  (`data_prep.calibrate.load_304`) and mapped to the (800, 900)
  heliographic patch on its observer's central meridian.
  """
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  from data_prep import calibrate, fitsio, patches  # pylint: disable=g-import-not-at-top
  name = os.path.basename(path)
  header = _raw_header(path)
  check_input(path, header)
  if _is_patch(header):
    if calibration == 'quiet-sun':
      raise UserError(f'{name}: --calibration quiet-sun needs a full-disk '
                      'image (a patch holds no whole disk to measure)')
    if not str(header.get('CTYPE1', '')).upper().endswith('CAR'):
      raise UserError(f'{name}: patch projection {header["CTYPE1"]!r} '
                      'is not the CAR grid of data_prep.patches')
    unit = str(header.get('BUNIT', 'DN/s')).strip()
    if unit.lower().replace(' ', '') not in ('dn/s', 'dn s-1', 'dn/s/pix'):
      raise UserError(f'{name}: patch BUNIT is {unit!r}, expected DN/s '
                      '(an exposure-normalised AIA patch)')
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        with fits.open(path, memmap=False) as hdul:
          hdu = next(h for h in hdul if h.header.get('NAXIS', 0) == 2)
          data = np.asarray(hdu.data, np.float32)
    except Exception as e:  # pylint: disable=broad-except
      raise UserError(f'{name}: corrupt image data '
                      f'({one_line(e)})') from e
    if data.ndim != 2 or not np.isfinite(data).any():
      raise UserError(f'{name}: the patch holds no valid pixel')
    fitsio.check_patch_pixels(path, data)
    header['SRC_FILE'] = header.get('SRC_FILE', '') or name
    header['SRC_INST'] = 'SDO/AIA 304'
    return data, header, 'patch', None
  reference = calibrate.AIA_QUIET_SUN_DN_S if reference is None else reference
  with warnings.catch_warnings():  # DataError is a UserError
    warnings.simplefilter('ignore')
    smap = calibrate.load_304(path, calibration, reference)
    pmap = patches.extract_patch(smap)
    header = patches.patch_header(pmap)
  return np.asarray(pmap.data, np.float32), header, 'full-disk', smap


def bin_patch(aia, header, k):
  """The patch at the model's resolution (config.patch_binning): k x k block
  means, NaN where a block holds a NaN, the WCS scaled to match."""
  if k == 1:
    return aia, header
  from data_prep import grid  # pylint: disable=g-import-not-at-top
  from magjax import input_pipeline  # pylint: disable=g-import-not-at-top
  valid = np.isfinite(aia)
  binned, ok = input_pipeline.bin_image(np.where(valid, aia, 0.0), valid, k)
  header = grid.binned_header(header, k)
  header.add_history(f'magjax predict: input binned {k}x{k} to the '
                     "model's resolution (config.patch_binning)")
  return np.where(ok, binned, np.nan).astype(np.float32), header


# --------------------------------------------------------------- generate

def mc_generator(config, variables, batch, seed):
  """The generator with dropout active (Monte-Carlo dropout), one jitted
  function of a fixed batch; keys folded from `seed` per call."""
  import jax  # pylint: disable=g-import-not-at-top
  from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top
  return inference.GeneratorFn(config, variables, batch,
                               rng=jax.random.key(seed))


def mc_draws(config, fn, x, valid, samples):
  """(mean, std) gauss float32 of `samples` MC-dropout generations of the
  network input `x`; NaN where not `valid`."""
  from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top
  draws = np.stack([inference.to_gauss(inference.predict_tiled(
      fn, x, config), config) for _ in range(samples)])
  std = draws.std(axis=0, ddof=1)
  if not np.any(std[valid] > 0):
    raise UserError(
        f'--samples {samples}: the {samples} dropout draws are identical: '
        f'this generator has no dropout layer (model.dropout '
        f'{config.model.dropout:g}, num_downs {config.model.num_downs}; '
        'junyanz U-Nets drop out only at levels 5..num_downs-1)')
  return (np.where(valid, draws.mean(axis=0), np.nan).astype(np.float32),
          np.where(valid, std, np.nan).astype(np.float32))


def generate(config, variables, aia_patch, samples=0, seed=0):
  """(mean gauss (H, W) float32, std or None) for an AIA patch in DN/s."""
  from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top
  valid = np.isfinite(aia_patch)
  x = inference.network_input(aia_patch, valid, config)
  batch = inference.inference_batch_size(config)
  if samples:
    return mc_draws(config, mc_generator(config, variables, batch, seed), x,
                    valid, samples)
  fn = inference.GeneratorFn(config, variables, batch)
  mean = inference.to_gauss(inference.predict_tiled(fn, x, config), config)
  return np.where(valid, mean, np.nan).astype(np.float32), None


def output_header(in_header, *, model, step, cfg_hash, trained_synthetic,
                  src_file, samples, tile, overlap, route):
  """The generated magnetogram's header: the patch WCS + provenance."""
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  import magjax_common  # pylint: disable=g-import-not-at-top
  header = fits.Header()
  for card in in_header.cards:
    key = card.keyword
    if not key or key in _DROP_KEYS or key in header:
      continue
    header[key] = (card.value, card.comment)
  synthetic_input = bool(in_header.get('SYNTHETIC', False))
  header['BUNIT'] = ('G', 'gauss')
  header['BTYPE'] = 'LOS magnetic field (generated)'
  header['TELESCOP'] = ('magjax', 'generated, not observed')
  header['INSTRUME'] = (f'magjax {model}', 'generator variant')
  header['CONTENT'] = 'GENERATED LOS MAGNETOGRAM'
  header['ORIGIN'] = 'magjax'
  header['DATE'] = (datetime.datetime.now(datetime.timezone.utc).strftime(
      '%Y-%m-%dT%H:%M:%S'), 'file creation (UTC)')
  header['MODEL'] = (model, 'generator: pix2pix, cat or rhp attention')
  header['CKPTSTEP'] = (int(step), 'checkpoint step')
  header['CFGHASH'] = (cfg_hash, 'sha256[:12] of the checkpoint config JSON')
  header['TRAINSYN'] = (bool(trained_synthetic),
                        'model trained on SYNTHETIC data')
  header['SRC_FILE'] = (os.path.basename(src_file), 'input 304 A file')
  if in_header.get('SRC_FILE') and route == 'patch':
    header['AIA_SRC'] = (str(in_header['SRC_FILE']),
                         'full-disk file of the input patch')
  header['SRC_INST'] = (str(in_header.get('SRC_INST', 'SDO/AIA 304')),
                        'input instrument and wavelength')
  from data_prep import imagers  # pylint: disable=g-import-not-at-top  # not calibrate: sunpy.map
  for key, comment in imagers.CALIBRATION_KEYS.items():
    if key in in_header and key != 'SRC_INST':
      header[key] = (in_header[key], comment)
  # 9 characters: a HIERARCH card, as data_prep.synthetic writes it.
  header['HIERARCH SYNTHETIC'] = (synthetic_input, 'input is SYNTHETIC data')
  header['NSAMPLES'] = (int(samples),
                        '0: dropout off; N: mean of N MC-dropout draws')
  header['TILE'] = (int(tile), 'tiled inference: tile side (px)')
  header['TILEOVLP'] = (int(overlap), 'tiled inference: min overlap (px)')
  header['MJXVER'] = (magjax_common.version(), 'magjax version')
  for line in str(in_header.get('HISTORY', '')).splitlines():
    header.add_history(line)
  header.add_history(
      f'magjax {magjax_common.version()} predict: {model} generator, '
      f'checkpoint step {step}, config {cfg_hash}, from '
      f'{os.path.basename(src_file)} ({route})')
  header.add_history(
      f'magjax predict: tiled inference, tile {tile} px, overlap {overlap} '
      'px, cosine blending; output = tanh output x hmi_saturation, in G')
  if samples:
    header.add_history(f'magjax predict: mean of {samples} Monte-Carlo '
                       'dropout draws; HDU STDDEV = sample std (ddof 1)')
  else:
    header.add_history('magjax predict: G in eval mode, dropout off')
  if trained_synthetic:
    header.add_history('magjax predict: the model was trained on SYNTHETIC '
                       'data, not SDO observations')
  if synthetic_input:
    header.add_history('SYNTHETIC input: not an SDO observation')
  return header


def disk_output_header(patch_header, smap):
  """The header of the full-disk (`--frame disk`) output: the input's own
  helioprojective WCS, observer and times, and the patch output's
  provenance."""
  from data_prep import patches  # pylint: disable=g-import-not-at-top
  header = patches.disk_header(smap)
  wcs_keys = ('WCSAXES', 'CTYPE', 'CUNIT', 'CDELT', 'CRPIX', 'CRVAL', 'PC',
              'CROTA', 'LONPOLE', 'LATPOLE', 'NAXIS')
  for card in patch_header.cards:
    key = card.keyword
    if not key or key.startswith(wcs_keys) or key in header or key in (
        'HISTORY', 'COMMENT'):
      continue
    header['HIERARCH ' + key if len(key) > 8 else key] = (card.value,
                                                          card.comment)
  for line in patch_header['HISTORY']:
    header.add_history(line)
  header.add_history('magjax predict --frame disk: the generated patch '
                     "resampled onto the input's own helioprojective "
                     'pixels (cubic), NaN where nothing was generated')
  return header


def write_output(path, mean, header, std=None):
  """Writes the FITS (primary = mean, optional 'STDDEV' HDU) atomically."""
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  hdus = [fits.PrimaryHDU(mean.astype(np.float32), header=header)]
  if std is not None:
    std_header = header.copy()
    std_header['BTYPE'] = 'LOS magnetic field MC-dropout std (generated)'
    std_header['EXTNAME'] = 'STDDEV'
    hdus.append(fits.ImageHDU(std.astype(np.float32), header=std_header,
                              name='STDDEV'))
  from magjax_common import fileio  # pylint: disable=g-import-not-at-top
  try:
    fileio.write_hdulist_atomic(path, fits.HDUList(hdus))
  except OSError as e:  # read-only dir, full disk, file size limit
    raise UserError(f'{path}: cannot write ({e.strerror or e})') from e


def write_all(output, disk_output, mean, std, header, smap):
  """The patch output and, with `disk_output`, the full-disk one (the
  result resampled onto `smap`'s pixels): all written, or none."""
  disk = disk_std = None
  if disk_output:
    from data_prep import patches  # pylint: disable=g-import-not-at-top
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      disk = patches.to_disk(mean, header, smap)
      disk_std = None if std is None else patches.to_disk(std, header, smap)
  write_output(output, mean, header, std)
  if disk_output:
    try:
      write_output(disk_output, disk, disk_output_header(header, smap),
                   disk_std)
    except UserError:
      os.remove(output)  # all outputs or none
      raise


# -------------------------------------------------------------------- CLI

def disk_path(output_path):
  """Where --frame disk writes the full-disk file: OUTPUT_disk.fits."""
  stem, ext = os.path.splitext(output_path)
  return f'{stem}_disk{ext or ".fits"}'


def _check_samples(samples):
  if samples == 1 or samples < 0:
    raise UserError(f'--samples {samples}: need 0 (deterministic) or at '
                    'least 2 dropout draws for a standard deviation')


def _model(workdir, step, config_path):
  """(config, saved config, step) of a checkpoint, checked for tiling."""
  saved_config, step = checkpoints.saved_config(workdir, step)
  config = (config_schema.check(config_utils.load_config_file(config_path))
            if config_path else config_schema.check(saved_config, saved=True))
  tile, depth = int(config.crop_size), int(config.model.num_downs)
  if tile < 1 or tile % (2 ** depth):
    raise UserError(f'config crop_size {tile} (the tile side) is not a '
                    f'positive multiple of 2**num_downs = {2 ** depth}')
  return config, saved_config, step


def _patch_tiles(config):
  """Tiles of one patch at the model's resolution."""
  from data_prep.grid import PATCH_SHAPE  # pylint: disable=g-import-not-at-top
  from magjax.evaluation import inference, tiling  # pylint: disable=g-import-not-at-top
  tile, overlap = int(config.crop_size), inference.tile_overlap(config)
  k = int(config.patch_binning)
  return np.prod([len(tiling.tile_positions(n // k, tile, overlap))
                  for n in PATCH_SHAPE])


def _runner(workdir, step, config_path, batch, compilation_cache=None,
            single=False, **kwargs):
  """The batch engine with the checkpoint's generator restored."""
  from magjax.evaluation import inference  # pylint: disable=g-import-not-at-top  # JAX: slow to import
  config, saved_config, step = _model(workdir, step, config_path)
  if batch is not None and batch < 1:
    raise UserError(f'--batch {batch}: need at least 1 tile per call')

  def restore(abstract):
    if abstract is None:
      if compilation_cache is not None:  # before the first compile
        compile_cache.configure(compilation_cache)
      return inference.checked_abstract_variables(config)
    return inference.restore_generator(config, workdir, step, abstract)[0]
  if not batch:  # one file: no call wider than its tiles
    batch = inference.inference_batch_size(config)
    if single:
      batch = int(min(batch, _patch_tiles(config)))
  return predict_batch.Runner(config, saved_config, restore, step,
                              batch=batch, **kwargs)


def predict(workdir, input_path, output_path, step=None, samples=0,
            config_path=None, seed=0, frame='patch', calibration='auto',
            batch=None, compilation_cache=None, reader_processes=False):
  """One file to one file; returns a one-line summary. Raises UserError.
  `reader_processes`: read in a spawned process (predict_batch.READERS)."""
  _check_samples(samples)
  if reader_processes:
    predict_batch.start_readers(1)
  outputs = [output_path] + ([disk_path(output_path)] if frame == 'disk'
                             else [])
  for path in outputs:
    if os.path.abspath(path) == os.path.abspath(input_path):
      raise UserError(f'{path}: output would overwrite the input')
  # Cheap checks first (no JAX import): checkpoint listing, input header.
  step = checkpoints.intact_step(workdir, step, say=checkpoints.note)
  header = _raw_header(input_path)
  check_input(input_path, header)
  if frame == 'disk' and _is_patch(header):
    raise UserError(f'{os.path.basename(input_path)}: --frame disk needs a '
                    'full-disk image, not a patch')
  runner = _runner(workdir, step, config_path, batch, compilation_cache,
                   single=True, samples=samples, seed=seed,
                   calibration=calibration, frame=frame,
                   reader_processes=reader_processes)
  item = predict_batch.Item(input_path, output_path,
                            outputs[1] if frame == 'disk' else None)
  runner.run([item], predict_batch.Index(None), strict=True)
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    with fits.open(output_path) as hdul:
      mean, header = hdul[0].data, hdul[0].header
  valid = np.isfinite(mean)
  return (f'wrote {" and ".join(outputs)} ({mean.shape[0]}x{mean.shape[1]}, '
          f'{100 * valid.mean():.1f}% valid, {header["SRC_INST"]}, '
          f'{runner.config.model.name} step {runner.step}'
          f'{", SYNTHETIC-trained" if header["TRAINSYN"] else ""}'
          f'{f", mean+std of {samples} dropout draws" if samples else ""})')


def predict_many(workdir, specs, out_dir, step=None, samples=0,
                 config_path=None, seed=0, frame='patch', calibration='auto',
                 batch=None, compilation_cache=None, log=print,
                 reader_processes=False):
  """Many inputs to OUT_DIR (magjax/predict_batch.py); returns the exit
  code: 0 all written or already there, 1 some inputs failed."""
  _check_samples(samples)
  step = checkpoints.intact_step(workdir, step, say=checkpoints.note)
  inputs, missing = predict_batch.expand_inputs(specs)
  inputs = predict_batch.without_outputs(inputs, out_dir)
  if not inputs:
    raise UserError(f'no input file: {missing[0][0]}: {missing[0][1]}'
                    if missing else 'no input file')
  if reader_processes:
    predict_batch.start_readers(len(inputs))
  try:
    os.makedirs(out_dir, exist_ok=True)
  except OSError as e:
    raise UserError(f'{out_dir}: cannot create the output directory '
                    f'({e.strerror or e})') from e
  names = predict_batch.output_names(inputs, out_dir, frame)
  clash = [p for p in inputs if os.path.abspath(p) in {
      os.path.abspath(n) for pair in names.values() for n in pair if n}]
  if clash:
    raise UserError(f'{clash[0]}: an output would overwrite this input')
  runner = _runner(workdir, step, config_path, batch, compilation_cache,
                   samples=samples, seed=seed, calibration=calibration,
                   frame=frame, reader_processes=reader_processes)
  index = predict_batch.Index(os.path.join(out_dir,
                                           predict_batch.INDEX_NAME))
  start = time.perf_counter()
  try:
    items = [predict_batch.Item(p, *names[p]) for p in inputs]
    for spec, reason in missing:
      index.record(predict_batch.Item(spec, ''), 'failed',
                   f'{spec}: {reason}')
    counts = runner.run(items, index,
                        progress=predict_batch.Progress(len(items)))
  finally:
    index.close()
  wall = time.perf_counter() - start
  seconds = {k: sum(i.seconds[k] for i in items) for k in
             ('read', 'infer', 'write')}
  readers = min(predict_batch.READERS, max(1, len(items)))
  limit = max(seconds, key=lambda k: seconds[k] / (readers if k == 'read'
                                                   else 1))
  log(f'predict: {counts["ok"]} written, {counts["exists"]} already done, '
      f'{counts["failed"]} failed of {len(items) + len(missing)} inputs in '
      f'{wall:.1f} s ({60 * counts["ok"] / wall:.1f} files/min); reading+'
      f'calibrating+patching {seconds["read"]:.1f} s on {readers} '
      f'{"processes" if reader_processes else "threads"}, '
      f'inference {seconds["infer"]:.1f} s, writing '
      f'{seconds["write"]:.1f} s: limited by {_STAGES[limit]}; index '
      f'{index_path(out_dir)}')
  return 1 if counts['failed'] else 0


_STAGES = {'read': 'reading and patching', 'infer': 'inference',
           'write': 'writing'}


def index_path(out_dir):
  return os.path.join(out_dir, predict_batch.INDEX_NAME)


def parse_args(argv):
  parser = argparse.ArgumentParser(
      prog='python -m magjax.predict',
      description='304 A FITS (full disk of any 304 imager, or an AIA '
      'patch) -> '
      'generated HMI-like LOS magnetogram FITS in gauss.')
  parser.add_argument('--workdir', required=True,
                      help='training workdir holding checkpoints/')
  parser.add_argument('--input', required=True, nargs='+',
                      help='full-disk 304 A FITS of SDO/AIA, STEREO/EUVI, '
                      'SOHO/EIT or SolO/EUI/FSI, or an AIA patch written by '
                      '`python -m data_prep.prepare patch`; several files, '
                      'directories or glob patterns for a batch')
  parser.add_argument('--output', required=True,
                      help='output FITS path; for a batch, a directory')
  parser.add_argument('--batch', type=int, default=None,
                      help='tiles per generator call (default: the '
                      "config's eval_batch_size, or about 2 x 512^2 px)")
  parser.add_argument('--compilation-cache', default='auto',
                      help="JAX's persistent compilation cache: a directory, "
                      "'auto' (~/.cache/magjax/jax) or 'off'")
  parser.add_argument('--step', type=int, default=None,
                      help='checkpoint step (default: the latest)')
  parser.add_argument('--samples', type=int, default=0,
                      help='N >= 2: mean and STDDEV of N Monte-Carlo dropout '
                      'draws (default 0: deterministic, dropout off)')
  parser.add_argument('--seed', type=int, default=0,
                      help='seed of the dropout draws (with --samples)')
  parser.add_argument('--config', default=None,
                      help='config file[:arg] (default: the checkpoint\'s)')
  parser.add_argument('--frame', choices=('patch', 'disk'), default='patch',
                      help='disk: also write OUTPUT_disk.fits, the result '
                      "in the input's own helioprojective frame (NaN where "
                      'nothing was generated)')
  parser.add_argument('--calibration', choices=('auto', 'quiet-sun', 'none'),
                      default='auto',
                      help='intensity calibration to the AIA 304 scale: '
                      'auto (AIA: per second only; other imagers: '
                      'quiet-sun), quiet-sun (exposure, (d/1 AU)^2, '
                      'quiet-Sun gain) or none (per second only)')
  return parser.parse_args(argv)


def main(argv=None):
  args = parse_args(sys.argv[1:] if argv is None else argv)
  try:
    kwargs = dict(compilation_cache=args.compilation_cache,
                  step=args.step, samples=args.samples,
                  config_path=args.config, seed=args.seed, frame=args.frame,
                  calibration=args.calibration, batch=args.batch,
                  reader_processes=True)
    if predict_batch.is_batch(args.input, args.output):
      return predict_many(args.workdir, args.input, args.output, **kwargs)
    message = predict(args.workdir, args.input[0], args.output, **kwargs)
  except UserError as e:
    return fail(e)
  print(message)
  return 0


if __name__ == '__main__':
  host_memory.tune_malloc()  # keep freed pages: see magjax/host_memory.py
  sys.exit(main())
