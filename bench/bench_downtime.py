"""Failed requests during a deploy and its automatic rollback, under steady load, on the real Compose stack
(Docker engine, PostgreSQL on 127.0.0.1:5432, Debian's nginx: `bash .ci/nginx`).

    PATH=.venv/bin:$PATH .venv/bin/python bench/bench_downtime.py [--rate 50]

A bounded Python client sends RATE requests/s on loopback for the whole run of each case and
counts failed requests: refused or reset connections, timeouts, and 5xx answers other than the
maintenance 503 (a 503 with Retry-After).  Side by side, in one run:

- a good deploy, and a deploy whose health check fails (the automatic rollback);
- each stop-first with the site answering directly (no proxy: deploy_ops as before), stop-first
  behind nginx with DEPLOY_OPS['PROXY'] (the maintenance answer during the window), and
  zero-downtime behind nginx with two blue/green SLOTS (the plan has no migration, so the
  strategy chosen is zero-downtime; the record's strategy is checked and printed).

Prints figures; asserts nothing.  Run from the repository root.  Removes what it creates.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.helpers import last_record, manage  # noqa: E402
from tests.fixtures.databases import POSTGRES, unique_name  # noqa: E402
from tests.fixtures.docker import compose_down  # noqa: E402
from tests.fixtures.sample_site import SampleSite, free_port, health_fails, postgres_url, release  # noqa: E402
from tests.test_proxy_nginx import Nginx  # noqa: E402

COMPOSE = ["docker", "compose"]
DEPLOY = ["deploy", "--noinput", "--health-delay", "0.5"]


class SteadyLoad:
    """RATE requests/s from a few threads, each request on a new connection, until stopped."""

    def __init__(self, port: int, rate: float, threads: int = 8):
        self.port, self.interval = port, threads / rate
        self.latencies: list[float] = []
        self.failed: dict[str, int] = {}
        self.maintenance = 0
        self.running = True
        self.lock = threading.Lock()
        self.workers = [threading.Thread(target=self.loop, args=(i,), daemon=True) for i in range(threads)]
        for worker in self.workers:
            worker.start()

    def loop(self, offset: int) -> None:
        next_at = time.monotonic() + offset * self.interval / len(self.workers)
        while self.running:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += self.interval
            started = time.perf_counter()
            outcome = self.one()
            with self.lock:
                if outcome == "ok":
                    self.latencies.append(time.perf_counter() - started)
                elif outcome == "maintenance":
                    self.maintenance += 1
                else:
                    self.failed[outcome] = self.failed.get(outcome, 0) + 1

    def one(self) -> str:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
        except ConnectionRefusedError:
            return "refused"
        except ConnectionResetError:
            return "reset"
        except OSError as error:
            return type(error).__name__
        finally:
            connection.close()
        if response.status == 503 and response.getheader("Retry-After"):
            return "maintenance"
        return f"HTTP {response.status}" if response.status >= 500 else "ok"

    def stop(self) -> dict:
        self.running = False
        for worker in self.workers:
            worker.join(15)
        latencies = sorted(self.latencies)
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")
        return {
            "failed": sum(self.failed.values()),
            "kinds": dict(self.failed),
            "maintenance": self.maintenance,
            "ok": len(latencies),
            "p99_ms": p99,
        }


def postgres(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", POSTGRES["HOST"], "-p", POSTGRES["PORT"], "-U", POSTGRES["USER"], "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def run_cases(folder: Path, behind_nginx: bool, rate: float, blue_green: bool = False) -> dict[str, dict]:
    name = unique_name("deploy_ops_bench")
    postgres(f'CREATE DATABASE "{name}"')
    (folder / "site").mkdir(parents=True)
    site = SampleSite(folder / "site")
    nginx = None
    try:
        address = f"127.0.0.1:{site.web_port}"
        overrides = {}
        if behind_nginx:
            nginx = Nginx(folder / "nginx", address)
            overrides["PROXY"] = {
                "KIND": "nginx",
                "ROUTE_FILE": str(nginx.folder / "route.conf"),
                "ADDRESS": address,
                "RELOAD_COMMAND": [*nginx.base, "-s", "reload"],
                "TEST_COMMAND": [*nginx.base, "-t", "-q"],
                "PID_FILE": str(nginx.folder / "nginx.pid"),
                "DRAIN_TIMEOUT": 10,
            }
            if blue_green:
                ports = {slot: free_port() for slot in ("blue", "green")}
                overrides["PROXY"]["SLOTS"] = {
                    slot: {
                        "ADDRESS": f"127.0.0.1:{port}",
                        "HEALTH_CHECK_URL": f"http://127.0.0.1:{port}/health/",
                        "ENVIRONMENT": {"WEB_PORT": str(port)},
                    }
                    for slot, port in ports.items()
                }
        site.use_compose(COMPOSE, postgres_url({**POSTGRES, "NAME": name}), HEALTH_CHECK_RETRIES=10, HEALTH_CHECK_DELAY=1, **overrides)
        subprocess.run(
            [*COMPOSE, "up", "--detach", "--build", "--wait", "--wait-timeout", "90"], cwd=site.production, check=True, capture_output=True
        )
        site.manage("migrate", "--verbosity", "0")
        port = nginx.port if nginx else site.web_port
        results = {}
        for case, change, arguments, expected in (
            ("good deploy", release("2"), [], 0),
            ("failed health, automatic rollback", {**release("3"), **health_fails()}, ["--health-retries", "2"], 1),
        ):
            site.commit_change(change, f"bench: {case}")
            load = SteadyLoad(port, rate)
            time.sleep(1)
            finished = manage(site, *DEPLOY, *arguments)
            time.sleep(1)
            results[case] = {
                **load.stop(),
                "exit": finished.returncode,
                "expected_exit": expected,
                "strategy": last_record(site)["record"]["strategy"],
            }
        return results
    finally:
        if nginx:
            nginx.stop()
        if blue_green:
            for slot in ("blue", "green"):
                compose_down(COMPOSE, site.production, f"{site.deploy_ops['COMPOSE_PROJECT']}-{slot}")
        site.close()
        postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, default=50, help="requests per second")
    rate = parser.parse_args().rate
    if shutil.which("nginx") is None:
        raise SystemExit("nginx is not installed: run `bash .ci/nginx` first.")
    with tempfile.TemporaryDirectory(prefix="deploy_ops_downtime_") as folder:
        direct = run_cases(Path(folder) / "direct", behind_nginx=False, rate=rate)
        proxied = run_cases(Path(folder) / "nginx", behind_nginx=True, rate=rate)
        switched = run_cases(Path(folder) / "bluegreen", behind_nginx=True, rate=rate, blue_green=True)
    columns = {"stop-first, no proxy": direct, "stop-first, nginx": proxied, "zero-downtime, nginx": switched}
    print(
        f"Failed requests (refused, reset, timeout, 5xx but the maintenance 503) at {rate:g} requests/s; maintenance 503s; p99 of the "
        f"answered requests"
    )
    print(f"  {'case':<36} {'mode':<22} {'strategy ran':<14} {'failed':>7} {'503s':>6} {'ok':>6} {'p99':>10}")
    for case in direct:
        for label, results in columns.items():
            row = results[case]
            print(
                f"  {case:<36} {label:<22} {row['strategy']:<14} {row['failed']:>7} {row['maintenance']:>6} {row['ok']:>6} "
                f"{row['p99_ms']:>7.1f} ms"
            )
            if row["exit"] != row["expected_exit"]:
                print(f"    {label}: the deploy exited {row['exit']}, not {row['expected_exit']}: these figures are not the case's")
        base, best = direct[case]["failed"], switched[case]["failed"]
        print(
            f"  {case}: zero-downtime fails {best} request(s) where stop-first without a proxy fails {base}"
            + (f" ({best / base:.3f}x)" if base else "")
        )
    print(
        "  failure kinds: " + json.dumps({case: {label: results[case]["kinds"] for label, results in columns.items()} for case in direct})
    )


if __name__ == "__main__":
    main()
