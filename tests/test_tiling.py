"""Tests for magjax.evaluation.tiling: coverage, weights and exact reconstruction."""

import hypothesis
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from magjax.evaluation import tiling


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(length=st.integers(1, 2000), tile=st.integers(1, 600),
                  frac=st.floats(0.0, 0.99))
def test_tile_positions_cover_the_axis(length, tile, frac):
  overlap = int(frac * tile)
  starts = tiling.tile_positions(length, tile, overlap)
  assert starts[0] == 0
  assert starts == sorted(set(starts))
  if length <= tile:
    assert starts == [0]
    return
  assert starts[-1] == length - tile  # flush with the end
  assert all(0 <= s <= length - tile for s in starts)
  # Consecutive tiles overlap by at least `overlap`: no gap, enough overlap.
  assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))
  covered = np.zeros(length, dtype=bool)
  for s in starts:
    covered[s:s + tile] = True
  assert covered.all()


def test_tile_positions_examples():
  assert tiling.tile_positions(900, 512, 64) == [0, 388]
  assert tiling.tile_positions(800, 512, 64) == [0, 288]
  assert tiling.tile_positions(10, 4, 1) == [0, 3, 6]
  assert tiling.tile_positions(12, 4, 0) == [0, 4, 8]
  assert tiling.tile_positions(3, 8, 2) == [0]
  for bad in ((10, 4, 4), (10, 4, -1), (10, 0, 0)):
    with pytest.raises(ValueError):
      tiling.tile_positions(*bad)


@pytest.mark.parametrize('tile,overlap', [(8, 0), (8, 3), (9, 4), (16, 15),
                                          (512, 64), (1, 0)])
def test_blend_weights(tile, overlap):
  w = tiling.blend_weights(tile, overlap)
  assert w.shape == (tile, tile)
  assert (w > 0).all()
  assert w.max() <= 1.0
  np.testing.assert_allclose(w, w[::-1, ::-1])  # symmetric
  np.testing.assert_allclose(w, w.T)
  row = w[tile // 2] / np.sqrt(w[tile // 2, tile // 2])
  np.testing.assert_allclose(w, np.outer(row, row))  # separable
  if overlap == 0:
    np.testing.assert_array_equal(w, 1.0)
  if tile > 2 * overlap:  # a flat top of ones between the two ramps
    np.testing.assert_array_equal(row[overlap:tile - overlap], 1.0)
  if overlap > 1:  # rising ramp
    ramp = row[:min(overlap, tile // 2)]
    assert (np.diff(ramp) > 0).all()


CASES = [
    # (H, W, C, tile, overlap, batch_size)
    (800, 900, 1, 512, 64, 2),
    (800, 900, 1, 256, 32, 3),
    (5, 7, 2, 16, 4, 1),
    (1, 1, 1, 8, 2, 1),
    (33, 70, 3, 16, 5, 3),
    (64, 64, 1, 64, 0, 1),
    (100, 37, 1, 32, 31, 4),
    (40, 9, 2, 16, 8, 5),
]


@pytest.mark.parametrize('h,w,c,tile,overlap,batch', CASES)
def test_identity_is_exact(h, w, c, tile, overlap, batch):
  image = np.random.default_rng(h * w).normal(size=(h, w, c)).astype(np.float32)
  out = tiling.tiled_apply(lambda x: x, image, tile, overlap, batch)
  assert out.shape == image.shape and out.dtype == np.float32
  np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize('h,w,c,tile,overlap,batch', CASES[1:])
def test_pointwise_fn_is_exact_with_jax(h, w, c, tile, overlap, batch):
  image = np.random.default_rng(7).normal(size=(h, w, c)).astype(np.float32)
  shapes = []

  @jax.jit
  def fn(x):
    return jnp.concatenate([x * 2 + 1, -x[..., :1]], axis=-1)

  def traced(x):
    shapes.append(x.shape)
    return fn(x)

  out = tiling.tiled_apply(traced, image, tile, overlap, batch)
  assert out.shape == (h, w, c + 1)
  np.testing.assert_array_equal(out[..., :c], image * 2 + 1)
  np.testing.assert_array_equal(out[..., c], -image[..., 0])
  # Always full batches (one compilation for a jitted fn), enough to cover.
  n_tiles = (len(tiling.tile_positions(max(h, tile), tile, overlap))
             * len(tiling.tile_positions(max(w, tile), tile, overlap)))
  assert shapes == [(batch, tile, tile, c)] * (-(-n_tiles // batch))


def test_overlaps_are_blended_with_the_weights():
  """A fn whose output differs per tile: each pixel is the weighted mean."""
  h, w, tile, overlap = 20, 13, 8, 3
  ys = tiling.tile_positions(h, tile, overlap)
  xs = tiling.tile_positions(w, tile, overlap)
  corners = [(y, x) for y in ys for x in xs]
  image = np.zeros((h, w, 1), np.float32)
  image[:, :, 0] = np.arange(h * w).reshape(h, w)  # identifies the tile

  def fn(batch):
    # Output: the tile's index (from its top-left pixel), constant per tile.
    idx = [corners.index(divmod(int(b[0, 0, 0]), w)) for b in batch]
    return np.array(idx, np.float64)[:, None, None, None] * np.ones_like(batch)

  out = tiling.tiled_apply(fn, image, tile, overlap, batch_size=4)
  wt = tiling.blend_weights(tile, overlap)
  num = np.zeros((h, w))
  den = np.zeros((h, w))
  for k, (y, x) in enumerate(corners):
    num[y:y + tile, x:x + tile] += k * wt
    den[y:y + tile, x:x + tile] += wt
  assert (den > 0).all()  # every pixel covered
  np.testing.assert_allclose(out[..., 0], num / den, rtol=1e-12)
  # Pixels in overlaps really mix tiles.
  assert len(np.unique(np.round(out, 9))) > len(corners)


def test_small_images_are_reflect_padded():
  image = np.arange(12, dtype=np.float32).reshape(3, 4, 1)
  seen = []

  def fn(x):
    seen.append(x.copy())
    return x

  tiling.tiled_apply(fn, image, 8, 2, 1)
  expected = np.pad(image, ((0, 5), (0, 4), (0, 0)), mode='reflect')
  np.testing.assert_array_equal(seen[0][0], expected)


def test_bad_fn_output_raises():
  image = np.zeros((20, 20, 1), np.float32)
  with pytest.raises(ValueError):
    tiling.tiled_apply(lambda x: x[:, ::2, ::2], image, 8, 2, 2)
  with pytest.raises(ValueError):
    tiling.tiled_apply(lambda x: x, image[..., 0], 8, 2, 2)
