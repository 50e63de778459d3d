"""The bad-input corpus (tests/make_bad_corpus.py) against every
command: `prepare patch` and `predict` answer each file with exactly one
stderr line `error: ...`, exit code 2 and no output file; `prepare build`
over a raw tree holding the corpus and good synthetic pairs records a
reasoned skip / unpaired line per bad file and still makes the good pairs.
Plus byte-level header mutations of real sunpy files: DataError only.

The CLIs run in process (main(argv)), with stderr captured at the file
descriptor level (capfd), so stray warnings or tracebacks count as lines;
tests/faults/test_cli_bad_inputs.py (slow) repeats it in subprocesses.
"""

import argparse
import importlib.util
import os
import warnings

import pytest
import sunpy.data.test
from hypothesis import given, settings
from hypothesis import strategies as st

import eval_helpers
from data_prep import build
from data_prep import fitsio
from data_prep import manifest
from data_prep import prepare
from data_prep.fitsio import DataError
from faults import ledger
from magjax import predict

HERE = os.path.dirname(os.path.abspath(__file__))
GOOD_TIMES = ['2012-04-20T06:00:00', '2012-09-15T12:00:00']


def load_corpus_module():
  path = os.path.join(HERE, 'make_bad_corpus.py')
  spec = importlib.util.spec_from_file_location('make_bad_corpus', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  return load_corpus_module().make_corpus(
      str(tmp_path_factory.mktemp('bad')))


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('run') / 'rhp')
  eval_helpers.save_checkpoint(path, eval_helpers.tiny_config('rhp'), step=1)
  return path


def _one_error_line(rc, err, fragment, output):
  lines = err.strip().splitlines()
  assert rc == 2, err
  assert len(lines) == 1, err
  assert lines[0].startswith('error: ') and fragment in lines[0], lines[0]
  assert not os.path.exists(output), output


def test_prepare_patch_gives_one_line_per_bad_file(corpus, tmp_path, capfd):
  out = str(tmp_path / 'out.fits')
  clear = 0
  for name, case in corpus.items():
    capfd.readouterr()
    rc = prepare.main(['patch', case.path, '--out', out])
    _one_error_line(rc, capfd.readouterr().err, case.fragment, out)
    clear += 1
    assert name
  ledger.record('bad inputs: prepare patch', bad_inputs=len(corpus),
                clear_errors=clear)


def test_predict_gives_one_line_per_bad_file(corpus, workdir, tmp_path,
                                             capfd):
  out = str(tmp_path / 'out.fits')
  tried = clear = 0
  for name, case in corpus.items():
    if case.predict_ok:  # a prepared AIA 304 patch: predict's patch route
      continue
    tried += 1
    capfd.readouterr()
    rc = predict.main(['--workdir', workdir, '--input', case.path,
                       '--output', out])
    _one_error_line(rc, capfd.readouterr().err, case.predict_fragment, out)
    clear += 1
    assert name
  ledger.record('bad inputs: predict', bad_inputs=tried, clear_errors=clear)


def test_build_records_a_reason_per_bad_file_and_makes_the_good_pairs(
    corpus, tmp_path, capsys):
  from data_prep.synthesize import synthesize_pair
  raw = tmp_path / 'raw'
  for t in GOOD_TIMES:
    synthesize_pair(t, 256, 0, str(raw), bad_fraction=0)
  placed = {}
  for name, case in corpus.items():
    target = raw / case.kind / 'bad' / name
    target.parent.mkdir(parents=True, exist_ok=True)
    os.link(case.path, target)
    placed[str(target)] = name
  out = tmp_path / 'out'
  with warnings.catch_warnings():
    warnings.simplefilter('ignore')
    rc = build.run(argparse.Namespace(raw=str(raw), out=str(out), workers=1,
                                      tolerance=60.0, splits=None))
  printed = capsys.readouterr().out
  assert rc == 0, printed
  records = manifest.read_manifest(str(out / 'manifest.jsonl'))
  latest = manifest.latest_by_pair(records)
  ok = [r for r in latest.values() if r['status'] == 'ok']
  assert len(ok) == len(GOOD_TIMES)
  assert len(list(out.glob('*/*.fits'))) == 2 * len(GOOD_TIMES)
  reasons = {}
  for r in records:
    if r['status'] == 'ok':
      continue
    for key in ('aia', 'hmi'):
      path = r.get(key)
      if path and os.path.abspath(path) in placed:
        reasons.setdefault(placed[os.path.abspath(path)], []).append(r)
  clear = 0
  for name in corpus:
    assert name in reasons, (name, printed)
    assert all(r['reason'] and '\n' not in r['reason']
               for r in reasons[name]), reasons[name]
    clear += 1
  ledger.record('bad inputs: prepare build', bad_inputs=len(corpus),
                clear_errors=clear)


# --- byte-level header mutations of real files -------------------------------

REAL_FILES = [sunpy.data.test.get_test_filepath('aia_171_level1.fits'),
              sunpy.data.test.get_test_filepath(
                  'EIT/efz20040301.000010_s.fits'),
              sunpy.data.test.get_test_filepath('resampled_hmi.fits')]


def _cards(path):
  with open(path, 'rb') as f:
    raw = f.read()
  end = raw.index(b'END' + b' ' * 77)
  keys = [raw[i:i + 8].decode('ascii').strip() for i in range(0, end, 80)
          if raw[i + 8:i + 10] == b'= ']
  return raw, [k for k in keys if k not in ('SIMPLE', 'BITPIX', 'NAXIS',
                                            'NAXIS1', 'NAXIS2', 'EXTEND')]


_RAW = {p: _cards(p) for p in REAL_FILES}

# Value fields as an archive file may hold them: types, NaN / infinities
# (unparsable or overflowing cards), negative, huge, empty and odd strings.
_VALUE_TEXT = st.one_of(
    st.sampled_from(['NaN', 'nan', 'Inf', '-Inf', '1.0E9999', '-1.0E9999',
                     "''", "'        '", '###', 'T', 'F', '0', '-0.0',
                     '99999999999999999999999', '-99999999999999999999',
                     "'2012-13-45T99:99:99'", "'NaN'", "'-1'", '1.0D5',
                     '(1.0, 2.0)', "'\\xff'"]),
    st.integers(-10**30, 10**30).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.text(st.characters(min_codepoint=32, max_codepoint=126,
                          exclude_characters="'"),
            max_size=16).map(lambda s: f"'{s}'"))


def _mutate(raw, key, text):
  for i in range(0, raw.index(b'END' + b' ' * 77), 80):
    if raw[i:i + 8].decode('ascii').strip() == key:
      card = f'{key:<8}= {text:>20}'.ljust(80)[:80]
      return raw[:i] + card.encode('ascii', 'replace') + raw[i + 80:]
  raise KeyError(key)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), text=_VALUE_TEXT)
def test_mutated_header_bytes_give_data_error_only(tmp_path_factory, data,
                                                   text):
  path = data.draw(st.sampled_from(REAL_FILES))
  raw, keys = _RAW[path]
  key = data.draw(st.sampled_from(keys))
  target = tmp_path_factory.mktemp('mut') / 'm.fits'
  target.write_bytes(_mutate(raw, key, text))
  for read in (fitsio.read_sdo_header, fitsio.read_sdo):
    try:
      with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        read(target, wavelength=None)
    except DataError as exc:
      assert '\n' not in str(exc) and str(exc).startswith('m.fits: ')


def test_unparsable_card_is_a_data_error(tmp_path):
  raw, _ = _RAW[REAL_FILES[0]]
  path = tmp_path / 'nan.fits'
  path.write_bytes(_mutate(raw, 'EXPTIME', 'NaN'))
  with pytest.raises(DataError, match="unparsable header card 'EXPTIME'"):
    fitsio.read_sdo_header(path, wavelength=None)
