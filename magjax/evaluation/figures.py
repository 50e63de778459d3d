"""Figures like the paper's Figures 4-5 (matplotlib, Agg backend).

`comparison_figure` draws, for one test time: the AIA 304 A input, the
observed HMI magnetogram, the generated magnetograms of the models side by
side (top row), and each model's difference generated - observed beneath
it (bottom row), with per-sample metrics in the free bottom-left panel.

Colour maps are sunpy's SDO maps (`sdoaia304` for AIA on a log scale,
a diverging map for B over +-saturation G, another for differences;
colour bars are in DN/s and gauss. Axes are Stonyhurst heliographic
longitude / latitude in degrees, taken from the patch WCS (CAR, so linear:
`imshow` extents from `lonlat_extent`). Pixels outside the mask
(off-disk / invalid) are drawn light grey. SYNTHETIC data say so in the
title.
"""

import math

import matplotlib

matplotlib.use('Agg')
import matplotlib.ticker  # pylint: disable=g-import-not-at-top,wrong-import-position
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top,wrong-import-position
from matplotlib import colors  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import sunpy.visualization.colormaps as sunpy_cm  # pylint: disable=g-import-not-at-top,wrong-import-position

from data_prep import grid  # pylint: disable=g-import-not-at-top,wrong-import-position

MODEL_TITLES = {'pix2pix': 'pix2pix', 'cat': 'cat-attention',
                'rhp': 'RHP-attention'}
MODEL_ORDER = ('pix2pix', 'cat', 'rhp')
BAD_COLOUR = '#d4d4d4'
AIA_CMAP = 'sdoaia304'  # sunpy's SDO/AIA 304 map
# sunpy's 'hmimag' saturates in bright greens/yellows near 0 G, which turns
# HMI noise into confetti at +-200 G; a diverging map reads better, and a
# second one keeps differences distinct from fields.
B_CMAP = 'RdBu_r'  # positive red, negative blue
DIFF_CMAP = 'PuOr_r'


def model_title(name):
  return MODEL_TITLES.get(name, name)


def order_models(names):
  """pix2pix, cat, rhp first (the paper's order), then the others."""
  known = [n for n in MODEL_ORDER if n in names]
  return known + [n for n in names if n not in MODEL_ORDER]


def lonlat_extent(header, shape):
  """(lon_min, lon_max, lat_min, lat_max) in deg of the pixel edges.

  For `imshow(..., origin='lower', extent=...)` of a CAR patch (linear
  axes): evaluated with astropy's WCS at the outer pixel edges.
  """
  import warnings  # pylint: disable=g-import-not-at-top
  from astropy.wcs import WCS  # pylint: disable=g-import-not-at-top
  ny, nx = shape
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    wcs = WCS(header, naxis=2)
    x = np.array([-0.5, nx - 0.5, (nx - 1) / 2, (nx - 1) / 2])
    y = np.array([(ny - 1) / 2, (ny - 1) / 2, -0.5, ny - 0.5])
    lon, lat = wcs.wcs_pix2world(x, y, 0)
  lon = (np.asarray(lon) + 180.0) % 360.0 - 180.0
  return float(lon[0]), float(lon[1]), float(lat[2]), float(lat[3])


def _cmap(name):
  cmap = (sunpy_cm.cmlist[name] if name in sunpy_cm.cmlist
          else matplotlib.colormaps[name])
  return cmap.with_extremes(bad=BAD_COLOUR)


def _aia_norm(aia):
  finite = aia[np.isfinite(aia) & (aia > 0)]
  if finite.size == 0:
    return colors.LogNorm(1.0, 10.0)
  low, high = np.percentile(finite, [0.5, 99.8])
  low = max(float(low), 1e-3)
  return colors.LogNorm(low, max(float(high), low * 10.0))


def _log_ticks(vmin, vmax):
  """1-2-5 ticks within [vmin, vmax] (at most about 6)."""
  ticks = []
  for k in range(int(math.floor(math.log10(vmin))),
                 int(math.ceil(math.log10(vmax))) + 1):
    for m in (1, 2, 5):
      t = m * 10.0 ** k
      if vmin <= t <= vmax:
        ticks.append(t)
  while len(ticks) > 6:
    ticks = ticks[::2]
  return ticks


def _masked(x, mask):
  x = np.asarray(x, np.float64)
  if mask is not None:
    x = np.where(mask, x, np.nan)
  return np.ma.masked_invalid(x)


def _metric_text(metrics):
  """Short per-model metrics block for the free panel."""
  lines = ['per-sample metrics', '(whole patch, tiled)', '']
  for name, m in metrics.items():
    def g(key, fmt):
      v = m.get(key, math.nan)
      try:
        v = float(v)
      except (TypeError, ValueError):
        return 'n/a'
      return 'n/a' if math.isnan(v) else format(v, fmt)
    lines.append(model_title(name))
    lines.append(f'  PSNR {g("psnr", ".2f")} dB')
    lines.append(f'  SSIM {g("ssim_paper", ".3f")}  CC {g("cc_binned", ".3f")}')
    lines.append(f'  RMSE {g("rmse_gauss", ".1f")} G')
  return '\n'.join(lines)


def comparison_figure(path, aia, hmi, preds, *, mask=None, header=None,
                      title='', synthetic=None, metrics=None,
                      saturation=200.0, dpi=110):
  """Draws the comparison figure of one test time into `path` (a file name
  or a binary file object; PNG).

  Args:
    path: output file name or binary file object (PNG).
    aia: (H, W) AIA 304 patch in DN/s.
    hmi: (H, W) observed HMI patch in gauss.
    preds: {model name: (H, W) generated magnetogram in gauss}.
    mask: (H, W) bool, True where valid (None: finite pixels).
    header: the patch's FITS WCS header (astropy Header or its text); None
      for the paper's CAR grid (0.1 deg/px centred on lon = lat = 0).
    title: the figure title (the test time).
    synthetic: True adds 'SYNTHETIC data' to the title, False 'SDO data'.
    metrics: optional {model name: sample_metrics dict} for the text panel.
    saturation: B colour range +-saturation G (the HMI clip).

  Returns:
    `path`.
  """
  from astropy.io import fits  # pylint: disable=g-import-not-at-top
  aia = np.asarray(aia, np.float64)
  hmi = np.asarray(hmi, np.float64)
  if mask is None:
    mask = np.isfinite(hmi) & np.isfinite(aia)
  mask = np.asarray(mask, bool)
  shape = hmi.shape
  if header is None:
    header = grid.grid_header(shape=shape)
  elif isinstance(header, str):
    header = fits.Header.fromstring(header)
  extent = lonlat_extent(header, shape)
  names = order_models(list(preds))
  ncols = 2 + len(names)

  fig, axes = plt.subplots(2, ncols, figsize=(3.2 * ncols + 1.6, 6.6),
                           squeeze=False, sharex=True, sharey=True,
                           constrained_layout=True)
  b_cmap, d_cmap = _cmap(B_CMAP), _cmap(DIFF_CMAP)
  b_norm = colors.Normalize(-saturation, saturation)
  image_kw = dict(origin='lower', extent=extent, interpolation='nearest',
                  aspect='equal')

  aia_ax = axes[0, 0]
  im_aia = aia_ax.imshow(_masked(aia, mask & (aia > 0)), cmap=_cmap(AIA_CMAP), norm=_aia_norm(np.where(mask, aia, np.nan)), **image_kw)
  aia_ax.set_title('AIA 304 Å (input)')
  # The AIA colour bar sits in the free panel below, so that all image
  # panels keep the same size.
  aia_cax = axes[1, 0].inset_axes([0.05, 0.86, 0.9, 0.07])
  aia_bar = fig.colorbar(im_aia, cax=aia_cax, orientation='horizontal',
                         label='AIA 304 Å (DN/s, log scale)')
  aia_bar.ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
  aia_bar.set_ticks(_log_ticks(im_aia.norm.vmin, im_aia.norm.vmax))
  aia_bar.ax.xaxis.set_major_formatter(
      matplotlib.ticker.FormatStrFormatter('%g'))

  axes[0, 1].imshow(_masked(hmi, mask), cmap=b_cmap, norm=b_norm, **image_kw)
  axes[0, 1].set_title('HMI LOS (observed)')
  b_images = []
  for col, name in enumerate(names, start=2):
    pred = np.asarray(preds[name], np.float64)
    b_images.append(axes[0, col].imshow(_masked(pred, mask), cmap=b_cmap,
                                        norm=b_norm, **image_kw))
    axes[0, col].set_title(f'{model_title(name)} (generated)')
    diff = _masked(pred - hmi, mask)
    d_im = axes[1, col].imshow(diff, cmap=d_cmap, norm=b_norm, **image_kw)
    axes[1, col].set_title(f'{model_title(name)} − HMI')
  fig.colorbar(b_images[-1] if b_images else axes[0, 1].images[0],
               ax=list(axes[0, 1:]), location='right', shrink=0.9,
               label='B_LOS (G)')
  if names:
    fig.colorbar(d_im, ax=list(axes[1, 2:]), location='right', shrink=0.9,
                 label='generated − observed (G)')

  # Free panels under the inputs: the metrics text.
  for ax in axes[1, :2]:
    ax.set_axis_off()
  if metrics:
    axes[1, 1].text(0.0, 1.0, _metric_text(
        {n: metrics[n] for n in names if n in metrics}),
                    transform=axes[1, 1].transAxes, va='top', ha='left',
                    family='monospace', fontsize=8.5)
  for ax in axes[:, :].ravel():
    if ax.axison:
      ax.set_xticks([t for t in (-40, -20, 0, 20, 40)
                     if extent[0] <= t <= extent[1]] or [0])
      ax.set_yticks([t for t in (-30, 0, 30)
                     if extent[2] <= t <= extent[3]] or [0])
      ax.set_xlim(extent[0], extent[1])
      ax.set_ylim(extent[2], extent[3])
      ax.tick_params(labelsize=8)
  for ax in axes[1, 2:]:
    ax.set_xlabel('Stonyhurst lon (deg)')
  for ax in axes[0, :]:
    ax.tick_params(labelbottom=True)
  axes[0, 0].set_ylabel('latitude (deg)')
  axes[0, 0].set_xlabel('Stonyhurst lon (deg)')

  label = {True: 'SYNTHETIC data (not SDO observations)',
           False: 'SDO AIA 304 / HMI LOS data'}.get(synthetic, '')
  fig.suptitle(' — '.join(t for t in (title, label) if t),
               fontsize=13, color='firebrick' if synthetic else 'black')
  fig.savefig(path, dpi=dpi, format='png')
  plt.close(fig)
  return path
