"""Whose state a row is: the project key that lets several repositories share one state
database (the postgres backend keys its rows by project and environment).

The key is ``spec.state.project`` of honua.yaml, else ``metadata.name``; the environment
variable ``HONUA_PROJECT`` overrides both for one run (as ``TF_WORKSPACE`` selects a
Terraform workspace), e.g. a throwaway state per pull request.
"""

from __future__ import annotations

import os

from honua_plan.errors import UsageError

PROJECT_ENV = "HONUA_PROJECT"
DEFAULT_PROJECT = "default"
"""The key of a backend opened without one (the Python API, the backend test suite)."""


def project_key(name: str, configured: str | None = None) -> str:
    """The state key of project ``name`` (its ``metadata.name``) with ``spec.state.project``."""
    override = os.environ.get(PROJECT_ENV, "")
    if override:
        from honua_plan.config.models import NAME_RE

        if not NAME_RE.match(override):
            raise UsageError(
                f"{PROJECT_ENV}={override!r} is not a valid project name: use lower-case letters, "
                "digits, '-' and '_' (max 63)")
        return override
    return configured or name
