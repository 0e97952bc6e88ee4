"""Providers: the only code that talks to live systems (PostGIS, GIS servers).

Planning code never imports psycopg; it reads the frozen facts providers return.
"""
