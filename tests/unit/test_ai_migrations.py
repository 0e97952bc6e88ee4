"""``migrate plan``: the seed's block from hand-built plans (pure rendering)."""

from __future__ import annotations

from honua_plan.ai.migrations import Analysis, EnvResult, _mark_same, render_block, risk_text
from honua_plan.plan.model import FindingRecord, Plan
from tests.unit.plan_fixtures import _migration_003, sample_plan


def env_plan(env: str, *, production: bool = False) -> Plan:
    m3 = _migration_003().model_copy(update={"findings": [], "risk": "LOW"})
    update: dict = {"environment": env, "actions": [m3], "risk": "LOW", "estimated_s": 5.0, "policy": [],
                    "approvals_required": 0, "approvers": []}
    if production:
        env001 = FindingRecord(code="ENV001", level="MEDIUM", message="production environment")
        update.update(actions=[m3.model_copy(update={"findings": [env001], "risk": "MEDIUM"})], risk="MEDIUM",
                      approvals_required=1, approvers=["gis-ops"])
    return sample_plan().model_copy(update=update)


def analysis() -> Analysis:
    out = Analysis(migrations=["003_optimize_bike_lanes"])
    for env in ("dev", "staging", "production"):
        out.environments.append(EnvResult(env, ("migration.003",), env_plan(env, production=env == "production")))
    _mark_same(out)
    return out


def test_the_seed_block() -> None:
    text = "\n".join(render_block(analysis()))
    assert text == """\
Analyzing migration: 003_optimize_bike_lanes
Dependencies: ✓ All satisfied
Pre-conditions: ✓ All met

Deployment Plan:
─────────────────────────────────────────────
Environment: dev
  Step 1: Create spatial index (estimated: 2s)
  Step 2: Analyze table (estimated: 1s)
  Step 3: Update metadata (estimated: <1s)

  Rollback Plan:
    - Drop spatial index
    - Revert metadata

  Risk Level: LOW
  Estimated Duration: 5s
  Automatic Rollback: YES

Environment: staging
  [Same as dev]
  Risk Level: LOW

Environment: production
  [Same as dev]
  Risk Level: MEDIUM (production environment)
  Approval Required: YES (1 from gis-ops)
  Findings:
    migration.003:
      ⚠ ENV001 production environment"""


def test_errors_and_other_levels() -> None:
    out = analysis()
    out.environments[1] = EnvResult("staging", ("migration.003",), error="could not connect to datasource: refused")
    _mark_same(out)
    text = "\n".join(render_block(out))
    assert "Environment: staging\n  ✗ could not connect to datasource: refused" in text
    assert "Environment: production\n  [Same as dev]" in text
    assert risk_text(sample_plan()) == "HIGH (PG101)"
    assert render_block(Analysis()) == ["No pending migrations in any environment."]
