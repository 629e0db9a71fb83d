# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each installs what it needs, idempotently: a virtualenv in .venv with the
# pinned dependencies (requirements.lock), and the Kafka broker jars (Maven).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
NATIVE_STAMP := $(VENV)/.native-stamp
CARGO  ?= cargo
PYTEST_ARGS ?=

.PHONY: install native demo test unit test-kafka bench lint clean kafka-up kafka-down browser-deps

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

## The native engine core (native/, Rust): built into the venv when cargo is present
## (maturin, pinned in native/pyproject.toml); without cargo the Python engine runs.
$(NATIVE_STAMP): $(STAMP) native/Cargo.toml native/Cargo.lock native/pyproject.toml $(wildcard native/src/*.rs)
	@if command -v $(CARGO) >/dev/null 2>&1; then \
	  echo "building the native engine (native/, cargo + maturin)"; \
	  $(BIN)/python -m pip install -q --disable-pip-version-check ./native && touch $@; \
	else \
	  echo "no cargo on this machine: native engine not built; the Python engine runs (PFILTER_ENGINE=auto)"; \
	fi

native: $(NATIVE_STAMP)

install: $(STAMP) $(NATIVE_STAMP)
	$(BIN)/pfilter kafka fetch
	$(BIN)/pfilter registry fetch
	@# promtool for the alert-rule tests (Debian's prometheus package, unpacked
	@# into .venv/bin; says so and goes on where apt is unavailable)
	@deploy/tools/install-promtool.sh

## The main job: the demo against the local broker (started if needed).
demo: install
	$(BIN)/pfilter demo

## Headless Chromium and its driver for the support page's browser test
## (tests/integration/test_support_page.py): Debian's packages, installed as root
## when missing; elsewhere it says what to install and the browser test fails naming it.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	  echo "installing chromium and chromium-driver (apt-get)"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null; \
	else echo "the browser test needs Debian's chromium and chromium-driver: apt-get install chromium chromium-driver (as root)"; fi

## Every test: unit, property, and integration against a real Kafka broker.
test: install browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Fast tests only (no broker).
unit: $(STAMP) $(NATIVE_STAMP)
	$(BIN)/python -m pytest -m "not kafka" $(PYTEST_ARGS)

test-kafka: install browser-deps
	$(BIN)/python -m pytest -m kafka $(PYTEST_ARGS)

bench: install
	$(BIN)/pfilter bench engine

kafka-up: install
	$(BIN)/pfilter kafka up

kafka-down:
	$(BIN)/pfilter kafka down

clean: kafka-down
	rm -rf .state .pytest_cache .hypothesis
