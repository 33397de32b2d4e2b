"""Benchmark: /health/ with every check against django-health-check's stock view, with the same checks and with only Database.

Serves the bundled project (SQLite, migrated, one fresh backup, one successful deploy record at the
checkout's HEAD so every check does its real work and passes) with gunicorn on 127.0.0.1, then
loads each URL with wrk from a second process and prints requests/sec and p99 latency side by side.
The fair comparison is the stock view running the same checks as ours: our view's overhead over
it (time per request, from requests/sec) must stay within 1.2x.

RUNTIME is "commands" here, and the host-only checks (HOST_HEALTH_CHECKS: ServicesRunning and the
backup checks) are added to HEALTH_CHECKS so the view runs every check deploy_ops has.  Run from the repository root:

    PATH=.venv/bin:$PATH .venv/bin/python bench/bench_health.py [--duration 10] [--threads 2] [--connections 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from deploy_ops.conf import DEFAULT_HEALTH_CHECKS, DEFAULT_HOST_HEALTH_CHECKS  # after ROOT is on the path

STOCK_DATABASE, STOCK_SAME, OURS = "stock (Database only)", "stock (same checks)", "deploy_ops (all checks)"
TARGETS = {STOCK_DATABASE: "/stock/health/?format=json", STOCK_SAME: "/stock/health/same-checks/?format=json", OURS: "/health/?format=json"}
OVERHEAD_TARGET = 1.2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def bench_environment(folder: Path) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.health_settings",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}",
        "BENCH_MEDIA_ROOT": str(folder / "media"),
        "DEPLOY_OPS_BACKUP_DIR": str(folder / "backups"),
        "DEPLOY_OPS_LOG_DIR": str(folder / "logs"),
        "DEPLOY_OPS_STATE_DIR": str(folder / "state"),
        "DEPLOY_OPS_RUNTIME": "commands",
        # The details run every check on every request; the status-only answer is cached.
        "DEPLOY_OPS_HEALTH_DETAILS_PUBLIC": "true",
        "DEPLOY_OPS_COMMANDS": json.dumps({"start": ["true"], "stop": ["true"]}),
        "DEPLOY_OPS_BACKUP_MIN_FREE_MB": "1",
        "DEPLOY_OPS_HEALTH_CHECKS": json.dumps(DEFAULT_HEALTH_CHECKS + DEFAULT_HOST_HEALTH_CHECKS),
    }


PREPARE = """
import django
django.setup()
from django.utils import timezone
from deploy_ops.backups import create_backup
from deploy_ops.conf import ops_settings
from deploy_ops.gitrepo import Checkout
from deploy_ops.models import DeploymentRecord
create_backup()
head = Checkout(ops_settings.project_dir).head().sha
DeploymentRecord.objects.create(status="succeeded", to_commit=head, started_at=timezone.now(), finished_at=timezone.now())
"""


def prepare(environment: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=environment, check=True)
    subprocess.run([sys.executable, "-c", PREPARE], cwd=ROOT, env=environment, check=True)


def wait_until_up(base: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(base + "/health/live/", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer on {base} within {timeout:g}s")


def check_once(base: str, path: str) -> None:
    """Both views must pass before they are timed: a failing check would time an error path."""
    try:
        with urllib.request.urlopen(base + path, timeout=10) as response:
            response.read()
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{path} answered {error.code} before the run: {error.read().decode()}") from None


def to_milliseconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_wrk(url: str, duration: int, threads: int, connections: int) -> tuple[float, float]:
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    requests_per_second = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p99 = to_milliseconds(re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{url}: {errors.group(1)} responses were not 200 during the run")
    return requests_per_second, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per URL")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--connections", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    arguments = parser.parse_args()
    if shutil.which("wrk") is None and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False)  # the load generator, from Debian
    for tool in ("wrk", "gunicorn"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH (apt-get install wrk; pip install -r requirements-dev.txt).")

    with tempfile.TemporaryDirectory(prefix="deploy-ops-bench-") as folder:
        environment = bench_environment(Path(folder))
        prepare(environment)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            ["gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", str(arguments.workers), "--log-level", "warning"],
            cwd=ROOT,
            env=environment,
        )
        try:
            wait_until_up(base)
            results = {}
            for label, path in TARGETS.items():
                check_once(base, path)
                results[label] = run_wrk(base + path, arguments.duration, arguments.threads, arguments.connections)
        finally:
            server.terminate()
            server.wait(timeout=30)

    print(f"wrk -t{arguments.threads} -c{arguments.connections} -d{arguments.duration}s, gunicorn {arguments.workers} sync workers, SQLite")
    print(f"{'view':<26}{'requests/s':>12}{'p99 ms':>10}")
    for label, (requests_per_second, p99) in results.items():
        print(f"{label:<26}{requests_per_second:>12.1f}{p99:>10.1f}")
    (stock_rps, stock_p99), (same_rps, same_p99), (ours_rps, ours_p99) = (results[label] for label in (STOCK_DATABASE, STOCK_SAME, OURS))
    print(
        f"ours over stock with Database only: time per request {stock_rps / ours_rps:.2f}x, "
        f"p99 {ours_p99 / stock_p99:.2f}x (more checks: not like with like)"
    )
    overhead = same_rps / ours_rps
    verdict = "ok" if overhead <= OVERHEAD_TARGET else f"OVER {OVERHEAD_TARGET}x"
    print(
        f"ours over stock with the same checks: time per request {overhead:.2f}x, "
        f"p99 {ours_p99 / same_p99:.2f}x (target {OVERHEAD_TARGET}x: {verdict})"
    )


if __name__ == "__main__":
    main()
