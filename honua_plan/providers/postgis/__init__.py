"""The PostGIS provider: read-only catalog facts, the refresh that reads them (in a
forked reader where it can), the one SQL execution function, and the SQL steps apply runs.
"""
