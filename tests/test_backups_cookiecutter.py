"""cookiecutter-django's own backups (its ``maintenance/backup``: ``pg_dump | gzip`` into
``/backups/backup_%Y_%m_%dT%H_%M_%S.sql.gz`` in the postgres service) are listed, verified as legacy
backups (no metadata) and restored; and ``BACKUP_EXEC_SERVICE=postgres`` with ``BACKUP_DIR`` on the
folder that service keeps its backups in works both ways (issue 18 item 5)."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime

import pytest

from deploy_ops import backups
from tests.fixtures.backups import postgres_checksum, psql
from tests.fixtures.cookiecutter_site import POSTGRES_STAND_IN
from tests.fixtures.databases import POSTGRES
from tests.fixtures.docker import compose_down

pytestmark = [pytest.mark.postgres, pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")]

COOKIECUTTER_NAME = "backup_2025_01_09T12_00_00.sql.gz"


def test_a_cookiecutter_backup_is_listed_with_its_utc_time_verified_as_legacy_and_restored(postgres_target, ops_dirs):
    folder = ops_dirs / "backups"
    folder.mkdir()
    original = postgres_checksum(postgres_target)
    connection = f"--no-password -h {POSTGRES['HOST']} -p {POSTGRES['PORT']} -U {POSTGRES['USER']} -d {postgres_target['NAME']}"
    dump = f"pg_dump {connection} | gzip > {folder / COOKIECUTTER_NAME}"
    subprocess.run(["bash", "-o", "pipefail", "-c", dump], check=True)
    psql(postgres_target, "DELETE FROM items WHERE id % 2 = 0; CREATE TABLE extra (x int);")

    [listed] = backups.list_backups()
    assert listed.name == COOKIECUTTER_NAME
    assert listed.metadata is None
    assert listed.created_at == datetime(2025, 1, 9, 12, 0, tzinfo=UTC)
    assert backups.find_backup(COOKIECUTTER_NAME).path == folder / COOKIECUTTER_NAME
    backups.verify_backup(listed)

    result = backups.restore_backup(listed, safety_backup=False)

    assert postgres_checksum(postgres_target) == original
    assert "has no metadata file" in result.warnings[0]


@pytest.fixture
def postgres_service(docker_engine, ops_dirs, settings, postgres_target):
    project = f"deployopscc{uuid.uuid4().hex[:10]}"
    (ops_dirs / "compose.yaml").write_text("services:\n" + POSTGRES_STAND_IN)
    (ops_dirs / "backups").mkdir(mode=0o700)
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "COMPOSE_COMMAND": docker_engine,
        "COMPOSE_PROJECT": project,
        "BACKUP_EXEC_SERVICE": "postgres",
    }
    started = subprocess.run([*docker_engine, "-p", project, "up", "--detach", "--wait"], cwd=ops_dirs, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield lambda *argv: subprocess.run(
        [*docker_engine, "-p", project, "exec", "-T", "postgres", *argv], cwd=ops_dirs, capture_output=True, text=True
    )
    compose_down(docker_engine, ops_dirs, project)


@pytest.mark.docker
def test_backup_exec_service_postgres_shares_its_backups_folder_with_backup_dir(postgres_service, postgres_target):
    original = postgres_checksum(postgres_target)
    # What cookiecutter-django's maintenance/backup does inside the postgres service.
    made = postgres_service(
        "/bin/busybox",
        "sh",
        "-c",
        f"set -o pipefail; pg_dump -U {POSTGRES['USER']} -d {postgres_target['NAME']} | /bin/busybox gzip > /backups/{COOKIECUTTER_NAME}",
    )
    assert made.returncode == 0, made.stderr
    ours = backups.create_backup()
    psql(postgres_target, "DELETE FROM items WHERE id % 2 = 0; CREATE TABLE extra (x int);")

    assert [backup.name for backup in backups.list_backups()] == [ours.name, COOKIECUTTER_NAME]
    seen_inside = postgres_service("/bin/busybox", "ls", "/backups")
    assert ours.name in seen_inside.stdout.split()
    [theirs] = [backup for backup in backups.list_backups() if backup.name == COOKIECUTTER_NAME]
    backups.verify_backup(theirs)
    backups.restore_backup(theirs, safety_backup=False)

    assert postgres_checksum(postgres_target) == original
