"""Provenance of evaluations and generated magnetograms.

Small pure helpers shared by `evaluate`, `predict` and `report`:

- `config_hash(config)`: a short, stable hash of the config's JSON (the text
  stored next to every checkpoint), so results name the exact settings.
- `checkpoint_config(workdir, step)`: the config saved with a checkpoint
  (its orbax `meta` item), read without restoring the state, as a ConfigDict.
- `load_config_file('configs/rhp.py:tiny')`: what `config_flags` does, for
  the module CLIs (`python -m magjax.predict --config ...`).
- `trained_on_synthetic(config)`: whether the training data set is the
  SYNTHETIC one. The rule follows `input_pipeline.load_source`: the data set
  `sdo_ar` is read with its default builder config, `synthetic`; only an
  explicit `sdo_ar/real` (or a config field `synthetic = False`) is real.
- `patch_geometry_header(obstime)`: the FITS WCS of the paper's patch grid
  (Stonyhurst CAR, 0.1 deg/px, (800, 900), lon = lat = 0 at the array
  centre; the grid of `data_prep.patches`), for figures of TFDS examples,
  which do not carry their WCS.
"""

import hashlib
import importlib.util
import json
import os
import sys

from absl import logging
import ml_collections

from magjax import config_utils

PATCH_SHAPE = (800, 900)
PATCH_SCALE_DEG = 0.1




def config_hash(config):
  """First 12 hex digits of sha256 of the config's canonical JSON."""
  text = config_utils.to_json(config)
  return hashlib.sha256(text.encode('utf-8')).hexdigest()[:12]


def trained_on_synthetic(config):
  """True when `config`'s data set is the SYNTHETIC `sdo_ar` build."""
  if config.get('synthetic') is not None:  # recorded by train.py from the data
    return bool(config.synthetic)
  name = str(config.get('dataset', 'sdo_ar'))
  builder_config = name.split('/', 1)[1] if '/' in name else 'synthetic'
  return builder_config != 'real'


def config_from_json(data):
  """A ConfigDict from the JSON dict stored with a checkpoint."""
  if isinstance(data, str):
    data = json.loads(data)
  if not isinstance(data, dict) or 'model' not in data:
    raise ValueError('the checkpoint meta holds no usable config')
  return ml_collections.ConfigDict(data)


CHECKPOINT_SUBDIR = 'checkpoints'  # = magjax.checkpoints.SUBDIR (no orbax import)


def checkpoint_steps(workdir):
  """Sorted steps of the complete checkpoints under `<workdir>/checkpoints`.

  A listing only (no orbax import): a step directory counts when orbax has
  committed it (commit_success.txt or _CHECKPOINT_METADATA).
  """
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
  if not os.path.isdir(directory):
    return []
  steps = []
  for name in os.listdir(directory):
    path = os.path.join(directory, name)
    if name.isdigit() and os.path.isfile(
        os.path.join(path, 'commit_success.txt')):
      steps.append(int(name))
    elif name.isdigit() and os.path.isfile(
        os.path.join(path, '_CHECKPOINT_METADATA')):
      steps.append(int(name))
  return sorted(set(steps))


def check_checkpoint(workdir, step=None):
  """The step to use (default: the latest); FileNotFoundError if none.

  Cheap (a directory listing): lets CLIs fail fast before importing JAX.
  """
  directory = os.path.join(os.path.abspath(workdir), CHECKPOINT_SUBDIR)
  if not os.path.isdir(workdir):
    raise FileNotFoundError(f'no such workdir {workdir!r}')
  available = checkpoint_steps(workdir)
  if not available:
    raise FileNotFoundError(f'no checkpoint in {directory!r}')
  if step is None:
    return available[-1]
  if step not in available:
    raise FileNotFoundError(f'no checkpoint at step {step} in {directory!r} '
                            f'(available: {available})')
  return step


def checkpoint_config(workdir, step=None):
  """(config, step): the config saved with checkpoint `step` (default latest).

  Reads only the JSON `meta` item of the orbax checkpoint.

  Raises:
    FileNotFoundError: no workdir, no checkpoint, or no such step.
    ValueError: the checkpoint holds no config.
  """
  step = check_checkpoint(workdir, step)
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  from magjax import checkpoints  # pylint: disable=g-import-not-at-top
  checkpoints.quiet_orbax()
  logging.set_verbosity(logging.ERROR)  # read-only notices are noise here
  manager = ocp.CheckpointManager(
      checkpoints.directory(workdir),
      options=ocp.CheckpointManagerOptions(read_only=True, create=False),
      item_names=('state', 'meta'))
  try:
    restored = manager.restore(
        step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
  except Exception as e:  # pylint: disable=broad-except  # orbax raises many kinds
    raise ValueError(f'cannot read the meta of checkpoint {step} in '
                     f'{checkpoints.directory(workdir)!r}: '
                     f'{_first_line(e)}') from e
  finally:
    manager.close()
  meta = restored.meta or {}
  return config_from_json(meta.get('config')), step


def load_config_file(spec):
  """`get_config(arg)` of 'path/to/config.py[:arg]', as config_flags does.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file has no get_config or it failed.
  """
  path, _, arg = spec.partition(':')
  if not os.path.isfile(path):
    raise FileNotFoundError(f'no such config file {path!r}')
  root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
  if root not in sys.path:  # `from configs import default` in the variants
    sys.path.insert(0, root)
  module_spec = importlib.util.spec_from_file_location('_magjax_config', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
    return module.get_config(arg or None)
  except Exception as e:  # pylint: disable=broad-except  # user code
    raise ValueError(f'config {spec!r} failed: {_first_line(e)}') from e


def patch_geometry_header(obstime=None, shape=PATCH_SHAPE,
                          scale_deg=PATCH_SCALE_DEG):
  """The patch grid's FITS WCS keywords as an astropy Header.

  Stonyhurst heliographic CAR, `scale_deg` deg/px, reference pixel at the
  array centre (lon = lat = 0), as `data_prep.patches.target_header`.
  """
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  ny, nx = shape
  header = fits.Header()
  header['WCSAXES'] = 2
  header['CTYPE1'] = 'HGLN-CAR'
  header['CTYPE2'] = 'HGLT-CAR'
  header['CUNIT1'] = 'deg'
  header['CUNIT2'] = 'deg'
  header['CDELT1'] = scale_deg
  header['CDELT2'] = scale_deg
  header['CRPIX1'] = (nx + 1) / 2  # FITS pixels are 1-based
  header['CRPIX2'] = (ny + 1) / 2
  header['CRVAL1'] = 0.0
  header['CRVAL2'] = 0.0
  header['LONPOLE'] = 0.0
  header['LATPOLE'] = 90.0
  if obstime:
    header['DATE-OBS'] = str(obstime)
  return header


def lonlat_extent(header, shape):
  """(lon_min, lon_max, lat_min, lat_max) in deg of the pixel edges.

  For `imshow(..., origin='lower', extent=...)` of a CAR patch (linear
  axes): evaluated with astropy's WCS at the outer pixel edges.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from astropy.wcs import WCS  # pylint: disable=g-import-not-at-top
  import warnings  # pylint: disable=g-import-not-at-top
  ny, nx = shape
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    wcs = WCS(header, naxis=2)
    x = np.array([-0.5, nx - 0.5, (nx - 1) / 2, (nx - 1) / 2])
    y = np.array([(ny - 1) / 2, (ny - 1) / 2, -0.5, ny - 0.5])
    lon, lat = wcs.wcs_pix2world(x, y, 0)
  lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
  return float(lon[0]), float(lon[1]), float(lat[2]), float(lat[3])


def _first_line(e):
  lines = [l for l in str(e).splitlines() if l.strip()]
  return lines[0].strip() if lines else type(e).__name__
