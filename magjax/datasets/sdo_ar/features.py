"""Compact on-disk encodings for the sdo_ar image features.

A float32 (800, 900) AIA + HMI pair is 5.8 MB raw; the data set's budget is
2 MB per pair on disk.  :class:`PackedArray` stores an array in a quantised
dtype and compresses it with Blosc (zstd, byte shuffle; numcodecs, the Zarr
codec library), then hands back float32 (or bool) NumPy arrays on read:

* ``'int16'`` with a ``step``: ``round(x / step)`` as int16, exact to
  ``step / 2``.  HMI uses step 0.1 G, HMI's own BSCALE, so the error
  (<= 0.05 G) is far below the instrument noise (~5-10 G); +-200 G needs
  only +-2000 of the int16 range.
* ``'float16'`` with ``mantissa_bits`` (1-10; 10 = plain float16): the
  float32 mantissa is first rounded to that many bits (``numcodecs.BitRound``,
  round-to-nearest), then cast exactly to float16; relative error
  <= 2**-(mantissa_bits + 1).  Values beyond +-65504 are clipped.  Every
  dropped bit saves ~90 kB per (800, 900) AIA patch: the noise bits that no
  compressor can squeeze.  AIA uses 8 bits: <= 0.2 %, an order of magnitude
  below AIA 304's photon noise (>= 3 % per pixel) and calibration
  uncertainty.
* ``'bool'``: ``np.packbits``, 1 bit per pixel before compression.

Values are NaN-free by contract (the builder zeroes pixels outside the mask);
NaN is rejected at encoding rather than silently changed.  Why not the TFDS
``Tensor(encoding='zlib')``: on float32 it saved 8 % and cut reads from about
60 to 20 samples/s (measured on the 2-core machine, tfds 4.9.10);
quantising first, then Blosc, is both smaller and fast.
"""

from __future__ import annotations

import numcodecs
import numpy as np
import tensorflow_datasets as tfds

_FLOAT16_MAX = float(np.finfo(np.float16).max)
_KINDS = ('int16', 'float16', 'bool')


def _codec(kind: str) -> numcodecs.Blosc:
  shuffle = numcodecs.Blosc.NOSHUFFLE if kind == 'bool' else numcodecs.Blosc.SHUFFLE
  return numcodecs.Blosc(cname='zstd', clevel=5, shuffle=shuffle)


class PackedArray(tfds.features.FeatureConnector):
  """A fixed-shape array stored quantised + compressed, read back as NumPy.

  Decoded dtype: float32 for ``'int16'`` and ``'float16'``, bool for
  ``'bool'``.  NumPy path only (``tfds.data_source``); no TensorFlow.
  """

  def __init__(self, shape, kind: str, step: float = 1.0,
               mantissa_bits: int = 10, doc=None):
    super().__init__(doc=doc)
    if kind not in _KINDS:
      raise ValueError(f'kind must be one of {_KINDS}, got {kind!r}')
    if not step > 0:
      raise ValueError(f'step must be > 0, got {step}')
    if not 1 <= mantissa_bits <= 10:
      raise ValueError(f'mantissa_bits must be in 1..10, got {mantissa_bits}')
    self._shape = tuple(int(n) for n in shape)
    self._kind = kind
    self._step = float(step)
    self._mantissa_bits = int(mantissa_bits)

  @property
  def _decoded_dtype(self):
    return np.bool_ if self._kind == 'bool' else np.float32

  def get_tensor_info(self) -> tfds.features.TensorInfo:
    return tfds.features.TensorInfo(shape=self._shape,
                                    dtype=self._decoded_dtype)

  def get_serialized_info(self) -> tfds.features.TensorInfo:
    return tfds.features.TensorInfo(shape=(), dtype=np.object_)

  def encode_example(self, example_data) -> bytes:
    """Array of the declared shape -> compressed bytes."""
    x = np.asarray(example_data)
    if x.shape != self._shape:
      raise ValueError(f'expected shape {self._shape}, got {x.shape}')
    if self._kind == 'bool':
      packed = np.packbits(x.astype(bool), axis=None)
    else:
      x = x.astype(np.float32)
      if np.isnan(x).any():
        raise ValueError('NaN in a PackedArray: zero invalid pixels first')
      if self._kind == 'int16':
        packed = np.clip(np.rint(x / self._step), -32768, 32767).astype('<i2')
      else:
        x = np.clip(x, -_FLOAT16_MAX, _FLOAT16_MAX)
        if self._mantissa_bits < 10:
          x = np.frombuffer(numcodecs.BitRound(self._mantissa_bits).encode(x),
                            np.float32)
          # Rounding up may pass float16's largest value: clip again.
          x = np.clip(x, -_FLOAT16_MAX, _FLOAT16_MAX)
        packed = x.astype('<f2')
    return bytes(_codec(self._kind).encode(np.ascontiguousarray(packed)))

  def decode_example_np(self, example_data) -> np.ndarray:
    """Compressed bytes -> float32 (or bool) array of the declared shape."""
    raw = _codec(self._kind).decode(bytes(example_data))
    size = int(np.prod(self._shape))
    if self._kind == 'bool':
      flat = np.unpackbits(np.frombuffer(raw, np.uint8), count=size)
      return flat.astype(bool).reshape(self._shape)
    if self._kind == 'int16':
      flat = np.frombuffer(raw, '<i2').astype(np.float32) * np.float32(
          self._step)
    else:
      flat = np.frombuffer(raw, '<f2').astype(np.float32)
    return flat.reshape(self._shape)

  def decode_example(self, tfexample_data):
    raise NotImplementedError(
        'sdo_ar is read with tfds.data_source (NumPy); no TensorFlow path')

  @classmethod
  def from_json_content(cls, value, doc=None) -> 'PackedArray':
    return cls(shape=tuple(value['shape']), kind=value['kind'],
               step=value['step'], mantissa_bits=value['mantissa_bits'],
               doc=doc)

  def to_json_content(self) -> dict:
    return {'shape': list(self._shape), 'kind': self._kind,
            'step': self._step, 'mantissa_bits': self._mantissa_bits}

  def _additional_repr_info(self) -> dict:
    return {'shape': self._shape, 'kind': self._kind, 'step': self._step,
            'mantissa_bits': self._mantissa_bits}
