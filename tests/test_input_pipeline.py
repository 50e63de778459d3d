"""magjax.input_pipeline: fixed normalisation, stateless seeded batches."""

import jax
import numpy as np
import pytest
import train_helpers

from magjax import input_cache
from magjax import input_pipeline
from magjax_common.errors import UserError


@pytest.fixture(name='config')
def _config():
  config = train_helpers.load_config('rhp', 'tiny')
  config.batch_size = 4
  config.crop_size = 16
  return config


def _collect(source, config, start, end):
  return [batch for _, batch in
          input_pipeline.batches(source, config, start, end)]


def test_same_seed_same_batches_and_a_new_seed_differs(config):
  source = train_helpers.memory_source()
  a = _collect(source, config, 0, 5)
  b = _collect(source, config, 0, 5)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x['aia'], y['aia'])
    np.testing.assert_array_equal(x['hmi'], y['hmi'])
  config.seed += 1
  c = _collect(source, config, 0, 5)
  assert not np.array_equal(a[0]['hmi'], c[0]['hmi'])


def test_batch_of_a_step_does_not_depend_on_where_the_run_started(config):
  source = train_helpers.memory_source()
  straight = _collect(source, config, 0, 6)
  resumed = _collect(source, config, 4, 6)
  for x, y in zip(straight[4:], resumed):
    np.testing.assert_array_equal(x['aia'], y['aia'])
    np.testing.assert_array_equal(x['hmi'], y['hmi'])
  assert straight[0]['aia'].shape == (4, 16, 16, 1)
  assert straight[0]['aia'].dtype == np.float32


def test_each_epoch_visits_every_example_once(config):
  sampler = input_pipeline.BatchSampler(6, (40, 48), 3, 16, seed=1)
  epoch0 = [i for step in (0, 1) for i, _, _ in sampler.rows(step)]
  epoch1 = [i for step in (2, 3) for i, _, _ in sampler.rows(step)]
  assert sorted(epoch0) == sorted(epoch1) == list(range(6))
  assert epoch0 != epoch1  # reshuffled per epoch
  for _, top, left in sampler.rows(5):
    assert 0 <= top <= 40 - 16 and 0 <= left <= 48 - 16


def test_process_slices_concatenate_to_the_global_batch(config):
  source = train_helpers.memory_source()
  sampler = input_pipeline.BatchSampler(3, (40, 48), 4, 16, config.seed)
  whole = input_pipeline.local_batch(source, sampler, 3, config)
  parts = [input_pipeline.local_batch(source, sampler, 3, config, p, 2)
           for p in range(2)]
  np.testing.assert_array_equal(
      np.concatenate([p['hmi'] for p in parts]), whole['hmi'])


def test_normalisation_is_fixed_not_per_image(config):
  example = train_helpers.memory_source(1)[0]
  scaled = dict(example, aia=example['aia'] * 10, hmi=example['hmi'] * 10)
  base = input_pipeline.preprocess(example, 0, 0, config)
  big = input_pipeline.preprocess(scaled, 0, 0, config)
  mask = example['mask'][:16, :16]
  assert not np.allclose(base['aia'][mask], big['aia'][mask])
  # log scaling: x10 in DN/s is a fixed shift of 2 / (log_max - log_min)
  shift = 2.0 / (config.aia_log_max - config.aia_log_min)
  inside = mask & (example['aia'][:16, :16] > 1) & (big['aia'] < 1)
  np.testing.assert_allclose(big['aia'][inside] - base['aia'][inside], shift,
                             atol=1e-5)


def test_values_saturate_and_masked_pixels_get_the_fill(config):
  example = {
      'aia': np.array([[[0.0], [1.0], [1e2], [1e9]]], np.float32),
      'hmi': np.array([[[-1000.0], [100.0], [0.0], [3000.0]]], np.float32),
      'mask': np.array([[[True], [True], [True], [False]]]),
  }
  config.crop_size = 1
  rows = [input_pipeline.preprocess(example, 0, c, config) for c in range(4)]
  aia = [float(r['aia'].squeeze()) for r in rows]
  hmi = [float(r['hmi'].squeeze()) for r in rows]
  np.testing.assert_allclose(aia, [-1.0, -1.0, 0.0, config.aia_fill], atol=1e-6)
  np.testing.assert_allclose(hmi, [-1.0, 0.5, 0.0, config.hmi_fill])


def test_nan_in_valid_pixels_is_not_hidden(config):
  example = train_helpers.memory_source(1, nan_at=0)[0]
  crop = input_pipeline.preprocess(example, 12, 16, config)
  assert np.isnan(crop['aia']).any()


def test_sharded_prefetched_batches_equal_the_numpy_ones(config):
  source = train_helpers.memory_source()
  mesh = jax.sharding.Mesh(jax.devices(), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  expected = _collect(source, config, 2, 5)
  with input_pipeline.Prefetcher(
      input_pipeline.batches(source, config, 2, 5, sharding), 2) as it:
    got = list(it)
  assert [step for step, _ in got] == [2, 3, 4]
  for (_, batch), ref in zip(got, expected):
    assert isinstance(batch['hmi'], jax.Array)
    assert batch['hmi'].sharding == sharding
    np.testing.assert_array_equal(np.asarray(batch['hmi']), ref['hmi'])


def test_prefetcher_reraises_the_producer_error():
  def broken():
    yield 1
    raise OSError('disk gone')
  with input_pipeline.Prefetcher(broken(), 2) as it:
    assert next(it) == 1
    with pytest.raises(OSError, match='disk gone'):
      next(it)


def test_an_old_version_of_the_data_set_is_refused_naming_the_rebuild(
    tmp_path):
  (tmp_path / 'sdo_ar' / 'synthetic' / '1.0.0').mkdir(parents=True)
  with pytest.raises(FileNotFoundError, match='make rebuild-data') as e:
    input_pipeline.check_version(str(tmp_path), 'sdo_ar', '2.0.0')
  assert 'holds sdo_ar/synthetic 1.0.0' in str(e.value)
  (tmp_path / 'sdo_ar' / 'synthetic' / '2.0.0').mkdir()
  input_pipeline.check_version(str(tmp_path), 'sdo_ar', '2.0.0')  # fine


def test_a_workdir_trained_on_another_version_is_refused():
  class Info:
    version = '2.0.0'

  class Source(list):
    dataset_info = Info()

  source = Source([{}])
  saved = {'dataset_version': '2.0.0'}
  input_pipeline.check_trained_version(saved, source, 'runs/x')
  with pytest.raises(UserError, match=r'trained on sdo_ar 1\.0\.0.*2\.0\.0'):
    input_pipeline.check_trained_version({}, source, 'runs/x')  # 0.2 runs
  input_pipeline.check_trained_version({}, [{}], 'runs/x')  # in memory


def test_binning_keeps_the_field_of_view_at_a_lower_resolution():
  rng = np.random.default_rng(0)
  example = {'aia': rng.uniform(1, 100, (8, 12, 1)).astype(np.float32),
             'hmi': rng.normal(0, 50, (8, 12, 1)).astype(np.float32),
             'mask': np.ones((8, 12, 1), bool), 'pair_id': b'x'}
  example['mask'][0, 0] = False
  binned = input_pipeline.BinnedSource([example], 4)[0]
  assert binned['aia'].shape == (2, 3, 1) and binned['pair_id'] == b'x'
  np.testing.assert_allclose(binned['hmi'][1, 2, 0],
                             example['hmi'][4:8, 8:12, 0].mean(), rtol=1e-5)
  assert not binned['mask'][0, 0, 0] and binned['mask'][1:].all()
  assert binned['aia'][0, 0, 0] == 0.0  # an invalid block is zeroed


@pytest.mark.parametrize('mode', ['host', 'device'])
def test_cached_batches_equal_the_uncached_ones_bit_for_bit(config, mode):
  source = train_helpers.memory_source(num_examples=5)
  mesh = jax.sharding.Mesh(jax.devices(), ('data',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('data'))
  config.input_cache = 'off'
  expected = _collect(source, config, 3, 7)
  config.input_cache = mode
  feed = input_pipeline.Feed(source, config, sharding)
  assert feed.mode == mode
  got = list(input_pipeline.batches(source, config, 3, 7, sharding, feed))
  for (_, batch), ref in zip(got, expected):
    for key in ('aia', 'hmi'):
      assert batch[key].sharding == sharding
      np.testing.assert_array_equal(np.asarray(batch[key]), ref[key])


def test_a_nan_in_a_cached_patch_still_reaches_the_batch(config):
  config.input_cache = 'host'
  source = train_helpers.memory_source(nan_at=1)
  step = next(s for s in range(6) if any(
      i == 1 for i, _, _ in input_pipeline.BatchSampler(
          3, (40, 48), 4, 16, config.seed).rows(s)))
  batch = _collect(source, config, step, step + 1)[0]
  assert np.isnan(batch['aia']).any()


@pytest.mark.parametrize('mode,backend,max_mb,expected', [
    ('auto', 'cpu', 100, 'host'), ('auto', 'gpu', 100, 'device'),
    ('auto', 'tpu', 100, 'device'), ('auto', 'gpu', 1, 'off'),
    ('off', 'gpu', 100, 'off'), ('host', 'gpu', 100, 'host')])
def test_the_cache_mode_follows_the_backend_and_the_budget(
    mode, backend, max_mb, expected):
  # 10 patches of 800 x 900: 54.9 MiB
  assert input_cache.resolve_mode(mode, max_mb, 10, (800, 900),
                                  backend) == expected


def test_a_cache_asked_for_beyond_its_budget_is_refused_in_one_line():
  with pytest.raises(UserError, match='input_cache_max_mb=1'):
    input_cache.resolve_mode('device', 1, 10, (800, 900), 'gpu')
  with pytest.raises(UserError, match="input_cache='memory'"):
    input_cache.resolve_mode('memory', 1, 10, (800, 900), 'gpu')
