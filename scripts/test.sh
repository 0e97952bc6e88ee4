#!/usr/bin/env bash
# Run the test suite: bootstrap (a no-op when .venv is current), then pytest in .venv.
# Arguments go to pytest, e.g. scripts/test.sh tests/integration -k pgserver
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec "${HONUA_VENV:-.venv}/bin/python" -m pytest -q "$@"
