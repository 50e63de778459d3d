"""tools.bench_suite (with a fake runner: no torch, no timing) and
tools.input_bench (on a tiny sdo_ar build)."""

import json
import os
import sys
import types

import pytest

import train_helpers
from magjax import config_utils
from tools import bench_suite
from tools import infer_suite
from tools import input_bench

TORCH_MS = {256: 2000.0, 512: 6000.0}
JAX_MS = {('pix2pix', 256): 1000.0, ('rhp', 256): 800.0,
          ('pix2pix', 512): 4000.0, ('rhp', 512): 5000.0}


PREDICT = {'workdir': 'runs/rhp', 'files': 20, 'size': 1024, 'batch': 8,
           'one_file_cold_s': 11.0, 'one_file_warm_s': 4.5,
           'one_file_peak_rss_mb': {'cold': 1000.0, 'warm': 800.0},
           'batch_wall_s': 60.0, 'files_per_min': 20.0,
           'batch_peak_rss_mb': 1200.0,
           'seconds': {'read': 30.0, 'infer': 50.0, 'write': 5.0},
           'readers': 2,
           'limited_by': 'infer', 'summary': 'predict: ...'}


class FakeRunner:
  """Records each command and answers it as the real benchmark would."""

  def __init__(self, fail=None, jax_scale=None):
    self.calls = []
    self.fail = fail  # a predicate on the command: raise SuiteError
    self.jax_scale = jax_scale or (lambda count: 1.0)
    self.jax_count = 0

  def __call__(self, cmd):
    self.calls.append(cmd)
    if self.fail and self.fail(cmd):
      raise bench_suite.SuiteError(f'`{" ".join(cmd)}` failed (exit 1): boom')
    if '-c' in cmd:
      return '2.13.0\n'
    if 'tools.input_bench' in cmd:
      batch = int(cmd[cmd.index('--batch') + 1])
      return json.dumps({'batches_per_s': 10.0 if batch == 1 else 0.5,
                         'batch': batch, 'data': 'SYNTHETIC',
                         'dataset_full_name': 'sdo_ar/synthetic/2.0.0'})
    if 'tools.prep_bench' in cmd:
      return 'noise\n' + json.dumps({'seconds_per_pair': 2.5}) + '\n'
    if 'tools.infer_bench' in cmd or 'tools/torch_infer.py' in cmd:
      batch = int(cmd[cmd.index('--batch') + 1])
      jax = 'tools.infer_bench' in cmd
      tuned = '--tune-malloc' in cmd  # the reference with magjax's malloc
      rate = (2.0 if jax else 1.2 if tuned else 1.0) * (
          1.5 if batch == 8 else 1.0)
      return json.dumps({'framework': 'jax' if jax else 'pytorch',
                         'patches_per_s': rate, 'tiles_per_s': 4 * rate,
                         'tile': 512, 'tiles_per_patch': 4,
                         'peak_rss_mb': 900.0 if jax else 700.0})
    if 'tools.predict_bench' in cmd:
      return json.dumps(PREDICT)
    size = int(cmd[cmd.index('--size') + 1])
    if 'tools.bench' in cmd:
      model = cmd[3].split('/')[-1][:-len('.py')]  # --config=configs/<m>.py
      self.jax_count += 1
      ms = JAX_MS[model, size] * self.jax_scale(self.jax_count)
      return ('WARNING: some log line\n' + json.dumps({
          'framework': 'jax', 'ms_per_step_median': ms,
          'gflop_per_step': 12.25, 'fraction_of_peak': 0.25,
          'direct_gflop_per_step': 20.5,
          'direct_fraction_of_peak': 0.375}) + '\n')
    return json.dumps({'framework': 'pytorch', 'torch': '2.13.0+cpu',
                       'ms_per_step_median': TORCH_MS[size]})

  def steps(self):
    """(framework, model, size) of the train-step commands, in order."""
    out = []
    for cmd in self.calls:
      if '--size' not in cmd:
        continue
      size = int(cmd[cmd.index('--size') + 1])
      if 'tools.bench' in cmd:
        out.append(('jax', cmd[3].split('/')[-1][:-3], size))
      else:
        out.append(('pytorch', cmd[cmd.index('--model') + 1], size))
    return out


@pytest.fixture(name='paths')
def fixture_paths(tmp_path):
  """An executable stand-in for the torch python and a torch_ref.py."""
  python = tmp_path / 'python'
  python.write_text('#!/bin/sh\n')
  python.chmod(0o755)
  ref = tmp_path / 'torch_ref.py'
  ref.write_text('')
  return ['--torch-python', str(python), '--torch-ref', str(ref)]


def _suite(paths, runner, *args, sections=('train', 'input')):
  return bench_suite.main([*paths, '--sizes', '256', '512', '--models',
                           'pix2pix', 'rhp', '--sections', *sections,
                           *args], runner=runner)


def test_last_json_line_wins_and_non_json_lines_are_skipped():
  text = '{"a": 1}\nwarning: x\n{"a": 2, "b": [1]}\n{not json\n\n'
  assert bench_suite.last_json(text) == {'a': 2, 'b': [1]}
  with pytest.raises(ValueError, match='no JSON line'):
    bench_suite.last_json('no json here\n[1, 2]\n')


def test_frameworks_and_models_alternate_second_pass_reversed(paths, capsys):
  runner = FakeRunner()
  assert _suite(paths, runner, '--passes', '2') == 0
  forward = [('pytorch', 'pix2pix', 256), ('jax', 'pix2pix', 256),
             ('pytorch', 'rhp', 256), ('jax', 'rhp', 256),
             ('pytorch', 'pix2pix', 512), ('jax', 'pix2pix', 512),
             ('pytorch', 'rhp', 512), ('jax', 'rhp', 512)]
  assert runner.steps() == forward + forward[::-1]
  # Then the input pipeline (batch 1, 32) and data prep, once each.
  tail = [c[2] for c in runner.calls[-3:]]
  assert tail == ['tools.input_bench', 'tools.input_bench',
                  'tools.prep_bench']
  assert 'median of 2 passes' in capsys.readouterr().out


def test_commands_use_batch_1_same_steps_and_the_threads(paths):
  runner = FakeRunner()
  assert _suite(paths, runner, '--steps', '3', '--warmup', '1') == 0
  torch_cmd, jax_cmd = runner.calls[1], runner.calls[2]
  threads = str(len(os.sched_getaffinity(0)))
  assert torch_cmd[:2] == [paths[1], paths[3]]
  assert torch_cmd[torch_cmd.index('--threads') + 1] == threads
  assert jax_cmd[:4] == [sys.executable, '-m', 'tools.bench',
                         '--config=configs/pix2pix.py']
  for cmd in (torch_cmd, jax_cmd):
    for flag, value in (('--batch', '1'), ('--steps', '3'),
                        ('--warmup', '1'), ('--size', '256')):
      assert cmd[cmd.index(flag) + 1] == value


def test_step_table_ratio_and_input_table(paths, capsys, tmp_path):
  out_path = tmp_path / 'out' / 'results.json'
  assert _suite(paths, FakeRunner(), '--json-out', str(out_path)) == 0
  out = capsys.readouterr().out
  assert ('| model | size | PyTorch ms/step | JAX ms/step | PyTorch/JAX | '
          'model GFLOP/step | JAX executed GFLOP/step | JAX model FLOP/s / '
          'matmul peak | JAX executed FLOP/s / matmul peak |') in out
  assert ('| pix2pix | 256 | 2000 | 1000 | 2.00 | 20.5 | 12.2 | 0.375 | '
          '0.250 |') in out
  assert '| rhp | 256 | 2000 | 800 | 2.50 | 20.5 | 12.2 | 0.375 | 0.250 |' in out
  assert '| rhp | 512 | 6000 | 5000 | 1.20 | 20.5 | 12.2 | 0.375 | 0.250 |' in out
  # Input pipeline: against the fastest 512^2 JAX step (pix2pix, 4000 ms):
  # batch 1 at 10 batches/s is 40x; batch 32 at 0.5/s against 32 x 4000 ms
  # is 64x, an estimate.
  assert ('| input pipeline, batch 1, crop 512, SYNTHETIC | 10.00 batches/s '
          '| 4000 ms, measured (pix2pix 512^2, batch 1) | 40.0x |') in out
  assert ('| input pipeline, batch 32, crop 512, SYNTHETIC | 0.50 batches/s '
          '| 128000 ms, ESTIMATE: 32 x the batch-1 step (pix2pix 512^2) '
          '| 64.0x (estimate) |') in out
  assert '| data prep, one 4096^2 AIA + HMI pair, 1 core | 2.50 s/pair' in out
  assert 'machine: ' in out and 'torch 2.13.0' in out
  assert 'load average at start: ' in out
  results = json.loads(out_path.read_text())
  assert results['errors'] == [] and results['versions']['torch'] == '2.13.0'
  assert results['data_prep'] == {'seconds_per_pair': 2.5}
  row = results['train_step'][0]
  assert (row['model'], row['size'], row['pytorch_over_jax']) == (
      'pix2pix', 256, 2.0)
  assert len(results['runs']) == 8
  assert not [p for p in os.listdir(out_path.parent) if p.endswith('.tmp')]


def test_medians_over_three_passes(paths, capsys):
  # JAX runs of pass 2 are 3x slower (a busy spell): the median ignores it.
  per_pass = 4
  runner = FakeRunner(jax_scale=lambda n: 3.0 if per_pass < n <= 2 * per_pass
                      else 1.0)
  assert _suite(paths, runner, '--passes', '3') == 0
  assert '| pix2pix | 256 | 2000 | 1000 | 2.00 |' in capsys.readouterr().out


def test_missing_torch_venv_is_one_line_exit_2(tmp_path, capsys):
  runner = FakeRunner()
  rc = bench_suite.main(['--torch-python', str(tmp_path / 'no' / 'python')],
                        runner=runner)
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and runner.calls == []
  assert len(err) == 1 and err[0].startswith('error: no PyTorch venv')
  assert '`make bench-venv`' in err[0]


def test_default_torch_python_and_torch_ref(monkeypatch, tmp_path):
  monkeypatch.delenv(bench_suite.ENV_TORCH_REF, raising=False)
  assert bench_suite.DEFAULT_TORCH_PYTHON == os.path.join(
      bench_suite.ROOT, '.venv-torch', 'bin', 'python')
  assert bench_suite.DEFAULT_TORCH_REF == os.path.join(
      os.path.dirname(bench_suite.ROOT), 'shared', 'bench', 'torch_ref.py')
  ref = tmp_path / 'ref.py'
  ref.write_text('')
  monkeypatch.setenv(bench_suite.ENV_TORCH_REF, str(ref))
  args = bench_suite.parse_args(['--torch-python', sys.executable])
  assert bench_suite.resolve_paths(args) is None
  assert args.torch_ref == str(ref)
  args = bench_suite.parse_args(['--torch-python', sys.executable,
                                 '--torch-ref', str(tmp_path / 'none.py')])
  assert 'no torch_ref.py at' in bench_suite.resolve_paths(args)


def test_run_command_failure_names_command_and_stderr_tail():
  cmd = [sys.executable, '-c',
         'import sys; print("out"); sys.stderr.write("a\\nboom here\\n"); '
         'sys.exit(3)']
  with pytest.raises(bench_suite.SuiteError) as e:
    bench_suite.run_command(cmd)
  message = str(e.value)
  assert '\n' not in message and 'exit 3' in message
  assert message.endswith('boom here') and sys.executable in message
  with pytest.raises(bench_suite.SuiteError, match='could not start'):
    bench_suite.run_command(['/nonexistent/python'])


def test_failing_benchmark_one_line_others_still_run(paths, capsys, tmp_path):
  def jax_rhp_512(cmd):
    return ('tools.bench' in cmd and '--config=configs/rhp.py' in cmd
            and '512' in cmd)
  runner = FakeRunner(fail=jax_rhp_512)
  out_path = tmp_path / 'r.json'
  assert _suite(paths, runner, '--json-out', str(out_path)) == 1
  captured = capsys.readouterr()
  errors = [l for l in captured.err.splitlines() if l.startswith('error:')]
  assert len(errors) == 1 and 'tools.bench' in errors[0]
  assert 'boom' in errors[0] and 'Traceback' not in captured.err
  assert '| rhp | 512 | 6000 | failed | failed | failed | failed |' in (
      captured.out)
  assert '| data prep' in captured.out  # the rest ran
  assert json.loads(out_path.read_text())['errors'] == [errors[0][7:]]


def test_output_without_json_is_a_one_line_error(paths, capsys):
  def runner(cmd):
    return '2.13.0\n' if '-c' in cmd else 'Segmentation fault?\n'
  assert _suite(paths, runner, '--models', 'rhp') == 1
  errors = [l for l in capsys.readouterr().err.splitlines()
            if l.startswith('error:')]
  assert errors and all('no JSON line' in e for e in errors)


# --- input_bench -------------------------------------------------------------

CONFIG = os.path.join(train_helpers.ROOT, 'configs', 'rhp.py')


def test_input_bench_missing_data_says_make_data(tmp_path, capsys):
  rc = input_bench.main([f'--config={CONFIG}:tiny', '--data-dir',
                         str(tmp_path / 'none')])
  err = capsys.readouterr().err.strip().splitlines()
  assert rc == 2 and len(err) == 1
  assert err[0].startswith('error: no sdo_ar data set') and 'make data' in err[0]


def test_input_bench_on_a_tiny_sdo_ar_build(tmp_path, capsys):
  # The builder test's patch tree (tests/test_sdo_ar.py): 3 training pairs.
  from test_sdo_ar import DAYS, write_patch_tree  # pylint: disable=g-import-not-at-top
  from magjax.datasets.sdo_ar import build as sdo_build  # pylint: disable=g-import-not-at-top
  write_patch_tree(tmp_path / 'patches', DAYS)
  assert sdo_build.main(['--patches', str(tmp_path / 'patches'),
                         '--data_dir', str(tmp_path / 'tfds')]) == 0
  capsys.readouterr()
  rc = input_bench.main([f'--config={CONFIG}:tiny', '--data-dir',
                         str(tmp_path / 'tfds'), '--batch', '3',
                         '--batches', '4', '--warmup', '1'])
  assert rc == 0
  out = capsys.readouterr().out
  result = bench_suite.last_json(out)
  assert 'crops/s per core' in out
  assert (result['batch'], result['crop_size'], result['batches']) == (3, 32, 4)
  assert result['data'] == 'SYNTHETIC' and result['synthetic'] is True
  assert result['dataset_full_name'] == 'sdo_ar/synthetic/2.0.0'
  assert result['dataset_version'] == '2.0.0'
  assert result['examples'] == 3
  assert result['batches_per_s'] > 0
  assert result['images_per_s'] == pytest.approx(
      3 * result['batches_per_s'], rel=1e-2)
  assert result['ms_per_batch_min'] <= result['ms_per_batch_median']
  # the cache: 3 patches of 800 x 900, float32 AIA and HMI, in host memory
  assert result['input_cache'] == 'host'
  assert result['host_cache_mb'] == pytest.approx(3 * 800 * 900 * 8 / 2 ** 20,
                                                  abs=0.1)
  assert result['crops_per_s'] == pytest.approx(result['images_per_s'])
  assert result['crops_per_s_per_core'] == pytest.approx(
      result['crops_per_s'] / result['cores_used'], rel=0.02)
  assert result['host_rss_mb'] > result['host_cache_mb']


def test_inference_alternates_frameworks_and_prints_both_tables(
    paths, capsys, tmp_path):
  runner = FakeRunner()
  out = tmp_path / 'results.json'
  assert _suite(paths, runner, '--passes', '2', '--json-out', str(out),
                sections=('inference', 'predict')) == 0
  infer = [('jax' if 'tools.infer_bench' in c else 'pytorch-malloc'
            if '--tune-malloc' in c else 'pytorch',
            c[c.index('--batch') + 1]) for c in runner.calls
           if 'tools.infer_bench' in c or 'tools/torch_infer.py' in c]
  # 2 configs x 2 batches x 3 runs (PyTorch as shipped and with magjax's
  # malloc, JAX), then the same reversed
  assert len(infer) == 24 and infer[:3] == [
      ('pytorch', '1'), ('pytorch-malloc', '1'), ('jax', '1')]
  assert infer[12:] == infer[:12][::-1]
  torch_cmd = next(c for c in runner.calls if 'tools/torch_infer.py' in c)
  # the paper-size RHP: the config's architecture, tiles and patch
  for flag, value in (('--ngf', '64'), ('--num-downs', '8'),
                      ('--tile', '512'), ('--overlap', '64'),
                      ('--height', '800'), ('--width', '900')):
    assert torch_cmd[torch_cmd.index(flag) + 1] == value, flag
  text = capsys.readouterr().out
  assert '## Inference' in text and '## Batch predict, end to end' in text
  assert ('| paper RHP | 512² | 4 | 8 | 1.500 | 1.800 | 3.000 | 2.00 | 1.67 '
          '| 6.00 / 7.20 | 12.00 | 700 / 700 / 900 |') in text, text
  assert '20.0 files/min' in text and 'limited by | inference' in text
  assert '4.50 s (800 MB)' in text
  results = json.loads(out.read_text())
  assert results['batch_predict']['files_per_min'] == 20.0
  assert len(results['inference']['rows']) == 4


@pytest.mark.slow  # ~13 s: compiles the :tiny generator
def test_infer_bench_times_whole_patches_of_the_config(capsys):
  from tools import infer_bench  # pylint: disable=g-import-not-at-top
  assert infer_bench.main(['--config=configs/rhp.py:tiny', '--batch', '2',
                           '--repeats', '1', '--warmup', '0']) == 0
  result = bench_suite.last_json(capsys.readouterr().out)
  assert result['framework'] == 'jax' and result['batch'] == 2
  assert result['tiles_per_patch'] > 1 and result['patches_per_s'] > 0
  assert result['tiles_per_s'] == pytest.approx(
      result['patches_per_s'] * result['tiles_per_patch'], rel=0.01)
  assert result['peak_rss_mb'] > 0


@pytest.mark.parametrize('config_path,batch,patches', [
    ('configs/rhp.py', 8, 2), ('configs/rhp.py', 1, 2),   # 4 tiles a patch
    ('configs/rhp.py:cpu', 8, 8), ('configs/rhp.py:cpu', 1, 2),  # 9 tiles
])
def test_an_inference_pass_fills_whole_batches(config_path, batch, patches):
  """Neither framework is timed on a padded last batch: JAX would compute
  tiles that PyTorch does not."""
  config = config_utils.load_config_file(config_path)
  assert infer_suite.patches_per_pass(config, batch) == patches
  assert patches * infer_suite.tiles_per_patch(config) % batch == 0
  args = types.SimpleNamespace(torch_python='python', torch_ref='ref.py',
                               threads=2)
  for framework in infer_suite.FRAMEWORKS:
    cmd = infer_suite.command(args, 'python', framework, config_path, batch)
    assert cmd[cmd.index('--patches') + 1] == str(patches)
