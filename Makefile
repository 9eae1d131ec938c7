# Two commands set everything up:
#   make lab    build .venv if needed, then open the course tour in JupyterLab
#   make test   build .venv if needed, then run tests/ and every notebook under nbval (fast mode)
# Nothing is installed outside .venv and no Jupyter kernel is registered globally.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Rebuilt only when the dependency files change.
STAMP := $(VENV)/.minidiff-installed
# pip prints what it collects and installs, so the first run (several minutes) shows progress.
PIP_FLAGS ?= --progress-bar on
EXTRAS ?= course,dev

NOTEBOOK ?= notebooks/00_tour.ipynb
LAB_ARGS ?=
# JupyterLab serves the repository root, so notebooks/, exercises/ and minidiff/ are all in its
# file browser and every relative link between them opens; the URL it prints (also with
# --no-browser) opens $(NOTEBOOK). tests/browser starts JupyterLab through this same target.
# The file browser hides what pip's editable install leaves at the root (*.egg-info) besides
# Jupyter's own defaults.
LAB_HIDE := ['__pycache__','*.pyc','*.pyo','.DS_Store','*.so','*.dylib','*~','*.egg-info']
LAB_FLAGS = --ServerApp.root_dir="$(CURDIR)" --LabApp.default_url=/lab/tree/$(NOTEBOOK) \
	--ContentsManager.hide_globs="$(LAB_HIDE)"
# Jupyter refuses to start as root (containers, CI machines) unless told otherwise.
LAB_ROOT := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root)

MINIDIFF_FAST ?= 1
# Directories that hold notebooks nbval should execute; missing ones are skipped.
NB_DIRS := $(wildcard notebooks exercises/solutions)
NBVAL_FLAGS ?= --nbval-lax --nbval-current-env --nbval-cell-timeout=900
PYTEST_ARGS ?=
# Test modules and notebooks run in parallel, one worker per CPU core (TEST_WORKERS=0: serially).
# --dist loadscope keeps each notebook's cells, and each module's tests, together and in order.
TEST_WORKERS ?= auto
XDIST_FLAGS = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadscope)

.DEFAULT_GOAL := help
.PHONY: help env lab test bench lint clean

help:
	@echo "make lab    create .venv (first run only) and open $(NOTEBOOK) in JupyterLab"
	@echo "            options: LAB_ARGS='--no-browser --port 8899'  NOTEBOOK=notebooks/01_forward_process.ipynb"
	@echo "make test   create .venv (first run only) and run tests/ plus all notebooks (MINIDIFF_FAST=$(MINIDIFF_FAST))"
	@echo "            options: PYTEST_ARGS='-x -k schedule'  MINIDIFF_FAST=0 (full-size notebooks)  TEST_WORKERS=0 (serial)"
	@echo "make bench  run the benchmark scripts in bench/"
	@echo "make lint   ruff check + ruff format --check (minidiff, tests, bench) and mypy"
	@echo "make clean  remove .venv, caches and build artefacts"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "minidiff needs Python >= 3.10 (found %s); run e.g. make PYTHON=python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)

# Order-only prerequisite: creating the interpreter must not by itself force a reinstall.
$(STAMP): pyproject.toml constraints.txt | $(BIN)/python
	@echo "Installing minidiff and its dependencies into $(VENV) (the first time takes a few minutes: torch alone is a large download)"
	$(BIN)/python -m pip install $(PIP_FLAGS) -e ".[$(EXTRAS)]" -c constraints.txt
	@touch $@

env: $(STAMP)

lab: $(STAMP)
	@test -f "$(NOTEBOOK)" || { echo "NOTEBOOK=$(NOTEBOOK) does not exist"; exit 1; }
	@echo "JupyterLab serves $(CURDIR): lectures in notebooks/, exercises in exercises/ (solutions in exercises/solutions/)"
	$(BIN)/jupyter lab $(LAB_FLAGS) $(LAB_ROOT) $(LAB_ARGS)

test: $(STAMP)
	MINIDIFF_FAST=$(MINIDIFF_FAST) MINIDIFF_STRICT_CHECKS=1 $(BIN)/python -m pytest -p no:cacheprovider $(XDIST_FLAGS) tests \
		$(if $(NB_DIRS),$(NBVAL_FLAGS) $(NB_DIRS)) $(PYTEST_ARGS)

bench: $(STAMP)
	@set -e; found=0; for f in bench/*.py; do \
		[ -f "$$f" ] || continue; \
		case "$$(basename $$f)" in _*) continue;; esac; \
		found=1; echo "== $$f"; $(BIN)/python "$$f"; \
	done; [ $$found = 1 ] || echo "no benchmark scripts in bench/"

# tests/test_lint.py runs the same two ruff commands, so `make test` keeps this target passing.
LINT_PATHS := minidiff tests bench
lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './.git/*' -exec rm -rf {} +
	find . -name .ipynb_checkpoints -type d -prune -not -path './.git/*' -exec rm -rf {} +
