"""Deploy overhead and time to recover, on the sample site with the commands runtime.

    PATH=.venv/bin:$PATH .venv/bin/python bench/bench_deploy.py [--rounds 3]

1. Overhead: ``manage.py deploy`` of a new release versus a plain shell script that runs the
   same steps (backup, fetch, checkout, stop, start, migrate, collectstatic, health poll,
   check, migrate --check), alternating, same release sizes.  Target: at most 1.10x.
2. Time to recover: a release whose health check fails (one try), from the failed health
   stage to the previous release healthy again, printed beside the restore alone.

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

from tests.fixtures.sample_site import SampleSite, flags, release  # noqa: E402

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
    arguments = parser.parse_args()

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
            print("Deploy of one release (median of %d, commands runtime, SQLite)" % arguments.rounds)
            print(f"  {'plain shell script':<28} {shell:8.2f} s   {[round(t, 2) for t in shell_times]}")
            print(f"  {'manage.py deploy':<28} {tool:8.2f} s   {[round(t, 2) for t in tool_times]}")
            print(f"  ratio deploy / shell          {tool / shell:8.2f}x   (target <= 1.10x)")

            site.commit_change({**flags(HEALTH_FAIL=True), **release("broken")}, "bench: unhealthy release")
            subprocess.run([sys.executable, "manage.py", "deploy", "--noinput", "--health-retries", "1"], cwd=site.production, capture_output=True)
            stages = {stage["name"]: stage for stage in journal(site)[-1]["stages"]}
            health_failed = datetime.fromisoformat(stages["health"]["finished_at"])
            healthy_again = datetime.fromisoformat(stages["verify health"]["finished_at"])
            print("Time to recover (health check failed -> previous release healthy)")
            print(f"  {'whole recovery':<28} {(healthy_again - health_failed).total_seconds():8.2f} s")
            print(f"  {'restore database alone':<28} {stages['restore database']['duration']:8.2f} s")
            for name in ("safety backup", "revert code", "stop services", "restore images", "start services", "collect static", "verify health"):
                if name in stages:
                    print(f"    {name:<26} {stages[name]['duration']:8.2f} s")
        finally:
            subprocess.run(site.deploy_ops["COMMANDS"]["stop"], cwd=site.production, capture_output=True)
            site.close()


if __name__ == "__main__":
    main()
