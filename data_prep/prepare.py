"""CLI: ``python -m data_prep.prepare {patch,build} ...``.

``patch IN.fits --out OUT.fits``: one full-disk AIA 304 or HMI LOS file ->
the paper's (800, 900) heliographic CAR patch (see data_prep.patches). Bad
input gives one line ``error: ...`` on stderr and exit code 2; the output is
written atomically (never half-written).

``build ...``: delegated to ``data_prep.build`` (pair, calibrate and patch a
whole raw tree in parallel); imported only when that subcommand is used.
"""
import argparse
import sys
import warnings
from pathlib import Path

from magjax_common.errors import fail


def _add_patch_arguments(parser):
  parser.add_argument('input', type=Path,
                      help='full-disk SDO/AIA 304 A or SDO/HMI LOS FITS file')
  parser.add_argument('--out', type=Path, required=True,
                      help='output patch FITS file')
  parser.add_argument('--allow-bad-quality', action='store_true',
                      help='accept frames whose QUALITY keyword is not 0')
  parser.add_argument('--register', action='store_true',
                      help='AIA: run aiapy.calibrate.register explicitly '
                      '(a second interpolation) instead of doing the '
                      'registration inside the patch WCS mapping')


def _run_patch(args):
  from data_prep import fitsio
  from data_prep.fitsio import DataError
  if args.out.resolve() == args.input.resolve():
    return fail(f'{args.out}: output would overwrite the input')
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      # Header checks first: bad files fail before the heavy imports.
      fitsio.read_sdo_header(args.input,
                             allow_bad_quality=args.allow_bad_quality)
      from data_prep import patches
      pmap = patches.patch_file(args.input, args.out,
                                allow_bad_quality=args.allow_bad_quality,
                                register=args.register)
  except DataError as exc:
    return fail(exc)
  except OSError as exc:
    return fail(f'{args.out}: cannot write ({exc.strerror or exc})')
  valid = float((pmap.data == pmap.data).mean())
  print(f'wrote {args.out} ({pmap.data.shape[0]}x{pmap.data.shape[1]}, '
        f'{100 * valid:.1f}% valid, BUNIT {pmap.meta.get("bunit")})')
  return 0


def main(argv=None):
  argv = list(sys.argv[1:] if argv is None else argv)
  parser = argparse.ArgumentParser(
      prog='python -m data_prep.prepare',
      description='SDO full-disk FITS -> heliographic active-region patches.')
  sub = parser.add_subparsers(dest='command', required=True)
  _add_patch_arguments(sub.add_parser(
      'patch', help='one full-disk file -> one (800, 900) patch FITS'))
  build_parser = sub.add_parser(
      'build', help='pair, calibrate and patch a raw tree (data_prep.build)')
  build = None
  if argv[:1] == ['build']:
    try:
      from data_prep import build
    except ImportError as exc:
      return fail(f'data_prep.build is not available ({exc})')
    build.add_arguments(build_parser)
  args = parser.parse_args(argv)
  if args.command == 'patch':
    return _run_patch(args)
  return build.run(args)


if __name__ == '__main__':
  sys.exit(main())
