"""magjax: SDO/AIA 304 A -> HMI line-of-sight magnetograms with GANs in JAX/Flax."""
