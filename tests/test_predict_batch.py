"""Batch predict: many inputs in one run, an index, resume, one compile,
and the persistent compilation cache."""
import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
from astropy.io import fits

import eval_helpers
from data_prep import synthesize
from magjax import compile_cache
from magjax import predict
from magjax import predict_batch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP = 2
TIMES = ('2012-10-05T00:00:00', '2012-10-06T00:00:00', '2012-10-07T00:00:00')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  root = tmp_path_factory.mktemp('batch')
  workdir, _ = eval_helpers.predict_workdir(root, STEP, eval_batch_size=4)
  raw = root / 'raw'
  aia = [synthesize.synthesize_pair(t, 256, 0, str(raw))[0] for t in TIMES]
  euvi = synthesize.synthesize_frame(TIMES[0], 256, 0, str(raw),
                                     'stereo-a')[0]
  inputs = root / 'inputs'
  inputs.mkdir()
  for path in aia + [euvi]:
    shutil.copy(path, inputs / os.path.basename(path))
  (inputs / 'broken.fits').write_bytes(b'SIMPLE  =' + b'x' * 100)
  (inputs / 'notes.txt').write_text('not an input')
  return {'root': root, 'workdir': workdir, 'inputs': inputs,
          'aia': [str(inputs / os.path.basename(p)) for p in aia],
          'euvi': str(inputs / os.path.basename(euvi))}


def _index(out):
  with open(out / predict_batch.INDEX_NAME, encoding='utf-8') as f:
    return [json.loads(line) for line in f]


def _run(setup, out, *extra):
  return predict.main(['--workdir', setup['workdir'], '--input',
                       str(setup['inputs']), '--output', str(out), *extra])


def test_a_directory_gives_one_output_per_input_and_an_index(setup, capsys):
  out = setup['root'] / 'out'
  assert _run(setup, out) == 1  # one input is broken
  captured = capsys.readouterr()
  assert 'ETA' in captured.err  # the progress line
  assert '3 written' not in captured.out and '4 written' in captured.out
  assert 'files/min' in captured.out and 'limited by' in captured.out
  rows = {os.path.basename(r['input']): r for r in _index(out)}
  assert set(rows) == {os.path.basename(p) for p in setup['aia']} | {
      os.path.basename(setup['euvi']), 'broken.fits'}
  assert rows['broken.fits']['status'] == 'failed'
  assert 'broken.fits' in rows['broken.fits']['reason']
  assert rows['broken.fits']['output'] is None
  for name, row in rows.items():
    if name == 'broken.fits':
      continue
    assert row['status'] == 'ok', row
    assert os.path.isfile(row['output'])
    assert row['output'].endswith('_magjax.fits')
    assert row['time'].startswith('2012-10-0')
    assert set(row['seconds']) == {'read', 'infer', 'write'}
  assert rows[os.path.basename(setup['euvi'])]['instrument'] == (
      'STEREO-A/EUVI 304')
  assert sorted(os.listdir(out)) == sorted(
      [predict_batch.INDEX_NAME] + [os.path.basename(r['output'])
                                    for r in rows.values() if r['output']])


def test_batched_tiles_give_the_single_file_result(setup, tmp_path):
  """Tiles of several inputs share generator calls; the result is that of
  the same input alone."""
  out = setup['root'] / 'out'
  if not out.exists():
    _run(setup, out)
  single = tmp_path / 'single.fits'
  assert predict.main(['--workdir', setup['workdir'], '--input',
                       setup['aia'][1], '--output', str(single),
                       '--batch', '1']) == 0
  stem = os.path.basename(setup['aia'][1])[:-len('.fits')]
  batched = fits.getdata(out / f'{stem}_magjax.fits')
  np.testing.assert_allclose(batched, fits.getdata(single), atol=1e-3)
  assert np.isfinite(batched).mean() > 0.9


def test_a_second_run_skips_complete_outputs_and_retries_failures(
    setup, capsys):
  out = setup['root'] / 'out'
  if not out.exists():
    _run(setup, out)
  before = {p: os.stat(out / p).st_mtime_ns for p in os.listdir(out)
            if p.endswith('_magjax.fits')}
  victim = sorted(before)[0]
  os.remove(out / victim)  # as if the run had been killed before it
  capsys.readouterr()
  assert _run(setup, out) == 1
  assert '1 written, 3 already done, 1 failed' in capsys.readouterr().out
  rows = _index(out)[-5:]
  statuses = sorted(r['status'] for r in rows)
  assert statuses == ['exists', 'exists', 'exists', 'failed', 'ok']
  for name, mtime in before.items():
    if name != victim:
      assert os.stat(out / name).st_mtime_ns == mtime  # not rewritten
  assert (out / victim).exists()


def test_the_generator_compiles_once_for_many_inputs(setup, tmp_path):
  runner = predict._runner(setup['workdir'], None, None, 3)
  items = [predict_batch.Item(p, str(tmp_path / f'{i}.fits'))
           for i, p in enumerate(setup['aia'] + [setup['euvi']])]
  counts = runner.run(items, predict_batch.Index(None))
  assert counts['ok'] == 4
  assert runner.fn.compiles == 1


def test_globs_frame_disk_and_name_clashes(setup, tmp_path, capsys):
  out = tmp_path / 'disk'
  pattern = str(setup['inputs'] / 'euvi*.fits')
  assert predict.main(['--workdir', setup['workdir'], '--input', pattern,
                       '--output', str(out) + os.sep, '--frame',
                       'disk']) == 0
  names = sorted(os.listdir(out))
  stem = os.path.basename(setup['euvi'])[:-len('.fits')]
  assert names == sorted([predict_batch.INDEX_NAME, f'{stem}_magjax.fits',
                          f'{stem}_magjax_disk.fits'])
  other = tmp_path / 'other'
  other.mkdir()
  shutil.copy(setup['aia'][0], other / os.path.basename(setup['aia'][0]))
  capsys.readouterr()
  assert predict.main(['--workdir', setup['workdir'], '--input',
                       setup['aia'][0], str(other), '--output',
                       str(tmp_path / 'clash')]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and 'would both write' in err[0]
  assert predict.main(['--workdir', setup['workdir'], '--input',
                       str(tmp_path / 'none*.fits'), '--output',
                       str(tmp_path / 'x')]) == 2
  assert 'no input file' in capsys.readouterr().err


def _cli(*args, env=None):
  return subprocess.run(
      [sys.executable, '-m', 'magjax.predict', *args], cwd=ROOT,
      capture_output=True, text=True, timeout=300,
      env=dict(os.environ, JAX_PLATFORMS='cpu', **(env or {})))


def _entries(directory):
  return sorted(p for p in os.listdir(directory) if not p.startswith('.'))


@pytest.mark.slow  # ~17 s: two predict processes
def test_a_second_predict_compiles_nothing_new(setup, tmp_path):
  cache = tmp_path / 'jax-cache'
  args = ['--workdir', setup['workdir'], '--input', setup['aia'][0],
          '--compilation-cache', str(cache)]
  first = _cli(*args, '--output', str(tmp_path / 'a.fits'))
  assert first.returncode == 0, first.stderr
  entries = _entries(cache)
  assert entries  # the generator and its helpers were cached
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    second = _cli(*args, '--output', str(tmp_path / 'b.fits'))
  assert second.returncode == 0, second.stderr
  assert _entries(cache) == entries  # everything came from the cache
  np.testing.assert_array_equal(fits.getdata(tmp_path / 'a.fits'),
                                fits.getdata(tmp_path / 'b.fits'))


def test_cache_settings_resolve_and_an_unusable_directory_costs_only_the_cache(
    tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'home'))
  monkeypatch.delenv(compile_cache.ENV, raising=False)
  assert compile_cache.resolve('auto') == str(tmp_path / 'home' / 'magjax'
                                              / 'jax')
  monkeypatch.setenv(compile_cache.ENV, 'off')
  assert compile_cache.resolve('auto') is None
  assert compile_cache.resolve('off') is None
  assert compile_cache.resolve('') is None
  assert compile_cache.configure('off') is None
  assert not (tmp_path / 'home').exists()
  blocker = tmp_path / 'file'
  blocker.write_text('')
  messages = []
  assert compile_cache.configure(str(blocker / 'cache'),
                                 log=messages.append) is None
  assert len(messages) == 1 and 'compiling without it' in messages[0]


def test_outputs_written_into_the_input_directory_are_not_inputs(
    setup, tmp_path, capsys):
  inputs = tmp_path / 'mixed'
  inputs.mkdir()
  shutil.copy(setup['aia'][0], inputs / os.path.basename(setup['aia'][0]))
  for _ in range(2):
    assert predict.main(['--workdir', setup['workdir'], '--input',
                         str(inputs), '--output', str(inputs)]) == 0
  assert '0 written, 1 already done, 0 failed of 1 inputs' in (
      capsys.readouterr().out)


def test_the_cli_reads_in_a_process_and_never_imports_sunpy_map_itself(
    setup, tmp_path):
  # The reader process imports sunpy.map (2 s) while this process imports
  # JAX: that overlap is what keeps a warm one-file predict near 4 s.
  out = tmp_path / 'one.fits'
  code = ('import sys\nfrom magjax import predict\n'
          f'rc = predict.main(["--workdir", {setup["workdir"]!r}, "--input", '
          f'{setup["aia"][0]!r}, "--output", {str(out)!r}])\n'
          'print("rc", rc, "sunpy.map" in sys.modules)\n')
  proc = subprocess.run([sys.executable, '-c', code], cwd=ROOT, text=True,
                        capture_output=True, timeout=300, check=False)
  assert proc.stdout.splitlines()[-1] == 'rc 0 False', proc.stderr[-2000:]
  with fits.open(out) as hdul:
    assert hdul[0].header['SRC_FILE'] == os.path.basename(setup['aia'][0])
    assert np.isfinite(hdul[0].data).any()


def test_a_reader_process_that_dies_costs_only_its_input(
    setup, tmp_path, monkeypatch, capsys):
  import reader_faults  # pylint: disable=g-import-not-at-top
  inputs = tmp_path / 'inputs'
  inputs.mkdir()
  good = setup['aia'][0]
  shutil.copy(good, inputs / os.path.basename(good))
  doomed = inputs / f'{reader_faults.DIE_MARK}.fits'
  shutil.copy(setup['aia'][2], doomed)
  monkeypatch.setattr(predict_batch, 'read_input', reader_faults.read_or_die)
  out = tmp_path / 'out'
  assert predict.main(['--workdir', setup['workdir'], '--input', str(inputs),
                       '--output', str(out)]) == 1
  records = {os.path.basename(r['input']): r for r in _index(out)}
  assert records[doomed.name]['status'] == 'failed'
  assert records[doomed.name]['reason'] == (
      f'{doomed.name}: its reader process died twice while reading it '
      '(killed, or out of memory)')
  assert records[os.path.basename(good)]['status'] == 'ok'
  assert '1 written' in capsys.readouterr().out
  assert sorted(os.listdir(out)) == sorted(
      [predict_batch.INDEX_NAME,
       os.path.basename(good).replace('.fits', '_magjax.fits')])


def _children(pid):
  """The pids whose parent is `pid` (Linux /proc)."""
  out = []
  for entry in os.listdir('/proc'):
    try:
      with open(f'/proc/{entry}/stat', encoding='utf-8') as f:
        fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == pid:
      out.append(int(entry))
  return out


def _alive(pid):
  try:
    with open(f'/proc/{pid}/stat', encoding='utf-8') as f:
      return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
  except OSError:
    return False


@pytest.mark.skipif(not os.path.isdir('/proc'), reason='reads /proc (Linux)')
def test_a_killed_run_leaves_no_reader_process_behind(setup, tmp_path):
  proc = subprocess.Popen(
      [sys.executable, '-m', 'magjax.predict', '--workdir', setup['workdir'],
       '--input', str(setup['inputs']), '--output', str(tmp_path / 'out')],
      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    # the reader processes (spawned first) and multiprocessing's helper
    want = min(predict_batch.READERS, 5)  # 5 inputs
    deadline = time.monotonic() + 60
    readers = []
    while len(readers) < want and time.monotonic() < deadline:
      time.sleep(0.2)
      readers = _children(proc.pid)
    assert len(readers) >= want, readers
    time.sleep(1.0)  # reading: the run is under way
    readers = _children(proc.pid)
  finally:
    proc.kill()
    proc.wait()
  deadline = time.monotonic() + 20
  while any(map(_alive, readers)) and time.monotonic() < deadline:
    time.sleep(0.2)
  assert not any(map(_alive, readers)), 'reader processes outlived the run'
