"""BACKUP_EXEC_SERVICE: pg_dump and psql run inside a Compose service (a real container), as the
old scripts did on hosts without client tools.  The container reaches PostgreSQL through the
server's socket, bind-mounted, and borrows the host's client tools read-only."""

import subprocess
import uuid

import pytest

from deploy_ops import backups
from tests.fixtures.backups import postgres_checksum, psql
from tests.fixtures.docker import compose_down

pytestmark = [pytest.mark.docker, pytest.mark.postgres]

COMPOSE_FILE = """\
services:
  db:
    image: deploy-ops-test-base:latest
    network_mode: host
    command: ["/bin/busybox", "sleep", "600"]
    volumes:
      - /usr:/usr:ro
      - /lib:/lib:ro
      - /lib64:/lib64:ro
      - /etc:/etc:ro
      - /var/run/postgresql:/var/run/postgresql
"""


@pytest.fixture
def database_container(docker_engine, ops_dirs, settings, postgres_target):
    project = f"deployopsexec{uuid.uuid4().hex[:10]}"
    (ops_dirs / "compose.yaml").write_text(COMPOSE_FILE)
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "COMPOSE_COMMAND": docker_engine,
        "COMPOSE_PROJECT": project,
        "BACKUP_EXEC_SERVICE": "db",
    }
    started = subprocess.run([*docker_engine, "-p", project, "up", "--detach", "--wait"], cwd=ops_dirs, capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    yield postgres_target
    compose_down(docker_engine, ops_dirs, project)


def test_a_backup_made_and_restored_inside_the_database_service_round_trips(database_container, caplog):
    caplog.set_level("INFO", logger="deploy_ops.runner")
    original = postgres_checksum(database_container)

    backup = backups.create_backup()
    psql(database_container, "DELETE FROM items WHERE id % 2 = 0; CREATE TABLE extra (x int);")
    assert postgres_checksum(database_container) != original
    backups.restore_backup(backup, safety_backup=False)

    assert postgres_checksum(database_container) == original
    commands = [record.getMessage() for record in caplog.records if record.getMessage().startswith("run: ")]
    assert any(" exec -T db pg_dump " in command for command in commands), commands
    assert any(" exec -T db psql " in command for command in commands), commands
