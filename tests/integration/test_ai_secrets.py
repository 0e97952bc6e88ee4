"""Issue 25, reproduction 12: no secret reaches the model, in the first request or a later one.

A real ``honua-ai chat`` process with litellm's real client talks to the fake
OpenAI-compatible endpoint of :mod:`tests.integration.test_ai_model`, which records every
request body. The user types a password, a "pass is", a GitHub token and an AWS key, and
mentions the production database's password (set in ``HONUA_PG_DSN_PRODUCTION`` only, never
read by the chat otherwise); the model's own answer repeats a secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import copy_example
from tests.integration.test_ai_model import FakeModel, chat

PASSWORD = "S3cretPassw0rd!x"
PASS = "hunter2hunter2"
GITHUB = "ghp_aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5"
AWS = "AKIAIOSFODNN7EXAMPLE"
PRODUCTION = "Pr0d-DB-pw-7731"  # only in HONUA_PG_DSN_PRODUCTION, typed bare by the user
SECRETS = (PASSWORD, PASS, GITHUB, AWS, PRODUCTION)


@pytest.fixture(scope="module")
def model() -> Iterator[FakeModel]:
    fake = FakeModel()
    yield fake
    fake.server.shutdown()


def test_no_request_body_and_no_output_holds_a_secret(tmp_path: Path, model: FakeModel, pg_dsn: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    monkeypatch.setenv("HONUA_PG_DSN_PRODUCTION", f"{pg_dsn} password={PRODUCTION}")
    model.mode, model.bodies = "ok", []
    model.calls = [("answer", {"text": f"Noted: the password is {PASSWORD}."}),
                   ("answer", {"text": f"I will remember {PASS} and {AWS}."}),
                   ("answer", {"text": "Tokens belong in a secret store."}),
                   ("answer", {"text": "I cannot check that."})]
    text = "\n".join([
        f"the production db password is {PASSWORD}, why can't I connect?",
        f"my pass is {PASS}",
        f"here is my github token {GITHUB} and the aws key {AWS} for the backups",
        f"does {PRODUCTION} still work on production?",
    ]) + "\n"
    proc, _ = chat(repo, model, text, pg_dsn)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert len(model.bodies) == 4  # every request reached the model, later ones with the history
    history = json.loads(model.bodies[-1])["messages"]
    assert [m["role"] for m in history] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    assert any(f"the production db password is {m}, why" in history[1]["content"] for m in ("[REDACTED]", "***"))
    for body in model.bodies:
        for secret in SECRETS:
            assert secret not in body, (secret, body)
    for secret in SECRETS:
        assert secret not in out, (secret, out)
    # told once that something was masked
    assert out.count("looks like a secret") == 1, out
    # nothing kept on disk holds one either (saved plans, state, logs)
    for path in repo.rglob("*"):
        if path.is_file() and ".pg" not in path.parts:
            data = path.read_bytes()
            assert not any(s.encode() in data for s in SECRETS), path
