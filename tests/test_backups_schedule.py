"""The schedules docs/BACKUPS.md gives: the systemd units pass `systemd-analyze verify`, and the
exact command of the cron entry runs (against a throwaway project) and makes a backup."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.environment import skip_or_fail

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy_ops" / "contrib" / "systemd"
DOCUMENTED_SITE = "/srv/site"
DOCUMENTED_PYTHON = ".venv/bin/python"


def cron_entry() -> str:
    lines = [
        line for line in (ROOT / "docs" / "BACKUPS.md").read_text().splitlines() if re.match(r"^[\d*]+ [\d*]+ [\d*]+ [\d*]+ [\d*]+ ", line)
    ]
    assert len(lines) == 1, f"docs/BACKUPS.md should hold exactly one cron entry, found {lines}"
    return lines[0]


def test_the_systemd_units_pass_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this host (it is part of systemd)")
    site = tmp_path / "site"
    site.mkdir()
    for unit in UNITS.glob("deploy-ops-backup.*"):
        # The documented paths, swapped for ones that exist here: verify checks ExecStart's executable.
        text = unit.read_text().replace(f"{DOCUMENTED_SITE}/{DOCUMENTED_PYTHON}", sys.executable).replace(DOCUMENTED_SITE, str(site))
        (tmp_path / unit.name).write_text(text)
    verified = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(tmp_path / "deploy-ops-backup.service"), str(tmp_path / "deploy-ops-backup.timer")],
        capture_output=True,
        text=True,
    )
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


def test_the_documented_unit_runs_the_documented_command():
    service = (UNITS / "deploy-ops-backup.service").read_text()
    command = cron_entry().split(" ", 5)[5]
    assert f"ExecStart={DOCUMENTED_SITE}/{DOCUMENTED_PYTHON} manage.py backups create --prune --wait 1800" in service
    assert f"{DOCUMENTED_PYTHON} manage.py backups create --prune --wait 1800 >>" in command


@pytest.mark.slow
def test_the_cron_entrys_command_makes_a_backup_and_logs_it(tmp_path):
    if shutil.which("sh") is None:
        skip_or_fail("no sh on this host")
    site = tmp_path / "site"
    (site / "logs").mkdir(parents=True)
    (site / ".venv").symlink_to(sys.prefix)  # the virtualenv these tests run in, where the cron line expects one
    shutil.copy(ROOT / "manage.py", site / "manage.py")
    environment = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{site / 'db.sqlite3'}",
        "DEPLOY_OPS_PROJECT_DIR": str(site),
        "HOME": str(tmp_path),
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=site, env=environment, check=True)
    command = cron_entry().split(" ", 5)[5].replace(DOCUMENTED_SITE, str(site))

    ran = subprocess.run(["sh", "-c", command], env=environment, capture_output=True, text=True, timeout=300)

    assert ran.returncode == 0, (site / "logs" / "backups-cron.log").read_text()
    made = sorted((site / "backups").glob("backup_*.sqlite3.gz"))
    assert len(made) == 1
    log = (site / "logs" / "backups-cron.log").read_text()
    assert str(made[0]) in log and "Removed 0 local backup(s)." in log
