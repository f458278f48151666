# The two quick-start commands: `make demo` and `make test`.
# PYTHON is the interpreter of the environment to install into (a venv, conda env, or the
# system one). torch is installed first and pinned to the CPU build only when the
# environment has no torch at all, so a GPU user's own CUDA torch is kept.
PYTHON ?= python3
CORES ?= 2
PIP := $(PYTHON) -m pip

.PHONY: install install-dev demo test lint

install:
	@$(PYTHON) -c "import torch" 2>/dev/null && echo "keeping the installed torch" \
		|| $(PIP) install "torch==2.13.0"
	$(PIP) install -e .
	@# pyenv only sees new console scripts (medcnn, snakemake) after a rehash.
	@command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

install-dev: install
	$(PIP) install -e ".[dev]"
	@command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

demo: install
	$(PYTHON) -m snakemake --cores $(CORES)
	@echo
	@echo "Reports: results/reports/cohort.html (cohort) and results/reports/sub-*.html (one per patient)"

test: install-dev
	$(PYTHON) -m pytest

lint: install-dev
	$(PYTHON) -m ruff check medcnn tests
	$(PYTHON) -m snakemake --lint
