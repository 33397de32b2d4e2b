"""Issue 15's reproduction on MariaDB: a database with a view (and a trigger) deployed, failed and rolled back.

Before, the restore refused in the middle of the rollback ("it holds view shop_cheap, view
shop_cheap"), so the deploy exited 2 with the data changed; `rollback --backup` stopped the
services before it found out.  Now both restore the tables and the objects.
"""

import pytest

from tests.e2e.helpers import deploy, failure_text, manage
from tests.e2e.test_deploy_commands_runtime import assert_rolled_back, serving_release_1
from tests.e2e.test_fault_matrix import mysql_url, table_checksums
from tests.fixtures.backups import mysql
from tests.fixtures.sample_site import failing_migration

pytestmark = [pytest.mark.slow, pytest.mark.mysql]


def rewrites_notes_and_adds_a_column() -> dict[str, str]:
    return {
        "notes/migrations/0002_rewrite_and_add_column.py": """from django.db import migrations, models


def rewrite(apps, schema_editor):
    apps.get_model("notes", "Note").objects.update(text="rewritten by 0002")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [
        migrations.RunPython(rewrite, migrations.RunPython.noop),
        migrations.AddField("note", "price", models.IntegerField(default=7)),
    ]
"""
    }


def objects(database) -> str:
    schema = database["NAME"]
    return mysql(
        database,
        f"SELECT CONCAT_WS(' | ', TABLE_NAME, VIEW_DEFINITION) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{schema}'"
        " UNION ALL SELECT CONCAT_WS(' | ', TRIGGER_NAME, ACTION_STATEMENT) FROM information_schema.TRIGGERS"
        f" WHERE TRIGGER_SCHEMA = '{schema}'",
    )


def serving_with_a_view_and_a_trigger(site, database) -> None:
    serving_release_1(site, mysql_url(database))
    mysql(
        database,
        "CREATE VIEW shop_cheap AS SELECT id, text FROM notes_note WHERE id < 100;"
        "CREATE TRIGGER notes_shout BEFORE INSERT ON notes_note FOR EACH ROW SET NEW.text = UPPER(NEW.text)",
    )


def test_a_failed_deploy_on_a_database_with_a_view_is_rolled_back_with_every_table_and_the_view(sample_site, mysql_database):
    serving_with_a_view_and_a_trigger(sample_site, mysql_database)
    before = table_checksums(sample_site), objects(mysql_database)
    release = {**rewrites_notes_and_adds_a_column(), **failing_migration("0003_fails", after="0002_rewrite_and_add_column")}
    sample_site.commit_change(release, "Release whose first migration changes every row and adds a column, and whose next one raises")

    finished = deploy(sample_site)

    assert_rolled_back(sample_site, finished, "migrate", restored=True)
    assert (table_checksums(sample_site), objects(mysql_database)) == before
    assert "shop_cheap" in before[0] and "notes_shout" in before[1]


def test_rollback_to_a_backup_of_a_database_with_a_view_restores_it(sample_site, mysql_database):
    serving_with_a_view_and_a_trigger(sample_site, mysql_database)
    before = table_checksums(sample_site), objects(mysql_database)
    backup = sample_site.manage("backups", "create").strip().splitlines()[-1]
    mysql(mysql_database, "UPDATE notes_note SET text = 'changed'; DROP VIEW shop_cheap")

    finished = manage(sample_site, "rollback", "--backup", backup, "--noinput")

    assert finished.returncode == 0, failure_text(finished)
    assert (table_checksums(sample_site), objects(mysql_database)) == before
    assert sample_site.get("/")[0] == 200
