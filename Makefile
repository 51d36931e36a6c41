# Two entry points: `make demo` (the offline main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned first so that no dependency can pull a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

$(BIN)/fluxbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $@

setup: $(BIN)/fluxbench

demo: setup
	$(BIN)/fluxbench run

test: setup
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest -q tests

bench: setup
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
