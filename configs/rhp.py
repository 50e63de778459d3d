"""RHP-attention: F = concat(x * (1 + y), x) (Residual Hadamard Product).

Config strings: `configs/rhp.py` (paper), `configs/rhp.py:cpu`,
`configs/rhp.py:tiny`; see configs/default.py.
"""

from configs import default


def get_config(config_string=None):
  config = default.get_config(config_string)
  config.model.name = 'rhp'
  return config
