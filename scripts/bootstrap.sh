#!/usr/bin/env bash
# Install what honua-plan needs, on a fresh Debian 12 machine with Python 3.11.
#   - PostgreSQL 15 + PostGIS 3 server binaries (apt), only when missing; no cluster is
#     created and no service is started: the tests and `honua dev db` run their own.
#   - this checkout, editable, with the dev extra (pip), only when not already current.
# Idempotent; a no-op (well under a second) when everything is present.
# Runs as root (as CI does) or as a user with sudo.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON="${PYTHON:-python3}"
PG_MAJOR="${HONUA_PG_MAJOR:-15}"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "bootstrap: root or sudo is needed to run: $*" >&2
    return 1
  fi
}

# --- PostgreSQL + PostGIS ----------------------------------------------------------
if [ ! -f "/usr/share/postgresql/$PG_MAJOR/extension/postgis.control" ] \
   || [ ! -x "/usr/lib/postgresql/$PG_MAJOR/bin/initdb" ]; then
  echo "bootstrap: installing PostgreSQL $PG_MAJOR and PostGIS (apt-get)" >&2
  # Binaries only: Debian's postgresql-common would otherwise create and start a
  # 'main' cluster on port 5432.
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' \
    | as_root tee /etc/postgresql-common/createcluster.d/50-honua-no-main-cluster.conf >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "postgresql-$PG_MAJOR" "postgresql-$PG_MAJOR-postgis-3" "postgresql-client-$PG_MAJOR"
fi

# --- Python packages -----------------------------------------------------------------
# Exit 0 when honua-plan is installed editable from *this* checkout, at this version,
# with the same console scripts, and every base and dev requirement is satisfied.
python_is_current() {
  # -P: do not put the checkout on sys.path (its *.egg-info would shadow the install)
  "$PYTHON" -P - <<'PY'
import importlib.metadata as md
import json
import pathlib
import sys
import tomllib

try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement

root = pathlib.Path.cwd().resolve()
project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
try:
    dist = md.distribution(project["name"])
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
except (md.PackageNotFoundError, ValueError):
    sys.exit(1)
if dist.version != project["version"]:
    sys.exit(1)
if direct.get("url") != root.as_uri() or not direct.get("dir_info", {}).get("editable"):
    sys.exit(1)  # not installed from this checkout (a clone elsewhere, or not editable)
scripts = {ep.name for ep in dist.entry_points if ep.group == "console_scripts"}
if scripts != set(project.get("scripts", {})):
    sys.exit(1)
extras = project.get("optional-dependencies", {})
wanted = [*project.get("dependencies", []), *extras.get("dev", []), *extras.get("server", [])]
for line in wanted:
    req = Requirement(line)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        sys.exit(1)
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        sys.exit(1)
PY
}

if ! python_is_current; then
  echo "bootstrap: pip install -e '.[dev,server]'" >&2
  "$PYTHON" -m pip install -q --disable-pip-version-check -e '.[dev,server]'
  if command -v pyenv >/dev/null 2>&1; then
    pyenv rehash >/dev/null 2>&1 || true  # expose the new `honua` console script
  fi
fi
