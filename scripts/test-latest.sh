#!/usr/bin/env bash
# The suite against the newest versions that pyproject.toml allows (not the lock), in
# .venv-latest: run it before `make lock` to see what an upgrade would break.
# Arguments go to pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/bootstrap.sh  # PostgreSQL/PostGIS and the uv of the lock
UV=.venv/bin/uv
# The platform's certificate store (Debian's /etc/ssl/certs), as pip uses, rather than
# uv's bundled roots: a site with its own CA (a proxy) works as it does for pip.
export UV_SYSTEM_CERTS=1
PYTHON="${HONUA_PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON=python3
rm -rf .venv-latest
"$UV" venv -q --python "$PYTHON" .venv-latest
"$UV" pip install -q --python .venv-latest/bin/python --upgrade --no-cache \
  -r requirements-build.in -e '.[dev,server,ai]'
echo "test-latest: versions that differ from requirements.lock:" >&2
.venv-latest/bin/python - <<'PY' >&2
import importlib.metadata as md, re, pathlib
locked = {}
for line in pathlib.Path("requirements.lock").read_text().splitlines():
    m = re.match(r"^([A-Za-z0-9_.\-]+)==([^ ;\\]+)", line)
    if m:
        locked.setdefault(m[1].lower().replace("_", "-"), set()).add(m[2])
for dist in sorted(md.distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = dist.metadata["Name"].lower().replace("_", "-")
    if name in locked and dist.version not in locked[name]:
        print(f"  {name} {'/'.join(sorted(locked[name]))} -> {dist.version}")
PY
exec .venv-latest/bin/python -m pytest -q -p no:cacheprovider "$@"
