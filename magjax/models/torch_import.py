"""PyTorch state dicts (as NumPy arrays) -> magjax Flax variables.

Brings weights of a PyTorch pix2pix trained with junyanz's code (or
shared/bench/torch_ref.py, same names) into magjax. Export them in PyTorch:

    import numpy as np
    np.savez(path, **{k: v.cpu().numpy() for k, v in net.state_dict().items()})

and load with `load_npz(path)` (bare state_dict names) or
`load_npz(path, prefix='G/')` for files holding both networks (`G/<name>`,
`D/<name>`, like the bench fixtures); then `generator_variables_from_torch`.

Layouts: Conv2d weight (out, in, kh, kw) -> kernel w.transpose(2, 3, 1, 0);
ConvTranspose2d weight (in, out, kh, kw) -> kernel w.transpose(0, 2, 3, 1)
(the (in, kh, kw, out) scatter-form kernel of layers.ConvTransposeK4S2, no
flip); spectral norm
`parametrizations.weight.original` -> `kernel`, `...weight.0._u`/`._v` ->
batch_stats `u`/`v`; BatchNorm weight/bias -> `scale`/`bias`,
running_mean/running_var -> batch_stats `mean`/`var`; `attn.gamma` (1,) ->
`gamma` (1,). `num_batches_tracked` is accepted and ignored (magjax uses a
fixed momentum, like junyanz). Every other missing, extra or mis-shaped entry
raises `TorchImportError` with a one-line message.
"""

import functools
import json
from typing import Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from magjax.models import attention_level, build_discriminator, build_generator

_CONV = (2, 3, 1, 0)  # Conv2d (out, in, kh, kw) -> HWIO
_CONVT = (0, 2, 3, 1)  # ConvTranspose2d (in, out, kh, kw) -> (in, kh, kw, out)
_IGNORED_SUFFIX = 'num_batches_tracked'


class TorchImportError(ValueError):
  """A PyTorch state dict that does not fit the configured network."""


def _bn(torch_prefix, flax_path):
  return [
      (torch_prefix + 'weight', ('params',) + flax_path + ('scale',), None),
      (torch_prefix + 'bias', ('params',) + flax_path + ('bias',), None),
      (torch_prefix + 'running_mean', ('batch_stats',) + flax_path + ('mean',),
       None),
      (torch_prefix + 'running_var', ('batch_stats',) + flax_path + ('var',),
       None),
  ]


def _generator_table(model_cfg):
  """[(torch name, flax path, transpose or None)] for the generator."""
  n = model_cfg.num_downs
  attn = None if model_cfg.name == 'pix2pix' else attention_level(model_cfg)
  batch = model_cfg.norm == 'batch'
  table = []
  for k in range(1, n + 1):
    p = 'model.' + 'inner.' * (k - 1)
    table.append((p + 'down_conv.weight',
                  ('params', f'down_conv_{k}', 'kernel'), _CONV))
    if batch and 1 < k < n:
      table += _bn(p + 'down_norm.', (f'down_norm_{k}',))
    if k == attn:
      table.append((p + 'attn.gamma', ('params', 'attention', 'gamma'), None))
      for c in 'fghv':
        q = f'{p}attn.{c}.'
        table += [
            (q + 'bias', ('params', 'attention', c, 'bias'), None),
            (q + 'parametrizations.weight.original',
             ('params', 'attention', c, 'kernel'), _CONV),
            (q + 'parametrizations.weight.0._u',
             ('batch_stats', 'attention', c, 'u'), None),
            (q + 'parametrizations.weight.0._v',
             ('batch_stats', 'attention', c, 'v'), None),
        ]
    table.append((p + 'up_conv.weight', ('params', f'up_conv_{k}', 'kernel'),
                  _CONVT))
    if k == 1:
      table.append((p + 'up_conv.bias', ('params', 'up_conv_1', 'bias'), None))
    elif batch:
      table += _bn(p + 'up_norm.', (f'up_norm_{k}',))
  return table


def _discriminator_table(model_cfg):
  """[(torch name, flax path, transpose or None)] for the PatchGAN."""
  n = model_cfg.n_layers_d
  table = [('model.0.weight', ('params', 'conv_0', 'kernel'), _CONV),
           ('model.0.bias', ('params', 'conv_0', 'bias'), None)]
  for i in range(1, n + 1):
    table.append((f'model.{3 * i - 1}.weight', ('params', f'conv_{i}', 'kernel'),
                  _CONV))
    if model_cfg.norm == 'batch':
      table += _bn(f'model.{3 * i}.', (f'norm_{i}',))
  last = 3 * (n + 1) - 1
  table += [(f'model.{last}.weight', ('params', f'conv_{n + 1}', 'kernel'),
             _CONV),
            (f'model.{last}.bias', ('params', f'conv_{n + 1}', 'bias'), None)]
  return table


def _get(tree, path):
  for key in path:
    tree = tree[key]
  return tree


def _set(tree, path, value):
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  tree[path[-1]] = value


def _convert(state, table, shapes, what):
  """Checks names and shapes against the table and builds the variables."""
  names = {name for name, _, _ in table}
  extra = sorted(k for k in state
                 if k not in names and not k.endswith(_IGNORED_SUFFIX))
  if extra:
    raise TorchImportError(f'{what}: unexpected entries {extra[:5]}'
                           f'{" ..." if len(extra) > 5 else ""}')
  missing = [name for name in sorted(names) if name not in state]
  if missing:
    raise TorchImportError(f'{what}: missing entries {missing[:5]}'
                           f'{" ..." if len(missing) > 5 else ""}')
  flat_paths = {tuple(getattr(k, 'key', k) for k in path)
                for path, _ in jax.tree_util.tree_flatten_with_path(shapes)[0]}
  table_paths = {path for _, path, _ in table}
  if flat_paths != table_paths:  # the table and the network disagree: a bug
    raise TorchImportError(f'{what}: internal name table does not match the '
                           f'network ({sorted(flat_paths ^ table_paths)[:3]})')
  out = {}
  for name, path, perm in table:
    value = np.asarray(state[name])
    want = tuple(_get(shapes, path).shape)
    if perm is not None:
      want_torch = tuple(want[perm.index(i)] for i in range(len(perm)))
    else:
      want_torch = want
    if value.shape != want_torch:
      raise TorchImportError(f'{what}: {name} has shape {value.shape}, '
                             f'expected {want_torch}')
    if perm is not None:
      value = value.transpose(perm)
    _set(out, path, jnp.asarray(value, jnp.float32))
  return out


@functools.lru_cache(maxsize=32)
def _abstract_variables(network, cfg_json):
  """eval_shape of the network's init (cached: importing is called often)."""
  model_cfg = ml_collections.ConfigDict(json.loads(cfg_json))
  size = max(2 ** model_cfg.num_downs, 32)
  a = jnp.zeros((1, size, size, model_cfg.input_nc))
  b = jnp.zeros((1, size, size, model_cfg.output_nc))
  if network == 'G':
    gen = build_generator(model_cfg)
    return jax.eval_shape(lambda: gen.init(jax.random.key(0), a, train=False))
  disc = build_discriminator(model_cfg)
  return jax.eval_shape(lambda: disc.init(jax.random.key(0), a, b, train=False))


def _cfg_json(model_cfg):
  return json.dumps(dict(model_cfg), sort_keys=True)


def generator_variables_from_torch(state: Mapping[str, np.ndarray], model_cfg
                                   ) -> Dict[str, Dict]:
  """PyTorch generator state_dict -> {'params', 'batch_stats'} for magjax."""
  shapes = _abstract_variables('G', _cfg_json(model_cfg))
  return _convert(state, _generator_table(model_cfg), shapes, 'generator')


def discriminator_variables_from_torch(state: Mapping[str, np.ndarray],
                                       model_cfg) -> Dict[str, Dict]:
  """PyTorch NLayerDiscriminator state_dict -> {'params', 'batch_stats'}."""
  shapes = _abstract_variables('D', _cfg_json(model_cfg))
  return _convert(state, _discriminator_table(model_cfg), shapes,
                  'discriminator')


def load_npz(path, prefix: str = '') -> Dict[str, np.ndarray]:
  """Entries of an .npz state-dict export whose names start with `prefix`,
  with the prefix removed ('' for a bare state_dict, 'G/' or 'D/' for files
  holding both networks)."""
  try:
    with np.load(path, allow_pickle=False) as data:
      state = {k[len(prefix):]: data[k] for k in data.files
               if k.startswith(prefix)}
  except (OSError, ValueError) as e:
    raise TorchImportError(f'{path}: cannot read as .npz ({e})') from None
  if not state:
    raise TorchImportError(f'{path}: no entries with prefix {prefix!r}')
  return state


def torch_names(model_cfg, network: str = 'G') -> Tuple[str, ...]:
  """The PyTorch state-dict names magjax reads (num_batches_tracked aside)."""
  table = (_generator_table if network == 'G' else _discriminator_table)(
      model_cfg)
  return tuple(name for name, _, _ in table)
