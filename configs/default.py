"""Base configuration: the paper's settings (Sun, Xu et al. 2023).

Every hyper-parameter of the project lives here (or in a variant that
overrides it); nothing numeric is hard-coded in the training loop.
Variants: configs/pix2pix.py, configs/cat.py, configs/rhp.py, each taking an
optional config string (`configs/rhp.py:cpu`, `configs/rhp.py:tiny`,
`configs/rhp.py:gpu8`, `configs/rhp.py:tpu`; launch recipes in
docs/CLUSTER.md).
"""

import ml_collections


def get_config(config_string=None):
  """The paper's configuration, optionally shrunk by a config string.

  Args:
    config_string: None or '' for the paper's settings, 'cpu' for a run that
      trains visibly on 2 CPU cores in minutes, 'tiny' for tests, 'gpu8' for
      GPU nodes of 8 devices, 'tpu' for a Cloud TPU slice (both: the global
      batch is per_device_batch_size x jax.device_count() at run time).

  Returns:
    A ConfigDict.

  Raises:
    ValueError: an unknown config string.
  """
  config = get_paper_config()
  if config_string == 'cpu':
    _apply_cpu(config)
  elif config_string == 'tiny':
    _apply_tiny(config)
  elif config_string == 'gpu8':
    _apply_gpu8(config)
  elif config_string == 'tpu':
    _apply_tpu(config)
  elif config_string:
    raise ValueError(f'unknown config string {config_string!r} '
                     "(expected '', 'cpu', 'tiny', 'gpu8' or 'tpu')")
  return config


def get_paper_config():
  """Sun, Xu et al. (2023): crop 512, batch 32, 200 epochs, unet_256."""
  config = ml_collections.ConfigDict()

  # ---------------------------------------------------------------- general
  config.seed = 0

  # ------------------------------------------------------------------- data
  config.dataset = 'sdo_ar'
  config.data_dir = 'data/tfds'  # TFDS data_dir holding sdo_ar
  config.train_split = 'train'
  config.eval_split = 'test'
  config.crop_size = 512  # random square crops drawn from (800, 900) patches
  # Patches binned k x k before cropping: the paper's geometry at 1/k of its
  # resolution (1: the paper's 0.1 deg/px).
  config.patch_binning = 1
  config.hmi_saturation = 200.0  # gauss; HMI mapped to [-1, 1] by this
  # AIA 304 (DN/s, exposure-normalised) -> [-1, 1] by a fixed log scaling:
  # a = 2 * (log10(clip(aia, aia_floor)) - aia_log_min) / (aia_log_max - aia_log_min) - 1
  config.aia_floor = 1.0
  config.aia_log_min = 0.0
  config.aia_log_max = 4.0
  # AIA 304's quiet-Sun level (DN/s, median of the disk at mu > 0.5) in the
  # training data: predict scales other imagers (EUVI, EIT, FSI) to it
  # (data_prep.calibrate.load_304). 35.4: the SYNTHETIC Sun over 2012,
  # measured by `python -m data_prep.calibrate data/raw/aia`; measure
  # yours the same way when training on real AIA files.
  config.aia_quiet_sun = 35.4
  config.prefetch = 2  # global batches prepared ahead by a background thread
  # Normalised patches kept in memory, so a step only cuts crops
  # (magjax/input_cache.py): 'auto' ('device' on GPU/TPU, 'host' on CPU,
  # 'off' above input_cache_max_mb), 'device', 'host' or 'off' (decode and
  # scale the patch of every crop). Same batches in every mode.
  config.input_cache = 'auto'
  # The most the cache may take, in MiB (host memory for 'host', each
  # device's memory for 'device'): float32 AIA + HMI, 5.5 MiB per
  # (800, 900) patch; the embedded set's 81 training patches take 445 MiB.
  config.input_cache_max_mb = 8192.0
  # Masked (off-disk / invalid) pixels get these fixed values after scaling.
  config.aia_fill = -1.0
  config.hmi_fill = 0.0

  # --------------------------------------------------------------- training
  config.batch_size = 32  # global batch, split over all devices
  # > 0: the global batch is this x jax.device_count() (all processes),
  # resolved by train.py at run time; batch_size is then ignored.
  config.per_device_batch_size = 0
  config.num_epochs = 200
  config.num_train_steps = -1  # -1: derived from num_epochs
  config.learning_rate = 2e-4
  config.b1 = 0.5
  config.b2 = 0.999
  config.adam_eps = 1e-8
  # pix2pix 'linear' policy: constant for this fraction of training, then
  # linear decay to zero (junyanz n_epochs=100, n_epochs_decay=100).
  config.lr_constant_fraction = 0.5
  config.gan_mode = 'vanilla'  # 'vanilla' (BCE with logits) or 'lsgan'
  config.lambda_l1 = 100.0
  config.nan_policy = 'stop'  # 'stop' or 'skip' a non-finite step
  config.half_precision = False  # bf16 compute, float32 master weights
  # Bounds for one invocation (the lr schedule still spans num_train_steps):
  # checkpoint and exit cleanly after this many seconds / at this step.
  config.max_train_seconds = 0.0  # 0: no time limit
  # JAX's persistent compilation cache (magjax/compile_cache.py): 'auto'
  # ($MAGJAX_COMPILATION_CACHE, else ~/.cache/magjax/jax), 'off' or a path.
  config.compilation_cache_dir = 'auto'
  config.stop_after_steps = 0  # 0: run to num_train_steps

  # -------------------------------------------------- logging / checkpoints
  config.log_every_steps = 100
  config.sample_every_steps = 1000
  config.checkpoint_every_steps = 1000
  config.keep_checkpoints = 3

  # -------------------------------------------------------------- evaluation
  # eval.py on config.eval_split: 'crops' (the paper's protocol: one seeded
  # crop_size^2 crop per example), 'tiled' (whole patches) or 'both'.
  config.eval_mode = 'crops'
  config.eval_tile_overlap = 64  # px between tiles (eval 'tiled', predict)
  # Crops or tiles per generator call; 0: about 2 x 512^2 pixels per call.
  config.eval_batch_size = 0
  config.eval_keep_samples = 3  # whole patches kept for the report figures
  # Metrics (evaluation/metrics.py), on HMI clipped to +-hmi_saturation.
  config.ssim_window = 11
  config.ssim_sigma = 1.5
  config.cc_binning = 2
  config.strong_field = 100.0  # gauss
  # During training: eval.py's crop protocol on the validation split every
  # eval_every_steps (and at the last step) with at most
  # validation_examples examples, evenly spread (-1: all); 0: never.
  config.eval_every_steps = 1000
  config.validation_split = 'validation'
  config.validation_examples = 256
  # The physics baseline of eval.py and the report (evaluation/baselines.py):
  # |B| from 304 by the training data's monotone relation, signed by Hale's
  # law. Cycle 24 (2008-2019): leading polarity negative in the north.
  config.baseline_north_leading_sign = -1.0
  config.baseline_region_gauss = 40.0  # a bright region: smoothed |B| above
  config.baseline_smooth_deg = 0.8  # smoothing that defines the regions
  config.baseline_fit_examples = 40  # training examples the map is fitted on

  # ------------------------------------------------------------ distributed
  config.distributed = ml_collections.ConfigDict()
  config.distributed.initialize = False  # call jax.distributed.initialize
  config.distributed.coordinator_address = ''
  config.distributed.num_processes = -1
  config.distributed.process_id = -1

  # ------------------------------------------------------------------ model
  config.model = get_model_config('rhp')
  return config


def _apply_cpu(config):
  """2 CPU cores, a few minutes per variant (`make demo`).

  The paper's field of view at a quarter of its resolution: patches binned
  4 x 4 (0.4 deg/px), 128^2 crops (51 deg, as the paper's 512^2 at 0.1
  deg/px) with 6 downs, which keep the paper's 2x2 attention bottleneck.
  The demo bounds each run by time (max_train_seconds); 1000 steps is what
  about 3.5 minutes reach on 2 cores.
  """
  config.patch_binning = 4
  config.crop_size = 128
  config.batch_size = 4
  config.num_train_steps = 1000
  config.log_every_steps = 10
  config.sample_every_steps = 50
  config.checkpoint_every_steps = 100
  config.eval_every_steps = 100
  config.model.ngf = 32
  config.model.ndf = 32
  config.model.num_downs = 6


def _apply_tiny(config):
  """Seconds on one CPU core (tests)."""
  config.crop_size = 32
  config.batch_size = 2
  config.num_train_steps = 6
  config.log_every_steps = 2
  config.sample_every_steps = 3
  config.checkpoint_every_steps = 3
  config.eval_every_steps = 3
  config.validation_examples = 4
  config.keep_checkpoints = 2
  config.prefetch = 1
  config.model.ngf = 8
  config.model.ndf = 8
  config.model.num_downs = 5


def _apply_gpu8(config):
  """The paper's model and 512^2 crops on GPU nodes of 8 devices.

  4 per device: the paper's batch of 32 on one node, 32 x nodes on several
  (scale learning_rate yourself if you want to). half_precision (bf16
  compute, float32 master weights) stays off for the paper's numerics; turn
  it on with --config.half_precision=True.
  """
  config.per_device_batch_size = 4
  config.log_every_steps = 50
  config.sample_every_steps = 1000
  config.checkpoint_every_steps = 1000


def _apply_tpu(config):
  """A Cloud TPU slice: bf16 compute, batch and mesh from the device count."""
  config.per_device_batch_size = 4
  config.half_precision = True
  config.log_every_steps = 50
  config.sample_every_steps = 1000
  config.checkpoint_every_steps = 1000


def get_model_config(name):
  """The network settings: junyanz unet_256 + PatchGAN, plus attention."""
  model = ml_collections.ConfigDict()
  model.name = name  # 'pix2pix', 'cat' or 'rhp' (the fusion)
  model.input_nc = 1
  model.output_nc = 1
  model.ngf = 64
  model.ndf = 64
  model.num_downs = 8
  # Level (1..num_downs) of the self-attention block; -1: the innermost
  # level, the paper's bottleneck (2x2 at 512^2 inputs, 1x1 at 256^2).
  model.attn_level = -1
  model.key_reduction = 8
  model.value_reduction = 8
  model.dropout = 0.5
  model.norm = 'batch'  # 'batch' or 'none'
  model.n_layers_d = 3  # 3: the 70x70 PatchGAN
  model.init_std = 0.02
  model.bn_momentum = 0.1  # PyTorch convention (new = (1 - m) old + m batch)
  model.bn_epsilon = 1e-5
  model.bn_unbiased_running_var = True  # PyTorch updates running_var unbiased
  model.sn_epsilon = 1e-12
  # How convolutions are computed (never what: same parameters, same
  # result to float rounding; magjax/kernels, docs/PERFORMANCE.md): 'auto'
  # or one of kernels.METHODS ('xla', 'matmul', 'winograd'). 'auto' picks
  # per layer (kernels/policy.py): on CPU Winograd for large maps
  # (float32), one dot for small maps and 1-channel layers, XLA's
  # convolution elsewhere; on GPU/TPU always XLA's.
  model.conv = 'auto'
  model.conv_transpose = 'auto'
  return model
