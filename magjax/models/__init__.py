"""magjax networks: build_generator / build_discriminator from `config.model`."""

import jax.numpy as jnp

from magjax import kernels
from magjax.models.discriminator import PatchDiscriminator
from magjax.models.unet import UNetGenerator, level_channels

MODEL_NAMES = ('pix2pix', 'cat', 'rhp')


def attention_level(model_cfg):
  """The configured attention level (-1: the innermost, num_downs)."""
  level = model_cfg.attn_level
  return model_cfg.num_downs if level == -1 else level


def compute_dtype(config):
  """bfloat16 when config.half_precision, else float32 (parameters and
  normalisation statistics stay float32 either way)."""
  return jnp.bfloat16 if config.half_precision else jnp.float32


def conv_policy(model_cfg):
  """kernels.Policy of config.model.conv / conv_transpose (ValueError if bad)."""
  return kernels.Policy(model_cfg.conv, model_cfg.conv_transpose)


def build_generator(model_cfg, dtype=jnp.float32):
  """The U-Net generator for `config.model` ('pix2pix', 'cat' or 'rhp').

  dtype: computation dtype (jnp.bfloat16 for config.half_precision).
  """
  if model_cfg.name not in MODEL_NAMES:
    raise ValueError(f'model.name must be one of {MODEL_NAMES}, '
                     f'got {model_cfg.name!r}')
  return UNetGenerator(
      output_nc=model_cfg.output_nc,
      ngf=model_cfg.ngf,
      num_downs=model_cfg.num_downs,
      fusion=None if model_cfg.name == 'pix2pix' else model_cfg.name,
      attn_level=attention_level(model_cfg),
      key_reduction=model_cfg.key_reduction,
      value_reduction=model_cfg.value_reduction,
      dropout=model_cfg.dropout,
      norm=model_cfg.norm,
      init_std=model_cfg.init_std,
      bn_momentum=model_cfg.bn_momentum,
      bn_epsilon=model_cfg.bn_epsilon,
      bn_unbiased_running_var=model_cfg.bn_unbiased_running_var,
      sn_epsilon=model_cfg.sn_epsilon,
      conv_policy=conv_policy(model_cfg),
      dtype=dtype)


def build_discriminator(model_cfg, dtype=jnp.float32):
  """The PatchGAN for `config.model`; called as D(a, b, train=...)."""
  return PatchDiscriminator(
      ndf=model_cfg.ndf,
      n_layers=model_cfg.n_layers_d,
      norm=model_cfg.norm,
      init_std=model_cfg.init_std,
      bn_momentum=model_cfg.bn_momentum,
      bn_epsilon=model_cfg.bn_epsilon,
      bn_unbiased_running_var=model_cfg.bn_unbiased_running_var,
      conv_policy=conv_policy(model_cfg),
      dtype=dtype)


__all__ = ['build_generator', 'build_discriminator', 'attention_level',
           'compute_dtype', 'conv_policy',
           'level_channels', 'MODEL_NAMES', 'UNetGenerator',
           'PatchDiscriminator']
