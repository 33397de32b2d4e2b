"""Releases as images, on the real Compose stack (Docker engine, PostgreSQL on 127.0.0.1:5432).

    PATH=.venv/bin:$PATH .venv/bin/python bench/bench_images.py

Prints, in one run:
1. The window from stopping the old release to the new one answering, in the deploy's order
   (build, collectstatic, stop, migrate, start) against the order it replaces (stop, start,
   migrate, collectstatic: run with the same stages reordered), each release with a migration
   of MIGRATION_SECONDS; and how long the new code served on the old schema.
2. The time to recover from a failed health check: the image rollback (the previous release's
   kept images started again) against the rebuild rollback it replaces (the same rollback with
   those images removed, so it builds); beside the database restore and the container start.
   Goal: no build, and recovery <= restore + start + 2 s.

Prints figures; asserts nothing.  Run from the repository root.  Removes what it creates.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from deploy_ops.stages import STEP_ORDER  # noqa: E402
from tests.e2e.helpers import serve_release_1_on_compose  # noqa: E402
from tests.fixtures.databases import POSTGRES, unique_name  # noqa: E402
from tests.fixtures.sample_site import SampleSite, health_fails, postgres_url, release  # noqa: E402

MIGRATION_SECONDS = 2.0
COMPOSE = ["docker", "compose"]
DEPLOY = ["deploy", "--noinput", "--health-delay", "0.2"]
# The order this issue replaces, run by the same code with its stages put back in that order.
PREVIOUS_ORDER = """
from deploy_ops import pipeline
by_name = {stage.name: stage for stage in pipeline.STAGES}
order = ("backup", "checkout", "build", "stop", "start", "migrate", "collectstatic", "health", "verify")
pipeline.STAGES[:] = [by_name[name] for name in order]
raise SystemExit(pipeline.Deployer(pipeline.DeployOptions(health_delay=0.2)).run())
"""


def slow_migration(number: int) -> dict[str, str]:
    return {
        f"notes/migrations/{number:04d}_bench.py": f'''import time

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("notes", "{number - 1:04d}_{"initial" if number == 2 else "bench"}")]
    operations = [migrations.RunPython(lambda apps, schema_editor: time.sleep({MIGRATION_SECONDS}), migrations.RunPython.noop)]
'''
    }


def postgres(sql: str) -> None:
    subprocess.run(
        ["psql", "-h", POSTGRES["HOST"], "-p", POSTGRES["PORT"], "-U", POSTGRES["USER"], "-d", "postgres", "-qc", sql],
        check=True,
        capture_output=True,
    )


def manage(site, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *arguments], cwd=site.production, capture_output=True, text=True)


def last_stages(site) -> dict[str, dict]:
    newest = {}
    for line in (site.production / "logs" / "deployments.jsonl").read_text().splitlines():
        snapshot = json.loads(line)
        newest[snapshot["record"]["id"]] = snapshot
    return {stage["name"]: stage for stage in list(newest.values())[-1]["stages"]}


def at(stage: dict, moment: str) -> datetime:
    return datetime.fromisoformat(stage[moment])


def window(stages: dict[str, dict]) -> tuple[float, float]:
    """(stop began -> the new release answered, the new code serving before its migrations ended).

    It answers when `compose up --wait` returns: its container's healthcheck got /health/live/.
    """
    answered = at(stages["start"], "finished_at")
    down = (answered - at(stages["stop"], "started_at")).total_seconds()
    unsafe = max(0.0, (at(stages["migrate"], "finished_at") - at(stages["start"], "finished_at")).total_seconds())
    return down, unsafe


def recovery(stages: dict[str, dict]) -> float:
    return (at(stages["verify health"], "finished_at") - at(stages["health"], "finished_at")).total_seconds()


def main() -> None:
    name = unique_name("deploy_ops_bench")
    postgres(f'CREATE DATABASE "{name}"')
    with tempfile.TemporaryDirectory(prefix="deploy_ops_bench_") as folder:
        site = SampleSite(Path(folder))
        try:
            ops = serve_release_1_on_compose(site, COMPOSE, postgres_url({**POSTGRES, "NAME": name}))
            project = ops["COMPOSE_PROJECT"]

            site.commit_change({**release("2"), **slow_migration(2)}, "bench: release 2")
            assert manage(site, *DEPLOY).returncode == 0
            new_down, new_unsafe = window(last_stages(site))
            site.commit_change({**release("3"), **slow_migration(3)}, "bench: release 3")
            assert manage(site, "shell", "-c", PREVIOUS_ORDER).returncode == 0
            old_down, old_unsafe = window(last_stages(site))
            print(f"Stop of the old release -> the new one answering (each release migrates for {MIGRATION_SECONDS:.0f} s)")
            print(f"  {'this order (migrate, start)':<34} {new_down:7.2f} s   new code on the old schema: {new_unsafe:5.2f} s")
            print(f"  {'previous order (start, migrate)':<34} {old_down:7.2f} s   new code on the old schema: {old_unsafe:5.2f} s")

            release_3 = site.production_head()
            site.commit_change(health_fails(), "bench: unhealthy release")
            manage(site, *DEPLOY[:2], "--health-retries", "1")
            image = last_stages(site)
            subprocess.run(["docker", "image", "rm", f"{project}-web:{release_3[:12]}"], check=True, capture_output=True)
            site.commit_change({**health_fails(), **release("4")}, "bench: unhealthy release again")
            manage(site, *DEPLOY[:2], "--health-retries", "1")
            rebuild = last_stages(site)
            print("Time to recover (health check failed -> previous release healthy)")
            for label, stages in (("image rollback", image), ("rebuild rollback (images gone)", rebuild)):
                goal = stages["restore database"]["duration"] + stages["start services"]["duration"] + 2
                steps = ", ".join(
                    f"{step} {stages[step]['duration']:.2f}" for step in ("restore database", "restore images", "start services")
                )
                print(f"  {label:<34} {recovery(stages):7.2f} s   goal <= {goal:5.2f} s   ({steps})")
                print(f"    restore images said: {stages['restore images']['output_tail'].splitlines()[0]}")
                print("    " + ", ".join(f"{step} {stage['duration']:.2f}" for step, stage in stages.items() if step in STEP_ORDER))
        finally:
            site.close()
            postgres(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
