"""The inference path shared by eval.py, predict, the report and training's
validation: restore a generator, normalise as training does, generate.

- `restore_generator(config, workdir, step)`: G's variables of a checkpoint,
  read alone (the discriminator and optimisers are not read).
- `generate(variables, aia, config, rng=None)`: G in eval mode (BatchNorm
  running statistics, stored spectral-norm vectors); with `rng`, dropout
  stays active (Monte-Carlo dropout).
- `network_input(aia, valid, config)`: AIA in DN/s -> the network's input,
  by training's own normalisation (`input_pipeline.network_input`); here
  `valid` is the mask AND finite data, so a missing pixel inside the disk
  gets the fill value instead of spreading NaN through a tile (training
  keeps such a NaN, for its NaN policy to see).
- `GeneratorFn`: one jitted G of a fixed batch size; `predict_tiled`: whole
  images by overlap-blended tiles (`tiling.tiled_apply`).
"""

import functools

import os

import jax
import jax.numpy as jnp
import numpy as np

from magjax import checkpoints
from magjax import input_pipeline
from magjax import kernels
from magjax.evaluation import tiling
from magjax.models import build_generator, compute_dtype
from magjax_common.errors import one_line

# Tiles or crops per generator call when config.eval_batch_size is 0:
# about this many pixels (two 512^2 tiles), between 1 and 64 images.
AUTO_BATCH_PIXELS = 2 * 512 * 512


def generate(variables, aia, config, rng=None):
  """G(aia) in eval mode, float32 (N, H, W, output_nc) in [-1, 1].

  variables: {'params', 'batch_stats'} of G (a checkpoint's, or imported).
  rng: if given, dropout stays active with this key (Monte-Carlo dropout for
    uncertainty maps); BatchNorm still uses its running statistics.
  """
  gen = build_generator(config.model, compute_dtype(config))
  if rng is None:
    return gen.apply(variables, aia, train=False)
  return gen.apply(variables, aia, train=False, mc_dropout=True,
                   rngs={'dropout': rng})


def transforms(variables, shape, config):
  """G's fixed-weight precomputation for inputs of `shape` (N, H, W, C):
  the Winograd kernel transforms (kernels.recording_transforms), a list
  per Winograd layer ([] where no layer uses Winograd, e.g. on a GPU).
  Jitted, it computes only those: the forward pass it traces is dead code."""
  with kernels.recording_transforms() as recorded:
    generate(variables, jnp.zeros(shape, jnp.float32), config)
  return recorded


def generate_transformed(variables, transformed, aia, config, rng=None):
  """`generate` with the kernel transforms precomputed by `transforms`
  (for inputs of aia's shape): what one call of inference computes."""
  with kernels.replaying_transforms(transformed):
    return generate(variables, aia, config, rng)


def abstract_generator_variables(config):
  """G's {'params', 'batch_stats'} as jax.ShapeDtypeStructs (no compute)."""
  crop = int(config.crop_size)
  x = jax.ShapeDtypeStruct((1, crop, crop, int(config.model.input_nc)),
                           jnp.float32)
  gen = build_generator(config.model)
  return jax.eval_shape(lambda k, x: gen.init(k, x, train=False),
                        jax.random.key(0), x)


def checked_abstract_variables(config):
  """`abstract_generator_variables`, a bad model config as CheckpointError."""
  try:
    return abstract_generator_variables(config)
  except (ValueError, TypeError) as e:
    raise checkpoints.CheckpointError(
        f'cannot build the model of the config: {one_line(e)}') from e


def restore_generator(config, workdir, step=None, abstract=None):
  """(G variables, step) of checkpoint `step` (default: the latest).

  Reads the generator's parameters and statistics alone (a partial
  restore), placed on the first device. `abstract`: the variables' shapes
  (`abstract_generator_variables`) when the caller has them already.

  Raises:
    checkpoints.CheckpointError: no workdir, checkpoint or step, a damaged
      checkpoint (without `step`, the newest intact one is used, said on
      stderr), or one that does not fit `config`'s model.
  """
  step = checkpoints.intact_step(workdir, step, say=checkpoints.note)
  if abstract is None:
    abstract = checked_abstract_variables(config)
  device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = {
      'step': jax.ShapeDtypeStruct((), jnp.int32, sharding=device),
      'g_params': _placed(abstract['params'], device),
      'g_batch_stats': _placed(abstract.get('batch_stats', {}), device),
  }
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  try:
    state, _ = ckpt.restore(target, step, partial=True)
  except checkpoints.CheckpointError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # orbax: many kinds
    unchecked = not os.path.isfile(os.path.join(
        checkpoints.step_directory(workdir, step), checkpoints.MANIFEST))
    raise checkpoints.CheckpointMismatchError(
        f'checkpoint {step} in {checkpoints.directory(workdir)!r} does not '
        f'match the config (model {config.model.name!r}, ngf '
        f'{config.model.ngf}, num_downs {config.model.num_downs})'
        f'{" or its files are damaged (it has no checksum list)" if unchecked else ""}'
        f': {one_line(e)[:300]}') from e
  finally:
    ckpt.close()
  variables = {'params': state['g_params'],
               'batch_stats': state['g_batch_stats']}
  return variables, int(jax.device_get(state['step']))


def _placed(tree, sharding):
  return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
      tree)


def network_input(aia, valid, config):
  """(H, W, 1) float32 network input of an AIA image in DN/s.

  valid: where the image holds data (mask), further restricted here to
  finite values; elsewhere config.aia_fill.
  """
  aia = np.asarray(aia, np.float32)
  if aia.ndim == 2:
    aia = aia[..., None]
  valid = np.asarray(valid, bool).reshape(aia.shape) & np.isfinite(aia)
  return input_pipeline.network_input(aia, valid, config)


def to_gauss(pred, config):
  """Network output(s) in [-1, 1] -> gauss (float64), channel dropped."""
  return np.asarray(pred, np.float64)[..., 0] * float(config.hmi_saturation)


def tile_overlap(config):
  """config.eval_tile_overlap, reduced to tile // 2 when it does not fit."""
  tile = int(config.crop_size)
  return max(0, min(int(config.eval_tile_overlap), tile // 2))


def inference_batch_size(config):
  """config.eval_batch_size, else about AUTO_BATCH_PIXELS per call (1..64)."""
  size = int(config.eval_batch_size)
  if size > 0:
    return size
  tile = int(config.crop_size)
  return int(max(1, min(64, AUTO_BATCH_PIXELS // (tile * tile))))


class GeneratorFn:
  """fn(images (N, h, w, C)) -> G's output (N, h, w, C_out), NumPy float32.

  One jitted G (eval mode) of fixed batch `batch_size`: inputs are padded
  to it and split into chunks of it, so it compiles once per image shape
  (`compiles` counts it; `compile(shape)` does it ahead of the first call,
  e.g. while inputs are still being read). The weights' Winograd kernel
  transforms are computed once per shape and variables (`transforms`), not
  in every call. With `rng` (a typed key), dropout stays active
  (Monte-Carlo dropout); each call folds a call counter into the key, so
  the tiles of one image get independent dropout masks, deterministically.
  """

  def __init__(self, config, variables, batch_size, rng=None):
    self.batch_size = int(batch_size)
    self._variables = variables
    self._rng = rng
    self._calls = 0
    # image shape (h, w, C) -> (compiled transforms, compiled generator)
    self._compiled = {}
    self._transformed = {}  # image shape -> transforms of self._variables
    self.compiles = 0
    self._transforms = jax.jit(functools.partial(transforms, config=config),
                               static_argnums=1)
    if rng is None:
      self._apply = jax.jit(
          functools.partial(generate_transformed, config=config))
    else:
      self._apply = jax.jit(
          lambda v, t, x, k: generate_transformed(v, t, x, config, k))

  def compile(self, shape, variables=None):
    """The executables for images of `shape` (h, w, C), compiled once
    (ahead of time: trace, lower, XLA or the persistent cache).
    `variables`: stand-ins of the same shapes (jax.ShapeDtypeStruct) to
    compile before the real ones are restored (`set_variables`)."""
    shape = tuple(int(n) for n in shape)
    if shape not in self._compiled:
      full = (self.batch_size,) + shape
      v = self._variables if variables is None else variables
      prepare = self._transforms.lower(v, full).compile()
      x = jax.ShapeDtypeStruct(full, jnp.float32)
      args = (v, jax.eval_shape(self._transforms, v, full), x)
      if self._rng is not None:
        args += (self._rng,)
      self._compiled[shape] = (prepare, self._apply.lower(*args).compile())
      self.compiles += 1
    return self._compiled[shape]

  def set_variables(self, variables):
    self._variables = variables
    self._transformed = {}

  def __call__(self, images):
    images = np.asarray(images, np.float32)
    shape = images.shape[1:]
    prepare, run = self.compile(shape)
    if shape not in self._transformed:
      self._transformed[shape] = prepare(self._variables)
    transformed = self._transformed[shape]
    outputs = []
    for start in range(0, images.shape[0], self.batch_size):
      chunk = images[start:start + self.batch_size]
      n = chunk.shape[0]
      if n < self.batch_size:
        chunk = np.concatenate(
            [chunk, np.repeat(chunk[-1:], self.batch_size - n, axis=0)])
      if self._rng is None:
        out = run(self._variables, transformed, chunk)
      else:
        out = run(self._variables, transformed, chunk,
                  jax.random.fold_in(self._rng, self._calls))
      self._calls += 1
      outputs.append(np.asarray(jax.device_get(out), np.float32)[:n])
    return np.concatenate(outputs)


def predict_tiled(fn, x, config):
  """Whole-image prediction (H, W, C_out) in [-1, 1] by overlap-blended
  tiles of side config.crop_size; `x` from `network_input`."""
  return tiling.tiled_apply(fn, x, int(config.crop_size),
                            tile_overlap(config), batch_size=fn.batch_size)
