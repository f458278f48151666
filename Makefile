# The two quick-start commands: `make demo` and `make test`.
#
# With no PYTHON given, everything goes into a project virtual environment, .venv/, made with
# the first `python3` on PATH (BASE_PYTHON=python3.12 picks another). That works on Debian's and
# Ubuntu's externally managed system Python (PEP 668), on pyenv and inside conda alike.
# PYTHON=/path/to/env/bin/python installs into that environment instead (a conda env, or a venv
# that already holds your own CUDA torch).
#
# torch is installed first, and pinned (TORCH, by default the CPU build torch==2.13.0) only when
# the environment has no torch at all, so a GPU user's own torch is kept.
BASE_PYTHON ?= python3
VENV ?= .venv
ifeq ($(origin PYTHON), undefined)
PYTHON := $(VENV)/bin/python
ENV_TARGET := $(VENV)/bin/python
else
ENV_TARGET :=
endif
TORCH ?= torch==2.13.0
CORES ?= 2
PIP := $(PYTHON) -m pip

.PHONY: install install-dev demo test lint clean-venv

$(VENV)/bin/python:
	@command -v $(BASE_PYTHON) >/dev/null 2>&1 || { \
		echo "make: no '$(BASE_PYTHON)' on PATH; install Python 3.10 or newer, or pass BASE_PYTHON=/path/to/python3" >&2; \
		exit 2; }
	@$(BASE_PYTHON) -c "import sys; sys.exit(0 if sys.version_info[:2] >= (3, 10) else 1)" || { \
		echo "make: $(BASE_PYTHON) is Python `$(BASE_PYTHON) -c 'import platform; print(platform.python_version())'`; medcnn needs 3.10 or newer (pass BASE_PYTHON=...)" >&2; \
		exit 2; }
	@echo "$(BASE_PYTHON) -m venv $(VENV)"
	@$(BASE_PYTHON) -m venv $(VENV) || { \
		rm -rf $(VENV); \
		echo "make: '$(BASE_PYTHON) -m venv' failed; on Debian/Ubuntu: sudo apt-get install python3-venv" >&2; \
		exit 2; }

install: $(ENV_TARGET)
	@$(PYTHON) -c "import torch" 2>/dev/null && echo "keeping the installed torch" \
		|| $(PIP) install $(TORCH)
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
	$(PYTHON) -m ruff check medcnn tests bench
	$(PYTHON) -m snakemake --lint

clean-venv:
	rm -rf $(VENV)
