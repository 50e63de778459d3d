"""magjax: SDO/AIA 304 A -> HMI line-of-sight magnetograms with GANs in JAX/Flax.

Layers, each importing only those below it (tests/test_layers.py; the map is
in docs/ARCHITECTURE.md): `kernels` < `models` < the data, config and
checkpoint modules < `evaluation` < `training` < `predict`.
"""

from magjax_common import version

__all__ = ['version']
