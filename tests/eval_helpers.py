"""Shared by the evaluation / report / predict tests.

`save_checkpoint` writes a real orbax checkpoint of a :tiny TrainState in
about a second: the state's structure comes from `jax.eval_shape` of
`create_train_state` (the target training restores into; evaluation and
predict restore its generator part) and its leaves are filled with NumPy values (conv weights N(0, 0.02),
BatchNorm scale 1 / bias 0, running var 1, attention gamma 0.1, unit
spectral-norm vectors, zero optimiser moments). Compiling the real
initialisation of G and D takes about a minute on 2 shared cores; the tests
check the evaluation and generation plumbing, not a trained model (a slow
test trains one with train.train_and_evaluate).
"""

import jax
import numpy as np

from magjax import checkpoints
from magjax.training import train_state
from train_helpers import load_config, memory_source  # pylint: disable=unused-import


def _fill(path, leaf, rng):
  names = [str(getattr(p, 'key', getattr(p, 'name', p))) for p in path]
  name = names[-1] if names else ''
  if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
    return jax.random.key(0)
  if not np.issubdtype(leaf.dtype, np.floating):
    return np.zeros(leaf.shape, leaf.dtype)
  if any(n.endswith('opt_state') for n in names):
    return np.zeros(leaf.shape, leaf.dtype)
  if name in ('var', 'scale'):
    return np.ones(leaf.shape, leaf.dtype)
  if name in ('mean', 'bias'):
    return np.zeros(leaf.shape, leaf.dtype)
  if name == 'gamma':
    return np.full(leaf.shape, 0.1, leaf.dtype)
  if name in ('u', 'v'):
    x = rng.normal(size=leaf.shape)
    return (x / np.linalg.norm(x)).astype(leaf.dtype)
  return rng.normal(0.0, 0.02, leaf.shape).astype(leaf.dtype)


def fake_state(config, step=0, seed=0):
  """A TrainState of `config` with NumPy-filled leaves (see module doc)."""
  target = train_state.abstract_train_state(config)
  rng = np.random.default_rng(seed)
  state = jax.tree_util.tree_map_with_path(
      lambda p, x: _fill(p, x, rng), target)
  return state.replace(step=np.asarray(step, np.int32))


def save_checkpoint(workdir, config, step=0, seed=0):
  """Writes checkpoint `step` of a fake :tiny state under `workdir`."""
  ckpt = checkpoints.Checkpointer(workdir, keep=3)
  ckpt.save(fake_state(config, step, seed), config)
  ckpt.close()
  return workdir


def tiny_config(variant='rhp'):
  """configs/<variant>.py:tiny with small evaluation settings."""
  config = load_config(variant, 'tiny')
  config.eval_tile_overlap = 8
  config.eval_batch_size = 64
  config.eval_keep_samples = 2
  return config


def predict_workdir(root, step, **overrides):
  """A workdir under `root` holding checkpoint `step` of a :tiny RHP with
  predict's test settings (64^2 tiles, overlap 16) and `overrides`."""
  config = tiny_config('rhp')
  config.crop_size = 64
  config.eval_tile_overlap = 16
  for key, value in overrides.items():
    setattr(config, key, value)
  workdir = str(root / 'runs' / 'rhp')
  save_checkpoint(workdir, config, step=step)
  return workdir, config
