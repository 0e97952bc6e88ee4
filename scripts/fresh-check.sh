#!/usr/bin/env bash
# Prove the README's promise: a fresh clone, the system's PATH only (/usr/bin:/bin, so
# Debian's own python3), then the README's two commands, `make demo` and `make test`.
# Clones the committed HEAD (uncommitted changes are not part of the check), builds its
# own .venv from the lock, stops what the demo started, removes the clone.
#   scripts/fresh-check.sh [REF]      (default: HEAD)
#   KEEP=1 keeps the clone; its path is printed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REF="${1:-HEAD}"
WORK="$(mktemp -d /tmp/honua-fresh.XXXXXX)"
CLONE="$WORK/honua-plan"
SYSENV=(env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" LANG=C.UTF-8 TERM=dumb CI=true)  # CI sets CI=true

cleanup() {
  if [ -x "$CLONE/.venv/bin/python" ]; then
    (cd "$CLONE" && "${SYSENV[@]}" .venv/bin/python -m honua_plan serve --env dev --stop \
       >/dev/null 2>&1; "${SYSENV[@]}" .venv/bin/python -m honua_plan dev db stop >/dev/null 2>&1)
  fi
  if [ -z "${KEEP:-}" ]; then rm -rf "$WORK"; else echo "fresh-check: kept $CLONE" >&2; fi
}
trap cleanup EXIT

git clone -q --no-local "$ROOT" "$CLONE" || exit 1
git -C "$CLONE" checkout -q --detach "$(git -C "$ROOT" rev-parse "$REF")" || exit 1
echo "fresh-check: $(git -C "$CLONE" log --oneline -1) in $CLONE" >&2
echo "fresh-check: python3 is $("${SYSENV[@]}" sh -c 'command -v python3; python3 --version')" >&2

status=0
for target in demo test; do
  start=$(date +%s)
  (cd "$CLONE" && "${SYSENV[@]}" make "$target") >"$WORK/$target.log" 2>&1
  rc=$?
  echo "== make $target: exit $rc in $(( $(date +%s) - start )) s; last lines:"
  tail -n 4 "$WORK/$target.log" | sed 's/^/   /'
  [ "$rc" -eq 0 ] || status=1
done
exit $status
