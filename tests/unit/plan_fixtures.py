"""Hand-built, realistic plans for the render and store tests (no database, no config).

* :func:`sample_plan` – the seed's dev plan: migrations 001 (create table), 002 and
  003 (GIST index + ANALYZE + metadata update, PG101 HIGH), the bike-lanes layer and
  the transportation service created, the GIS server reloaded, one no-op, policy
  checks, one approval required from gis-ops.
* :func:`empty_plan` – nothing to do.
* :func:`mixed_plan` – update, replace, delete (irreversible), validate, drift and an
  approval: the symbols and sections the sample does not reach.
* :func:`drift_plan` – a ``--refresh-only`` plan.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from honua_plan.plan.model import (
    Action,
    Approval,
    CheckRecord,
    DatabaseRef,
    DriftRecord,
    FindingRecord,
    NoOp,
    Operation,
    Plan,
    PolicyCheck,
    Provenance,
)
from honua_plan.plan.render import content_digest

CREATED = datetime(2025, 10, 4, 14, 5, 30, tzinfo=UTC)
LINEAGE = "6f1c2a9e-4b7d-4c1e-9a51-0d3b8f2e7c44"
COMMIT = "9fceb02d0ae598e95dc970b74767f19372d61af8"

LAYER_FILE = "environments/dev/layers/bike-lanes.yaml"

INDEX_DIFF = """\
--- a/environments/dev/layers/bike-lanes.yaml
+++ b/environments/dev/layers/bike-lanes.yaml
@@ -27,5 +27,9 @@
     geometryColumn: geom
     primaryKey: id
     srid: 4326
+    indexes:
+      - name: idx_bike_lanes_geom
+        type: gist
+        column: geom
   fields:
     - name: id
"""

REVERT_DIFF = """\
--- a/environments/dev/layers/bike-lanes.yaml
+++ b/environments/dev/layers/bike-lanes.yaml
@@ -27,9 +27,5 @@
     geometryColumn: geom
     primaryKey: id
     srid: 4326
-    indexes:
-      - name: idx_bike_lanes_geom
-        type: gist
-        column: geom
   fields:
     - name: id
"""

INDEX_EXISTS = """\
SELECT indexname
FROM pg_indexes
WHERE tablename = 'bike_lanes'
AND indexname = 'idx_bike_lanes_geom'
"""

BIKE_LANES_LAYER: dict[str, Any] = {
    "title": "Bike Lanes",
    "description": "City bicycle lane network",
    "geometryType": "LineString",
    "idField": "id",
    "displayField": "name",
    "geometryField": "geom",
    "crs": ["EPSG:4326", "EPSG:3857"],
    "storage": {"table": "bike_lanes", "geometryColumn": "geom", "primaryKey": "id", "srid": 4326},
    "ogc": {"itemLimit": 1000, "defaultCrs": "EPSG:4326"},
}


def _migration_001() -> Action:
    return Action(
        address="migration.001",
        kind="migration",
        action="apply",
        reason="Create bike lanes table",
        source="migrations/001_create_bike_lanes.yaml:1:1",
        level=0,
        risk="LOW",
        estimated_s=1.0,
        operations=[
            Operation(
                kind="sql",
                name="Create bike lanes table",
                sql=(
                    "CREATE TABLE bike_lanes (\n"
                    "  id serial PRIMARY KEY,\n"
                    "  name varchar(200),\n"
                    "  lane_type varchar(50),\n"
                    "  width_ft double precision,\n"
                    "  geom geometry(LineString, 4326),\n"
                    "  updated_at timestamptz\n"
                    ");\n"
                ),
                tables=["bike_lanes"],
                estimated_s=0.6,
            ),
            Operation(kind="record", name="Record migration 001", estimated_s=0.1),
        ],
        checks=[
            CheckRecord(
                name="Table exists",
                type="query",
                query="SELECT to_regclass('public.bike_lanes') IS NOT NULL",
                expected="true",
            )
        ],
        rollback=[
            Operation(kind="sql", name="Drop bike lanes table", sql="DROP TABLE IF EXISTS bike_lanes;\n", tables=["bike_lanes"])
        ],
        automatic_rollback=True,
    )


def _migration_002() -> Action:
    return Action(
        address="migration.002",
        kind="migration",
        action="apply",
        reason="Add parcels layer",
        source="migrations/002_add_parcels_layer.yaml:1:1",
        depends_on=["migration.001"],
        level=1,
        risk="LOW",
        estimated_s=1.0,
        operations=[
            Operation(
                kind="sql",
                name="Create parcels table",
                sql=(
                    "CREATE TABLE parcels (\n"
                    "  id serial PRIMARY KEY,\n"
                    "  parcel_no varchar(20) NOT NULL UNIQUE,\n"
                    "  geom geometry(MultiPolygon, 4326)\n"
                    ");\n"
                ),
                tables=["parcels"],
                estimated_s=0.5,
            ),
            Operation(
                kind="sql",
                name="Create parcels spatial index",
                sql="CREATE INDEX idx_parcels_geom ON parcels USING GIST (geom);\n",
                tables=["parcels"],
                estimated_s=0.2,
            ),
            Operation(kind="record", name="Record migration 002", estimated_s=0.1),
        ],
        rollback=[Operation(kind="sql", name="Drop parcels table", sql="DROP TABLE IF EXISTS parcels;\n", tables=["parcels"])],
        automatic_rollback=True,
    )


def _migration_003() -> Action:
    return Action(
        address="migration.003",
        kind="migration",
        action="apply",
        reason="Add spatial index to bike lanes and optimize geometry",
        source="migrations/003_optimize_bike_lanes.yaml:1:1",
        depends_on=["migration.001", "migration.002"],
        level=2,
        risk="HIGH",
        findings=[
            FindingRecord(
                code="PG101",
                level="HIGH",
                message="CREATE INDEX without CONCURRENTLY on bike_lanes (42,000 rows) blocks writes",
                suggestion="Consider creating index with CONCURRENTLY option",
                subject="bike_lanes",
            )
        ],
        estimated_s=5.0,
        operations=[
            Operation(
                kind="sql",
                name="Create spatial index",
                sql="CREATE INDEX idx_bike_lanes_geom\nON bike_lanes\nUSING GIST (geom);\n",
                tables=["bike_lanes"],
                lock_timeout_s=5.0,
                estimated_s=2.0,
            ),
            Operation(kind="sql", name="Analyze table", sql="ANALYZE bike_lanes;\n", tables=["bike_lanes"], estimated_s=1.0),
            Operation(
                kind="metadata",
                name="Update metadata",
                path=LAYER_FILE,
                changes={"spec.storage.indexes": [{"name": "idx_bike_lanes_geom", "type": "gist", "column": "geom"}]},
                text_diff=INDEX_DIFF,
                estimated_s=0.2,
            ),
            Operation(kind="record", name="Record migration 003", estimated_s=0.1),
        ],
        checks=[
            CheckRecord(name="Index exists", type="query", query=INDEX_EXISTS, expected="1 row"),
            CheckRecord(
                name="Index used by bbox queries",
                type="performance",
                query=(
                    "EXPLAIN ANALYZE\nSELECT * FROM bike_lanes\n"
                    "WHERE ST_Intersects(geom, ST_MakeEnvelope(-122.5, 45.5, -122.4, 45.6, 4326))\n"
                ),
                expected="Index Scan using idx_bike_lanes_geom",
            ),
        ],
        rollback=[
            Operation(
                kind="sql",
                name="Drop spatial index",
                sql="DROP INDEX IF EXISTS idx_bike_lanes_geom;\n",
                tables=["bike_lanes"],
                estimated_s=0.5,
            ),
            Operation(
                kind="metadata",
                name="Revert metadata",
                path=LAYER_FILE,
                changes={"spec.storage.indexes": []},
                text_diff=REVERT_DIFF,
                estimated_s=0.2,
            ),
        ],
        rollback_checks=[
            CheckRecord(name="Index removed", type="query", query=INDEX_EXISTS, expected="0 rows", phase="post-down")
        ],
        automatic_rollback=True,
        preconditions=["table-exists bike_lanes", "column-exists bike_lanes.geom"],
        backup_tables=["bike_lanes"],
    )


def _service() -> Action:
    after = {"datasource": "postgis-primary", "title": "Transportation", "ogc": {"itemLimit": 1000}}
    return Action(
        address="service.transportation",
        kind="service",
        action="create",
        reason="new service",
        source="environments/dev/services/transportation.yaml:1:1",
        after=after,
        level=0,
        risk="LOW",
        estimated_s=0.5,
        operations=[
            Operation(kind="publish", name="Publish service transportation", estimated_s=0.3),
            Operation(kind="record", name="Record service.transportation", estimated_s=0.1),
        ],
        rollback=[Operation(kind="publish", name="Unpublish service transportation")],
        automatic_rollback=True,
    )


def _layer() -> Action:
    return Action(
        address="layer.transportation::bike-lanes",
        kind="layer",
        action="create",
        reason="new layer",
        source=f"{LAYER_FILE}:1:1",
        after=BIKE_LANES_LAYER,
        depends_on=["service.transportation", "migration.001", "migration.003"],
        level=3,
        risk="LOW",
        estimated_s=1.0,
        operations=[
            Operation(kind="publish", name="Publish collection transportation::bike-lanes", estimated_s=0.5),
            Operation(kind="record", name="Record layer.transportation::bike-lanes", estimated_s=0.1),
        ],
        checks=[
            CheckRecord(name="Features present", type="query", query="SELECT COUNT(*) FROM bike_lanes", expected="> 0"),
            CheckRecord(
                name="Geometries valid",
                type="geometry",
                query="SELECT ST_IsValid(geom) FROM bike_lanes LIMIT 10",
                expected="all true",
            ),
        ],
        rollback=[Operation(kind="publish", name="Unpublish collection transportation::bike-lanes")],
        automatic_rollback=True,
        preconditions=["table-exists bike_lanes", "column-exists bike_lanes.geom"],
    )


def _reload() -> Action:
    return Action(
        address="server.pygeoapi",
        kind="server",
        action="reload",
        reason="configuration changed (1 service, 1 collection added)",
        source="providers/server.yaml:1:1",
        depends_on=["service.transportation", "layer.transportation::bike-lanes"],
        level=4,
        risk="LOW",
        estimated_s=2.0,
        operations=[Operation(kind="reload", name="Reload pygeoapi", transactional=False, estimated_s=2.0)],
        checks=[
            CheckRecord(
                name="Health check",
                type="http",
                query="GET /ogc/collections/transportation::bike-lanes",
                expected="200",
                phase="health",
                timeout_s=30.0,
            )
        ],
    )


def sample_plan() -> Plan:
    """The seed's dev plan (see the module docstring)."""
    actions = [_migration_001(), _service(), _migration_002(), _migration_003(), _layer(), _reload()]
    return Plan(
        id="plan-dev-20251004-140530-3f2a9c1d",
        created_at=CREATED,
        environment="dev",
        engine_version="0.1.0",
        config_commit=COMMIT,
        config_hash="sha256:5c1e0b8f3f6d0a7e6b1a9f4c2d8e7b3a1c0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d",
        state_lineage=LINEAGE,
        state_serial=7,
        fingerprints={
            "datasource.postgis-primary": "sha256:0b3e",
            "table.bike_lanes": "sha256:missing",
            "server.pygeoapi": "sha256:77aa",
        },
        actions=actions,
        no_ops=[NoOp(address="datasource.postgis-primary", kind="datasource", reason="matches the recorded state")],
        risk="HIGH",
        estimated_s=sum(a.estimated_s for a in actions),
        policy=[
            PolicyCheck(name="deployment-window", status="pass", message="Within deployment window"),
            PolicyCheck(name="cooldown", status="pass", message="Cooldown period: Satisfied"),
            PolicyCheck(name="backup", status="pass", message="Backup requirement: Configured"),
            PolicyCheck(
                name="approval",
                status="warn",
                message="Approval requirement: 1 from gis-ops (HIGH risk), 0 received",
            ),
        ],
        approvals_required=1,
        approvers=["gis-ops"],
        provenance=Provenance(kind="human", actor="alice@city.gov"),
        warnings=["server.pygeoapi: a reload cannot be undone; on failure the previous configuration is restored and reloaded"],
        database=DatabaseRef(host="db.city.internal", port="5432", dbname="city_gis_dev"),
    )


def empty_plan() -> Plan:
    """Nothing to do: everything matches."""
    return Plan(
        id="plan-dev-20251004-150000-00000000",
        created_at=CREATED,
        environment="dev",
        engine_version="0.1.0",
        config_commit=COMMIT,
        config_hash="sha256:5c1e",
        state_lineage=LINEAGE,
        state_serial=8,
        no_ops=[
            NoOp(address="datasource.postgis-primary", kind="datasource", reason="matches the recorded state"),
            NoOp(address="layer.transportation::bike-lanes", kind="layer", reason="matches the recorded state"),
        ],
    )


_DRIFT = [
    DriftRecord(
        address="layer.transportation::bike-lanes",
        kind="layer",
        change="modified",
        summary="title changed on the server",
        details=['spec.title: "Bike Lanes" → "Bike lanes (old)"'],
        recorded_fingerprint="sha256:aa11",
        live_fingerprint="sha256:bb22",
        last_applied=datetime(2025, 10, 3, 9, 0, tzinfo=UTC),
    ),
    DriftRecord(
        address="table.bike_lanes_backup",
        kind="table",
        change="unmanaged",
        summary="table exists in the database but not in the configuration",
    ),
]


def drift_plan() -> Plan:
    """``honua plan --refresh-only``: only drift."""
    return empty_plan().model_copy(update={"refresh_only": True, "drift": list(_DRIFT), "no_ops": []})


def mixed_plan() -> Plan:
    """Update, replace, delete (irreversible), validate, drift and a recorded approval."""
    before = dict(BIKE_LANES_LAYER)
    after = {**BIKE_LANES_LAYER, "title": "Bicycle Lanes", "ogc": {"itemLimit": 500, "defaultCrs": "EPSG:4326"}}
    actions = [
        Action(
            address="layer.transportation::bike-lanes",
            kind="layer",
            action="update",
            reason="title and item limit changed",
            changed_paths=["title", "ogc.itemLimit", "keywords"],
            before=before,
            after={**after, "keywords": ["cycling"]},
            risk="LOW",
            estimated_s=0.4,
            operations=[Operation(kind="publish", name="Update collection transportation::bike-lanes", estimated_s=0.3)],
            rollback=[Operation(kind="publish", name="Restore collection transportation::bike-lanes")],
            automatic_rollback=True,
        ),
        Action(
            address="layer.transportation::trails",
            kind="layer",
            action="replace",
            reason="storage.srid changed: forces replacement",
            changed_paths=["storage.srid"],
            before={"storage": {"srid": 4326}},
            after={"storage": {"srid": 3857}},
            risk="MEDIUM",
            findings=[
                FindingRecord(
                    code="GEO201",
                    level="MEDIUM",
                    message="SRID change rewrites the table trails",
                    suggestion="Run it in a maintenance window",
                )
            ],
            estimated_s=75.0,
            operations=[
                Operation(
                    kind="sql",
                    name="Transform geometry",
                    sql="ALTER TABLE trails ALTER COLUMN geom TYPE geometry(LineString, 3857) USING ST_Transform(geom, 3857);",
                    estimated_s=74.0,
                ),
                Operation(kind="publish", name="Republish collection transportation::trails", estimated_s=1.0),
            ],
            rollback=[
                Operation(
                    kind="sql",
                    name="Transform geometry back",
                    sql="ALTER TABLE trails ALTER COLUMN geom TYPE geometry(LineString, 4326) USING ST_Transform(geom, 4326);",
                )
            ],
            automatic_rollback=False,
        ),
        Action(
            address="migration.004",
            kind="migration",
            action="apply",
            reason="Drop the old lanes table",
            risk="CRITICAL",
            findings=[
                FindingRecord(
                    code="DS101",
                    level="CRITICAL",
                    message="DROP TABLE old_lanes destroys 1,200 rows",
                    suggestion="Keep the backup until the change is verified",
                    irreversible=True,
                )
            ],
            estimated_s=0.5,
            operations=[
                Operation(
                    kind="sql",
                    name="Drop old lanes",
                    sql="DROP TABLE old_lanes; -- copy was at postgresql://etl:s3cret@db.internal/gis",
                    irreversible=True,
                ),
                Operation(kind="sql", name="Reindex lanes", sql="REINDEX INDEX CONCURRENTLY idx_lanes_geom;", transactional=False),
            ],
            irreversible=True,
            backup_tables=["old_lanes"],
            deferred=["row count of old_lanes (read at apply)"],
        ),
        Action(
            address="service.legacy",
            kind="service",
            action="delete",
            reason="removed from the configuration",
            before={"title": "Legacy"},
            risk="HIGH",
            findings=[FindingRecord(code="SVC101", level="HIGH", message="collection legacy::roads removed (breaks clients)")],
            estimated_s=0.3,
            operations=[Operation(kind="publish", name="Unpublish service legacy")],
        ),
        Action(
            address="validation.dev",
            kind="validation",
            action="validate",
            reason="post-apply health checks",
            risk="LOW",
            checks=[
                CheckRecord(
                    name="OGC conformance",
                    type="ogc",
                    expected="conformance classes present",
                    predicted_failure="VAL001 the collection has no features yet",
                )
            ],
        ),
    ]
    plan = Plan(
        id="plan-production-20251008-100000-77aa55cc",
        created_at=datetime(2025, 10, 8, 10, 0, tzinfo=UTC),
        environment="production",
        engine_version="0.1.0",
        config_hash="sha256:77aa",
        state_lineage=LINEAGE,
        state_serial=12,
        target=["layer.transportation::bike-lanes", "migration.004"],
        actions=actions,
        drift=[_DRIFT[0]],
        risk="CRITICAL",
        estimated_s=sum(a.estimated_s for a in actions),
        policy=[
            PolicyCheck(name="deployment-window", status="fail", message="Outside deployment window (Tue 10:00-12:00)"),
            PolicyCheck(name="backup", status="skip", message="Backup requirement"),
        ],
        approvals_required=2,
        approvers=["gis-ops", "dba"],
        provenance=Provenance(kind="ci", actor="github-actions"),
        database=DatabaseRef(host="db.city.internal", port="5432", dbname="city_gis"),
    )
    # one approval of this content (its digest): the second one is still missing
    approval = Approval(by="john@city.gov", at=datetime(2025, 10, 8, 9, 30, tzinfo=UTC),
                        digest=content_digest(plan), comment="ok | ship it")
    return plan.model_copy(update={"approvals": [approval]})
