# Blaze2Cap: every target sets itself up from the pinned requirements (Python 3.11 + pip).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install synth-install test demo bench extension clean

install: $(STAMP)

$(STAMP): requirements/base.txt requirements/dev.txt pyproject.toml capture/models.py
	@$(PYTHON) -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" || { echo "Python 3.11 is needed (found $(PYTHON)): run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23"
	# torch first and pinned: an unpinned torch would pull several GB of CUDA packages.
	$(BIN)/python -m pip install -q "torch==2.13.0"
	$(BIN)/python -m pip install -q -c requirements/base.txt -r requirements/dev.txt
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	# BlazePose heavy (the model of the training landmarks): pinned npm archive, checksummed,
	# so mediapipe never downloads at run time. Offline: --from a local copy of the archive.
	$(BIN)/python -m capture.models install heavy
	touch $@

# Optional data engine (blaze2cap synth): anny and its dependencies, pinned; torch/numpy unchanged.
synth-install: install
	$(BIN)/python -m pip install -q -c requirements/base.txt -r requirements/synth.txt

# The tests include the data engine's (real Anny + Blender + BlazePose), so CI installs it too.
test: synth-install
	$(BIN)/python -m pytest -q tests

demo: install
	$(BIN)/python -m training.demo

bench: install
	$(BIN)/python benchmarks/run.py

extension: install
	$(BIN)/python scripts/build_extension.py

clean:
	rm -rf out runs .pytest_cache
