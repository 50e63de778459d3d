"""Baseline pix2pix (no attention).

Config strings: `configs/pix2pix.py` (paper), `configs/pix2pix.py:cpu`,
`configs/pix2pix.py:tiny`; see configs/default.py.
"""

from configs import default


def get_config(config_string=None):
  config = default.get_config(config_string)
  config.model.name = 'pix2pix'
  return config
