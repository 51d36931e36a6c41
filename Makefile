# Two entry points: `make demo` (the offline main job) and `make test` (the test suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch is pinned first so that no dependency can pull a multi-GB CUDA build on a CPU machine.
TORCH_SPEC ?= torch==2.13.0

.PHONY: setup demo test bench clean

# The demo needs only the core and the figures; tests and the rest of the product need every extra.
DEMO_READY := $(VENV)/.demo-installed
ALL_READY := $(VENV)/.all-installed
TORCH_READY := $(VENV)/.torch-installed

$(TORCH_READY):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	touch $@

$(DEMO_READY): pyproject.toml | $(TORCH_READY)
	$(BIN)/pip install --quiet -e ".[reports]"
	touch $@

$(ALL_READY): pyproject.toml | $(TORCH_READY)
	$(BIN)/pip install --quiet -e ".[all,dev]"
	touch $@ $(DEMO_READY)

setup: $(ALL_READY)

demo: $(DEMO_READY)
	$(BIN)/fluxbench run

test: $(ALL_READY)
	bash scripts/install-browser.sh
	$(BIN)/python -m pytest -q tests

bench: $(ALL_READY)
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info
