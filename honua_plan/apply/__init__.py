"""Apply: run a plan's steps against the live systems, journaled, with rollback.

The database side lives in three small modules so each can be tested against a real
PostGIS on its own:

* :mod:`~honua_plan.providers.postgis.sqlsteps` runs one SQL step: in a transaction with
  ``SET LOCAL`` timeouts, or statement by statement in autocommit for
  ``CONCURRENTLY`` and friends; retries lock timeouts; drops INVALID indexes a
  failed ``CREATE INDEX CONCURRENTLY`` leaves behind.
* :mod:`~honua_plan.apply.backup` takes, verifies, restores and prunes the
  ``pg_dump`` backups taken before a migration touches a table.
* :mod:`~honua_plan.checks.validate` runs validation and health checks (read-only,
  with a statement timeout) and measures query times for "before → after".
"""
