"""The demo (``bin/demo``, ``python -m deploy_ops.demo.run``) run as a newcomer runs it: a real
process building a real sandbox, whose output must tell the story and which leaves nothing behind."""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import deploy_ops.demo

pytestmark = pytest.mark.slow

REPOSITORY = Path(deploy_ops.__file__).resolve().parent.parent
DEMO_SOURCES = Path(deploy_ops.demo.__file__).resolve().parent


def run_demo(tmp_path, *arguments: str) -> subprocess.CompletedProcess:
    # A HOME and TMPDIR of its own: whatever the demo wrote there would be outside its sandbox.
    home, temp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    temp.mkdir()
    env = {name: value for name, value in os.environ.items() if name not in ("DJANGO_SETTINGS_MODULE", "PYTHONDONTWRITEBYTECODE")}
    env.update(HOME=str(home), TMPDIR=str(temp))
    # -B as bin/demo's PYTHONDONTWRITEBYTECODE, but for the demo process only: the processes it
    # starts must be kept from writing __pycache__ by the demo itself.
    return subprocess.run(
        [sys.executable, "-B", "-m", "deploy_ops.demo.run", *arguments],
        cwd=REPOSITORY,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


def files_with_mtimes(folder: Path) -> dict[Path, int]:
    return {path: path.stat().st_mtime_ns for path in folder.rglob("*") if path.is_file()}


def bytecode_written_since(started_ns: int) -> list[Path]:
    """deploy_ops .pyc files written since started_ns for sources older than that (so not by a concurrent edit)."""
    package = REPOSITORY / "deploy_ops"
    return [
        compiled
        for compiled in package.rglob("__pycache__/*.pyc")
        if compiled.stat().st_mtime_ns >= started_ns
        and (compiled.parent.parent / f"{compiled.name.split('.')[0]}.py").stat().st_mtime_ns < started_ns
    ]


def answers(port: str) -> bool:
    try:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(f"http://127.0.0.1:{port}/", timeout=2)
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
    return True


def test_the_demo_deploys_release_2_rolls_back_release_3_and_leaves_nothing_behind(tmp_path):
    sandbox = tmp_path / "sandbox"
    sources_before = files_with_mtimes(DEMO_SOURCES)
    started_ns = time.time_ns()

    finished = run_demo(tmp_path, "--keep", "--dir", str(sandbox))

    output = finished.stdout
    assert finished.returncode == 0, f"{finished.stdout}\n{finished.stderr}"
    # Act 1: release 2 deployed, stage by stage.
    assert "Deployed release 2: production is at" in output
    assert "serves release 2, notes 3." in output
    for stage in ("backup: ok", "migrate: ok", "health: ok", "verify: ok"):
        assert stage in output
    # Act 2: release 3 failed its health check, was rolled back, the database restored.
    assert "health: FAILED" in output
    assert "exit code 1 after" in output
    assert "Rolled back: " in output and "is serving again." in output
    assert "Database restored: notes are ['Buy milk', 'Call the plumber', 'Water the plants'] (unchanged)." in output
    assert "Production is back at" in output and "Release 2 and serves release 2" in output
    # Act 3: status and history show both deploys.
    status = output.split("$ python manage.py rollback --status", 1)[1].split("$ python manage.py rollback --list-commits", 1)[0]
    assert "deploy   rolled back" in status and "(failed at health)" in status
    assert "deploy   succeeded" in status
    history = output.split("$ python manage.py rollback --list-commits", 1)[1]
    assert "Release 3: rewrites every note and fails its health check" in history and "deploy rolled back" in history
    assert "* " in history and "deploy succeeded" in history
    assert "The demo went as told." in output

    # Nothing running: the web port no longer answers.
    port = next(
        line.split("=", 1)[1].strip("'")
        for line in (sandbox / "production" / ".env").read_text().splitlines()
        if line.startswith("WEB_PORT=")
    )
    assert not answers(port)
    # Nothing outside the sandbox: HOME and TMPDIR untouched, the demo's sources unchanged (no __pycache__).
    assert sorted(path.name for path in tmp_path.iterdir()) == ["home", "sandbox", "tmp"]
    assert list((tmp_path / "home").iterdir()) == [] and list((tmp_path / "tmp").iterdir()) == []
    assert files_with_mtimes(DEMO_SOURCES) == sources_before
    assert bytecode_written_since(started_ns) == []
    production = sandbox / "production"
    assert len(list((production / "backups").glob("backup_*.sqlite3.gz"))) == 3  # release 2's, release 3's and the safety backup
    assert (production / "logs" / "deployments.jsonl").is_file() and (production / ".deploy_ops").is_dir()


def test_the_demo_refuses_a_folder_that_is_not_empty(tmp_path):
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    (sandbox / "precious.txt").write_text("mine")

    finished = run_demo(tmp_path, "--dir", str(sandbox))

    assert finished.returncode == 2
    assert "is not empty; give a new or empty folder." in finished.stderr
    assert [path.name for path in sandbox.iterdir()] == ["precious.txt"]
