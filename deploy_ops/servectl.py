"""A tiny, portable process supervisor for the ``commands`` runtime (the demo and the tests use it).

    python -m deploy_ops.servectl start --pidfile F --logfile L [--grace S] -- ARGV...
    python -m deploy_ops.servectl stop --pidfile F [--timeout S]
    python -m deploy_ops.servectl status --pidfile F

``start`` runs ARGV detached (its own session on POSIX, its own process group on Windows),
appends its output to the log file after a start marker, writes the pid file and returns;
with ``--grace`` it first waits that long and fails if the process has already exited.
``stop`` asks the process and its children to end, waits up to ``--timeout`` seconds, then
kills them.  ``status`` exits 0 while the process runs and 3 when it does not.
A host with systemd or supervisor does not need this: put their commands in COMMANDS.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

if not __package__:  # run by its file path (the demo does): the package it sits in must be importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from deploy_ops.process_groups import KILL_WAIT_SECONDS, ask_to_end, is_alive, kill_group, own_group, signal_group, wait_while

EXIT_NOT_RUNNING = 3  # the LSB status code for "program is not running"

# Written to the log before each start; CommandsRuntime.logs_since() reads from the first
# marker after a deploy began, so an older release's errors are not held against a new one.
START_MARKER = "--- servectl: started {time} ---"
_MARKER_PATTERN = re.compile(r"^--- servectl: started (\S+) ---$", re.MULTILINE)


def starts_in(text: str) -> list[tuple[datetime, int]]:
    """Each start marker in a log text: (when, offset of the marker line)."""
    return [(datetime.fromisoformat(match.group(1)), match.start()) for match in _MARKER_PATTERN.finditer(text)]


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def start(pidfile: Path, logfile: Path, argv: list[str], grace: float) -> int:
    running = read_pid(pidfile)
    if running and is_alive(running):
        print(f"Already running (pid {running}, {pidfile}); stop it first.", file=sys.stderr)
        return 1
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    with open(logfile, "ab") as log:
        marker_at = log.tell()
        separator = "\n" if marker_at else ""  # the marker starts a line even after a partial one
        log.write(f"{separator}{START_MARKER.format(time=datetime.now(UTC).isoformat())}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, **own_group())
        except OSError as error:
            print(f"Cannot start {argv[0]!r}: {error}", file=sys.stderr)
            return 1
    temporary = pidfile.with_name(pidfile.name + ".tmp")
    temporary.write_text(f"{process.pid}\n")
    os.replace(temporary, pidfile)
    if grace and _exited_within(process, grace):
        pidfile.unlink(missing_ok=True)
        output = logfile.read_bytes()[marker_at:].decode("utf-8", "replace")
        print(f"{argv[0]} exited with code {process.returncode} within {grace:g}s:\n{output[-4000:]}", file=sys.stderr)
        return 1
    print(f"Started pid {process.pid}; output goes to {logfile}.")
    return 0


def _exited_within(process: subprocess.Popen, seconds: float) -> bool:
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return False
    return True


def stop(pidfile: Path, timeout: float) -> int:
    pid = read_pid(pidfile)
    if pid is None or not is_alive(pid):
        pidfile.unlink(missing_ok=True)
        print("Not running.")
        return 0
    ask_to_end(pid)
    if not wait_while(lambda: is_alive(pid), timeout):
        print(f"pid {pid} still running after {timeout:g}s; killing it.", file=sys.stderr)
        kill_group(pid)
        if not wait_while(lambda: is_alive(pid), KILL_WAIT_SECONDS):
            print(f"pid {pid} survived a kill; it needs a look.", file=sys.stderr)
            return 1
    if sys.platform != "win32":
        signal_group(pid, signal.SIGKILL)  # children that outlived their parent
    pidfile.unlink(missing_ok=True)
    print(f"Stopped pid {pid}.")
    return 0


def status(pidfile: Path) -> int:
    pid = read_pid(pidfile)
    if pid is not None and is_alive(pid):
        print(f"Running (pid {pid}).")
        return 0
    print("Not running.")
    return EXIT_NOT_RUNNING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deploy_ops.servectl", description=__doc__.split("\n\n")[0])
    actions = parser.add_subparsers(dest="action", required=True)
    starting = actions.add_parser("start", help="run ARGV in the background")
    starting.add_argument("--pidfile", type=Path, required=True)
    starting.add_argument("--logfile", type=Path, required=True)
    starting.add_argument("--grace", type=float, default=0, help="fail if the process exits within this many seconds")
    starting.add_argument("argv", nargs=argparse.REMAINDER, help="-- then the command")
    stopping = actions.add_parser("stop", help="end the process and its children")
    stopping.add_argument("--pidfile", type=Path, required=True)
    stopping.add_argument("--timeout", type=float, default=10, help="seconds to wait before killing")
    checking = actions.add_parser("status", help="exit 0 if running, 3 if not")
    checking.add_argument("--pidfile", type=Path, required=True)
    options = parser.parse_args(argv)
    if options.action == "start":
        command = options.argv[1:] if options.argv[:1] == ["--"] else options.argv
        if not command:
            parser.error("start needs a command after --")
        return start(options.pidfile, options.logfile, command, options.grace)
    if options.action == "stop":
        return stop(options.pidfile, options.timeout)
    return status(options.pidfile)


if __name__ == "__main__":
    sys.exit(main())
