"""cat-attention: F = concat(x + y, x).

Config strings: `configs/cat.py` (paper), `configs/cat.py:cpu`,
`configs/cat.py:tiny`; see configs/default.py.
"""

from configs import default


def get_config(config_string=None):
  config = default.get_config(config_string)
  config.model.name = 'cat'
  return config
