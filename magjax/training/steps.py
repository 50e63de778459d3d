"""The pix2pix train step (junyanz `optimize_parameters`).

`train_step(state, batch, config)` is pure; the caller jits it, e.g.
`jax.jit(functools.partial(train_step, config=config), donate_argnums=0)`.

Order, as in PyTorch:
  1. fake = G(a), train mode (batch statistics, one spectral-norm power
     iteration, dropout with key fold_in(state.rng, state.step)); G's
     running statistics move once. G's backward pass is kept (jax.vjp) so
     G is evaluated once per step, like PyTorch's single forward.
  2. D loss 0.5 * [gan(D(a, stop_gradient(fake)), fake) + gan(D(a, b), real)]
     with D in train mode; D's BatchNorm statistics move twice (fake, then
     real); Adam step for D.
  3. G loss gan(D'(a, fake), real) + lambda_l1 * L1(fake, b) with D' = D after
     its step, still in train mode (its statistics move a third time; D' is
     not updated by this loss); Adam step for G.
The step counter always advances: it counts the batches consumed (the data
position, since the input pipeline is a pure function of (seed, step)). If
any loss is not finite, everything else (both networks, their statistics,
both optimiser states) is rolled back to the input state and
metrics['finite'] is False; the loop decides to stop or skip. (As in the
Flax imagenet example's dynamic scale: a skipped update, not a replayed
batch, so a run that skipped a step and one that resumed past it agree.)
"""

import jax
import jax.numpy as jnp
import optax

from magjax.models import build_discriminator, build_generator, compute_dtype
from magjax.training.losses import gan_loss, l1_loss
from magjax.training.train_state import (TrainState, learning_rate_schedule,
                                         make_optimizers)


def metric_names(config):
  """The scalar metrics of train_step (besides `finite`), in log order."""
  names = ('loss_d', 'loss_d_fake', 'loss_d_real', 'loss_g', 'loss_g_gan',
           'loss_g_l1', 'd_real', 'd_fake')
  if config.model.name != 'pix2pix':
    names += ('gamma',)
  return names + ('lr',)


def train_step(state: TrainState, batch, config):
  """One D update then one G update; returns (new_state, metrics).

  batch: {'aia': (N, H, W, input_nc), 'hmi': (N, H, W, output_nc)} in [-1, 1].
  metrics: loss_d, loss_d_fake, loss_d_real, loss_g (total), loss_g_gan,
  loss_g_l1 (already x lambda_l1, as junyanz logs it), d_real / d_fake (mean
  sigmoid of D's logits in the D step), gamma (attention models), lr,
  finite (bool).
  """
  dtype = compute_dtype(config)
  gen = build_generator(config.model, dtype)
  disc = build_discriminator(config.model, dtype)
  tx_g, tx_d = make_optimizers(config)
  mode = config.gan_mode
  a, b = batch['aia'], batch['hmi']
  dropout_key = jax.random.fold_in(state.rng, state.step)

  def g_forward(g_params):
    fake, mutated = gen.apply(
        {'params': g_params, 'batch_stats': state.g_batch_stats}, a,
        train=True, rngs={'dropout': dropout_key}, mutable=['batch_stats'])
    return fake, mutated['batch_stats']

  fake, g_vjp, g_stats = jax.vjp(g_forward, state.g_params, has_aux=True)

  def d_forward(d_params, d_stats, target):
    logits, mutated = disc.apply(
        {'params': d_params, 'batch_stats': d_stats}, a, target, train=True,
        mutable=['batch_stats'])
    return logits, mutated['batch_stats']

  def d_loss_fn(d_params):
    fake_logits, stats = d_forward(d_params, state.d_batch_stats,
                                   jax.lax.stop_gradient(fake))
    real_logits, stats = d_forward(d_params, stats, b)
    loss_fake = gan_loss(fake_logits, False, mode)
    loss_real = gan_loss(real_logits, True, mode)
    return 0.5 * (loss_fake + loss_real), (stats, loss_fake, loss_real,
                                           fake_logits, real_logits)

  (loss_d, (d_stats, loss_d_fake, loss_d_real, fake_logits, real_logits)
   ), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(state.d_params)
  d_updates, d_opt_state = tx_d.update(d_grads, state.d_opt_state,
                                       state.d_params)
  d_params = optax.apply_updates(state.d_params, d_updates)

  def g_loss_fn(fake):
    logits, stats = d_forward(d_params, d_stats, fake)
    loss_gan = gan_loss(logits, True, mode)
    loss_l1 = config.lambda_l1 * l1_loss(fake, b)
    return loss_gan + loss_l1, (stats, loss_gan, loss_l1)

  (loss_g, (d_stats, loss_g_gan, loss_g_l1)), fake_grad = jax.value_and_grad(
      g_loss_fn, has_aux=True)(fake)
  (g_grads,) = g_vjp(fake_grad)
  g_updates, g_opt_state = tx_g.update(g_grads, state.g_opt_state,
                                       state.g_params)
  g_params = optax.apply_updates(state.g_params, g_updates)

  losses = dict(loss_d=loss_d, loss_d_fake=loss_d_fake,
                loss_d_real=loss_d_real, loss_g=loss_g, loss_g_gan=loss_g_gan,
                loss_g_l1=loss_g_l1)
  finite = jnp.all(jnp.stack([jnp.isfinite(v) for v in losses.values()]))
  updated = dict(g_params=g_params, g_batch_stats=g_stats,
                 d_params=d_params, d_batch_stats=d_stats,
                 g_opt_state=g_opt_state, d_opt_state=d_opt_state)
  kept = {name: getattr(state, name) for name in updated}
  updated = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                         updated, kept)
  new_state = state.replace(step=state.step + 1, **updated)
  metrics = dict(losses)
  metrics['d_real'] = jnp.mean(jax.nn.sigmoid(real_logits))
  metrics['d_fake'] = jnp.mean(jax.nn.sigmoid(fake_logits))
  if 'attention' in state.g_params:
    metrics['gamma'] = state.g_params['attention']['gamma'][0]
  metrics['lr'] = learning_rate_schedule(config)(state.step)
  metrics['finite'] = finite
  return new_state, metrics


def generator_variables(state: TrainState):
  """{'params', 'batch_stats'} of G, for `G.apply` or export."""
  return {'params': state.g_params, 'batch_stats': state.g_batch_stats}
