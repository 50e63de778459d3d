"""Tiled inference with overlap blending, for images of any size.

The U-Net takes inputs whose sides are multiples of 2**num_downs, so a whole
(800, 900) patch is generated tile by tile: square tiles of side `tile`
overlap by at least `overlap` pixels, each output tile is weighted by a
separable cosine window (`blend_weights`), and every pixel's value is the
weighted sum of the tiles that cover it divided by the sum of their
weights. The weights are > 0 everywhere, so every pixel is covered, and a
network that acts pixel-wise (or the identity) is reproduced exactly.

Images smaller than a tile along an axis are reflect-padded at the end of
that axis up to the tile size and the output is cropped back.
"""

import numpy as np


def tile_positions(length, tile, overlap):
  """Start offsets of tiles covering [0, length) along one axis.

  Tiles step by tile - overlap from 0; the last one is placed flush with the
  end (start = length - tile), so neighbouring tiles overlap by at least
  `overlap`. One tile at 0 when length <= tile (the caller pads).
  """
  if tile < 1:
    raise ValueError(f'tile must be >= 1, got {tile}')
  if not 0 <= overlap < tile:
    raise ValueError(f'overlap must be in [0, tile), got {overlap} (tile {tile})')
  if length < 1:
    raise ValueError(f'length must be >= 1, got {length}')
  if length <= tile:
    return [0]
  stride = tile - overlap
  starts = list(range(0, length - tile, stride))
  starts.append(length - tile)
  return starts


def blend_weights(tile, overlap):
  """(tile, tile) float64 blending window, > 0 everywhere.

  Separable: the outer product of a 1-D window that rises as a raised
  cosine over the first `overlap` pixels, is 1 in the middle and falls
  symmetrically over the last `overlap` pixels (pixel centres, so the
  smallest weight is 0.5 - 0.5 cos(pi / (2 overlap)) > 0). All ones when
  overlap is 0.
  """
  if not 0 <= overlap < tile:
    raise ValueError(f'overlap must be in [0, tile), got {overlap} (tile {tile})')
  w = np.ones(tile, dtype=np.float64)
  ramp_len = min(overlap, tile // 2)
  if ramp_len > 0:
    i = np.arange(ramp_len, dtype=np.float64)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (i + 0.5) / ramp_len)
    w[:ramp_len] = ramp
    w[tile - ramp_len:] = np.minimum(w[tile - ramp_len:], ramp[::-1])
  return np.outer(w, w)


class Tiled:
  """One image cut into overlapping tiles, and the blend of their outputs.

  Tiles from several images can be batched together (batch predict): take
  `tiles()`, run them through the network in any grouping, hand each
  output back with `add(index, output)`, then `result()`.
  """

  def __init__(self, image, tile, overlap):
    image = np.asarray(image)
    if image.ndim != 3:
      raise ValueError(f'expected an (H, W, C) image, got shape {image.shape}')
    self.shape = image.shape[:2]
    h, w = self.shape
    ph, pw = max(h, tile), max(w, tile)
    if (ph, pw) != (h, w):
      image = np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)),
                     mode='reflect')
    self.image, self.tile = image, tile
    self.weights = blend_weights(tile, overlap)
    self.corners = [(y, x) for y in tile_positions(ph, tile, overlap)
                    for x in tile_positions(pw, tile, overlap)]
    self._acc = None
    self._wsum = np.zeros((ph, pw), dtype=np.float64)
    self._dtype = None
    self.pending = len(self.corners)

  def tiles(self):
    """(n, tile, tile, C): every tile, in the order of `corners`."""
    t = self.tile
    return np.stack([self.image[y:y + t, x:x + t] for y, x in self.corners])

  def add(self, index, output):
    """Blends the network's (tile, tile, C_out) output of tile `index`."""
    output = np.asarray(output)
    t = self.tile
    if output.ndim != 3 or output.shape[:2] != (t, t):
      raise ValueError(f'a tile output must be ({t}, {t}, C_out), got '
                       f'{output.shape}')
    if self._acc is None:
      self._acc = np.zeros(self._wsum.shape + (output.shape[-1],),
                           dtype=np.float64)
      self._dtype = np.result_type(output.dtype, np.float32)
    y, x = self.corners[index]
    self._acc[y:y + t, x:x + t] += self.weights[..., None] * output
    self._wsum[y:y + t, x:x + t] += self.weights
    self.pending -= 1

  def result(self):
    """(H, W, C_out): the weighted average of the tile outputs."""
    if self.pending:
      raise ValueError(f'{self.pending} tiles have no output yet')
    h, w = self.shape
    return (self._acc / self._wsum[..., None])[:h, :w].astype(self._dtype)


def tiled_apply(fn, image, tile, overlap, batch_size=1):
  """Applies `fn` to overlapping tiles of `image` and blends the outputs.

  Args:
    fn: maps (N, tile, tile, C) -> (N, tile, tile, C_out), NumPy or JAX
      arrays; always called with N == batch_size (the last batch is filled
      up with repeats of its last tile, whose outputs are discarded), so a
      jitted fn compiles once.
    image: (H, W, C) array.
    tile: tile side (a multiple of 2**num_downs for the U-Net).
    overlap: minimum overlap of neighbouring tiles, in [0, tile).
    batch_size: tiles per call of fn.

  Returns:
    (H, W, C_out) array in fn's output dtype (float32 at least), the
    weighted average of the tile outputs covering each pixel.
  """
  return tiled_apply_many(fn, [image], tile, overlap, batch_size)[0]


def tiled_apply_many(fn, images, tile, overlap, batch_size=1):
  """`tiled_apply` of several images whose tiles share the calls of `fn`
  (batch predict's grouping): [(H_i, W_i, C_out)]."""
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  tiled = [Tiled(image, tile, overlap) for image in images]
  queue = [(t, i, x) for t in tiled for i, x in enumerate(t.tiles())]
  for b in range(0, len(queue), batch_size):
    chunk = queue[b:b + batch_size]
    batch = np.stack([x for _, _, x in chunk]
                     + [chunk[-1][2]] * (batch_size - len(chunk)))
    out = np.asarray(fn(batch))
    if out.ndim != 4 or out.shape[:3] != (batch_size, tile, tile):
      raise ValueError(
          f'fn must map {batch.shape} to ({batch_size}, {tile}, {tile}, C_out),'
          f' got {out.shape}')
    for (t, i, _), o in zip(chunk, out):
      t.add(i, o)
  return [t.result() for t in tiled]
