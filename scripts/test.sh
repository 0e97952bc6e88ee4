#!/usr/bin/env bash
# Run the test suite: bootstrap (a no-op when all is installed), then pytest.
# Arguments go to pytest, e.g. scripts/test.sh tests/integration -k pgserver
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh
exec "${PYTHON:-python3}" -m pytest -q "$@"
