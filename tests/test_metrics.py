"""Tests for magjax.evaluation.metrics: against scikit-image, hand computations, properties."""

import math
import types

import hypothesis
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio as sk_psnr
from skimage.metrics import structural_similarity as sk_ssim

from magjax.evaluation import metrics

KWARGS = dict(saturation=200.0, ssim_window=11, ssim_sigma=1.5, binning=2,
              strong_field=100.0)


def _sk_ssim(pred, target, c1, c2):
  """skimage SSIM with Wang et al.'s settings and absolute constants c1, c2."""
  return sk_ssim(target, pred, gaussian_weights=True, sigma=1.5, win_size=11,
                 use_sample_covariance=False, data_range=255,
                 K1=math.sqrt(c1) / 255, K2=math.sqrt(c2) / 255)


def _magnetogram(shape, seed):
  """A real-looking magnetogram (gauss): bipolar Gaussian spots plus noise."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:shape[0], :shape[1]].astype(np.float64)
  b = rng.normal(0.0, 8.0, shape)
  for _ in range(6):
    y0, x0 = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
    s = rng.uniform(2.0, 8.0)
    amp = rng.uniform(200.0, 1500.0) * rng.choice([-1, 1])
    b += amp * np.exp(-((yy - y0) ** 2 + (xx - x0) ** 2) / (2 * s * s))
  return b


def _pairs():
  """(name, pred, target) on the 0..255 scale: random and structured."""
  rng = np.random.default_rng(1)
  h, w = 64, 80
  yy, xx = np.mgrid[:h, :w].astype(np.float64)
  out = []
  a = rng.uniform(0, 255, (h, w))
  out.append(('random', rng.uniform(0, 255, (h, w)), a))
  out.append(('random_noisy', np.clip(a + rng.normal(0, 20, a.shape), 0, 255), a))
  grad = 255.0 * (xx / (w - 1)) * (0.3 + 0.7 * yy / (h - 1))
  out.append(('gradient', np.clip(grad[:, ::-1] * 0.8 + 10, 0, 255), grad))
  blobs = 40 + 200 * np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 60.0)
  blobs2 = 40 + 180 * np.exp(-((yy - 23) ** 2 + (xx - 33) ** 2) / 80.0)
  out.append(('blobs', blobs2, blobs))
  target = metrics.to_byte_scale(_magnetogram((h, w), 2))
  pred = metrics.to_byte_scale(
      0.7 * _magnetogram((h, w), 2) + rng.normal(0, 15, (h, w)))
  out.append(('magnetogram', pred, target))
  out.append(('constant_vs_blobs', np.full((h, w), 127.5), blobs))
  return out


PAIRS = _pairs()


@pytest.mark.parametrize('name,pred,target', PAIRS, ids=[p[0] for p in PAIRS])
def test_psnr_matches_skimage(name, pred, target):
  del name
  ref = sk_psnr(target, pred, data_range=255)
  assert metrics.psnr(pred, target) == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize('name,pred,target', PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize('constants', [metrics.SSIM_WANG, metrics.SSIM_PAPER],
                         ids=['wang', 'paper'])
def test_ssim_matches_skimage(name, pred, target, constants):
  del name
  c1, c2 = constants
  ref = _sk_ssim(pred, target, c1, c2)
  got = metrics.ssim(pred, target, c1=c1, c2=c2, window=11, sigma=1.5)
  assert got == pytest.approx(ref, rel=1e-6)


def test_ssim_constants():
  assert metrics.SSIM_PAPER == (2.55, 7.65)
  assert metrics.SSIM_WANG == pytest.approx(((0.01 * 255) ** 2,
                                             (0.03 * 255) ** 2), rel=1e-12)
  # The two conventions give different numbers on the same pair.
  _, pred, target = PAIRS[4]
  wang = metrics.ssim(pred, target, c1=6.5025, c2=58.5225)
  paper = metrics.ssim(pred, target, c1=2.55, c2=7.65)
  assert abs(wang - paper) > 1e-4


def test_identical_images():
  _, _, target = PAIRS[4]
  assert metrics.psnr(target, target) == math.inf
  for c1, c2 in (metrics.SSIM_WANG, metrics.SSIM_PAPER):
    assert metrics.ssim(target, target, c1=c1, c2=c2) == pytest.approx(1.0, abs=1e-12)
  assert metrics.pearson_cc_binned(target, target) == pytest.approx(1.0)


def test_to_byte_scale():
  b = np.array([-500.0, -200.0, 0.0, 100.0, 200.0, 999.0, np.nan])
  got = metrics.to_byte_scale(b, saturation=200.0)
  np.testing.assert_allclose(got[:6], [0, 0, 127.5, 191.25, 255, 255])
  assert np.isnan(got[6])
  np.testing.assert_allclose(metrics.to_byte_scale(np.array([50.0]), 100.0),
                             [191.25])


def test_cc_binned_hand_computation():
  pred = np.array([[1., 2., 3., 4., 9.],
                   [5., 6., 7., 8., 9.],
                   [2., 0., 1., 1., 9.],
                   [4., 2., 3., 7., 9.],
                   [9., 9., 9., 9., 9.]])
  target = np.array([[0., 0., 1., 3., 7.],
                     [2., 2., 1., 3., 7.],
                     [5., 5., 0., 0., 7.],
                     [5., 1., 2., 2., 7.],
                     [7., 7., 7., 7., 7.]])
  # 2x2 bin means; the trailing row and column do not fill a bin.
  p = [3.5, 5.5, 2.0, 3.0]
  t = [1.0, 2.0, 4.0, 1.0]
  expected = np.corrcoef(p, t)[0, 1]
  assert metrics.pearson_cc_binned(pred, target, binning=2) == pytest.approx(
      expected, rel=1e-12)
  # A bin with one invalid pixel is dropped entirely.
  mask = np.ones_like(pred, dtype=bool)
  mask[3, 3] = False
  expected3 = np.corrcoef(p[:3], t[:3])[0, 1]
  assert metrics.pearson_cc_binned(pred, target, mask, 2) == pytest.approx(
      expected3, rel=1e-12)
  # Binning 1 is the plain pixel CC.
  assert metrics.pearson_cc_binned(pred, target, binning=1) == pytest.approx(
      np.corrcoef(pred.ravel(), target.ravel())[0, 1], rel=1e-12)
  # Undefined with a constant image.
  assert math.isnan(metrics.pearson_cc_binned(np.ones((4, 4)), target[:4, :4]))


def test_masked_ssim_is_ssim_of_the_valid_rectangle():
  _, pred, target = PAIRS[4]
  mask = np.zeros(target.shape, dtype=bool)
  mask[5:50, 3:70] = True
  pred = pred.copy()
  pred[~mask] = np.nan  # never read
  for c1, c2 in (metrics.SSIM_WANG, metrics.SSIM_PAPER):
    ref = _sk_ssim(pred[5:50, 3:70], target[5:50, 3:70], c1, c2)
    got = metrics.ssim(pred, target, mask, c1=c1, c2=c2)
    assert got == pytest.approx(ref, rel=1e-6)
  assert metrics.psnr(pred, target, mask) == pytest.approx(
      sk_psnr(target[5:50, 3:70], pred[5:50, 3:70], data_range=255), rel=1e-9)


def test_masked_pixels_change_nothing():
  rng = np.random.default_rng(3)
  target = _magnetogram((48, 56), 4)
  pred = 0.8 * target + rng.normal(0, 20, target.shape)
  yy, xx = np.mgrid[:48, :56]
  mask = (yy - 24) ** 2 + (xx - 28) ** 2 < 22 ** 2  # a disk
  base = metrics.sample_metrics(pred, target, mask, **KWARGS)
  assert all(np.isfinite(v) for v in base.values()), base
  p2, t2 = pred.copy(), target.copy()
  p2[~mask] = rng.uniform(-1e4, 1e4, (~mask).sum())
  t2[~mask] = rng.uniform(-1e4, 1e4, (~mask).sum())
  p2[0, 0], t2[0, 1] = np.nan, np.inf
  assert metrics.sample_metrics(p2, t2, mask, **KWARGS) == base
  # Changing one valid pixel changes every metric that sees it.
  p3 = pred.copy()
  p3[24, 28] += 150.0
  changed = metrics.sample_metrics(p3, target, mask, **KWARGS)
  for k in ('psnr', 'ssim_paper', 'ssim_wang', 'cc_binned', 'rmse_gauss'):
    assert changed[k] != base[k], k


def test_nan_target_is_invalid():
  target = _magnetogram((40, 40), 5)
  pred = target + 10.0
  nan_target = target.copy()
  nan_target[:, :8] = np.nan  # off-disk
  mask = np.ones(target.shape, dtype=bool)
  mask[:, :8] = False
  assert (metrics.sample_metrics(pred, nan_target, None, **KWARGS)
          == metrics.sample_metrics(pred, target, mask, **KWARGS))


def test_nan_prediction_on_valid_pixel_is_not_hidden():
  target = _magnetogram((40, 40), 6)
  pred = target.copy()
  pred[20, 20] = np.nan
  assert math.isnan(metrics.rmse_gauss(pred, target))
  assert math.isnan(metrics.psnr(pred, target))


def test_physical_metrics_hand_example():
  target = np.array([[150., -300., 50.],
                     [-120., 0., 400.]])
  pred = np.array([[100., 200., -20.],
                   [-130., 5., 350.]])
  mask = np.array([[True, True, True],
                   [True, True, False]])
  # valid: 150 -300 50 -120 0 (400 masked)
  assert metrics.unsigned_flux_ratio(pred, target, mask) == pytest.approx(
      (100 + 200 + 20 + 130 + 5) / (150 + 300 + 50 + 120 + 0))
  # strong (|t| > 100): 150 (+,+), -300 (-,+), -120 (-,-): 2 of 3 agree.
  assert metrics.polarity_agreement(pred, target, mask, 100.0) == pytest.approx(2 / 3)
  assert metrics.strong_field_cc(pred, target, mask, 100.0) == pytest.approx(
      np.corrcoef([100, 200, -130], [150, -300, -120])[0, 1])
  assert metrics.rmse_gauss(pred, target, mask) == pytest.approx(
      math.sqrt((50 ** 2 + 500 ** 2 + 70 ** 2 + 10 ** 2 + 5 ** 2) / 5))
  # Unmasked, 400 joins the strong pixels and agrees.
  assert metrics.polarity_agreement(pred, target, None, 100.0) == pytest.approx(3 / 4)
  # A higher threshold leaves only -300, which disagrees.
  assert metrics.polarity_agreement(pred, target, mask, 250.0) == 0.0
  assert math.isnan(metrics.polarity_agreement(pred, target, mask, 1000.0))
  assert math.isnan(metrics.strong_field_cc(pred, target, mask, 1000.0))


def test_sample_metrics_uses_byte_scale_and_gauss():
  target = _magnetogram((40, 44), 7)
  pred = 0.5 * target
  got = metrics.sample_metrics(pred, target, None, **KWARGS)
  assert tuple(got) == metrics.METRIC_NAMES
  pb, tb = metrics.to_byte_scale(pred), metrics.to_byte_scale(target)
  assert got['psnr'] == pytest.approx(sk_psnr(tb, pb, data_range=255), rel=1e-9)
  assert got['ssim_paper'] == pytest.approx(_sk_ssim(pb, tb, 2.55, 7.65), rel=1e-6)
  assert got['ssim_wang'] == pytest.approx(_sk_ssim(pb, tb, 6.5025, 58.5225), rel=1e-6)
  assert got['cc_binned'] == pytest.approx(metrics.pearson_cc_binned(pb, tb, None, 2))
  assert got['rmse_gauss'] == pytest.approx(np.sqrt(np.mean((0.5 * target) ** 2)))
  assert got['flux_ratio'] == pytest.approx(0.5)
  assert got['polarity_agreement'] == 1.0
  assert got['strong_cc'] == pytest.approx(1.0)
  # (H, W, 1) inputs are accepted.
  got3 = metrics.sample_metrics(pred[..., None], target[..., None],
                                np.ones(target.shape + (1,), bool), **KWARGS)
  assert got3 == got


def test_metric_kwargs_from_config():
  cfg = types.SimpleNamespace(hmi_saturation=200.0, ssim_window=11,
                              ssim_sigma=1.5, cc_binning=2, strong_field=100.0)
  assert metrics.metric_kwargs(cfg) == KWARGS


def test_summarise_is_nan_aware():
  samples = [
      {'psnr': 20.0, 'strong_cc': 0.5},
      {'psnr': 22.0, 'strong_cc': math.nan},
      {'psnr': 24.0, 'strong_cc': 0.7},
      {'psnr': math.nan, 'strong_cc': math.nan},
  ]
  s = metrics.summarise(samples)
  assert s['psnr']['n'] == 3
  assert s['psnr']['mean'] == pytest.approx(22.0)
  assert s['psnr']['std'] == pytest.approx(np.std([20.0, 22.0, 24.0]))
  assert s['psnr']['se'] == pytest.approx(np.std([20.0, 22.0, 24.0], ddof=1)
                                          / np.sqrt(3))
  assert s['strong_cc'] == {'mean': pytest.approx(0.6),
                            'std': pytest.approx(0.1),
                            'se': pytest.approx(0.1), 'n': 2}
  one = metrics.summarise([{'x': 1.0}])['x']
  assert one['n'] == 1 and math.isnan(one['se'])  # no error from one sample
  empty = metrics.summarise([{'x': math.nan}])['x']
  assert empty['n'] == 0 and math.isnan(empty['mean'])


def test_ssim_too_small_image_raises():
  with pytest.raises(ValueError):
    metrics.ssim(np.zeros((8, 30)), np.zeros((8, 30)), c1=1.0, c2=1.0)
  with pytest.raises(ValueError):
    metrics.ssim(np.zeros((30, 30)), np.zeros((30, 30)), c1=1.0, c2=1.0, window=10)


_images = hnp.arrays(np.float64, st.tuples(st.integers(11, 24), st.integers(11, 24)),
                     elements=st.floats(0, 255, allow_nan=False))


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(data=st.data(), image=_images)
def test_ssim_is_symmetric_and_bounded(data, image):
  other = data.draw(hnp.arrays(np.float64, image.shape,
                               elements=st.floats(0, 255, allow_nan=False)))
  for c1, c2 in (metrics.SSIM_WANG, metrics.SSIM_PAPER):
    ab = metrics.ssim(image, other, c1=c1, c2=c2)
    ba = metrics.ssim(other, image, c1=c1, c2=c2)
    assert ab == pytest.approx(ba, rel=1e-9, abs=1e-12)
    assert ab <= 1.0 + 1e-12


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(image=_images, seed=st.integers(0, 2 ** 31),
                  s1=st.floats(0.01, 10.0), factor=st.floats(1.01, 10.0))
def test_psnr_decreases_with_added_noise(image, seed, s1, factor):
  noise = np.random.default_rng(seed).normal(size=image.shape)
  less = metrics.psnr(image + s1 * noise, image)
  more = metrics.psnr(image + s1 * factor * noise, image)
  assert more < less
  assert less - more == pytest.approx(20 * math.log10(factor), rel=1e-6)


def test_full_patch_size_matches_skimage():
  """The (800, 900) patch size of the data set, both SSIM conventions."""
  target = _magnetogram((800, 900), 8)
  pred = 0.6 * target + np.random.default_rng(8).normal(0, 30, target.shape)
  got = metrics.sample_metrics(pred, target, None, **KWARGS)
  pb, tb = metrics.to_byte_scale(pred), metrics.to_byte_scale(target)
  assert got['ssim_paper'] == pytest.approx(_sk_ssim(pb, tb, 2.55, 7.65), rel=1e-6)
  assert got['ssim_wang'] == pytest.approx(_sk_ssim(pb, tb, 6.5025, 58.5225), rel=1e-6)
  assert got['psnr'] == pytest.approx(sk_psnr(tb, pb, data_range=255), rel=1e-6)
