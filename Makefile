# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Each installs what it needs, idempotently: a virtualenv in .venv with the
# pinned dependencies (requirements.lock), and the Kafka broker jars (Maven).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test unit test-kafka bench lint clean kafka-up kafka-down

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)
	$(BIN)/pfilter kafka fetch
	$(BIN)/pfilter registry fetch
	@# promtool for the alert-rule tests (Debian's prometheus package, unpacked
	@# into .venv/bin; says so and goes on where apt is unavailable)
	@deploy/tools/install-promtool.sh

## The main job: the demo against the local broker (started if needed).
demo: install
	$(BIN)/pfilter demo

## Every test: unit, property, and integration against a real Kafka broker.
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Fast tests only (no broker).
unit: $(STAMP)
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
