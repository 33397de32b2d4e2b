"""Shared test setup.  Each fixture family lives in its own module under tests/fixtures/."""

pytest_plugins = [
    "tests.fixtures.environment",
    "tests.fixtures.databases",
    "tests.fixtures.docker",
    "tests.fixtures.sample_site",
    "tests.fixtures.receivers",
    "tests.fixtures.backups",
    "tests.fixtures.offsite",
    "tests.fixtures.swarm",
]
