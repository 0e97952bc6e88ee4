"""The state document models and the canonical JSON / fingerprint helpers."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
import pytest

from honua_plan.errors import StateError
from honua_plan.state import (
    FORMAT_VERSION,
    BackupRecord,
    Event,
    JournalRecord,
    JournalStep,
    LockInfo,
    MigrationRecord,
    ResourceRecord,
    StateDocument,
    backup_id,
    canonical_json,
    fingerprint,
)
from honua_plan.state.base import parse_document, prepare_write

AT = datetime(2025, 10, 4, 14, 5, 30, tzinfo=UTC)


def _doc() -> StateDocument:
    return StateDocument.new("dev")


# --------------------------------------------------------------------------- canonical JSON


def test_canonical_json_sorts_keys_without_spaces() -> None:
    assert (
        canonical_json({"b": 1, "a": [1, {"d": 2, "c": None}]})
        == '{"a":[1,{"c":null,"d":2}],"b":1}'
    )


def test_canonical_json_values() -> None:
    value = {
        "when": AT,
        "day": date(2025, 10, 4),
        "path": Path("a/b.yaml"),
        "tuple": (1, 2),
        "set": {"b", "a"},
        "dec": Decimal("1.50"),
        "text": "Zürich",
    }
    assert json.loads(canonical_json(value)) == {
        "when": "2025-10-04T14:05:30+00:00",
        "day": "2025-10-04",
        "path": "a/b.yaml",
        "tuple": [1, 2],
        "set": ["a", "b"],
        "dec": "1.50",
        "text": "Zürich",
    }
    assert "Zürich" in canonical_json(value)  # not \\u-escaped


def test_canonical_json_of_models_matches_their_data() -> None:
    ev = Event(at=AT, kind="apply", serial=1, message="m")
    assert canonical_json(ev) == canonical_json(
        {"at": AT, "kind": "apply", "serial": 1, "actor": None, "message": "m", "details": {}}
    )


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), object(), b"bytes", {(1, 2): "tuple key"}]
)
def test_canonical_json_refuses_what_json_cannot_hold(bad: Any) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})


def test_fingerprint_is_stable_and_order_independent() -> None:
    a = fingerprint({"x": 1, "y": [1, 2]})
    b = fingerprint({"y": [1, 2], "x": 1})
    assert a == b
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", a)
    assert fingerprint({"x": 2, "y": [1, 2]}) != a
    assert fingerprint({"y": [2, 1], "x": 1}) != a  # list order matters


# --------------------------------------------------------------------------- documents


def test_new_document() -> None:
    doc = _doc()
    assert doc.format_version == FORMAT_VERSION == 1
    assert doc.serial == 0 and doc.next_serial == 1
    assert re.fullmatch(r"[0-9a-f]{32}", doc.lineage)
    assert doc.lineage != _doc().lineage
    assert doc.updated_at.tzinfo is not None
    assert doc.pending is None and doc.config_commit is None
    assert doc.engine_version


def test_models_are_strict_and_frozen() -> None:
    doc = _doc()
    with pytest.raises(pydantic.ValidationError):
        doc.serial = 3  # type: ignore[misc]
    with pytest.raises(pydantic.ValidationError, match="Extra inputs"):
        StateDocument.model_validate({**doc.model_dump(), "surprise": 1})
    with pytest.raises(pydantic.ValidationError):
        Event(kind="apply", serial=-1)
    with pytest.raises(pydantic.ValidationError):
        MigrationRecord.model_validate({"id": "001", "checksum": "x", "status": "done"})


def test_newer_format_is_refused_with_a_clear_message() -> None:
    data = {**_doc().to_json_data(), "format_version": FORMAT_VERSION + 1}
    with pytest.raises(pydantic.ValidationError, match="newer honua-plan"):
        StateDocument.model_validate(data)


def test_environment_names_are_checked() -> None:
    for bad in ["", "../x", "a/b", "-x", "x" * 64]:
        with pytest.raises(pydantic.ValidationError):
            StateDocument.new(bad)
    assert StateDocument.new("prod-eu_1.b").environment == "prod-eu_1.b"


def test_resources_are_keyed_by_address() -> None:
    rec = ResourceRecord.create("service.transportation", "Service", {"title": "T"}, serial=1)
    with pytest.raises(pydantic.ValidationError, match="keyed by their address"):
        StateDocument.model_validate(
            {**_doc().to_json_data(), "resources": {"service.other": rec.model_dump()}}
        )


def test_resource_record_create_fingerprints_attributes() -> None:
    rec = ResourceRecord.create(
        "layer.transportation::bike-lanes",
        "Layer",
        {"srid": 4326, "table": "public.bike_lanes", "tags": ("a", "b")},
        serial=3,
        source_path="environments/dev/layers/bike-lanes.yaml",
    )
    assert rec.attributes == {"srid": 4326, "table": "public.bike_lanes", "tags": ["a", "b"]}
    assert rec.fingerprint == fingerprint(rec.attributes)
    assert rec.applied_at.tzinfo is not None
    with pytest.raises(pydantic.ValidationError):
        ResourceRecord(
            address="x.y",
            kind="X",
            attributes={"bad": float("nan")},
            fingerprint="",
            applied_at=AT,
            serial=0,
        )


def test_naive_datetimes_are_taken_as_utc() -> None:
    ev = Event(at=datetime(2025, 1, 1, 12, 0), kind="plan", serial=0)
    assert ev.at == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    other = Event(
        at=datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2))), kind="plan", serial=0
    )
    assert other.at == ev.at and other.at.utcoffset() == timedelta(0)


def test_helpers_return_copies() -> None:
    doc = _doc()
    rec = ResourceRecord.create("service.transportation", "Service", {"title": "T"}, serial=1)
    with_rec = doc.with_resource(rec)
    assert doc.resources == {} and with_rec.resource("service.transportation") == rec
    assert with_rec.without_resource("service.transportation").resources == {}
    evented = doc.record_event("plan", "planned", actor="bob", details={"changes": 2})
    assert (
        doc.events == []
        and evented.events[0].serial == 1
        and evented.events[0].details == {"changes": 2}
    )
    assert doc.with_config_commit("abc").config_commit == "abc"


def test_migration_history_queries() -> None:
    def run(mid: str, status: str) -> MigrationRecord:
        return MigrationRecord.model_validate({"id": mid, "checksum": "sha256:x", "status": status})

    doc = (
        _doc()
        .with_migration(run("001", "applied"))
        .with_migration(run("002", "applied"))
        .with_migration(run("002", "rolled_back"))
        .with_migration(run("003", "failed"))
        .with_migration(run("003", "applied"))
    )
    latest = doc.latest_migration("002")
    assert latest is not None and latest.status == "rolled_back"
    assert doc.latest_migration("999") is None
    assert doc.applied_migrations() == ["001", "003"]


def test_backups() -> None:
    assert backup_id("dev", AT) == "dev-backup-20251004-140530"
    assert backup_id(
        "dev", datetime(2025, 10, 4, 16, 5, 30, tzinfo=timezone(timedelta(hours=2)))
    ) == ("dev-backup-20251004-140530")
    old = BackupRecord(
        id=backup_id("dev", AT), created_at=AT, path="b/1.dump", size_bytes=1, sha256="x"
    )
    new_at = AT + timedelta(hours=1)
    new = BackupRecord(
        id=backup_id("dev", new_at), created_at=new_at, path="b/2.dump", size_bytes=1, sha256="y"
    )
    doc = _doc().with_backup(new).with_backup(old)
    assert doc.latest_backup() == new
    assert doc.backup(old.id) == old and doc.backup("nope") is None
    assert old.kind == "pg_dump"


def test_journal_steps() -> None:
    journal = JournalRecord(
        plan_id="p1",
        steps=[JournalStep(id="1", action="create"), JournalStep(id="2", action="migrate")],
    )
    running = journal.with_step("1", "running", at=AT)
    assert journal.step("1").status == "pending"
    assert running.step("1").status == "running" and running.step("1").started_at == AT
    done = running.with_step("1", "done", at=AT + timedelta(seconds=1), details={"rows": 3})
    assert done.step("1").finished_at == AT + timedelta(seconds=1)
    assert done.step("1").details == {"rows": 3}
    failed = done.with_step("2", "failed", error="password=hunter22 rejected")
    # an unquoted password may hold spaces: hidden up to the next "key=" or the line's end
    assert failed.step("2").error == "password=***"
    assert [s.id for s in failed.unfinished] == ["2"]
    with pytest.raises(KeyError):
        journal.with_step("9", "done")
    with pytest.raises(pydantic.ValidationError, match="unique"):
        JournalRecord(plan_id="p", steps=[JournalStep(id="1"), JournalStep(id="1")])


def test_json_round_trip() -> None:
    doc = (
        _doc()
        .with_resource(
            ResourceRecord.create("table.public.bike_lanes", "Table", {"cols": ["id"]}, serial=1)
        )
        .record_event("apply", "ok", at=AT)
        .with_pending(JournalRecord(plan_id="p", started_at=AT, steps=[JournalStep(id="1")]))
    )
    text = json.dumps(doc.to_json_data())
    assert StateDocument.model_validate(json.loads(text)) == doc
    assert StateDocument.model_validate_json(doc.model_dump_json()) == doc


def test_an_event_message_is_redacted_where_it_is_made() -> None:
    doc = _doc().record_event("apply", "via postgresql://u:pa55word@h/db")
    assert "pa55word" not in doc.model_dump_json()
    assert doc.events[0].message == "via postgresql://u:***@h/db"


# --------------------------------------------------------------------------- write rules (pure)


def test_prepare_write_rules() -> None:
    stored = _doc().model_copy(update={"serial": 4})
    new = prepare_write("dev", stored, stored.record_event("apply", "x"), 4)
    assert new.serial == 5 and new.updated_at >= stored.updated_at
    assert prepare_write("dev", None, _doc(), 0).serial == 1
    with pytest.raises(StateError, match=r"state changed since it was read \(serial 3, now 4\)"):
        prepare_write("dev", stored, stored, 3)
    with pytest.raises(StateError, match="lineage"):
        prepare_write("dev", stored, _doc(), 4)
    with pytest.raises(StateError, match="'prod'"):
        prepare_write("dev", None, StateDocument.new("prod"), 0)
    # events appended by a write carry that write's serial, whatever the caller stamped
    odd = stored.with_event(Event(kind="plan")).model_copy(update={"serial": 40})
    stamped = prepare_write("dev", stored, odd.with_event(Event(kind="apply", serial=7)), 4)
    assert [e.serial for e in stamped.events] == [5, 5]
    logged = stored.record_event("plan", "a")
    with pytest.raises(StateError, match="append-only"):
        prepare_write("dev", logged, stored, 4)


def test_parse_document_names_the_place() -> None:
    with pytest.raises(
        StateError, match=r"^state file x\.json is not a valid state document: lineage"
    ):
        parse_document({"environment": "dev"}, where="state file x.json", environment="dev")
    with pytest.raises(StateError, match="environment 'prod', not 'dev'"):
        parse_document(StateDocument.new("prod").to_json_data(), where="f", environment="dev")


def test_lock_info_describe_and_json() -> None:
    info = LockInfo(pid=123, host="x", since=AT, command="honua apply")
    assert info.describe() == "pid 123 on host x since 2025-10-04T14:05:30+00:00 (honua apply)"
    assert LockInfo.from_json_data(info.to_json_data()) == info
    me = LockInfo.current("honua apply --dsn postgresql://u:pa55word@h/db")
    assert "pa55word" not in me.command
