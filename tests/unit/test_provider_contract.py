"""Every operation kind a plan can hold has exactly one provider (or is the executor's own),
and an operation no provider runs stops the apply instead of being skipped."""

from __future__ import annotations

import typing

import pytest

from honua_plan.errors import ApplyError
from honua_plan.plan.model import Operation
from honua_plan.providers.base import EXECUTOR_KINDS, Provider
from honua_plan.providers.registry import provider_for, registry


def test_every_operation_kind_has_one_runner() -> None:
    kinds = set(typing.get_args(Operation.model_fields["kind"].annotation))
    table = registry()
    assert set(table) | EXECUTOR_KINDS == kinds
    assert not set(table) & EXECUTOR_KINDS
    for kind, provider in table.items():
        assert isinstance(provider, Provider)
        assert kind in provider.operations


def test_the_providers_are_postgis_metadata_and_server() -> None:
    assert {p.name for p in registry().values()} == {"postgis", "metadata", "server"}
    assert provider_for("sql").name == "postgis"
    assert provider_for("metadata").name == "metadata"
    assert provider_for("reload").name == provider_for("publish").name == "server"


def test_an_operation_no_provider_runs_is_an_error() -> None:
    with pytest.raises(ApplyError, match="no provider runs operations of kind 'ftp'"):
        provider_for("ftp")
    with pytest.raises(ApplyError):
        provider_for("record")  # the executor's own: never dispatched to a provider
