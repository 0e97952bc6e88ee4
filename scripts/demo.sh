#!/usr/bin/env bash
# The local loop of the seed example, end to end, on the embedded PostGIS
# (under state/.pg; stop it with `honua dev db stop`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh

PYTHON="${PYTHON:-python3}"
# Each step is echoed, then run with the installed console script, or with the module
# when `honua` is not on PATH (e.g. a pyenv shim not yet rehashed).
honua() {
  echo "+ honua $*" >&2
  if command -v honua >/dev/null 2>&1; then
    command honua "$@"
  else
    "$PYTHON" -c 'import sys; from honua_plan.cli import main; sys.argv[0] = "honua"; sys.exit(main())' "$@"
  fi
}

honua dev db start
honua validate --env dev
# Next steps, to be enabled as the commands land:
# honua dev seed-data
# honua plan --env dev --out plan.json
# honua apply --env dev plan.json --auto-approve
# honua test --env dev
