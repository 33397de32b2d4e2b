"""Deploy overhead and time to recover, on the sample site with the commands runtime.

    PATH=.venv/bin:$PATH .venv/bin/python bench/bench_deploy.py [--rounds 3]

1. Overhead: ``manage.py deploy`` of a new release versus a plain shell script that runs the
   same steps (backup, fetch, checkout, stop, start, migrate, collectstatic, health poll,
   check, migrate --check), alternating, same release sizes.  Target: at most 1.10x.
2. Time to recover: a release whose health check fails (one try), from the failed health
   stage to the previous release healthy again, printed beside the restore alone.
3. Docker Swarm against Docker Compose, on the same site (PostgreSQL, the same releases): the
   deploy of a good release and the time to recover from a failed health check, each runtime
   in turn, printed side by side as a ratio.  Needs the Docker engine (.ci/docker); the engine
   is made a single-node swarm when it is not one (and leaves it again at the end).
   ``--part runtimes`` runs this part alone.

Prints figures; asserts nothing.  Run from the repository root.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy_ops.stages import STEP_ORDER  # noqa: E402
from tests.e2e.helpers import serve_release_1_on_compose  # noqa: E402
from tests.fixtures.databases import POSTGRES, unique_name  # noqa: E402
from tests.fixtures.sample_site import SampleSite, flags, health_fails, postgres_url, release  # noqa: E402
from tests.fixtures.swarm import serve_release_1_on_swarm, swarm_state  # noqa: E402

COMPOSE = ["docker", "compose"]

SHELL_DEPLOY = """set -euo pipefail
python={python}
mkdir -p backups
$python - <<'EOF'
import gzip, shutil, sqlite3
source = sqlite3.connect("db.sqlite3"); copy = sqlite3.connect("backups/plain.sqlite3")
source.backup(copy); copy.close(); source.close()
with open("backups/plain.sqlite3", "rb") as raw, gzip.open("backups/plain_backup.sqlite3.gz", "wb") as packed:
    shutil.copyfileobj(raw, packed)
EOF
rm backups/plain.sqlite3
git fetch --prune --tags --force origin
git checkout --quiet --detach origin/main
{stop}
{start}
$python manage.py migrate --noinput
$python manage.py collectstatic --noinput
for try in $(seq {retries}); do
    if $python -c 'import sys, urllib.request; sys.exit(urllib.request.urlopen("{url}").status != 200)' 2>/dev/null; then break; fi
    sleep {delay}
done
$python manage.py check
$python manage.py migrate --check
"""


def run(command, cwd, **kwargs) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - started


def journal(site) -> list[dict]:
    newest = {}
    for line in (site.production / "logs" / "deployments.jsonl").read_text().splitlines():
        snapshot = json.loads(line)
        newest[snapshot["record"]["id"]] = snapshot
    return list(newest.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--part", choices=("all", "commands", "runtimes"), default="all")
    parser.add_argument("--monitor", type=int, default=2, help="the swarm's SWARM_UPDATE_MONITOR (seconds) in part 3")
    arguments = parser.parse_args()
    if arguments.part in ("all", "commands"):
        bench_commands_runtime(arguments)
    if arguments.part in ("all", "runtimes"):
        bench_swarm_against_compose(arguments)


def bench_commands_runtime(arguments) -> None:
    with tempfile.TemporaryDirectory(prefix="deploy_ops_bench_") as folder:
        site = SampleSite(Path(folder))
        try:
            ops = site.use_commands(HEALTH_CHECK_RETRIES=20, HEALTH_CHECK_DELAY=0.2)
            site.manage("migrate", "--verbosity", "0")
            subprocess.run(ops["COMMANDS"]["start"], cwd=site.production, check=True, capture_output=True)
            script = SHELL_DEPLOY.format(
                python=shlex.quote(sys.executable),
                stop=shlex.join(ops["COMMANDS"]["stop"]),
                start=shlex.join(ops["COMMANDS"]["start"]),
                retries=20,
                delay=0.2,
                url=site.url("/health/"),
            )
            tool_times, shell_times = [], []
            for round_number in range(arguments.rounds):
                site.commit_change(release(f"tool-{round_number}"), "bench release")
                tool_times.append(run([sys.executable, "manage.py", "deploy", "--noinput"], site.production))
                site.commit_change(release(f"shell-{round_number}"), "bench release")
                shell_times.append(run(["bash", "-c", script], site.production))
            tool, shell = statistics.median(tool_times), statistics.median(shell_times)
            print(f"Deploy of one release (median of {arguments.rounds}, commands runtime, SQLite)")
            print(f"  {'plain shell script':<28} {shell:8.2f} s   {[round(t, 2) for t in shell_times]}")
            print(f"  {'manage.py deploy':<28} {tool:8.2f} s   {[round(t, 2) for t in tool_times]}")
            print(f"  ratio deploy / shell          {tool / shell:8.2f}x   (target <= 1.10x)")

            site.commit_change({**flags(HEALTH_FAIL=True), **release("broken")}, "bench: unhealthy release")
            subprocess.run(
                [sys.executable, "manage.py", "deploy", "--noinput", "--health-retries", "1"], cwd=site.production, capture_output=True
            )
            stages = {stage["name"]: stage for stage in journal(site)[-1]["stages"]}
            health_failed = datetime.fromisoformat(stages["health"]["finished_at"])
            healthy_again = datetime.fromisoformat(stages["verify health"]["finished_at"])
            print("Time to recover (health check failed -> previous release healthy)")
            print(f"  {'whole recovery':<28} {(healthy_again - health_failed).total_seconds():8.2f} s")
            print(f"  {'restore database alone':<28} {stages['restore database']['duration']:8.2f} s")
            for name in (
                "safety backup",
                "revert code",
                "stop services",
                "restore images",
                "start services",
                "collect static",
                "verify health",
            ):
                if name in stages:
                    print(f"    {name:<26} {stages[name]['duration']:8.2f} s")
        finally:
            subprocess.run(site.deploy_ops["COMMANDS"]["stop"], cwd=site.production, capture_output=True)
            site.close()


# -- 3. Docker Swarm against Docker Compose ---------------------------------------------------------
def psql(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", POSTGRES["HOST"], "-p", POSTGRES["PORT"], "-U", POSTGRES["USER"], "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def runtime_rounds(runtime: str, rounds: int, monitor: int) -> tuple[list[float], float, dict[str, float]]:
    """On a fresh site and database under ``runtime``: the deploy times of ``rounds`` good releases,
    then the time to recover from a failed health check and the recovery's steps."""
    name = unique_name("deploy_ops_bench")
    psql(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory(prefix="deploy_ops_bench_") as folder:
        site = SampleSite(Path(folder))
        try:
            database_url = postgres_url({**POSTGRES, "NAME": name})
            if runtime == "swarm":
                # The health settings serve_release_1_on_compose gives the Compose site.
                serve_release_1_on_swarm(
                    site, COMPOSE, database_url, SWARM_UPDATE_MONITOR=monitor, HEALTH_CHECK_RETRIES=5, HEALTH_CHECK_DELAY=1
                )
            else:
                serve_release_1_on_compose(site, COMPOSE, database_url)
            times = []
            for number in range(rounds):
                site.commit_change(release(f"{runtime}-{number}"), "bench release")
                times.append(run([sys.executable, "manage.py", "deploy", "--noinput", "--health-delay", "0.2"], site.production))
            site.commit_change({**health_fails(), **release("broken")}, "bench: unhealthy release")
            subprocess.run(
                [sys.executable, "manage.py", "deploy", "--noinput", "--health-retries", "1"], cwd=site.production, capture_output=True
            )
            snapshot = journal(site)[-1]
            assert snapshot["record"]["status"] == "rolled_back", snapshot["record"]
            stages = {stage["name"]: stage for stage in snapshot["stages"]}
            recovered = (
                datetime.fromisoformat(stages["verify health"]["finished_at"]) - datetime.fromisoformat(stages["health"]["finished_at"])
            ).total_seconds()
            steps = {step: stage["duration"] for step, stage in stages.items() if step in STEP_ORDER}
            return times, recovered, steps
        finally:
            site.close()
            psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_swarm_against_compose(arguments) -> None:
    state, manager = swarm_state()
    created = state == "inactive"
    if created:
        subprocess.run(
            ["docker", "swarm", "init", "--advertise-addr", "127.0.0.1", "--listen-addr", "127.0.0.1:2377"], check=True, capture_output=True
        )
    elif (state, manager) != ("active", "true"):
        raise SystemExit(f"This Docker engine's swarm state is {state!r} (manager: {manager}): part 3 needs a manager or no swarm.")
    try:
        results = {runtime: runtime_rounds(runtime, arguments.rounds, arguments.monitor) for runtime in ("compose", "swarm")}
    finally:
        if created:
            subprocess.run(["docker", "swarm", "leave", "--force"], capture_output=True)
    (compose_times, compose_recovery, compose_steps), (swarm_times, swarm_recovery, swarm_steps) = results["compose"], results["swarm"]
    compose_deploy, swarm_deploy = statistics.median(compose_times), statistics.median(swarm_times)
    print(
        "Docker Swarm against Docker Compose, same site and releases, PostgreSQL (median "
        f"of {arguments.rounds}; swarm: stop-first, monitor {arguments.monitor} s)"
    )
    print(f"  {'':<34} {'compose':>9} {'swarm':>9} {'swarm/compose':>14}")
    print(f"  {'deploy of a good release':<34} {compose_deploy:8.2f}s {swarm_deploy:8.2f}s {swarm_deploy / compose_deploy:13.2f}x")
    print(
        f"  {'time to recover (health failed)':<34} {compose_recovery:8.2f}s "
        f"{swarm_recovery:8.2f}s {swarm_recovery / compose_recovery:13.2f}x"
    )
    for step in STEP_ORDER:
        if step in compose_steps or step in swarm_steps:
            print(f"    {step:<32} {compose_steps.get(step, 0):8.2f}s {swarm_steps.get(step, 0):8.2f}s")
    print(f"  deploys, compose: {[round(t, 2) for t in compose_times]}  swarm: {[round(t, 2) for t in swarm_times]}")


if __name__ == "__main__":
    main()
