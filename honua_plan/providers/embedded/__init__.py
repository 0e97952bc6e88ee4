"""The embedded PostgreSQL + PostGIS cluster under ``state/.pg`` (``honua dev db``).

Started only by an explicit call; resolving a DSN never starts it.
"""
