# What people and CI call. Every target installs into .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: run test test-system-packages lint format bench bench-api bench-images bench-tools clean

$(STAMP): pyproject.toml setup.py constraints.txt src/taskmill/images/_jpeg_onepass.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@$(BIN)/python -c 'import taskmill.images.onepass as o; o.AVAILABLE or print("note: built \
	without libjpeg headers (apt-get install libjpeg-dev, then make clean): plain JPEGs \
	take the slower two-decode path")'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taskmill up

# The suite drives a real S3 server (Ceph RGW) and a real browser (Chromium), and checks
# the JPEG extension (libjpeg's headers): system packages first, so the build finds them.
test: test-system-packages $(STAMP)
	$(BIN)/pytest

test-system-packages:
	scripts/install-test-system-packages.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) bench-tools
	$(BIN)/python -m bench.engine
	$(BIN)/python -m bench.api
	$(BIN)/python -m bench.images

# The API benchmark drives load with wrk (hey is the fallback people reach for by hand);
# both come from Debian. Installed on demand, never on the test path.
bench-tools:
	@command -v wrk >/dev/null && command -v hey >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk hey; }

bench-api: $(STAMP) bench-tools
	$(BIN)/python -m bench.api

bench-images: $(STAMP)
	$(BIN)/python -m bench.images

clean:
	rm -rf $(VENV) build .mypy_cache .ruff_cache .pytest_cache
	find src -name "*.so" -delete
