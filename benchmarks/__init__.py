"""Scaling benchmarks of honua-plan: ``python -m benchmarks.run`` (see README "Performance")."""
