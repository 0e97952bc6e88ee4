"""Which files a recovery of one environment may change: its own, never another's; shared ones on request."""

from __future__ import annotations

from pathlib import Path

import pytest

from honua_plan.workflows.snapshots import metadata_change

NOW = {
    "environments/dev/layers/a.yaml": b"a-now",
    "environments/dev/layers/added-later.yaml": b"x",
    "environments/staging/layers/a.yaml": b"staging-now",
    "policies/dev-policy.yaml": b"p-now",
    "policies/production-policy.yaml": b"prod-now",
    "providers/gis-server.yaml": b"port-now",
    "migrations/004_later.yaml": b"m",
    "honua.yaml": b"same",
}
AT_COMMIT = {
    "environments/dev/layers/a.yaml": b"a-then",
    "environments/staging/layers/a.yaml": b"staging-then",
    "policies/dev-policy.yaml": b"p-then",
    "policies/production-policy.yaml": b"prod-then",
    "providers/gis-server.yaml": b"port-then",
    "honua.yaml": b"same",
}


@pytest.mark.parametrize(("include_shared", "write", "shared_listed"), [
    (False, {"environments/dev/layers/a.yaml", "policies/dev-policy.yaml"},
     ["migrations/004_later.yaml", "providers/gis-server.yaml"]),
    (True, {"environments/dev/layers/a.yaml", "policies/dev-policy.yaml", "providers/gis-server.yaml"},
     ["migrations/004_later.yaml"]),
])
def test_only_the_environments_own_files_change(tmp_path: Path, include_shared: bool, write: set[str],
                                                shared_listed: list[str]) -> None:
    for name, data in NOW.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    change = metadata_change(tmp_path, "dev", AT_COMMIT, "commit abc", include_shared=include_shared)
    assert set(change.write) == write
    assert change.delete == ["environments/dev/layers/added-later.yaml"]  # not in the commit: the env had none
    assert change.shared_differ == shared_listed  # a shared file only on disk is listed, never deleted
    assert not any(p.startswith(("environments/staging", "policies/production")) for p in change.paths)
