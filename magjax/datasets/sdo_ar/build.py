"""Build the sdo_ar TFDS data set from a patch tree (idempotent).

  python -m magjax.datasets.sdo_ar.build --patches data/patches \
      --data_dir data/tfds [--overwrite]

The config (``synthetic`` or ``real``) follows the manifest's ``synthetic``
flags; a tree mixing both is refused.  An existing build made from the same
manifest content is left as it is; a changed manifest (or ``--overwrite``)
rebuilds it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import tensorflow_datasets as tfds

from magjax.datasets.sdo_ar import sdo_ar_dataset_builder as sdo_ar


def pick_config(patches: str) -> str:
  """'synthetic' or 'real' from the manifest; ValueError if mixed or empty."""
  records = sdo_ar.ok_records(patches)
  if not records:
    raise ValueError(f'no pair with status ok in {patches}/manifest.jsonl')
  flags = {bool(r.get('synthetic')) for r in records}
  if len(flags) > 1:
    raise ValueError(f'{patches} mixes SYNTHETIC and real pairs; build them '
                     'into separate patch trees')
  return 'synthetic' if flags.pop() else 'real'


def dataset_bytes(builder: tfds.core.DatasetBuilder) -> int:
  """Bytes of the data files (array_record shards) of a prepared build."""
  data_dir = os.fspath(builder.data_dir)
  return sum(os.path.getsize(os.path.join(data_dir, name))
             for name in os.listdir(data_dir) if '.array_record' in name)


def build(patches: str, data_dir: str, overwrite: bool = False):
  """Prepares the data set; returns the builder.

  An existing build is kept when it was made from the same manifest content
  (``metadata['patches_fingerprint']``), rebuilt otherwise or on
  ``overwrite``.
  """
  name = f'sdo_ar/{pick_config(patches)}'
  builder = tfds.builder(name, data_dir=data_dir, file_format='array_record')
  if builder.is_prepared() and not overwrite:
    wanted = sdo_ar.fingerprint(sdo_ar.ok_records(patches))
    if builder.info.metadata.get('patches_fingerprint') != wanted:
      print(f'{name}: the manifest changed since the last build: rebuilding')
      overwrite = True
  if overwrite and os.path.isdir(os.fspath(builder.data_dir)):
    shutil.rmtree(os.fspath(builder.data_dir))
    builder = tfds.builder(name, data_dir=data_dir,
                           file_format='array_record')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=patches))
  return builder


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(
      prog='python -m magjax.datasets.sdo_ar.build',
      description=__doc__.split('\n', 1)[0])
  parser.add_argument('--patches', required=True,
                      help='patch tree written by `prepare build`')
  parser.add_argument('--data_dir', required=True, help='TFDS data dir')
  parser.add_argument('--overwrite', action='store_true',
                      help='rebuild even if this version is already built')
  args = parser.parse_args(argv)
  if not os.path.isdir(args.patches):
    print(f'error: patch directory not found: {args.patches}', file=sys.stderr)
    return 2
  start = time.monotonic()
  try:
    builder = build(args.patches, args.data_dir, args.overwrite)
  except (ValueError, FileNotFoundError) as e:
    print(f'error: {" ".join(str(e).split())}', file=sys.stderr)
    return 2
  seconds = time.monotonic() - start
  splits = {name: split.num_examples
            for name, split in builder.info.splits.items()}
  total = sum(splits.values())
  size = dataset_bytes(builder)
  tag = 'SYNTHETIC ' if builder.builder_config.synthetic else ''
  print(f'sdo_ar/{builder.builder_config.name}: {tag}{total} examples '
        f'{splits} in {builder.data_dir}; {size / max(total, 1) / 1e6:.2f} '
        f'MB/pair on disk; {seconds:.1f} s')
  skipped = builder.info.metadata.get('skipped', [])
  for line in skipped:
    print(f'skipped {line}')
  if skipped:
    print(f'{len(skipped)} pair(s) skipped (see metadata.json)')
  return 0


if __name__ == '__main__':
  sys.exit(main())
