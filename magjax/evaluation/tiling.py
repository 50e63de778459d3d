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
  image = np.asarray(image)
  if image.ndim != 3:
    raise ValueError(f'expected an (H, W, C) image, got shape {image.shape}')
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  h, w = image.shape[:2]
  ph, pw = max(h, tile), max(w, tile)
  if (ph, pw) != (h, w):
    image = np.pad(image, ((0, ph - h), (0, pw - w), (0, 0)), mode='reflect')

  weights = blend_weights(tile, overlap)
  corners = [(y, x) for y in tile_positions(ph, tile, overlap)
             for x in tile_positions(pw, tile, overlap)]
  acc = None
  wsum = np.zeros((ph, pw), dtype=np.float64)
  out_dtype = None
  for b in range(0, len(corners), batch_size):
    chunk = corners[b:b + batch_size]
    padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
    batch = np.stack([image[y:y + tile, x:x + tile] for y, x in padded])
    out = np.asarray(fn(batch))
    if out.ndim != 4 or out.shape[:3] != (batch_size, tile, tile):
      raise ValueError(
          f'fn must map {batch.shape} to ({batch_size}, {tile}, {tile}, C_out),'
          f' got {out.shape}')
    if acc is None:
      acc = np.zeros((ph, pw, out.shape[-1]), dtype=np.float64)
      out_dtype = np.result_type(out.dtype, np.float32)
    for (y, x), o in zip(chunk, out):
      acc[y:y + tile, x:x + tile] += weights[..., None] * o
      wsum[y:y + tile, x:x + tile] += weights
  result = acc / wsum[..., None]
  return result[:h, :w].astype(out_dtype)
