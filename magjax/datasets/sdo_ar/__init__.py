"""The ``sdo_ar`` TFDS data set; importing this package registers it."""

from magjax.datasets.sdo_ar.sdo_ar_dataset_builder import Builder

__all__ = ['Builder']
