"""Backups against the real MariaDB server, as a user WITH a password (so MYSQL_PWD is really used)."""

import logging
import os
import subprocess

import pytest

from deploy_ops import backups
from deploy_ops.compression import chunks
from deploy_ops.databases import engine_for
from deploy_ops.databases.mysql import dump_command, load_command
from deploy_ops.exceptions import BackupCorrupt, CommandFailed
from tests.fixtures.backups import TARGET, mysql, mysql_checksum
from tests.fixtures.databases import MYSQL, _mysql_admin, unique_name
from tests.fixtures.environment import skip_or_fail

pytestmark = [pytest.mark.mysql, pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")]

PASSWORD = "Pw-for-deploy-ops-7f3e"


@pytest.fixture
def mysql_user_target(mysql_target, settings):
    """DATABASES['target'] connecting as a new user that needs a password."""
    user = unique_name("dops")[:30]
    created = _mysql_admin(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL PRIVILEGES ON *.* TO '{user}'@'%';")
    assert created.returncode == 0, created.stderr
    settings.DATABASES = {**settings.DATABASES, TARGET: {**mysql_target, "USER": user, "PASSWORD": PASSWORD}}
    yield mysql_target
    _mysql_admin(f"DROP USER IF EXISTS '{user}'@'%'")


def change_data(database):
    mysql(
        database,
        "DELETE FROM tags WHERE id % 2 = 0; DELETE FROM items WHERE id % 7 = 1 AND id NOT IN (SELECT item_id FROM tags);"
        "UPDATE items SET name = 'changed' WHERE id < 30; CREATE TABLE added_after_backup (id INT);",
    )


def scratch_databases(database) -> list[str]:
    return [name for name in mysql(database, "SHOW DATABASES").split() if name.startswith(database["NAME"][:40] + "__")]


def test_round_trip_restores_exactly_the_rows_and_tables_of_the_backup(mysql_user_target):
    original = mysql_checksum(mysql_user_target)
    backup = backups.create_backup()
    assert backup.engine == "mysql" and backup.name.endswith(".sql.gz")
    change_data(mysql_user_target)
    assert mysql_checksum(mysql_user_target) != original

    result = backups.restore_backup(backup)

    assert mysql_checksum(mysql_user_target) == original
    assert result.safety_backup is not None
    # Foreign keys point at the swapped-in tables.
    assert (
        mysql(
            mysql_user_target,
            "SELECT REFERENCED_TABLE_SCHEMA FROM information_schema.KEY_COLUMN_USAGE "
            "WHERE TABLE_NAME = 'tags' AND REFERENCED_TABLE_NAME = 'items'",
        )
        == mysql_user_target["NAME"]
    )
    assert scratch_databases(mysql_user_target) == []


def test_the_password_appears_in_no_argv_log_error_or_metadata(mysql_user_target, caplog, settings):
    caplog.set_level(logging.DEBUG, logger="deploy_ops")
    settings_dict = settings.DATABASES[TARGET]
    for command in (dump_command(settings_dict), load_command(settings_dict, "x")):
        assert PASSWORD not in " ".join(command.argv)
        assert command.env == {"MYSQL_PWD": PASSWORD}
    backup = backups.create_backup()
    backups.verify_backup(backup)
    backup.path.with_name("backup_20250109_120000.sql").write_text("-- MariaDB dump\nSELECT 1;\nSELEC broken;\n-- Dump completed\n")
    with pytest.raises(CommandFailed) as error:
        backups.restore_backup(backups.find_backup("backup_20250109_120000.sql"), safety_backup=False)

    assert "ERROR 1064" in str(error.value)
    assert PASSWORD not in str(error.value)
    assert PASSWORD not in caplog.text and "mysqldump" in caplog.text
    assert PASSWORD not in backup.metadata_path.read_text()
    with open(backup.path, "rb") as raw:
        assert not any(PASSWORD.encode() in chunk for chunk in chunks(raw, "gzip"))


def test_a_dump_with_an_sql_error_in_the_middle_fails_the_restore_and_changes_nothing(mysql_user_target):
    backup = backups.create_backup(compression="none")
    text = backup.path.read_text()
    position = text.index("CREATE TABLE `tags`")
    broken = backup.path.with_name("backup_20250109_120000.sql")
    broken.write_text(text[:position] + "INSERT INTO no_such_table VALUES (1);\n" + text[position:])
    change_data(mysql_user_target)
    changed = mysql_checksum(mysql_user_target)

    with pytest.raises(CommandFailed) as error:
        backups.restore_backup(backups.find_backup(broken.name), safety_backup=False)

    assert "no_such_table" in str(error.value)
    assert mysql_checksum(mysql_user_target) == changed
    assert scratch_databases(mysql_user_target) == []


def test_a_truncated_backup_is_refused_and_the_database_is_untouched(mysql_user_target):
    backup = backups.create_backup()
    backup.path.write_bytes(backup.path.read_bytes()[:-200])
    change_data(mysql_user_target)
    changed = mysql_checksum(mysql_user_target)
    with pytest.raises(BackupCorrupt, match=backup.name):
        backups.restore_backup(backups.find_backup(backup.name))
    assert mysql_checksum(mysql_user_target) == changed


def test_a_backup_holding_a_view_is_restored_with_its_view(mysql_user_target):
    mysql(mysql_user_target, "CREATE VIEW item_names AS SELECT name FROM items")
    view_rows = "SELECT COUNT(*), MD5(GROUP_CONCAT(name ORDER BY name)) FROM item_names"
    original = mysql_checksum(mysql_user_target), mysql(mysql_user_target, view_rows)
    backup = backups.create_backup()
    change_data(mysql_user_target)

    backups.restore_backup(backup, safety_backup=False)

    assert (mysql_checksum(mysql_user_target), mysql(mysql_user_target, view_rows)) == original
    assert scratch_databases(mysql_user_target) == []


def test_a_host_that_is_a_socket_path_backs_up_and_restores_through_the_socket(mysql_user_target, settings):
    socket_path = mysql(mysql_user_target, "SELECT @@socket")
    if not os.path.exists(socket_path):
        skip_or_fail(f"MariaDB's socket {socket_path} is not on this host")
    through_socket = {**settings.DATABASES[TARGET], "HOST": socket_path, "PORT": ""}
    settings.DATABASES = {**settings.DATABASES, TARGET: through_socket}
    expected = (f"--user={through_socket['USER']}", f"--socket={socket_path}", "--default-character-set=utf8mb4")
    assert dump_command(through_socket).argv[1:4] == expected
    original = mysql_checksum(mysql_user_target)
    backup = backups.create_backup()
    change_data(mysql_user_target)

    backups.restore_backup(backup)

    assert mysql_checksum(mysql_user_target) == original


def test_options_as_django_reads_them_reach_the_tools_and_the_password_only_their_environment():
    settings_dict = {
        "ENGINE": "django.db.backends.mysql",
        "NAME": "site",
        "USER": "ignored",
        "PASSWORD": "ignored-too",
        "HOST": "db.internal",
        "PORT": "3307",
        "OPTIONS": {
            "user": "app",
            "password": "Options-Pw-1",
            "read_default_file": "/etc/site.cnf",
            "charset": "utf8mb3",
            "ssl": {"ca": "/tls/ca.pem", "cert": "/tls/client.pem", "key": "/tls/client.key"},
        },
    }
    command = load_command(settings_dict, "scratch")
    assert command.argv == (
        "mysql",
        "--defaults-file=/etc/site.cnf",
        "--user=app",
        "--host=db.internal",
        "--port=3307",
        "--ssl-ca=/tls/ca.pem",
        "--ssl-cert=/tls/client.pem",
        "--ssl-key=/tls/client.key",
        "--default-character-set=utf8mb3",
        "scratch",
    )
    assert command.env == {"MYSQL_PWD": "Options-Pw-1"} and command.secrets == ("Options-Pw-1",)


def test_a_wrong_password_is_a_clear_error_that_does_not_show_it(mysql_user_target, settings, ops_dirs):
    settings.DATABASES = {**settings.DATABASES, TARGET: {**settings.DATABASES[TARGET], "PASSWORD": "wrong-Pw-123"}}
    with pytest.raises(CommandFailed) as error:
        backups.create_backup()
    assert "Access denied" in str(error.value)
    assert "wrong-Pw-123" not in str(error.value)
    assert list((ops_dirs / "backups").iterdir()) == []


def test_engine_for_reads_an_alias_added_at_run_time(mysql_user_target):
    engine = engine_for(TARGET)
    assert engine.vendor == "mysql"
    assert (
        engine.server_version()
        == subprocess.run(
            ["mysql", "-h", MYSQL["HOST"], "-u", MYSQL["USER"], "-N", "-e", "SELECT VERSION()"], capture_output=True, text=True
        ).stdout.strip()
    )
