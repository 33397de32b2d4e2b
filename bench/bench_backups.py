"""Backups benchmark: `manage.py backups` side by side with the shell pipelines it replaces.

    .venv/bin/python bench/bench_backups.py [--mb 400] [--repeat 1] [--keep]

Generates a PostgreSQL database of at least --mb megabytes (generate_series), then times in
one run: `pg_dump | gzip` vs `backups create --compress gzip` (target <= 1.05x), `pg_dump > f`
vs `backups create --compress zstd` (<= 1.15x), `dropdb; createdb; gunzip -c f | psql -1` vs
`backups restore` (<= 1.1x: both replace a database that holds the data; the load into an empty
database is shown too; "after start-up" rows take the fixed start-up of a manage.py command off),
the peak RSS of the Python process (< 100 MB), and django-dbbackup's
`dbbackup -z` / `dbrestore -z` on the same database (installed from bench/requirements.txt when
missing, configured by bench/dbbackup_settings.py).  Then the backup lifecycle: a backup with its
off-host copy (SFTP, read back and checked) vs `pg_dump | gzip` then `scp` to the same SFTP server
(a local OpenSSH sshd on a loopback port), and an encrypted backup vs `pg_dump | gzip | age -r`.
Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust auth), the client tools, and for the
lifecycle rows openssh-server, scp and age (installed by `.ci/backup-tools` when missing); prints a table.  The rows
with a target run in turns with their baseline (--repeat times each), and the table ends with the load average, as
other work on the machine slows every figure.  Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
HOST, PORT, USER = "127.0.0.1", "5432", "postgres"
TARGETS = {"create gzip": 1.05, "create zstd": 1.15, "restore": 1.10, "create gzip + off-host copy": 1.15, "create gzip + age": 1.10}


def psql(database: str, sql: str) -> str:
    return subprocess.run(
        ["psql", "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1", "-h", HOST, "-p", PORT, "-U", USER, "-d", database, "-c", sql],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def generate(database: str, megabytes: int) -> int:
    psql("postgres", f'CREATE DATABASE "{database}"')
    # About 160 bytes a row on disk; text that compresses like real rows (hex digests and prose).
    rows = megabytes * 1024 * 1024 // 160
    psql(
        database,
        "CREATE TABLE items AS SELECT n AS id, md5(n::text) AS digest, "
        "'certificate issued to person number ' || n || ' in office ' || (n % 97) AS note, "
        f"now() - n * interval '1 second' AS issued_at, (n % 1000) * 1.5 AS amount FROM generate_series(1, {rows}) AS n; "
        "ALTER TABLE items ADD PRIMARY KEY (id);",
    )
    while int(psql(database, f"SELECT pg_database_size('{database}')")) < megabytes * 1024 * 1024:
        psql(
            database,
            "INSERT INTO items SELECT n, md5(n::text), 'more ' || n, now(), 1 FROM generate_series((SELECT "
            f"max(id) + 1 FROM items), (SELECT max(id) + {rows // 10} FROM items)) AS n",
        )
    return int(psql(database, f"SELECT pg_database_size('{database}')"))


class PeakRss:
    """Polls a process's VmHWM (its peak resident set) while it runs (Linux /proc)."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self):
        status = Path(f"/proc/{self.pid}/status")
        while not self._stop.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        self.peak = max(self.peak, int(line.split()[1]) * 1024)
            except (FileNotFoundError, ProcessLookupError):
                return
            time.sleep(0.02)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def timed(argv, env=None, shell=False) -> tuple[float, int]:
    """Wall time and (for our own Python processes) peak RSS."""
    started = time.monotonic()
    process = subprocess.Popen(argv, env=env, shell=shell, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watcher = None if shell else PeakRss(process.pid)
    out, err = process.communicate()
    elapsed = time.monotonic() - started
    peak = watcher.stop() if watcher else 0
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {argv}\n{err.decode()[-2000:]}")
    return elapsed, peak


def best(times: int, measure):
    results = [measure() for _ in range(times)]
    return min(results, key=lambda result: result[0])


def best_in_turns(times: int, *measures):
    """The fastest of each, run in turns (baseline, ours, baseline, ...): on a shared machine a burst
    of load then slows both sides of a ratio, not one."""
    runs = [[measure() for measure in measures] for _ in range(times)]
    return [min(results, key=lambda result: result[0]) for results in zip(*runs, strict=True)]


def lifecycle_rows(options, work, env, manage, connection, database, row, rows, peaks) -> None:
    """Off-host copy vs `gzip` + `scp`, encryption vs `| age -r`."""
    from tests.fixtures.offsite import start_sftp_server

    missing = missing_lifecycle_tools()
    if missing:
        raise SystemExit(f"The peers of the lifecycle rows need {', '.join(missing)}, and `bash .ci/backup-tools` did not install them.")
    server = start_sftp_server(work / "sshd")
    try:
        lifecycle_env = {
            **env,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.backup_settings",
            "BENCH_OFFSITE_STORAGE": json.dumps(server.storage()),
        }
        gzip_file = work / "baseline.sql.gz"
        ssh_options = f"-i {server.client_key} -P {server.port} -o BatchMode=yes -o UserKnownHostsFile={server.known_hosts}"
        shell_copy, _ = best(
            options.repeat,
            lambda: timed(
                f"pg_dump {connection} {database} | gzip > {gzip_file} && scp -q "
                f"{ssh_options} {gzip_file} root@127.0.0.1:{server.root}/baseline.sql.gz",
                shell=True,
            ),
        )
        row("pg_dump | gzip; scp", shell_copy, note="the copy is not read back")

        def ours(extra_env):
            def measure():
                shutil.rmtree(work / "backups", ignore_errors=True)
                result = timed([*manage, "backups", "create", "--compress", "gzip"], env={**lifecycle_env, **extra_env})
                peaks.append(result[1])
                return result

            return measure

        copied, peak = best(options.repeat, ours({"DEPLOY_OPS_BACKUP_STORAGE": "offsite"}))
        row(
            "create gzip + off-host copy",
            copied,
            shell_copy,
            f"SFTPStorage, the copy read back and its sha256 compared; peak RSS {peak / 2**20:.0f} MB",
        )

        key = work / "age-key.txt"
        subprocess.run(["age-keygen", "-o", str(key)], check=True, capture_output=True)
        recipient = next(line.split(": ", 1)[1] for line in key.read_text().splitlines() if line.startswith("# public key: "))
        shell_age, _ = best(
            options.repeat, lambda: timed(f"pg_dump {connection} {database} | gzip | age -r {recipient} > {gzip_file}.age", shell=True)
        )
        row("pg_dump | gzip | age -r", shell_age, note=f"{(work / 'baseline.sql.gz.age').stat().st_size / 1e6:.0f} MB")
        encrypted, peak = best(options.repeat, ours({"DEPLOY_OPS_BACKUP_AGE_RECIPIENTS": json.dumps([recipient])}))
        [made] = (work / "backups").glob("backup_*.sql.gz.age")
        row(
            "create gzip + age",
            encrypted,
            shell_age,
            f"{made.stat().st_size / 1e6:.0f} MB, pyrage in process; peak RSS {peak / 2**20:.0f} MB",
        )
    finally:
        server.stop()


def missing_lifecycle_tools() -> list[str]:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.offsite import SSHD

    return [tool for tool in ("scp", "age", "age-keygen", "ssh-keygen") if shutil.which(tool) is None] + (
        [] if Path(SSHD).exists() else [SSHD]
    )


def install_comparisons() -> None:
    """The peers in this environment, so their rows always run beside ours: django-dbbackup, and
    sshd/scp/age for the lifecycle rows."""
    if importlib.util.find_spec("dbbackup") is None:
        subprocess.run([PYTHON, "-m", "pip", "install", "--quiet", "-r", str(ROOT / "bench" / "requirements.txt")], check=True)
    if missing_lifecycle_tools():
        subprocess.run(["bash", str(ROOT / ".ci" / "backup-tools")], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=400, help="Size of the generated database in MB (default 400).")
    parser.add_argument("--repeat", type=int, default=1, help="Run each measurement this many times and keep the fastest.")
    parser.add_argument("--keep", action="store_true", help="Keep the generated databases and files.")
    options = parser.parse_args()
    install_comparisons()

    database = f"bench_backups_{uuid.uuid4().hex[:8]}"
    scratch = database + "_baseline"
    work = Path(tempfile.mkdtemp(prefix="bench_backups_"))
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://{USER}@{HOST}:{PORT}/{database}",
        "DEPLOY_OPS_PROJECT_DIR": str(work),
        "DEPLOY_OPS_BACKUP_DIR": str(work / "backups"),
        "DEPLOY_OPS_LOG_DIR": str(work / "logs"),
    }
    manage = [PYTHON, str(ROOT / "manage.py")]
    connection = f"-h {HOST} -p {PORT} -U {USER}"
    rows = []

    def row(name, seconds, baseline=None, note=""):
        ratio = f"{seconds / baseline:.2f}x" if baseline else ""
        target = TARGETS.get(name)
        verdict = ("ok" if seconds / baseline <= target else f"OVER {target}x") if baseline and target else ""
        rows.append((name, f"{seconds:6.2f} s", ratio, verdict, note))

    try:
        print(f"generating a PostgreSQL database of at least {options.mb} MB ...", flush=True)
        size = generate(database, options.mb)
        print(f"{database}: {size / 1e6:.0f} MB", flush=True)
        peaks = []
        startup, _ = best(options.repeat, lambda: timed([*manage, "backups", "list"], env=env))
        row("manage.py startup", startup, note="`backups list` on an empty folder: the fixed cost in every figure below")

        def ours(*arguments):
            def measure():
                shutil.rmtree(work / "backups", ignore_errors=True)
                result = timed([*manage, "backups", *arguments], env=env)
                peaks.append(result[1])
                return result

            return measure

        gzip_file, plain_file = work / "baseline.sql.gz", work / "baseline.sql"
        (base_gzip, _), (create_gzip, _) = best_in_turns(
            options.repeat,
            lambda: timed(f"pg_dump {connection} {database} | gzip > {gzip_file}", shell=True),
            ours("create", "--compress", "gzip"),
        )
        row("pg_dump | gzip", base_gzip, note=f"{gzip_file.stat().st_size / 1e6:.0f} MB")
        [made] = (work / "backups").glob("backup_*.sql.gz")
        row("create gzip", create_gzip, base_gzip, f"{made.stat().st_size / 1e6:.0f} MB")
        kept_gzip = work / made.name
        shutil.move(made, kept_gzip)
        shutil.move(made.with_name(made.name + ".json"), work / (made.name + ".json"))

        (base_plain, _), (create_zstd, _) = best_in_turns(
            options.repeat,
            lambda: timed(f"pg_dump {connection} {database} > {plain_file}", shell=True),
            ours("create", "--compress", "zstd"),
        )
        row("pg_dump > f", base_plain, note=f"{plain_file.stat().st_size / 1e6:.0f} MB")
        zstd_shell, _ = best(
            options.repeat, lambda: timed(f"pg_dump {connection} {database} | zstd -q -T0 > {work / 'baseline.sql.zst'}", shell=True)
        )
        row("pg_dump | zstd -T0", zstd_shell, note=f"{(work / 'baseline.sql.zst').stat().st_size / 1e6:.0f} MB")
        [made_zstd] = (work / "backups").glob("backup_*.sql.zst")
        row("create zstd", create_zstd, base_plain, f"{made_zstd.stat().st_size / 1e6:.0f} MB")
        row("create zstd, after start-up", create_zstd - startup, base_plain, "the row above less the start-up row: the dump itself")

        load_dump = f"gunzip -c {gzip_file} | psql -X -q -1 -v ON_ERROR_STOP=1 {connection} -d {scratch} > /dev/null"

        def baseline_restore():
            psql("postgres", f'DROP DATABASE IF EXISTS "{scratch}"')
            psql("postgres", f'CREATE DATABASE "{scratch}"')
            return timed(load_dump, shell=True)

        def replacing_restore():
            # Like ours, it replaces a database that holds the data: a script drops it and loads a new one.
            return timed(f"dropdb {connection} {scratch} && createdb {connection} {scratch} && {load_dump}", shell=True)

        def restore(*extra):
            def measure():
                (work / "backups").mkdir(exist_ok=True)
                shutil.copy2(kept_gzip, work / "backups" / kept_gzip.name)
                shutil.copy2(work / (kept_gzip.name + ".json"), work / "backups" / (kept_gzip.name + ".json"))
                result = timed([*manage, "backups", "restore", kept_gzip.name, "--noinput", *extra], env=env)
                peaks.append(result[1])
                return result

            return measure

        (base_restore, _), (base_replace, _), (ours_restore, _) = best_in_turns(
            options.repeat, baseline_restore, replacing_restore, restore("--no-safety-backup")
        )
        row("gunzip -c f | psql -1", base_restore, note="into an empty database, made beforehand (not timed)")
        row("dropdb; createdb; gunzip | psql", base_replace, note="replaces a database that holds the data, as ours does")
        row("restore", ours_restore, base_replace, "replaces the full database in one transaction; checksum checked first")
        row("restore, against the first", ours_restore, base_restore, "the same run, against the load into an empty database")
        row("restore, after start-up", ours_restore - startup, base_replace, "the restore row less the start-up row")
        with_safety, _ = best(options.repeat, restore())
        row("restore + safety backup", with_safety, base_replace, "the default: a gzip backup of the current data first")

        dbbackup_dir = work / "dbbackup"
        dbbackup_env = {
            **env,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "bench.dbbackup_settings",
            "BENCH_DBBACKUP_DIR": str(dbbackup_dir),
        }

        def dbbackup():
            shutil.rmtree(dbbackup_dir, ignore_errors=True)
            return timed([*manage, "dbbackup", "-z"], env=dbbackup_env)

        dbbackup_time, _ = best(options.repeat, dbbackup)
        [dumped] = dbbackup_dir.glob("*.gz")
        row("dbbackup -z", dbbackup_time, base_gzip, f"{dumped.stat().st_size / 1e6:.0f} MB, its default pg_dump -Fc connector, gzipped")
        dbrestore_time, _ = best(options.repeat, lambda: timed([*manage, "dbrestore", "-z", "--noinput"], env=dbbackup_env))
        row("dbrestore -z", dbrestore_time, base_replace, "its newest backup, into the same database")

        lifecycle_rows(options, work, env, manage, connection, database, row, rows, peaks)

        peak = max(peaks)
        rows.append(
            (
                "peak RSS (Python)",
                f"{peak / 2**20:6.1f} MB",
                "",
                "ok" if peak < 100 * 2**20 else "OVER 100 MB",
                "max over every manage.py run above",
            )
        )
    finally:
        if not options.keep:
            for name in (database, scratch):
                with contextlib.suppress(subprocess.CalledProcessError):
                    psql("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(work, ignore_errors=True)

    rows.append(
        (
            "load average (1 min)",
            f"{os.getloadavg()[0]:6.2f}  ",
            "",
            "",
            f"at the end, on {os.cpu_count()} cores: above them, every figure is slowed",
        )
    )
    width = max(len(name) for name, *_ in rows)
    print(f"\n{'measurement':<{width}}  {'time':>9}  {'ratio':>6}  {'target':<12} note")
    for name, seconds, ratio, verdict, note in rows:
        print(f"{name:<{width}}  {seconds:>9}  {ratio:>6}  {verdict:<12} {note}")


if __name__ == "__main__":
    main()
