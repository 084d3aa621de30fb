# The README's two commands: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MLFLOW_DISABLE_TELEMETRY := true
export RAY_USAGE_STATS_ENABLED := 0
# Some machines (this project's among them) set PYTHONDONTWRITEBYTECODE=1: then every process,
# each Ray worker too, compiles what it imports afresh (torch, Lightning, Ray and MLflow: 16-19 s
# an import against 7 s). Unset for what make runs, Python compiles each module once, on its
# first import, and only the modules imported: no up-front compile of the whole venv (30 s).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: demo test test-fast lint bench clean browser

# torch first and pinned: the CPU build of 2.13.0 is what `pip install torch==2.13.0` finds
# here; letting lightning pull a plain `torch` would fetch a multi-GB CUDA build instead.
# The rest at the versions tested, from constraints.txt, by uv: it fetches and unpacks them in
# parallel, 7 s here against pip's 49 s. It keeps the torch installed (its version satisfies
# every requirement) and, with --no-cache, no 1 GB cache on a CI disk. Where uv cannot be
# installed or reach PyPI (a mirror only pip is configured for), pip does the same install.
# Neither compiles bytecode here: Python does, on first import (above).
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile torch==2.13.0
	($(BIN)/pip install --quiet uv==0.13.9 && \
		$(BIN)/uv pip install --quiet --no-cache --python $(BIN)/python -c constraints.txt -e '.[dev]') \
		|| $(BIN)/pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/scaling plan experiments/smoke.yaml
	$(BIN)/scaling run experiments/smoke.yaml
	$(BIN)/scaling status smoke
	$(BIN)/scaling report smoke --out report
	@echo
	@echo "Report:       $(CURDIR)/report/report.html"
	@echo "MLflow store: $${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}"
	@echo "Dashboard:    $(BIN)/scaling ui   (then open http://127.0.0.1:5000)"

lint: $(STAMP)
	$(BIN)/ruff check scaling analysis tests benchmarks
	$(BIN)/ruff format --check scaling analysis tests benchmarks
	$(BIN)/mypy scaling analysis

# The report's browser test opens it in Debian's Chromium: installed here when missing.
browser:
	@command -v chromium >/dev/null || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq chromium >/dev/null; }

# Everything, as CI runs it, with the slowest tests named.
test: lint browser
	$(BIN)/pytest -q --durations=15

# The fast tier (about a minute): specs, the model, fits, frontier, timing, the report from a
# CSV, the contract, and the driver's callbacks fed real Tune trials. No Ray, no Lightning run,
# so its tests can share the machine: one worker per core, and one thread per worker (torch's
# and BLAS's threads, a worker's each, would outnumber the cores: 12% slower, 75-82 s against
# 67-69 s alternated here). (The full suite stays serial: its tests start Ray, servers and
# trainings that each want the whole machine.)
test-fast: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/pytest -q -n auto -m "not slow" --durations=5

bench: $(STAMP)
	@for b in benchmarks/[!_]*.py; do echo "# $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) scaling_runs scaling_spool mlruns mlartifacts mlflow.db report
