"""Everything that checks: the expected-value comparison, preconditions, layer tests,
OGC API conformance, and how long an environment has been healthy.
"""
