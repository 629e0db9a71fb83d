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

.PHONY: install native demo test unit test-kafka bench lint clean kafka-up kafka-down

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

## The main job: the demo against the local broker (started if needed).
demo: install
	$(BIN)/pfilter demo

## Every test: unit, property, and integration against a real Kafka broker.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Fast tests only (no broker).
unit: $(STAMP) $(NATIVE_STAMP)
	$(BIN)/python -m pytest -m "not kafka" $(PYTEST_ARGS)

test-kafka: install
	$(BIN)/python -m pytest -m kafka $(PYTEST_ARGS)

bench: install
	$(BIN)/pfilter bench engine

kafka-up: install
	$(BIN)/pfilter kafka up

kafka-down:
	$(BIN)/pfilter kafka down

clean: kafka-down
	rm -rf .state .pytest_cache .hypothesis
