"""The sdo_ar TFDS data set: codec, builder, CLI (array_record, no TF)."""

import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from astropy.io import fits
from hypothesis import given, settings, strategies as st

import magjax.datasets.sdo_ar  # noqa: F401  (registers the builder)
from magjax.datasets.sdo_ar import build as sdo_build
from magjax.datasets.sdo_ar.features import PackedArray
from magjax.datasets.sdo_ar.sdo_ar_dataset_builder import PATCH_SHAPE

SHAPE = PATCH_SHAPE + (1,)


# --- codec -----------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_int16_codec_error_is_half_a_step(seed):
  x = np.random.default_rng(seed).uniform(-200, 200, (7, 9, 1)).astype('f4')
  feature = PackedArray((7, 9, 1), 'int16', step=0.1)
  y = feature.decode_example_np(feature.encode_example(x))
  assert y.dtype == np.float32 and y.shape == x.shape
  assert np.max(np.abs(y - x)) <= 0.05 + 1e-4


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 10))
def test_float16_codec_relative_error(seed, bits):
  rng = np.random.default_rng(seed)
  x = (rng.lognormal(3, 2, (6, 5)) * rng.choice([-1, 1], (6, 5))).astype('f4')
  x = np.clip(x, -6e4, 6e4)
  feature = PackedArray((6, 5), 'float16', mantissa_bits=bits)
  y = feature.decode_example_np(feature.encode_example(x))
  assert y.dtype == np.float32
  normal = np.abs(x) >= 2.0**-14  # float16 normal range
  bound = 2.0**-(bits + 1) * np.abs(x)[normal]
  assert np.all(np.abs(y - x)[normal] <= bound)
  # Fewer mantissa bits: no more distinct values than 2**bits per octave.
  octave = y[(np.abs(y) >= 32) & (np.abs(y) < 64)]
  assert len(np.unique(np.abs(octave))) <= 2**bits


def test_codec_clips_rejects_nan_and_wrong_shape():
  f16 = PackedArray((2,), 'float16')
  assert list(f16.decode_example_np(f16.encode_example(
      np.array([1e6, -1e6], 'f4')))) == [65504.0, -65504.0]
  with pytest.raises(ValueError, match='NaN'):
    f16.encode_example(np.array([np.nan, 1.0], 'f4'))
  with pytest.raises(ValueError, match='shape'):
    f16.encode_example(np.zeros(3, 'f4'))
  mask = PackedArray((3, 3), 'bool')
  m = np.eye(3, dtype=bool)
  np.testing.assert_array_equal(mask.decode_example_np(mask.encode_example(m)),
                                m)
  with pytest.raises(ValueError, match='kind'):
    PackedArray((3,), 'int8')
  with pytest.raises(ValueError, match='mantissa_bits'):
    PackedArray((3,), 'float16', mantissa_bits=11)


# --- builder ---------------------------------------------------------------

def _content(seed):
  """Patch-like content: smooth structure plus pixel noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:PATCH_SHAPE[0], 0:PATCH_SHAPE[1]]
  blob = np.exp(-((yy - 400) ** 2 + (xx - 300 - 40 * seed) ** 2) / 2e3)
  hmi = np.clip(800 * blob * np.sign(xx - 300 - 40 * seed)
                + rng.normal(0, 8, PATCH_SHAPE), -200, 200).astype('f4')
  aia = (60 + 900 * blob + rng.normal(0, 3, PATCH_SHAPE)).astype('f4')
  aia[:3, :10] = np.nan           # AIA invalid only
  hmi[-2:, :] = np.nan            # HMI invalid only
  return aia, hmi


def write_patch_tree(root, days, synthetic=True, extra_lines=()):
  """Patch files + manifest as `prepare build` writes them."""
  root.mkdir(parents=True, exist_ok=True)
  lines = list(extra_lines)
  expected = {}
  for seed, (day, split) in enumerate(days):
    pair_id = f'2012{day.replace("-", "")}T000000'
    (root / split).mkdir(exist_ok=True)
    aia, hmi = _content(seed)
    names = {k: f'{split}/{pair_id}_{k}.fits' for k in ('aia', 'hmi')}
    fits.writeto(root / names['aia'], aia)
    fits.writeto(root / names['hmi'], hmi)
    lines.append({'pair_id': pair_id, 'status': 'ok', 'reason': '',
                  'error': None, 'split': split, 'synthetic': synthetic,
                  't_aia': f'2012-{day}T00:00:00.000',
                  't_hmi': f'2012-{day}T00:00:05.120', 'dt': 5.12,
                  'aia_patch': names['aia'], 'hmi_patch': names['hmi']})
    expected[pair_id] = (aia, hmi)
  with open(root / 'manifest.jsonl', 'w') as f:
    for line in lines:
      f.write(json.dumps(line) + '\n')
  return expected


DAYS = [('01-05', 'train'), ('03-07', 'train'), ('05-20', 'train'),
        ('09-10', 'validation'), ('11-11', 'test')]


@pytest.fixture(scope='module')
def synthetic_build(tmp_path_factory):
  root = tmp_path_factory.mktemp('sdo_ar')
  skipped = {'pair_id': '20120201T000000', 'status': 'skipped',
             'reason': 'x: truncated', 'error': 'DataError', 'split': 'train'}
  # The manifest says 03-07 failed first, then succeeded on resume.
  retried = {'pair_id': '20120307T000000', 'status': 'skipped',
             'reason': 'BrokenProcessPool', 'error': 'BrokenProcessPool',
             'split': 'train'}
  expected = write_patch_tree(root / 'patches', DAYS,
                              extra_lines=[skipped, retried])
  with open(root / 'patches' / 'manifest.jsonl', 'a') as f:
    f.write('{"pair_id": "2012')  # a torn last line
  data_dir = root / 'tfds'
  rc = sdo_build.main(['--patches', str(root / 'patches'),
                       '--data_dir', str(data_dir)])
  assert rc == 0
  return data_dir, expected


def test_splits_follow_the_manifest(synthetic_build):
  data_dir, _ = synthetic_build
  ds = tfds.data_source('sdo_ar', data_dir=str(data_dir))
  assert {k: len(v) for k, v in ds.items()} == {
      'train': 3, 'validation': 1, 'test': 1}


def test_examples_round_trip_as_float32(synthetic_build):
  data_dir, expected = synthetic_build
  ds = tfds.data_source('sdo_ar', data_dir=str(data_dir))
  seen = set()
  for split in ds:
    for i in range(len(ds[split])):
      ex = ds[split][i]
      pair_id = ex['pair_id'].decode()
      seen.add(pair_id)
      aia, hmi = expected[pair_id]
      assert ex['aia'].dtype == np.float32 and ex['aia'].shape == SHAPE
      assert ex['hmi'].dtype == np.float32 and ex['hmi'].shape == SHAPE
      assert ex['mask'].dtype == bool and ex['mask'].shape == SHAPE
      mask = np.isfinite(aia) & np.isfinite(hmi)
      np.testing.assert_array_equal(ex['mask'][..., 0], mask)
      assert not ex['mask'][:3, :10].any() and not ex['mask'][-2:].any()
      # Invalid pixels are 0, valid ones within the documented quantisation.
      assert np.all(ex['aia'][~ex['mask']] == 0)
      assert np.all(ex['hmi'][~ex['mask']] == 0)
      assert np.max(np.abs(ex['hmi'][..., 0] - hmi)[mask]) <= 0.05 + 1e-4
      rel = np.abs(ex['aia'][..., 0] - aia)[mask] / np.abs(aia)[mask]
      assert rel.max() <= 2.0**-9  # 8-bit mantissa, documented
      assert ex['t_aia'].decode() == f'{pair_id[:4]}-{pair_id[4:6]}-' \
          f'{pair_id[6:8]}T00:00:00.000'
      assert ex['t_hmi'].decode().endswith('T00:00:05.120')
      assert ex['synthetic'] is True or ex['synthetic'] == np.bool_(True)
  assert seen == set(expected)


def test_synthetic_is_said_in_description_and_metadata(synthetic_build):
  data_dir, _ = synthetic_build
  builder = tfds.builder('sdo_ar', data_dir=str(data_dir))
  assert builder.builder_config.name == 'synthetic'
  assert 'SYNTHETIC' in builder.info.description
  assert builder.info.metadata['synthetic'] is True
  assert builder.info.metadata['data'] == 'SYNTHETIC'
  # Also when read back without this package's code (features.json).
  ro = tfds.builder_from_directory(os.fspath(builder.data_dir))
  assert ro.info.metadata['synthetic'] is True


def test_cli_is_idempotent_and_overwrite_rebuilds(synthetic_build, capsys):
  data_dir, _ = synthetic_build
  patches = os.path.join(os.path.dirname(data_dir), 'patches')
  shard = next(p for p in (data_dir / 'sdo_ar' / 'synthetic' / '2.0.0')
               .iterdir() if 'train.array_record' in p.name)
  before = shard.stat().st_mtime_ns
  assert sdo_build.main(['--patches', patches, '--data_dir',
                         str(data_dir)]) == 0
  assert shard.stat().st_mtime_ns == before
  assert sdo_build.main(['--patches', patches, '--data_dir', str(data_dir),
                         '--overwrite']) == 0
  out = capsys.readouterr().out
  assert 'SYNTHETIC 5 examples' in out and 'MB/pair' in out
  ds = tfds.data_source('sdo_ar', data_dir=str(data_dir))
  assert len(ds['train']) == 3


def test_cli_rebuilds_when_the_manifest_changed(tmp_path, capsys):
  patches = tmp_path / 'patches'
  write_patch_tree(patches, DAYS[:2])
  args = ['--patches', str(patches), '--data_dir', str(tmp_path / 'tfds')]
  assert sdo_build.main(args) == 0
  with open(patches / 'manifest.jsonl', 'a') as f:  # a resumed prepare run
    f.write(json.dumps({'pair_id': '20120105T000000', 'status': 'skipped',
                        'reason': 'QUALITY', 'error': 'DataError',
                        'split': 'train'}) + '\n')
  capsys.readouterr()
  assert sdo_build.main(args) == 0
  assert 'rebuilding' in capsys.readouterr().out
  ds = tfds.data_source('sdo_ar', data_dir=str(tmp_path / 'tfds'))
  assert len(ds['train']) == 1


def test_real_config_from_real_patches(tmp_path):
  write_patch_tree(tmp_path / 'patches', DAYS[:2], synthetic=False)
  assert sdo_build.main(['--patches', str(tmp_path / 'patches'),
                         '--data_dir', str(tmp_path / 'tfds')]) == 0
  builder = tfds.builder('sdo_ar/real', data_dir=str(tmp_path / 'tfds'))
  assert builder.info.metadata['synthetic'] is False
  assert 'SYNTHETIC' not in builder.info.description
  ds = tfds.data_source('sdo_ar/real', data_dir=str(tmp_path / 'tfds'))
  assert len(ds['train']) == 2 and not ds['train'][0]['synthetic']


def test_unreadable_patch_is_skipped_and_recorded(tmp_path, capsys):
  patches = tmp_path / 'patches'
  write_patch_tree(patches, DAYS[:3])
  bad = patches / 'train' / '20120307T000000_hmi.fits'
  bad.write_bytes(bad.read_bytes()[:5000])  # truncated
  assert sdo_build.main(['--patches', str(patches),
                         '--data_dir', str(tmp_path / 'tfds')]) == 0
  out = capsys.readouterr().out
  assert 'skipped 20120307T000000: ' in out and '1 pair(s) skipped' in out
  builder = tfds.builder('sdo_ar', data_dir=str(tmp_path / 'tfds'))
  assert builder.info.splits['train'].num_examples == 2
  assert len(builder.info.metadata['skipped']) == 1


def test_cli_errors_are_one_line(tmp_path, capsys):
  assert sdo_build.main(['--patches', str(tmp_path / 'nope'),
                         '--data_dir', str(tmp_path / 'tfds')]) == 2
  assert capsys.readouterr().err.startswith('error: patch directory')
  (tmp_path / 'empty').mkdir()
  assert sdo_build.main(['--patches', str(tmp_path / 'empty'),
                         '--data_dir', str(tmp_path / 'tfds')]) == 2
  assert 'no manifest.jsonl' in capsys.readouterr().err
  write_patch_tree(tmp_path / 'mixed', DAYS[:1], synthetic=True)
  with open(tmp_path / 'mixed' / 'manifest.jsonl', 'a') as f:
    f.write(json.dumps({'pair_id': '20120601T000000', 'status': 'ok',
                        'split': 'train', 'synthetic': False}) + '\n')
  assert sdo_build.main(['--patches', str(tmp_path / 'mixed'),
                         '--data_dir', str(tmp_path / 'tfds')]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: ') and 'mixes SYNTHETIC and real' in err
  assert err.count('\n') == 1


# --- storage budget on realistic full-size patches --------------------------

@pytest.mark.parametrize('size', [1024, pytest.param(4096,
                                                      marks=pytest.mark.slow)])
def test_bytes_per_pair_within_budget(tmp_path, capsys, size):
  """Full (800, 900) patches from a SYNTHETIC full-disk pair (1024^2 as in
  `make data`; 4096^2 as SDO), through the real `prepare build`.  One
  example per file, so array_record's block rounding is counted in full."""
  import argparse

  from data_prep import build as prep_build
  from data_prep.synthesize import synthesize_pair

  raw, patches = tmp_path / 'raw', tmp_path / 'patches'
  synthesize_pair('2012-02-02T00:00:00', size, 1, str(raw), bad_fraction=0)
  assert prep_build.run(argparse.Namespace(
      raw=str(raw), out=str(patches), workers=1, tolerance=60.0,
      splits=None)) == 0
  builder = sdo_build.build(str(patches), str(tmp_path / 'tfds'))
  n = sum(s.num_examples for s in builder.info.splits.values())
  per_pair = sdo_build.dataset_bytes(builder) / n
  print(f'{size}^2 source: {per_pair / 1e6:.3f} MB per pair')
  assert per_pair <= 2e6
  ds = tfds.data_source('sdo_ar', data_dir=str(tmp_path / 'tfds'))
  ex = ds['train'][0]
  hmi = fits.getdata(patches / 'train' / f'{ex["pair_id"].decode()}_hmi.fits')
  aia = fits.getdata(patches / 'train' / f'{ex["pair_id"].decode()}_aia.fits')
  mask = ex['mask'][..., 0]
  assert mask.mean() > 0.9  # the patch lies on the disk
  assert np.max(np.abs(ex['hmi'][..., 0] - hmi)[mask]) <= 0.05 + 1e-4
  assert np.max(np.abs(ex['aia'][..., 0] - aia)[mask]
                / np.abs(aia)[mask]) <= 2.0**-9
