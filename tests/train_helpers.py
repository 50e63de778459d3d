"""Shared by the training tests: a small in-memory source and config paths."""

import os

import numpy as np

from magjax import config_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_config(variant='rhp', config_string='tiny'):
  """get_config(config_string) of configs/<variant>.py, as config_flags does."""
  path = os.path.join(ROOT, 'configs', f'{variant}.py')
  return config_utils.load_config_file(f'{path}:{config_string or ""}')


def memory_source(num_examples=3, height=40, width=48, seed=0, nan_at=None,
                  synthetic=True):
  """A list of sdo_ar-like examples: AIA in DN/s, HMI in gauss, a disk mask
  and the SYNTHETIC flag (`synthetic`; None leaves the feature out).

  nan_at: optional example index whose valid AIA pixels are all NaN.
  """
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:height, :width]
  examples = []
  for i in range(num_examples):
    aia = 10 ** rng.uniform(0.5, 3.5, (height, width, 1))
    hmi = rng.normal(0, 150, (height, width, 1))
    mask = ((yy - height / 2) ** 2 + (xx - width / 2) ** 2
            < (0.6 * width) ** 2)[..., None]
    if i == nan_at:
      aia[...] = np.nan
    example = {'aia': aia.astype(np.float32),
               'hmi': hmi.astype(np.float32), 'mask': mask}
    if synthetic is not None:
      example['synthetic'] = np.bool_(synthetic)
    examples.append(example)
  return examples


def step_of_first_use(config, num_examples=3, height=40, width=48):
  """(example, step): the memory_source example first used latest, and that
  step (where a NaN planted in that example first reaches training)."""
  from magjax import input_pipeline  # pylint: disable=g-import-not-at-top
  sampler = input_pipeline.BatchSampler(num_examples, (height, width),
                                        config.batch_size, config.crop_size,
                                        config.seed)
  first = {}
  for step in range(num_examples):
    for index, _, _ in sampler.rows(step):
      first.setdefault(index, step)
  return max(first.items(), key=lambda item: item[1])


def parse_config(config_arg, overrides=()):
  """The config `--config=<ROOT>/<config_arg> <overrides>` gives, parsed by
  ml_collections.config_flags exactly as train.py parses it."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  argv = ['prog', f'--config={os.path.join(ROOT, config_arg)}', *overrides]
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'test', flag_values=values,
                                  lock_config=True, sys_argv=argv)
  values(argv)
  return values.config
