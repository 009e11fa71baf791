"""Helpers and data tables shared by the test modules (imported as `support.*`; fixtures are in conftest.py)."""
