"""Failures a test can inject with a commit (see tests/fixtures/sample_site.py)."""

EXIT_AT_START = False
LOG_STARTUP_ERROR = False
HEALTH_FAIL = False
COLLECTSTATIC_FAIL = False
