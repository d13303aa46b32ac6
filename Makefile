# Two entry points: `make figures` and `make test`. Both create the virtual
# environment on first use, so a fresh clone needs nothing else; neither builds
# the organism (it ships in data/organism; `make organism` rebuilds it).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The CPU wheel of torch is installed first, so that no dependency resolves
# torch to a multi-GB CUDA build. GPU users: `make install TORCH_SPEC=` after
# installing their own torch into .venv (see README).
TORCH_SPEC ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: install organism lint test test-fast figures grid reference clean-runs

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install --quiet "$(TORCH_SPEC)"; fi
	$(BIN)/pip install --quiet -e '.[dev,trl]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	if [ -d .git ]; then git config core.hooksPath .githooks; fi
	touch $(STAMP)

install: $(STAMP)

# The organism ships in data/organism; this rebuilds it from its recipe and the data
# files (about 4 minutes on 2 cores) and replaces the shipped copy. Commit the result.
organism: $(STAMP)
	$(BIN)/python -m vgrout.lm build --output data/organism

# ruff lints and checks formatting, mypy checks the types of vgrout/ (config in
# pyproject.toml); notebooks must hold no outputs.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/strip_notebooks.py --check notebooks/*.ipynb

test: lint
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q -p no:cacheprovider --nbval-lax --nbval-cell-timeout=900 notebooks/

# The suite without the tests marked slow (models trained for many steps, whole notebooks).
test-fast: lint
	$(BIN)/python -m pytest -q -m "not slow"

# Replots every committed grid from results/ (trains nothing; minutes on 2 cores).
figures: $(STAMP)
	$(BIN)/python -m vgrout.figures

# Trains one committed grid again into out/retrain/$(GRID) (hours on 2 cores; resumable)
# and compares it with results/$(GRID): make grid GRID=primary|secondary|replication|powered|monitors
GRID ?= primary
grid: $(STAMP)
	$(BIN)/python -m vgrout.figures.retrain $(GRID)

# The external reference data (real 4B-model hacks) into .cache/reference, sha256-checked.
reference: $(STAMP)
	$(BIN)/python -m vgrout.env.reference

clean-runs:
	rm -rf runs out
