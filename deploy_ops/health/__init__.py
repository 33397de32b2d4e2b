"""Health checks: backends for django-health-check, the /health/ URLs, and the deploy's gate.

Import the runner from :mod:`deploy_ops.health.checks` (``run_checks``, ``deploy_gate_checks``,
``require_healthy``); this package stays import-light so the URLconf can include it early.
"""
