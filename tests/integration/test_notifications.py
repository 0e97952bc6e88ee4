"""Notifications through Apprise, end to end (issue 20): ``json://`` to an HTTP receiver
started here; one message per event with its fields; a receiver answering 500 is
reported and does not fail the deployment; a secret in a URL comes from the environment
and is never printed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from honua_plan.workflows.sample import seed_bike_lanes
from tests.helpers import copy_example, run

pytest.importorskip("apprise", reason="apprise is not installed")
pytestmark = pytest.mark.integration

SECRET_PATH = "hook-Secret-Path-91"


class Receiver:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.messages.append(json.loads(body))
                receiver.paths.append(self.path)
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [m["title"].split(":")[0].removeprefix("honua ") for m in self.messages]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def test_one_message_per_event_and_a_failing_receiver_does_not_fail_the_deployment(
        tmp_path: Path, pg_dsn: str, receiver: Receiver) -> None:
    repo = copy_example(tmp_path / "repo", server=False)
    (repo / "policies/dev-policy.yaml").write_text(f"""apiVersion: honua.io/v1
kind: Policy
metadata:
  name: dev-policy
  environment: dev
spec:
  notifications:
    - events: [deploy-started, deploy-succeeded, deploy-failed, rolled-back]
      urls: ["json://127.0.0.1:{receiver.port}/${{HONUA_NOTIFY_TEST_HOOK}}"]
""")
    env = {"HONUA_PG_DSN": pg_dsn, "HONUA_NOTIFY_TEST_HOOK": SECRET_PATH, "CI": ""}
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        seed_bike_lanes(conn, 42)

    # the seed's Example 2: migration 003 fails its performance check on 42 rows, rolled back
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 1, result.output
    assert receiver.events() == ["deploy-started", "rolled-back"], receiver.messages
    rolled = receiver.messages[1]
    assert "Environment: dev" in rolled["message"] and "Event: rolled-back" in rolled["message"]
    assert "Incident: INC-" in rolled["message"] and "Status: ROLLED BACK" in rolled["message"]
    assert "  - Stakeholders notified" in result.output
    assert receiver.paths == [f"/{SECRET_PATH}"] * 2  # the URL's ${VAR} came from the environment …
    assert SECRET_PATH not in result.output  # … and is not printed

    # the receiver fails: reported, and the deployment's outcome is its own
    receiver.status = 500
    path = repo / "migrations/003_optimize_bike_lanes.yaml"  # now it can pass on 42 rows
    text = path.read_text()
    start = text.index("      - type: performance")
    end = text.index("\n    post-down:")
    path.write_text(text[:start] + text[end + 1:])
    result = run(repo, "apply", "--env", "dev", "--auto-approve", env=env)
    assert result.exit_code == 0, result.output
    assert "✗ Stakeholders not notified: 1 of 1 notification(s) failed (json); the deployment goes on" \
        in result.output
    assert receiver.events()[-2:] == ["deploy-started", "deploy-succeeded"]


def test_an_unset_variable_is_reported_not_sent(tmp_path: Path, pg_dsn: str, receiver: Receiver) -> None:
    from honua_plan.apply.notify import notify
    from honua_plan.config.models import Policy

    policy = Policy.model_validate({
        "apiVersion": "honua.io/v1", "kind": "Policy", "metadata": {"name": "p", "environment": "dev"},
        "spec": {"notifications": [{"events": ["drift"],
                                    "urls": [f"json://127.0.0.1:{receiver.port}/${{HONUA_NOTIFY_UNSET_HOOK_X}}"]}]}})
    delivery = notify(policy, "drift", environment="dev", title="t", lines=[])
    assert delivery.failed == ["json (a ${VAR} of its URL is not set)"] and receiver.messages == []
    assert notify(policy, "recovery", environment="dev", title="t", lines=[]).line is None  # not configured


def test_a_scheduled_deployment_needing_approval_notifies(tmp_path: Path, pg_dsn: str, receiver: Receiver) -> None:
    """The seed's schedule prints "Notification: ✓ Stakeholders notified" only when delivered."""
    repo = copy_example(tmp_path / "repo", server=False)
    policy = repo / "policies/production-policy.yaml"
    policy.write_text(policy.read_text().replace(
        "spec:\n", f"spec:\n  notifications:\n    - events: [approval-needed]\n"
                   f"      urls: [\"json://127.0.0.1:{receiver.port}/hook\"]\n", 1))
    env = {"HONUA_PG_DSN": pg_dsn, "CI": ""}
    result = run(repo, "ai", "schedule", "migration", "003", "--environment", "production",
                 "--window", "next-tuesday 10:00-12:00", "--approval-required", env=env)
    assert result.exit_code == 0, result.output
    assert "    - Notification: ✓ Stakeholders notified" in result.output
    assert receiver.events() == ["approval-needed"]
    assert "Approval: Required from gis-ops team" in receiver.messages[0]["message"]
    receiver.status = 500
    failed = run(repo, "ai", "schedule", "migration", "003", "--environment", "production",
                 "--window", "next-wednesday 10:00-12:00", "--approval-required", env=env)
    assert failed.exit_code == 0 and "    - Notification: ✗ Stakeholders not notified" in failed.output
