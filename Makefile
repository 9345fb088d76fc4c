# Two commands for a fresh clone (see README):
#   make run    create .venv if missing, install robot-rl[sim], run the main job
#   make test   create .venv if missing, install robot-rl[sim,dev,ros], run the default test tier
# The venv is re-installed when pyproject.toml or constraints/dev.txt change.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
PYTEST_ARGS ?=
# the venv's console scripts (robot-rl-*) first on PATH for every recipe
export PATH := $(abspath $(BIN)):$(PATH)
# headless offscreen rendering for MuJoCo (videos, pixel observations)
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: run test test-learning lint bench clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch is pinned for development/CI only (constraints/dev.txt); users keep their own torch.
$(VENV)/.installed-%: pyproject.toml constraints/dev.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints/dev.txt torch
	$(BIN)/pip install --quiet -c constraints/dev.txt -e ".[$*]"
	touch $@

run: $(VENV)/.installed-sim
	$(BIN)/robot-rl-train $(ARGS)

test: $(VENV)/.installed-sim,dev,ros,vlm
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-learning: $(VENV)/.installed-sim,dev,ros
	$(BIN)/python -m pytest -m "learning" $(PYTEST_ARGS)

lint: $(VENV)/.installed-sim,dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
