"""magjax.checkpoints: full-state round trip, retention, restore by step."""

import json

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from magjax import checkpoints


@flax.struct.dataclass
class _State:
  """Same kinds of leaves as magjax.train_state.TrainState."""
  step: jax.Array
  g_params: dict
  g_batch_stats: dict
  d_params: dict
  g_opt_state: optax.OptState
  d_opt_state: optax.OptState
  rng: jax.Array


def _state(seed, step):
  keys = jax.random.split(jax.random.key(seed), 3)
  g = {'conv': {'kernel': jax.random.normal(keys[0], (3, 3, 1, 4))}}
  d = {'dense': {'kernel': jax.random.normal(keys[1], (4, 2)),
                 'bias': jnp.zeros(2)}}
  tx = optax.adam(optax.linear_schedule(2e-4, 0.0, 10), b1=0.5)
  g_opt, d_opt = tx.init(g), tx.init(d)
  # Make the optimiser state non-trivial (moments, counts).
  _, g_opt = tx.update(g, g_opt, g)
  _, d_opt = tx.update(d, d_opt, d)
  return _State(step=jnp.asarray(step, jnp.int32), g_params=g,
                g_batch_stats={'bn': {'mean': jnp.full(4, float(seed))}},
                d_params=d, g_opt_state=g_opt, d_opt_state=d_opt,
                rng=keys[2])


def _config():
  return ml_collections.ConfigDict({'seed': 3, 'model': {'name': 'rhp'}})


def _assert_equal(a, b):
  a_leaves, a_def = jax.tree.flatten(a)
  b_leaves, b_def = jax.tree.flatten(b)
  assert a_def == b_def
  for x, y in zip(a_leaves, b_leaves):
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
      x, y = jax.random.key_data(x), jax.random.key_data(y)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_round_trip_of_the_full_state(tmp_path):
  state = _state(seed=1, step=7)
  ckpt = checkpoints.Checkpointer(tmp_path, keep=2)
  assert ckpt.latest_step() is None
  assert ckpt.save(state, _config()) == 7
  ckpt.wait()
  target = _state(seed=2, step=0)  # different values, same structure
  restored, meta = ckpt.restore(target)
  ckpt.close()
  _assert_equal(restored, state)
  assert type(restored.g_opt_state) is type(state.g_opt_state)
  assert jnp.issubdtype(restored.rng.dtype, jax.dtypes.prng_key)
  assert meta['data_position'] == 7
  assert meta['config']['seed'] == 3
  # the config is also plain JSON on disk
  text = (tmp_path / 'checkpoints' / '7' / 'meta' / 'metadata').read_text()
  assert json.loads(text)['config']['model']['name'] == 'rhp'


def test_keeps_the_latest_and_restores_a_given_step(tmp_path):
  ckpt = checkpoints.Checkpointer(tmp_path, keep=2)
  for step in (1, 2, 3):
    ckpt.save(_state(seed=step, step=step), _config())
  ckpt.wait()
  assert ckpt.all_steps() == [2, 3]
  reader = checkpoints.Checkpointer(tmp_path, keep=2, read_only=True)
  assert reader.latest_step() == 3
  assert reader.read_meta()['data_position'] == 3
  assert reader.read_meta(step=2)['config']['seed'] == 3
  restored, _ = reader.restore(_state(seed=0, step=0), step=2)
  _assert_equal(restored, _state(seed=2, step=2))
  with pytest.raises(checkpoints.CheckpointError,
                     match='step 1 .*available: \\[2, 3\\]'):
    reader.restore(_state(seed=0, step=0), step=1)
  ckpt.close()


def _saved(tmp_path, steps=(1, 2, 3), keep=3):
  ckpt = checkpoints.Checkpointer(tmp_path, keep=keep)
  for step in steps:
    ckpt.save(_state(seed=step, step=step), _config())
  ckpt.close()
  return tmp_path


def _largest_file(step_dir):
  files = [p for p in step_dir.rglob('*') if p.is_file()]
  return max(files, key=lambda p: p.stat().st_size)


def test_every_save_carries_a_checksum_list_and_verifies_intact(tmp_path):
  _saved(tmp_path, steps=(1,))
  step_dir = tmp_path / 'checkpoints' / '1'
  listed = json.loads((step_dir / checkpoints.MANIFEST).read_text())['files']
  assert any(name.startswith('state/') for name in listed)
  assert 'meta/metadata' in listed
  assert checkpoints.damage(str(step_dir)) is None


@pytest.mark.parametrize('harm', ['truncate', 'flip', 'delete'])
def test_a_damaged_latest_checkpoint_is_named_and_readers_use_the_previous(
    tmp_path, harm):
  _saved(tmp_path)
  victim = _largest_file(tmp_path / 'checkpoints' / '3')
  if harm == 'truncate':
    victim.write_bytes(victim.read_bytes()[:100])
  elif harm == 'flip':
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
  else:
    victim.unlink()
  notes = []
  assert checkpoints.intact_step(str(tmp_path), say=notes.append) == 2
  assert len(notes) == 1 and 'checkpoint 3 is damaged' in notes[0]
  assert 'using checkpoint 2' in notes[0]
  with pytest.raises(checkpoints.CheckpointDamagedError,
                     match='checkpoint 3 .* is damaged: .*newest intact '
                     'checkpoint: 2'):
    checkpoints.intact_step(str(tmp_path), 3)
  reader = checkpoints.Checkpointer(tmp_path, read_only=True)
  with pytest.raises(checkpoints.CheckpointDamagedError, match='damaged'):
    reader.restore(_state(seed=0, step=0), step=3)
  restored, _ = reader.restore(_state(seed=0, step=0), step=2)
  reader.close()
  _assert_equal(restored, _state(seed=2, step=2))
  assert victim.parent.exists()  # readers leave the damaged files alone


def test_training_sets_damaged_checkpoints_aside_and_resumes_from_intact(
    tmp_path):
  _saved(tmp_path)
  for step in ('2', '3'):
    victim = _largest_file(tmp_path / 'checkpoints' / step)
    victim.write_bytes(b'\0' * victim.stat().st_size)
  notes = []
  assert checkpoints.set_aside_damaged(str(tmp_path), notes.append) == 1
  assert checkpoints.list_steps(str(tmp_path)) == [1]
  aside = tmp_path / checkpoints.DAMAGED_SUBDIR
  assert sorted(p.name for p in aside.iterdir()) == ['2', '3']  # kept
  assert len(notes) == 1 and 'checkpoints 3, 2 are damaged' in notes[0]
  assert 'resuming from checkpoint 1' in notes[0]


def test_no_intact_checkpoint_left_is_one_line_and_nothing_moves(tmp_path):
  _saved(tmp_path, steps=(1,))
  (_largest_file(tmp_path / 'checkpoints' / '1')).write_bytes(b'x')
  with pytest.raises(checkpoints.CheckpointDamagedError) as info:
    checkpoints.set_aside_damaged(str(tmp_path), print)
  assert 'no intact one is left' in str(info.value)
  assert '\n' not in str(info.value)
  assert checkpoints.list_steps(str(tmp_path)) == [1]
  with pytest.raises(checkpoints.CheckpointDamagedError,
                     match='no intact checkpoint left'):
    checkpoints.intact_step(str(tmp_path))


def test_a_failed_save_names_the_step_reason_and_last_good_one(
    tmp_path, monkeypatch):
  _saved(tmp_path, steps=(1,))
  ckpt = checkpoints.Checkpointer(tmp_path, keep=3)

  def full_disk(*args, **kwargs):
    del args, kwargs
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(checkpoints, 'seal', full_disk)
  ckpt.save(_state(seed=2, step=2), _config())
  with pytest.raises(checkpoints.CheckpointSaveError) as info:
    ckpt.wait()
  ckpt.close()
  message = str(info.value)
  assert message.startswith('could not save checkpoint 2 in ')
  assert 'No space left on device' in message
  assert 'last good checkpoint: step 1' in message
  assert info.value.exit_code == 3
  assert checkpoints.list_steps(str(tmp_path)) == [1]
  assert sorted(p.name for p in (tmp_path / 'checkpoints').iterdir()) == ['1']
