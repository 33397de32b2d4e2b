"""A deploy whose off-host storage is down still succeeds, with a warning on its record and in its
notification, and its automatic cleanup still runs (commands runtime, SQLite, no Docker)."""

import hashlib
import json
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.helpers import deploy, events, failure_text, last_record, wait_for
from tests.fixtures.sample_site import free_port, release

pytestmark = pytest.mark.slow


def old_backup(directory, days: int) -> str:
    """A valid SQLite backup file dated ``days`` ago (as an earlier scheduled backup left it)."""
    import gzip
    import sqlite3

    moment = datetime.now(UTC) - timedelta(days=days)
    name = f"backup_{moment.strftime('%Y%m%d_%H%M%S')}.sqlite3.gz"
    database = directory / "old.sqlite3"
    sqlite3.connect(database).execute("CREATE TABLE t (id INTEGER)").connection.commit()
    content = gzip.compress(database.read_bytes())
    database.unlink()
    (directory / name).write_bytes(content)
    metadata = {
        "format": 1,
        "engine": "sqlite",
        "created_at": moment.isoformat(),
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
        "compression": "gzip",
    }
    (directory / f"{name}.json").write_text(json.dumps(metadata))
    return name


def test_a_deploy_with_the_storage_down_succeeds_with_a_warning_and_still_cleans_up(sample_site):
    site = sample_site
    ops = site.use_commands(HEALTH_CHECK_RETRIES=5, HEALTH_CHECK_DELAY=0.5, BACKUP_STORAGE="offsite", BACKUP_KEEP=1)
    # An SFTP server that is down: nothing listens on its port.
    down = {
        "BACKEND": "storages.backends.sftpstorage.SFTPStorage",
        "OPTIONS": {
            "host": "127.0.0.1",
            "root_path": "/backups",
            "params": {"port": free_port(), "username": "site", "timeout": 5, "look_for_keys": False, "allow_agent": False},
        },
    }
    with open(site.production / ".env", "a") as env:
        env.write(f"OFFSITE_STORAGE='{json.dumps(down)}'\n")
    site.manage("migrate", "--verbosity", "0")
    subprocess.run(ops["COMMANDS"]["start"], cwd=site.production, check=True, capture_output=True)
    wait_for(lambda: site.get("/")[0] == 200, timeout=30)
    backups = site.production / "backups"
    backups.mkdir(mode=0o700, exist_ok=True)
    expired = old_backup(backups, days=30)
    site.commit_change(release("2"), "Release 2")

    finished = deploy(site)

    assert finished.returncode == 0, failure_text(finished)
    assert "release 2" in site.get("/")[1]
    record = last_record(site)
    assert record["record"]["status"] == "succeeded_with_warnings"
    assert f"The backup {record['record']['backup_name']} was not copied off the host: Could not copy" in record["record"]["warnings"]
    assert (backups / record["record"]["backup_name"]).exists()
    [cleanup] = [stage for stage in record["stages"] if stage["name"] == "cleanup"]
    assert cleanup["status"] == "succeeded" and f"Removed 1 local backup(s): {expired}." in cleanup["output_tail"]
    assert not (backups / expired).exists()
    assert events(site) == ["INFO", "INFO", "WARNING"]  # started, the cleanup, succeeded with warnings
    sent = [json.loads(line) for line in (site.production / "logs" / "notifications.log").read_text().splitlines()]
    assert sent[1]["title"].startswith("Old backups cleaned up after the deploy of") and expired in sent[1]["message"]
    assert "was not copied off the host" in sent[2]["message"]
