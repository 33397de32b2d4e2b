"""The fault matrix: every engine x every late stage, end to end (commands runtime).

Each release first rewrites every note (a data-changing migration), then fails at one stage.
The deploy must exit 1 with the previous release serving and every table, row for row, as it
was before the deploy (deploy_ops' own record tables aside: the audit trail grows on purpose).
CI runs this module on Django 5.2 and again on Django 6 (`.ci/run`).
"""

import json

import pytest

from tests.e2e.helpers import deploy, failure_text
from tests.e2e.test_deploy_commands_runtime import assert_rolled_back, serving_release_1
from tests.fixtures.sample_site import data_changing_migration, failing_migration, health_fails, logs_an_error, postgres_url

pytestmark = pytest.mark.slow

# Every table and view Django sees, with its columns and a digest of its sorted rows.
TABLE_CHECKSUMS = """
import hashlib, json
from django.db import connection
checksums = {}
with connection.cursor() as cursor:
    for table in sorted(connection.introspection.table_names(include_views=True)):
        if table.startswith("deploy_ops_"):
            continue
        cursor.execute("SELECT * FROM " + connection.ops.quote_name(table))
        columns = [column[0] for column in cursor.description]
        rows = sorted(repr(tuple(row)) for row in cursor.fetchall())
        checksums[table] = [columns, hashlib.sha256("\\n".join(rows).encode()).hexdigest()]
print(json.dumps(checksums))
"""


def table_checksums(site) -> dict:
    return json.loads(site.manage("shell", "--verbosity", "0", "-c", TABLE_CHECKSUMS))


def mysql_url(database: dict) -> str:
    return f"mysql://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"


@pytest.fixture(params=["postgresql", "mysql", "sqlite"])
def database_url(request) -> str:
    """The sample site's DATABASE_URL on each engine (SQLite: a git-ignored file in the checkout)."""
    if request.param == "postgresql":
        return postgres_url(request.getfixturevalue("postgres_database"))
    if request.param == "mysql":
        return mysql_url(request.getfixturevalue("mysql_database"))
    return "sqlite:///db.sqlite3"


FAILURES = {
    "migrate": failing_migration("0003_fails", after="0002_change_notes"),
    "health": health_fails(),
    "verify": logs_an_error(),
}


@pytest.mark.parametrize("stage", list(FAILURES))
def test_a_release_failing_after_a_data_changing_migration_leaves_every_table_as_it_was(sample_site, database_url, stage):
    serving_release_1(sample_site, database_url)
    before = table_checksums(sample_site)
    sample_site.commit_change({**data_changing_migration(), **FAILURES[stage]}, f"Release that rewrites notes and fails at {stage}")

    finished = deploy(sample_site)

    assert_rolled_back(sample_site, finished, stage, restored=True)
    assert table_checksums(sample_site) == before, failure_text(finished)
