#!/usr/bin/env bash
# The local loop of the seed example, end to end, on the embedded PostGIS
# (under state/.pg; stop it with `honua dev db stop`, the server with `honua serve --stop`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh

PYTHON="${HONUA_VENV:-.venv}/bin/python"
# The demo is the dev loop, on the embedded PostGIS on purpose. Under CI (CI=true, as
# scripts/fresh-check.sh runs it) that fallback is refused unless CI is set but empty.
export CI=
# Each step is echoed, then run with the module (works before the shell rehashes `honua`).
honua() {
  echo "+ honua $*" >&2
  "$PYTHON" -m honua_plan "$@"
}

honua dev db start
honua validate
honua dev seed-data --rows 42
honua plan --env dev --out state/dev-plan.json
honua dev apply --environment dev
honua test --layer bike-lanes
honua drift --env dev
echo
echo "Served at http://localhost:5555/ogc/collections/transportation::bike-lanes/items"
echo "Next, the seed's Example 2: honua deploy migration 003 --environment dev"
echo "(on 42 rows its performance validation fails and it is rolled back automatically)"
