"""A physically grounded SYNTHETIC Sun seen by any 304 A imager, with HMI.

Everything this package makes is SYNTHETIC (no mission data); headers say
so. Layers, each pure (no I/O; `data_prep.synthesize` writes the files):

- `sun`: the Sun on the sphere as a function of (seed, time): active
  regions (Hale, Joy, leading/following asymmetry), their decayed remnants,
  the network and internetwork, the 304 A emission rules, filaments on
  polarity inversion lines. Each physical choice names its source there.
- `observers`: where SDO, SOHO, STEREO-A/B and Solar Orbiter are
  (approximations, labelled), or any heliographic position.
- `render`: one observer's images: the LOS field and the 304 radiance.
- `instruments`: headers, pixel scales and counts of AIA, HMI, EUVI, EIT,
  EUI/FSI, and of the ground-truth magnetogram.

`make_pair(t, size, seed)` renders the SDO AIA 304 / HMI LOS pair;
`make_view(observer, t, size, seed, truth=True)` renders another imager's
304 frame and the ground-truth LOS magnetogram as that observer sees it.
"""
import dataclasses

import numpy as np
from astropy.time import Time

from data_prep.synthetic import instruments, observers, render, sun
# The names the rest of the project and its tests use.
from data_prep.synthetic.instruments import (  # noqa: F401
    GENERATOR, GENERATOR_VERSION, IMAGERS, FrameTimes, aia_header,
    frame_times, hmi_header, tai_string)
from data_prep.synthetic.observers import (  # noqa: F401
    NAMES as OBSERVERS, Observer, fixed_observer, observer_at, observer_for)
from data_prep.synthetic.render import DiskGeometry, disk_geometry  # noqa: F401
from data_prep.synthetic.sun import (  # noqa: F401
    EPOCH, MAX_LIFE_DAYS, RSUN_REF_M, Grid, Kernels, Region, active_kernels,
    carrington_drift, catalogue_block, grid_for_size, model_days,
    region_kernels, regions_at, remnant_kernels, render_kernels, surface_at)

HMI_BAD_QUALITY = (0x00000400, 0x00010000, 0x00020000, 0x80000000)


def hmi_quality(t, seed, bad_fraction):
  """QUALITY of the HMI frame at `t`: 0, or a flag for `bad_fraction`."""
  rng = np.random.default_rng([seed, 4, int(round(Time(t).unix))])
  bad = rng.random() < bad_fraction
  flag = int(rng.choice(HMI_BAD_QUALITY))
  return flag if bad else 0


@dataclasses.dataclass
class Pair:
  """One synthetic SDO pair: headers (fits.Header) and data arrays."""
  aia_header: object
  aia_data: np.ndarray  # int16 DN
  hmi_header: object
  hmi_data: np.ndarray  # float32 G, NaN off disk


def make_pair(t, size, seed, bad_fraction=0.02, kernels=None, network=True,
              noise=True):
  """Renders the AIA 304 / HMI LOS pair at nominal UTC time `t` (pure).

  kernels/network/noise: test hooks (place one region, switch off the
  quiet Sun or the noise). The surface is computed once at the AIA T_OBS;
  the HMI frame is a few seconds away (<0.001 deg of rotation), while each
  instrument's geometry uses its own T_OBS.
  """
  times = frame_times(t, seed)
  days = model_days(times.aia_t_obs)
  surface = surface_at(seed, days, grid_for_size(size), kernels, network)
  unix = int(round(times.nominal.unix))

  aia_obs = observer_at(times.aia_t_obs)
  a_head = aia_header(times, aia_obs, size, seed)
  view = render.render_view(surface, observers.rounded(aia_obs), a_head,
                            (size, size))
  rate = view.emission * instruments.aia_degradation(days)
  aia = instruments.counts(rate, 1.0, times.exptime,
                           np.random.default_rng([seed, 3, unix]),
                           instruments.AIA_SATURATION_DN, noise)

  hmi_obs = observer_at(times.hmi_t_obs)
  quality = hmi_quality(times.nominal, seed, bad_fraction)
  h_head = hmi_header(times, hmi_obs, size, seed, quality)
  hmi = render.render_view(surface, observers.rounded(hmi_obs), h_head,
                           (size, size)).los
  if noise:
    hmi = hmi + instruments.magnetogram_noise(
        hmi.shape, h_head['CDELT1'], np.random.default_rng([seed, 7, unix]))
  return Pair(a_head, aia.astype(np.int16), h_head, hmi.astype(np.float32))


@dataclasses.dataclass
class View:
  """One imager's synthetic 304 frame and its ground-truth magnetogram."""
  imager: instruments.Imager
  observer: Observer
  header: object
  data: np.ndarray  # counts (DN) or DN/s, as the instrument's BUNIT says
  truth_header: object = None
  truth: np.ndarray = None  # float32 G, NaN off the disk, no noise


def make_view(observer_name, t, size, seed, truth=True, noise=True,
              observer=None):
  """Renders the 304 A frame of `observer_name`'s imager at nominal UTC
  time `t` (pure), and with `truth` the LOS magnetogram that observer
  would see (same geometry, no noise). `observer` overrides the position
  (observers.fixed_observer)."""
  imager = IMAGERS[observer_name]
  t = Time(t, scale='utc')
  if observer is None:
    observer = observer_for(observer_name, t)
  header, xpos, mid = instruments.imager_header(imager, t, observer, size,
                                                seed)
  days = model_days(mid)
  surface = surface_at(seed, days, grid_for_size(size))
  placed = observers.rounded(observer)
  view = render.render_view(surface, placed, header, (size, size))
  rng = np.random.default_rng([seed, 14, int(round(t.unix)),
                               observers.NAMES.index(observer_name)])
  frame = instruments.counts(view.emission, imager.counts_factor, xpos, rng,
                             imager.saturation, noise)
  if header['BUNIT'] == 'DN/s':
    data = (frame / xpos).astype(np.float32)
  else:
    data = frame.astype(np.int32 if imager.saturation > 32767 else np.int16)
  out = View(imager, observer, header, data)
  if truth:
    out.truth_header = instruments.truth_header(header, observer, seed,
                                                imager.key)
    out.truth = view.los
  return out
