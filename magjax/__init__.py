"""magjax: SDO/AIA 304 A -> HMI line-of-sight magnetograms with GANs in JAX/Flax."""

from importlib import metadata


def version():
  """The installed magjax version, for provenance ('unknown' outside an install)."""
  try:
    return metadata.version('magjax')
  except metadata.PackageNotFoundError:
    return 'unknown'
