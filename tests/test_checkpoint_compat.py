"""A checkpoint written with the magjax 0.1 conv-transpose kernel layout
(4, 4, in, out) gives one clear line, in training and in evaluation."""

import jax
import jax.numpy as jnp
import pytest

from magjax import checkpoints
from magjax.evaluation import inference
from magjax.training import train as train_lib
from magjax.training import train_state as train_state_lib
from train_helpers import load_config, memory_source


def _old_layout(path, leaf):
  names = [str(getattr(p, 'key', p)) for p in path]
  if names[0].startswith('up_conv') and names[-1] == 'kernel':
    cin, kh, kw, cout = leaf.shape
    return jnp.zeros((kh, kw, cin, cout), leaf.dtype)
  return leaf


@pytest.fixture(scope='module')
def old_workdir(tmp_path_factory):
  config = load_config('rhp', 'tiny')
  workdir = str(tmp_path_factory.mktemp('old'))
  state = jax.jit(lambda k: train_state_lib.create_train_state(
      config, k, (config.crop_size, config.crop_size)))(jax.random.key(0))
  state = state.replace(
      g_params=jax.tree_util.tree_map_with_path(_old_layout, state.g_params))
  ckpt = checkpoints.Checkpointer(workdir)
  ckpt.save(state, config)
  ckpt.close()
  return config, workdir


def test_restore_names_the_layout_change(old_workdir):
  config, workdir = old_workdir
  ckpt = checkpoints.Checkpointer(workdir, read_only=True)
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match=r'\(in, 4, 4, out\)'):
    ckpt.restore(train_state_lib.abstract_train_state(config))
  ckpt.close()


def test_train_and_eval_exit_with_one_line(old_workdir, capsys):
  config, workdir = old_workdir
  assert train_lib.run(config, workdir, memory_source()) == 2
  err = capsys.readouterr().err.strip()
  assert err.startswith('error: checkpoint step 0') and '\n' not in err
  with pytest.raises(checkpoints.CheckpointMismatchError,
                     match='does not fit this model'):
    inference.restore_generator(config, workdir)
