"""Operation kind → provider: the table the executor dispatches through (see
:mod:`honua_plan.providers.base` for the contract)."""

from __future__ import annotations

from honua_plan.errors import ApplyError
from honua_plan.providers.base import EXECUTOR_KINDS, Provider


def registry() -> dict[str, Provider]:
    """Operation kind → the provider that runs it (imported on first use: a plan needs none)."""
    from honua_plan.providers.metadata import MetadataProvider
    from honua_plan.providers.postgis.operations import PostgisProvider
    from honua_plan.providers.server.operations import ServerOperations

    table: dict[str, Provider] = {}
    for provider in (PostgisProvider(), MetadataProvider(), ServerOperations()):
        for kind in provider.operations:
            if kind in table or kind in EXECUTOR_KINDS:
                raise AssertionError(f"operation kind {kind!r} claimed twice")
            table[kind] = provider
    return table


_REGISTRY: dict[str, Provider] | None = None


def provider_for(kind: str) -> Provider:
    """The provider that runs operations of ``kind``; ApplyError when none does."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = registry()
    try:
        return _REGISTRY[kind]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise ApplyError(f"no provider runs operations of kind '{kind}' (providers run: {known})",
                         hint="the plan file was written by another version of honua-plan, or edited") from None
