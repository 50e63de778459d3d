"""Per-sample image and physical metrics for generated magnetograms.

Pure NumPy functions, vectorised, float64 internally. Every parameter comes
from the caller; `configs/default.py` holds the defaults (`ssim_window` 11,
`ssim_sigma` 1.5, `cc_binning` 2, `strong_field` 100 G, `hmi_saturation`
200 G), `metric_kwargs(config)` turns a config into the keyword arguments
of `sample_metrics`, and `conventions(config)` describes them for results
files.

Image metrics (the paper's Table 1) are computed on magnetograms mapped from
+-saturation G to 0..255 (`to_byte_scale`), as the paper implies:

- PSNR = 10 log10(MaxValue^2 / MSE), MaxValue = 255.
- SSIM (Wang et al. 2004) with an 11x11 Gaussian window (sigma 1.5) and
  population (co)variances, i.e. the maths of
  `skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`, in two conventions for the
  stabilising constants: the paper's printed c1 = 2.55, c2 = 7.65
  (`SSIM_PAPER`, that is K*L with L = 255) and Wang et al.'s
  c1 = (0.01 * 255)^2, c2 = (0.03 * 255)^2 (`SSIM_WANG`).
- Pearson CC after k x k mean binning (k = 2 in the paper).

Physical metrics are computed in gauss: RMSE, total unsigned flux ratio,
polarity agreement and CC on strong-field pixels (|B_target| > threshold).

Validity: a pixel is valid where `mask` (True = valid; None = all) is True
AND the target is finite (HMI patches are NaN off-disk). Predictions are
used as given on valid pixels (a non-finite prediction there makes the
metric NaN rather than hiding a broken model); on invalid pixels they are
ignored, whatever their value. A metric that is undefined for a sample (no
valid pixel, no strong-field pixel, zero variance) is NaN; `summarise`
excludes NaN values from the mean and std.
"""

import math

import numpy as np

# (c1, c2) for SSIM on 0..255 data.
SSIM_PAPER = (2.55, 7.65)  # as printed in Sun, Xu et al. (2023): K * L
SSIM_WANG = (6.5025, 58.5225)  # Wang et al. (2004): (K * L)^2, K = 0.01, 0.03

METRIC_NAMES = (
    'psnr', 'ssim_paper', 'ssim_wang', 'cc_binned', 'cc_abs_binned',
    'rmse_gauss', 'flux_ratio', 'polarity_agreement', 'strong_cc')


def _as_2d(x):
  """float64 (H, W) view of an (H, W) or (H, W, 1) array."""
  x = np.asarray(x, dtype=np.float64)
  if x.ndim == 3 and x.shape[-1] == 1:
    x = x[..., 0]
  if x.ndim != 2:
    raise ValueError(f'expected an (H, W) or (H, W, 1) image, got {x.shape}')
  return x


def _prepare(pred, target, mask):
  """(pred, target, valid) as float64 / bool (H, W) arrays of equal shape."""
  pred, target = _as_2d(pred), _as_2d(target)
  if pred.shape != target.shape:
    raise ValueError(f'shape mismatch: pred {pred.shape}, target {target.shape}')
  valid = np.isfinite(target)
  if mask is not None:
    m = np.asarray(mask, dtype=bool)
    if m.ndim == 3 and m.shape[-1] == 1:
      m = m[..., 0]
    if m.shape != target.shape:
      raise ValueError(f'mask shape {m.shape} != image shape {target.shape}')
    valid &= m
  return pred, target, valid


def _pearson(a, b):
  """Pearson CC of two 1-D float64 arrays; NaN if undefined."""
  if a.size < 2:
    return math.nan
  da = a - a.mean()
  db = b - b.mean()
  denom = math.sqrt(float(np.dot(da, da)) * float(np.dot(db, db)))
  if denom == 0.0 or not math.isfinite(denom):
    return math.nan
  return float(np.dot(da, db) / denom)


def to_byte_scale(b_gauss, saturation=200.0):
  """Maps gauss to 0..255 (float64): -saturation -> 0, +saturation -> 255.

  Values beyond +-saturation are clipped; NaN stays NaN.
  """
  b = np.asarray(b_gauss, dtype=np.float64)
  return (np.clip(b, -saturation, saturation) + saturation) * (
      255.0 / (2.0 * saturation))


def psnr(pred, target, mask=None, max_value=255.0):
  """Peak signal-to-noise ratio 10 log10(max_value^2 / MSE) over valid pixels.

  inf for identical images, NaN when no pixel is valid.
  """
  pred, target, valid = _prepare(pred, target, mask)
  if not valid.any():
    return math.nan
  mse = float(np.mean((pred[valid] - target[valid]) ** 2))
  if mse == 0.0:
    return math.inf
  return 10.0 * math.log10(max_value ** 2 / mse)


def gaussian_window(window, sigma):
  """Normalised 1-D Gaussian taps of odd length `window` (scipy's formula)."""
  if window < 1 or window % 2 != 1:
    raise ValueError(f'SSIM window must be a positive odd integer, got {window}')
  r = (window - 1) // 2
  x = np.arange(-r, r + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


def _correlate_valid(x, taps):
  """Separable 'valid' correlation of (..., H, W) with 1-D taps on H and W."""
  n = len(taps)
  h, w = x.shape[-2] - n + 1, x.shape[-1] - n + 1
  rows = taps[0] * x[..., 0:h, :]
  for j in range(1, n):
    rows = rows + taps[j] * x[..., j:j + h, :]
  out = taps[0] * rows[..., 0:w]
  for j in range(1, n):
    out = out + taps[j] * rows[..., j:j + w]
  return out


def _local_stats(pred, target, valid, window, sigma):
  """Gaussian-window means, variances, covariance and window validity."""
  if min(pred.shape) < window:
    raise ValueError(
        f'image {pred.shape} is smaller than the SSIM window {window}')
  taps = gaussian_window(window, sigma)
  x = np.where(valid, pred, 0.0)
  y = np.where(valid, target, 0.0)
  ux, uy, uxx, uyy, uxy = _correlate_valid(
      np.stack([x, y, x * x, y * y, x * y]), taps)
  box = np.ones(window, dtype=np.float64)
  ok = _correlate_valid(valid.astype(np.float64), box) > window * window - 0.5
  return (ux, uy, uxx - ux * ux, uyy - uy * uy, uxy - ux * uy), ok


def _ssim_from_stats(stats, ok, c1, c2):
  ux, uy, vx, vy, vxy = stats
  num = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
  den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
  return np.where(ok, num / np.where(ok, den, 1.0), 0.0)


def ssim_map(pred, target, mask=None, *, c1, c2, window=11, sigma=1.5):
  """SSIM map and its validity, for pixels whose window lies in the image.

  Returns (S, ok), both of shape (H - window + 1, W - window + 1): S[i, j] is
  the SSIM of the window centred on image pixel (i + r, j + r), r =
  (window - 1) // 2, and ok[i, j] says that every pixel of that window is
  valid (the valid mask eroded by the window). S is 0 where not ok.
  """
  pred, target, valid = _prepare(pred, target, mask)
  stats, ok = _local_stats(pred, target, valid, window, sigma)
  return _ssim_from_stats(stats, ok, c1, c2), ok


def _mean_ssim(stats, ok, c1, c2):
  if not ok.any():
    return math.nan
  return float(np.mean(_ssim_from_stats(stats, ok, c1, c2)[ok]))


def ssim(pred, target, mask=None, *, c1, c2, window=11, sigma=1.5):
  """Mean Gaussian-window SSIM over pixels whose whole window is valid.

  Inputs are on the 0..255 scale (the constants are absolute). c1, c2: pass
  `SSIM_PAPER` or `SSIM_WANG` (c1, c2 = (K1 L)^2, (K2 L)^2 in Wang et al.).
  The window is `window` x `window` Gaussian taps (sigma), normalised to
  sum 1; (co)variances are population ones. The mean runs over the pixels
  whose window is entirely inside the image and entirely valid, i.e. the
  valid mask eroded by the window. With mask=None and a finite target this
  is exactly scikit-image's convention (the SSIM map cropped by
  (window - 1) // 2 on every side). NaN when no window is fully valid.
  """
  pred, target, valid = _prepare(pred, target, mask)
  stats, ok = _local_stats(pred, target, valid, window, sigma)
  return _mean_ssim(stats, ok, c1, c2)


def pearson_cc_binned(pred, target, mask=None, binning=2):
  """Pearson CC after `binning` x `binning` mean binning.

  Trailing rows / columns that do not fill a whole bin are dropped. A bin
  is used only if all its pixels are valid. NaN when fewer than two bins are
  used or either binned image is constant.
  """
  pred, target, valid = _prepare(pred, target, mask)
  k = int(binning)
  if k < 1:
    raise ValueError(f'binning must be >= 1, got {binning}')
  h, w = (pred.shape[0] // k) * k, (pred.shape[1] // k) * k

  def bins(a):
    return a[:h, :w].reshape(h // k, k, w // k, k)

  ok = bins(valid).all(axis=(1, 3))
  p = bins(np.where(valid, pred, 0.0)).mean(axis=(1, 3))
  t = bins(np.where(valid, target, 0.0)).mean(axis=(1, 3))
  return _pearson(p[ok], t[ok])


def rmse_gauss(pred, target, mask=None):
  """Root-mean-square error (gauss) over valid pixels."""
  pred, target, valid = _prepare(pred, target, mask)
  if not valid.any():
    return math.nan
  return float(np.sqrt(np.mean((pred[valid] - target[valid]) ** 2)))


def unsigned_flux_ratio(pred, target, mask=None):
  """Total unsigned flux ratio sum|pred| / sum|target| over valid pixels.

  Pixels are equal-area in the heliographic patch, so this is the ratio of
  unsigned fluxes. NaN if the target has no flux.
  """
  pred, target, valid = _prepare(pred, target, mask)
  denom = float(np.sum(np.abs(target[valid])))
  if denom == 0.0:
    return math.nan
  return float(np.sum(np.abs(pred[valid]))) / denom


def _strong(target, valid, threshold):
  return valid & (np.abs(np.where(valid, target, 0.0)) > threshold)


def polarity_agreement(pred, target, mask=None, threshold=100.0):
  """Fraction of strong-field pixels (|target| > threshold, valid) where
  sign(pred) == sign(target). NaN if there is no strong-field pixel."""
  pred, target, valid = _prepare(pred, target, mask)
  strong = _strong(target, valid, threshold)
  n = int(strong.sum())
  if n == 0:
    return math.nan
  return float(np.sum(np.sign(pred[strong]) == np.sign(target[strong]))) / n


def strong_field_cc(pred, target, mask=None, threshold=100.0):
  """Pearson CC (gauss) over valid pixels with |target| > threshold."""
  pred, target, valid = _prepare(pred, target, mask)
  strong = _strong(target, valid, threshold)
  return _pearson(pred[strong], target[strong])


def sample_metrics(pred_gauss, target_gauss, mask, *, saturation, ssim_window,
                   ssim_sigma, binning, strong_field):
  """All metrics of one sample, as {name: float} with keys METRIC_NAMES.

  psnr, ssim_paper, ssim_wang and cc_binned are computed on the 0..255
  byte scale (`to_byte_scale(., saturation)`); cc_abs_binned is the binned
  CC of |B| clipped to +-saturation; rmse_gauss, flux_ratio,
  polarity_agreement and strong_cc in gauss (unclipped).
  """
  pred, target, valid = _prepare(pred_gauss, target_gauss, mask)
  pb = to_byte_scale(pred, saturation)
  tb = to_byte_scale(target, saturation)
  stats, ok = _local_stats(pb, tb, valid, ssim_window, ssim_sigma)
  clip = np.clip
  return {
      'psnr': psnr(pb, tb, valid),
      'ssim_paper': _mean_ssim(stats, ok, *SSIM_PAPER),
      'ssim_wang': _mean_ssim(stats, ok, *SSIM_WANG),
      'cc_binned': pearson_cc_binned(pb, tb, valid, binning),
      'cc_abs_binned': pearson_cc_binned(
          np.abs(clip(pred, -saturation, saturation)),
          np.abs(clip(target, -saturation, saturation)), valid, binning),
      'rmse_gauss': rmse_gauss(pred, target, valid),
      'flux_ratio': unsigned_flux_ratio(pred, target, valid),
      'polarity_agreement': polarity_agreement(pred, target, valid,
                                               strong_field),
      'strong_cc': strong_field_cc(pred, target, valid, strong_field),
  }


def metric_kwargs(config):
  """The keyword arguments of `sample_metrics` from a (ConfigDict) config."""
  return dict(
      saturation=float(config.hmi_saturation),
      ssim_window=int(config.ssim_window),
      ssim_sigma=float(config.ssim_sigma),
      binning=int(config.cc_binning),
      strong_field=float(config.strong_field))


def summarise(samples):
  """{name: {'mean', 'std', 'se', 'n'}} over a list of per-sample dicts.

  NaN-aware: NaN values (metric undefined for that sample) are excluded and
  n counts the samples used. std is the population standard deviation
  (ddof = 0); se the standard error of the mean, std(ddof=1) / sqrt(n)
  (NaN for n < 2). A metric with n = 0 has mean and std NaN. An infinite
  value (PSNR of an exact prediction) is kept, and makes the mean infinite.
  """
  names = []
  for d in samples:
    for k in d:
      if k not in names:
        names.append(k)
  out = {}
  for k in names:
    v = np.array([d[k] for d in samples if k in d], dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
      out[k] = {'mean': math.nan, 'std': math.nan, 'se': math.nan, 'n': 0}
    elif np.all(np.isfinite(v)):
      se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
      out[k] = {'mean': float(v.mean()), 'std': float(v.std()), 'se': se,
                'n': int(v.size)}
    else:
      out[k] = {'mean': float(v.mean()), 'std': math.nan, 'se': math.nan,
                'n': int(v.size)}
  return out


def conventions(config):
  """The conventions `sample_metrics` follows under `config`, as a dict for
  results files (metrics.json) and their Markdown (results.markdown)."""
  kw = metric_kwargs(config)
  return {
      'saturation_gauss': kw['saturation'],
      'image_scale': (f'gauss clipped to +-{kw["saturation"]:g} G and mapped '
                      'to 0..255 for psnr, ssim_*, cc_binned'),
      'psnr': '10 log10(255^2 / MSE)',
      'ssim_paper': {'c1': SSIM_PAPER[0], 'c2': SSIM_PAPER[1],
                     'note': 'constants as printed in Sun, Xu et al. 2023'},
      'ssim_wang': {'c1': SSIM_WANG[0], 'c2': SSIM_WANG[1],
                    'note': 'Wang et al. 2004, (K L)^2'},
      'ssim_window': kw['ssim_window'], 'ssim_sigma': kw['ssim_sigma'],
      'cc_binning': kw['binning'],
      'strong_field_gauss': kw['strong_field'],
      'physical': 'rmse_gauss, flux_ratio, polarity_agreement, strong_cc '
                  'in gauss, unclipped',
      'mask': 'pixels outside the mask (off-disk / invalid) excluded',
      'summary': 'mean and population std (ddof 0) over samples; NaN '
                 'samples excluded, n counts the rest',
  }
