"""Redaction at the output boundary (issue 14, items 4 and 5).

A short password (``dev``, ``public``) is hidden only where it sits in a password slot,
so it cannot mangle an environment or schema name; a long one is hidden everywhere and
in every encoding; a malformed DSN is refused naming its variable, never quoting it.
"""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus

import pytest

from honua_plan import secrets
from honua_plan.errors import DatabaseError


@pytest.fixture(autouse=True)
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(secrets, "_known", set())
    monkeypatch.setattr(secrets, "_public", set(), raising=False)


def fragments(password: str, n: int = 4) -> set[str]:
    """Every piece of ``password`` of ``n`` characters or more, without surrounding spaces."""
    return {password[i:j].strip() for i in range(len(password)) for j in range(i + n, len(password) + 1)
            if len(password[i:j].strip()) >= n}


# ------------------------------------------------------------------ short passwords

ORDINARY = (
    "Plan for dev",
    "Applying changes to dev environment...",
    "table.public.bike_lanes",
    '{"address": "table.public.bike_lanes", "environment": "dev"}',
    "see https://errors.pydantic.dev/2.14/v/value_error",
)


@pytest.mark.parametrize("password", ["dev", "public"])
@pytest.mark.parametrize("form", ["url", "conninfo"])
def test_a_short_password_never_mangles_ordinary_text(password: str, form: str) -> None:
    dsn = (f"postgresql://honua:{password}@db.internal:5432/gis" if form == "url"
           else f"host=db.internal dbname=gis user=honua password={password}")
    secrets.register_dsn(dsn)
    for text in ORDINARY:
        assert secrets.redact(text) == text
    # but in a password slot it is hidden, whatever its length
    assert secrets.redact(dsn) == ("postgresql://honua:***@db.internal:5432/gis" if form == "url"
                                   else "host=db.internal dbname=gis user=honua password=***")
    assert secrets.redact(f"postgresql://honua:{password}@h/db") == "postgresql://honua:***@h/db"
    assert secrets.redact(f"password={password} dbname=x") == "password=*** dbname=x"


PASSWORD_SLOTS = [
    # (text, password): the templating reproduction first, an environment dump
    ("{'HONUA_PG_DSN': 'postgresql://u:p a s s@db.internal/gis'}", "p a s s"),
    ("postgresql://u:Pa@ss-S3cr3t@db.internal/gis", "Pa@ss-S3cr3t"),
    ("postgresql://u:p%20a%20s%20s@db.internal/gis", "p%20a%20s%20s"),
    ("host=h password=Pass S3cr3t dbname=x", "Pass S3cr3t"),
    ("host=h password='Pass S3cr3t' dbname=x", "Pass S3cr3t"),
    ("PGPASSWORD=zq8w ./run", "zq8w"),
    ('{"password": "zq8w", "user": "u"}', "zq8w"),
    ("{'PGPASSWORD': 'p a s s'}", "p a s s"),
]


@pytest.mark.parametrize("password", ["p a s s", "pa$$", "Qx7 Zk9W"])
def test_a_short_password_unlike_any_name_is_hidden_as_a_whole_value(password: str) -> None:
    secrets.register_dsn(f"postgresql://u:{quote(password, safe='')}@db.internal/gis")
    for text in (f"{{'APP_PASSWORD_COPY': '{password}'}}", f"token {password} end", quote(password, safe="")):
        assert password not in secrets.redact(text)
        assert quote(password, safe="") not in secrets.redact(text)


@pytest.mark.parametrize(("text", "password"), PASSWORD_SLOTS)
def test_a_password_slot_is_hidden_whatever_the_password(text: str, password: str) -> None:
    out = secrets.redact(text)
    assert password not in out
    assert "***" in out
    assert all(f not in out for f in fragments(password)), out


# ------------------------------------------------------------------ long passwords


LONG = "correct horse/battery@staple"


@pytest.mark.parametrize("form", [
    LONG, quote(LONG, safe=""), quote_plus(LONG), quote(LONG), json.dumps(LONG)[1:-1], repr(LONG)[1:-1],
])
def test_a_long_secret_is_hidden_in_every_encoding(form: str) -> None:
    secrets.register_dsn(f"postgresql://u:{quote(LONG, safe='')}@db.internal/gis")
    for text in (form, f"value: {form}.", f"x={form}&y=1", json.dumps({"k": form})):
        out = secrets.redact(text)
        assert form not in out and "***" in out, (text, out)


def test_a_dsn_password_equal_to_its_user_or_database_is_not_a_secret_word() -> None:
    secrets.register_dsn("postgresql://postgres:postgres@localhost/postgres")
    assert secrets.redact("owner: postgres") == "owner: postgres"
    assert secrets.redact("postgresql://postgres:postgres@localhost/x") == "postgresql://postgres:***@localhost/x"


def test_a_name_the_configuration_uses_is_not_hidden_in_free_text() -> None:
    secrets.register("bike_lanes_2024")
    assert secrets.redact("table.public.bike_lanes_2024") == "table.public.***"
    secrets.exempt(["bike_lanes_2024", "public"])
    assert secrets.redact("table.public.bike_lanes_2024") == "table.public.bike_lanes_2024"
    secrets.register("bike_lanes_2024")  # registered again later: still a name
    assert secrets.redact("bike_lanes_2024") == "bike_lanes_2024"


# ------------------------------------------------------------------ malformed DSNs

PW = "Qx7 Zk9W"
MALFORMED = {
    "spaces in the password": f"postgresql://honua:{PW}@127.0.0.1:5432/gis",
    "an @ in the password": "postgresql://honua:Pa@ss-S3cr3t@127.0.0.1:5432/gis",
    "missing @": "postgresql://honua:Qx7Zk9Wv127.0.0.1:5432/gis",
    "bad port": "postgresql://honua:Qx7Zk9Wv@127.0.0.1:54x2/gis",
    "garbage": "Qx7Zk9Wv garbage ===",
    "conninfo with spaces": f"host=127.0.0.1 password={PW} dbname=gis",
    "unterminated quote": f"host=127.0.0.1 password='{PW} dbname=gis",
    "bad percent escape": "postgresql://honua:Qx7%ZZk9Wv@127.0.0.1:5432/gis",
    "unknown query parameter": "postgresql://honua:Qx7Zk9Wv@127.0.0.1:5432/gis?Qx7Zk9Wv=1",
}
SECRET_PIECES = fragments(PW) | fragments("Pa@ss-S3cr3t") | fragments("Qx7Zk9Wv") | fragments("Qx7%ZZk9Wv")


@pytest.mark.parametrize("dsn", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_dsn_is_refused_naming_its_variable_only(dsn: str) -> None:
    with pytest.raises(DatabaseError) as info:
        secrets.check_dsn(dsn, "the connection string in environment variable HONUA_PG_DSN")
    message = f"{info.value.message}\n{info.value.hint}"
    assert "environment variable HONUA_PG_DSN" in message
    leaked = {f for f in SECRET_PIECES if f in message}
    assert not leaked, message


def test_a_sound_dsn_passes_the_check() -> None:
    parts = secrets.check_dsn("postgresql://honua:p%40ss@127.0.0.1:5432/gis?sslmode=disable", "X")
    assert parts["password"] == "p@ss"
    assert parts["port"] == "5432"
    assert secrets.check_dsn("host=/tmp/sock port=5432,5433 dbname=gis", "X")["dbname"] == "gis"
    assert secrets.check_dsn("host='/tmp/pg sock@x' dbname=gis", "X")["host"] == "/tmp/pg sock@x"
    assert secrets.check_dsn("host=@abstract,db.internal dbname=gis", "X")["dbname"] == "gis"


@pytest.mark.parametrize(("message", "dsn", "password"), [
    ("failed to resolve host 'ss-S3cr3t@127.0.0.1'", "postgresql://u:Pa@ss-S3cr3t@127.0.0.1/gis", "Pa@ss-S3cr3t"),
    ('unexpected spaces found in "Pass S3cr3t"', "postgresql://u:Pass S3cr3t@h/gis", "Pass S3cr3t"),
    ('missing "=" after "S3cr3t" in connection info string', "host=h password=Pass S3cr3t", "Pass S3cr3t"),
    ("could not connect: bad dsn postgresql://u:zq8w@h/gis", "postgresql://u:zq8w@h/gis", "zq8w"),
])
def test_libpq_messages_lose_every_reading_of_the_password(message: str, dsn: str, password: str) -> None:
    out = secrets.scrub_dsn_error(message, dsn)
    assert not {f for f in fragments(password) if f in out}, out
    assert re.search(r"\*\*\*", out)
