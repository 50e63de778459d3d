"""pix2pix losses: the adversarial loss (vanilla or LSGAN) and L1.

All losses are means over every element, computed in float32, like
PyTorch's BCEWithLogitsLoss / MSELoss / L1Loss with reduction 'mean'.
"""

import jax.numpy as jnp
import optax

GAN_MODES = ('vanilla', 'lsgan')


def gan_loss(logits, target_is_real: bool, mode: str = 'vanilla'):
  """Adversarial loss of D logits against an all-real or all-fake target.

  vanilla: binary cross-entropy with logits; lsgan: mean squared error
  against 1 (real) or 0 (fake).
  """
  logits = logits.astype(jnp.float32)
  target = jnp.full_like(logits, 1.0 if target_is_real else 0.0)
  if mode == 'vanilla':
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, target))
  if mode == 'lsgan':
    return jnp.mean(jnp.square(logits - target))
  raise ValueError(f'gan_mode must be one of {GAN_MODES}, got {mode!r}')


def l1_loss(prediction, target):
  """Mean absolute error."""
  return jnp.mean(jnp.abs(prediction.astype(jnp.float32)
                          - target.astype(jnp.float32)))
