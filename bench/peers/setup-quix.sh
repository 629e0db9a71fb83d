#!/usr/bin/env bash
# Create bench/peers/.venv-quix with Quix Streams (idempotent).
# Quix Streams 3.28.1 needs confluent-kafka<2.13, pydantic<2.14 and
# pydantic-settings<2.16; the project pins 2.16.1 / 2.14.3 / 2.16.3, so Quix gets
# its own virtualenv, installed from the pinned requirements-quix.txt.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv-quix
STAMP=$VENV/.installed
if [[ -f "$STAMP" && "$STAMP" -nt requirements-quix.txt ]]; then
  exit 0
fi
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -r requirements-quix.txt
touch "$STAMP"
