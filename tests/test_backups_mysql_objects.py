"""Views, triggers, routines and events in a MariaDB backup: restored with the tables, all or nothing.

The objects are read back through information_schema (not through the engine's own SHOW CREATE
reader), so a definition, definer or sql_mode that came back different shows up.
"""

import io

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from deploy_ops import backups
from deploy_ops.checks import E011, W003
from deploy_ops.databases import restore_blockers
from deploy_ops.exceptions import EXIT_NEEDS_HUMAN, EXIT_REFUSED, CommandFailed, RestoreRefused, RestoreUndoFailed
from tests.fixtures.backups import TARGET, mysql, mysql_checksum
from tests.fixtures.databases import _mysql_admin, unique_name

pytestmark = [pytest.mark.mysql, pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")]

PASSWORD = "Pw-objects-4c1d"
# What a user needs in the live database besides creating views and routines (tests take those away).
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES"


def objects(database) -> str:
    """Every view, trigger, routine and event with its definition, definer and sql_mode, one per line."""
    schema = database["NAME"]
    return mysql(
        database,
        f"""
        SELECT CONCAT_WS(' | ', 'view', TABLE_NAME, VIEW_DEFINITION, DEFINER, SECURITY_TYPE)
            FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{schema}'
        UNION ALL SELECT CONCAT_WS(' | ', 'trigger', TRIGGER_NAME, ACTION_TIMING, EVENT_MANIPULATION, EVENT_OBJECT_TABLE, ACTION_STATEMENT,
                                   DEFINER, SQL_MODE)
            FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{schema}'
        UNION ALL SELECT CONCAT_WS(' | ', ROUTINE_TYPE, ROUTINE_NAME, ROUTINE_DEFINITION, DTD_IDENTIFIER, DEFINER, SQL_MODE,
                                   IS_DETERMINISTIC)
            FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{schema}'
        UNION ALL SELECT CONCAT_WS(' | ', 'event', EVENT_NAME, EVENT_DEFINITION, INTERVAL_VALUE, INTERVAL_FIELD, STATUS, DEFINER, SQL_MODE,
                                   TIME_ZONE)
            FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{schema}'
        ORDER BY 1""",
    )


def everything(database) -> tuple[str, str]:
    return mysql_checksum(database), objects(database)


def scratch_databases(database) -> list[str]:
    return [name for name in mysql(database, "SHOW DATABASES").split() if name.startswith(database["NAME"][:40] + "__")]


def add_objects(database, definer: str = "CURRENT_USER") -> None:
    """A view over a view, a trigger, a procedure made under ANSI_QUOTES, a function and an event."""
    mysql(
        database,
        f"""
        CREATE DEFINER = {definer} VIEW cheap_items AS SELECT id, name FROM items WHERE id <= 100;
        CREATE DEFINER = {definer} VIEW cheap_names AS SELECT name FROM cheap_items;
        CREATE TABLE audit (item_id INT, note VARCHAR(100));
        CREATE DEFINER = {definer} TRIGGER items_audit AFTER UPDATE ON items FOR EACH ROW
            INSERT INTO audit VALUES (NEW.id, CONCAT('was ', OLD.name));
        SET SESSION sql_mode = 'ANSI_QUOTES,STRICT_ALL_TABLES';
        DELIMITER //
        CREATE DEFINER = {definer} PROCEDURE count_items(OUT total INT)
            BEGIN DECLARE n INT; SELECT COUNT(*) INTO n FROM "items"; SET total = n; END//
        DELIMITER ;
        SET SESSION sql_mode = DEFAULT;
        CREATE DEFINER = {definer} FUNCTION label(item INT) RETURNS VARCHAR(120) DETERMINISTIC
            RETURN (SELECT CONCAT('#', id, ' ', name) FROM items WHERE id = item);
        CREATE DEFINER = {definer} EVENT nightly_cleanup ON SCHEDULE EVERY 1 DAY DISABLE DO DELETE FROM audit;
    """,
    )


def change_everything(database) -> None:
    mysql(
        database,
        """
        UPDATE items SET name = 'changed' WHERE id < 50;
        DROP VIEW cheap_names; DROP VIEW cheap_items;
        CREATE VIEW cheap_items AS SELECT id FROM items WHERE id > 400;
        DROP TRIGGER items_audit;
        DROP FUNCTION label;
        CREATE PROCEDURE added_after_backup() SELECT 1;
        DROP EVENT nightly_cleanup;
    """,
    )


@pytest.fixture
def restricted_user(mysql_target, settings):
    """Makes DATABASES['target'] connect as a new user with ALL on the scratch databases and ``granted`` on the live one."""
    made = []

    def connect_as(granted: str) -> str:
        user = unique_name("dops")[:30]
        escaped = mysql_target["NAME"].replace("_", "\\_")
        created = _mysql_admin(
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{PASSWORD}';"
            f"GRANT ALL PRIVILEGES ON `{escaped}\\_\\_%`.* TO '{user}'@'%';"
            f"GRANT {granted} ON `{escaped}`.* TO '{user}'@'%';"
        )
        assert created.returncode == 0, created.stderr
        made.append(user)
        settings.DATABASES = {**settings.DATABASES, TARGET: {**mysql_target, "USER": user, "PASSWORD": PASSWORD}}
        return user

    yield connect_as
    for user in made:
        _mysql_admin(f"DROP USER IF EXISTS '{user}'@'%'")
    for leftover in scratch_databases(mysql_target):
        _mysql_admin(f"DROP DATABASE IF EXISTS `{leftover}`")


def test_views_triggers_routines_and_events_come_back_exactly_with_the_rows(mysql_target):
    add_objects(mysql_target, definer="'root'@'localhost'")  # not the restoring user, root@127.0.0.1
    before = everything(mysql_target)
    backup = backups.create_backup()
    change_everything(mysql_target)
    assert everything(mysql_target) != before

    backups.restore_backup(backup)

    assert everything(mysql_target) == before
    assert scratch_databases(mysql_target) == []
    assert "ANSI_QUOTES" in objects(mysql_target)  # the procedure kept the sql_mode it was written under


def test_restored_objects_work_on_the_restored_tables(mysql_target):
    add_objects(mysql_target)
    mysql(mysql_target, "CREATE SEQUENCE ticket_numbers START WITH 100 NOCACHE; SELECT NEXTVAL(ticket_numbers)")
    backup = backups.create_backup()
    change_everything(mysql_target)
    mysql(mysql_target, "SELECT NEXTVAL(ticket_numbers), NEXTVAL(ticket_numbers)")

    backups.restore_backup(backup, safety_backup=False)

    mysql(mysql_target, "UPDATE items SET name = 'renamed' WHERE id = 7")
    assert mysql(mysql_target, "SELECT note FROM audit") == "was item 7"
    assert mysql(mysql_target, "SELECT label(7)") == "#7 renamed"
    assert mysql(mysql_target, "CALL count_items(@total); SELECT @total").splitlines()[-1] == "500"
    assert mysql(mysql_target, "SELECT COUNT(*) FROM cheap_names") == "100"
    assert mysql(mysql_target, "SELECT NEXTVAL(ticket_numbers)") == "101"  # a sequence moves with the tables
    # Every object refers to the live database's tables, none to a scratch database.
    schema = mysql_target["NAME"]
    in_scratch = (
        f"SELECT COUNT(*) FROM information_schema.VIEWS WHERE TABLE_SCHEMA = '{schema}' AND VIEW_DEFINITION LIKE '%\\_\\_restore\\_%'"
    )
    assert mysql(mysql_target, in_scratch) == "0"


def test_a_restore_that_fails_after_the_swap_is_undone_completely(mysql_target, restricted_user):
    # The user may create views but not routines in the live database: recreating the backup's
    # procedure fails after the tables were swapped, so everything must be swapped back.
    user = restricted_user(f"{TABLE_PRIVILEGES}, CREATE VIEW, ALTER ROUTINE")
    mysql(
        mysql_target,
        f"CREATE DEFINER = '{user}'@'%' VIEW cheap_items AS SELECT id, name FROM items WHERE id <= 100;"
        f"CREATE DEFINER = '{user}'@'%' PROCEDURE count_items() SELECT COUNT(*) FROM items;",
    )
    backup = backups.create_backup()
    mysql(
        mysql_target,
        "DROP PROCEDURE count_items; UPDATE items SET name = 'changed' WHERE id < 50;"
        f"CREATE OR REPLACE DEFINER = '{user}'@'%' VIEW cheap_items AS SELECT id FROM items WHERE id > 400",
    )
    before = everything(mysql_target)

    with pytest.raises(CommandFailed, match="count_items"):
        backups.restore_backup(backup, safety_backup=False)

    assert everything(mysql_target) == before
    assert scratch_databases(mysql_target) == []


def test_when_the_undo_fails_too_the_error_says_where_the_tables_are_and_keeps_them(mysql_target, restricted_user):
    # Without CREATE VIEW, neither the backup's view nor the live one can be made again.
    user = restricted_user(TABLE_PRIVILEGES)
    mysql(mysql_target, f"CREATE DEFINER = '{user}'@'%' VIEW cheap_items AS SELECT id, name FROM items WHERE id <= 100")
    backup = backups.create_backup()
    mysql(mysql_target, "UPDATE items SET name = 'changed' WHERE id < 50")
    rows = "SELECT MD5(GROUP_CONCAT(CONCAT_WS(':', id, name) ORDER BY id)) FROM items"
    before = mysql(mysql_target, rows)

    with pytest.raises(RestoreUndoFailed) as error:
        backups.restore_backup(backup, safety_backup=False)

    assert error.value.exit_code == EXIT_NEEDS_HUMAN
    message = str(error.value)
    assert f"The tables of '{mysql_target['NAME']}' are as they were; view cheap_items may be missing" in message
    assert "Restore the safety backup by hand" in message and PASSWORD not in message
    assert mysql(mysql_target, rows) == before
    kept = scratch_databases(mysql_target)
    assert len(kept) == 2 and all(f"'{name}'" in message for name in kept)


@pytest.fixture
def other_database(mysql_target):
    name = unique_name("deploy_ops_other")
    _mysql_admin(f"CREATE DATABASE `{name}`")
    yield {"NAME": name}
    _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")


def test_a_foreign_key_from_another_database_blocks_every_restore_before_anything_changes(mysql_target, other_database):
    backup = backups.create_backup()
    mysql(
        other_database,
        "CREATE TABLE orders (id INT PRIMARY KEY, item_id INT,"
        f" FOREIGN KEY (item_id) REFERENCES `{mysql_target['NAME']}`.items (id)) ENGINE=InnoDB",
    )
    mysql(mysql_target, "UPDATE items SET name = 'changed' WHERE id < 50")
    before = mysql_checksum(mysql_target)

    blockers = restore_blockers(TARGET)
    with pytest.raises(RestoreRefused) as error:
        backups.restore_backup(backup)
    with pytest.raises(CommandError) as command_error:
        call_command("backups", "restore", backup.name, "--noinput")

    assert blockers == [
        f"a foreign key from {other_database['NAME']}.orders -> items would stay on the replaced table "
        f"(a restore swaps the tables of '{mysql_target['NAME']}')"
    ]
    assert error.value.exit_code == command_error.value.returncode == EXIT_REFUSED
    assert f"{backup.name} was not restored and nothing changed" in str(error.value)
    assert mysql_checksum(mysql_target) == before
    assert [entry.name for entry in backups.list_backups()] == [backup.name]  # not even a safety backup was taken
    assert [message.id for message in run_checks(include_deployment_checks=True) if message.id == E011] == [E011]
    # A backup made now says that deploy_ops could not restore it as things stand.
    warnings = io.StringIO()
    call_command("backups", "create", stdout=io.StringIO(), stderr=warnings)
    assert backups.list_backups()[0].metadata["restore_blockers"] == blockers
    assert f"deploy_ops cannot restore this backup as things stand: {blockers[0]}." in warnings.getvalue()


def test_an_object_of_another_definer_blocks_a_user_who_could_not_recreate_it(mysql_target, restricted_user):
    user = restricted_user(f"{TABLE_PRIVILEGES}, CREATE VIEW")
    mysql(mysql_target, "CREATE DEFINER = 'root'@'localhost' VIEW cheap_items AS SELECT id FROM items WHERE id <= 100")
    backup = backups.create_backup()
    before = everything(mysql_target)

    expected = f"view cheap_items is defined by root@localhost, and {user}@% may not create objects for another definer"
    with pytest.raises(RestoreRefused, match=expected):
        backups.restore_backup(backup)

    assert everything(mysql_target) == before
    assert backup.metadata["restore_blockers"] == restore_blockers(TARGET)


def test_definitions_this_user_cannot_read_block_the_restore_before_anything_changes(mysql_target, restricted_user):
    add_objects(mysql_target)
    backup = backups.create_backup()  # as root, who may read everything
    restricted_user("SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, REFERENCES, LOCK TABLES")  # no SHOW VIEW, no TRIGGER
    mysql(mysql_target, "UPDATE items SET name = 'changed' WHERE id < 50")
    before = everything(mysql_target)

    blockers = restore_blockers(TARGET)
    with pytest.raises(RestoreRefused, match="cannot be read by this database user") as error:
        backups.restore_backup(backup)

    assert len(blockers) == 1 and "SHOW VIEW command denied" in blockers[0]
    assert error.value.exit_code == EXIT_REFUSED
    assert everything(mysql_target) == before
    assert scratch_databases(mysql_target) == []


def test_check_deploy_warns_when_it_cannot_ask_the_server(mysql_target, settings):
    settings.DATABASES = {**settings.DATABASES, TARGET: {**mysql_target, "PORT": "1"}}  # nothing listens there

    found = [message for message in run_checks(include_deployment_checks=True) if message.id in (E011, W003)]

    assert [message.id for message in found] == [W003]
    assert "Could not check whether the database 'target' can be restored" in found[0].msg
