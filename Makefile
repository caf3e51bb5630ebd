# ltlab: `make demo` trains on the embedded digits-LT data; `make test` runs the whole suite (CI),
# `make test-fast` the everyday part (no subprocess, browser or multi-minute training).
# Both create .venv when missing and install the project (and, as root, the Debian packages) first.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.ltlab-installed
APT_PKGS := dataset-fashion-mnist chromium
PYTEST_ARGS ?=

.PHONY: demo test test-fast screenshots install system-deps clean-runs notebooks figures figures-workbench bench

install: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x $(BIN)/python ]; then \
	  $(PY) -m venv $(VENV) 2>/dev/null || { \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv && $(PY) -m venv $(VENV); \
	    else echo "python3 -m venv failed: run 'sudo apt-get install python3-venv' and retry"; exit 1; fi; }; \
	fi
	$(BIN)/python tools/install.py $(BIN)/python '.[analysis,test]'
	@touch $(STAMP)

system-deps:
	@missing=""; for p in $(APT_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "optional Debian packages missing; install them with: sudo apt-get install -y$$missing"; fi; \
	fi

# runs/demo is rebuilt from scratch each time (about 1.5 minutes on 2 cores)
demo: $(STAMP) system-deps
	rm -rf runs/demo
	$(BIN)/python -m ltlab run notebooks/01_train.ipynb -p progress False -p run_dir runs/demo --quiet
	$(BIN)/python -c "from ltlab.viz.export import demo_figures; ps = demo_figures('runs/demo', 'figures/demo'); print('demo figures:', *ps, sep='\n  ')"

# three pytest workers on 2 cores (pytest-xdist; a test file stays on one worker, so its fixtures are built once):
# much of the suite waits on kernels, browsers and heartbeats, and a third worker fills that time; one torch thread
# each, and every process a test starts gets OMP_NUM_THREADS=1 and OMP_WAIT_POLICY=PASSIVE (tests/conftest.py);
# the longest files go first, in the order tests/conftest.py gives (--no-loadscope-reorder: xdist would sort them
# by test count); PYTEST_WORKERS=0 runs everything in this process
PYTEST_WORKERS ?= 3
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder)

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q $(XDIST) --durations=15 $(PYTEST_ARGS)

# everything that needs no subprocess, browser or multi-minute training (markers in pyproject.toml):
# 40 s on 2 idle cores
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow and not subprocess and not browser" $(PYTEST_ARGS)

# refresh the committed JupyterLab screenshots (figures/jupyterlab/*.png, figures/browser_widgets.png):
# tests/test_browser.py writes them to a temporary folder unless LTLAB_SCREENSHOTS names one
screenshots: $(STAMP) system-deps
	LTLAB_SCREENSHOTS=figures $(BIN)/python -m pytest -q -m browser tests/test_browser.py $(PYTEST_ARGS)

# the committed figures/ and figures/README.md (ltlab.viz.paper_figures: 18 small CPU runs on Fashion-MNIST-LT IF 100,
# head capped at 500 images (13 methods, LDAM-DRW and ALA-DRW at two more seeds, GLAG's AFG stage two), trained once
# into runs/figures/ and trained again when the training code changed since a run's commit: 30-40 s per run on 2 idle
# cores (about 15 minutes in all), far longer on a machine busy with other work; then about 4 minutes with the runs
# reused)
figures: $(STAMP) system-deps
	$(BIN)/python tools/make_figures.py --out figures

# figures/workbench.png: the 09_tuning workbench driven in JupyterLab (tests/test_browser_workbench.py, ~3 minutes)
figures-workbench: $(STAMP) system-deps
	LTLAB_SCREENSHOT_DIR=figures $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_browser_workbench.py

# speed against the reference loop, measured in the same run (issue 8): the CPU tables, then the GPU
# end-to-end table when torch sees a CUDA device (GPU_BENCH_ARGS, e.g. "--only 'ltlab fp32' reference")
BENCH_ARGS ?= --device cpu --quick
GPU_BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python benchmarks/bench_train.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/bench_analysis.py
	@if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
		$(BIN)/python benchmarks/bench_train.py --device cuda $(GPU_BENCH_ARGS); \
	else echo "no CUDA device: GPU benchmarks skipped (on a GPU machine: make bench, or bash benchmarks/gpu_check.sh)"; fi

notebooks: $(STAMP)
	$(BIN)/python tools/make_notebooks.py

clean-runs:
	rm -rf runs/
