"""nginx: deploy_ops rewrites one small file that the site's ``location`` includes, then reloads.

The site's own nginx configuration keeps everything else (TLS, headers, static files)::

    location / {
        include /etc/nginx/deploy_ops/route.conf;   # written by deploy_ops
        proxy_set_header Host $host;
    }

``nginx -s reload`` is graceful: the master starts workers with the new configuration, and the
old workers stop taking connections but finish the requests they hold, so a switch drops
nothing.  The switch is over only when those old workers are gone: until then one of them may
still accept a connection for the old address.  So, given nginx's pid file, a switch waits (up
to ``drain_timeout``) until no worker from before the reload is left; without one (nginx in a
container, say), it waits ``drain_timeout`` seconds.  Only then may the old release stop.  A
configuration nginx rejects (checked with ``TEST_COMMAND`` first) is put back as it was: the
proxy keeps sending the traffic where it did.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from django.utils.translation import gettext as _

from ..exceptions import CommandFailed
from ..privatefiles import write_atomically
from ..runner import Command, run
from .base import DEFAULT_MAINTENANCE_PAGE, MAINTENANCE, ProxyError, ReverseProxy

RELOAD_TIMEOUT = 30
# The first line of the file says what it does, so routed_to() need not parse nginx's language.
MARKER = re.compile(r"^# deploy_ops: (?P<state>.+)$")
ADDRESS = re.compile(r"^[A-Za-z0-9_.\[\]:-]+:\d{1,5}$")


def route_file_text(address: str) -> str:
    if not ADDRESS.match(address):
        raise ProxyError(_("%(address)r is not an address nginx can proxy to (host:port).") % {"address": address})
    return f"# deploy_ops: {address}\nproxy_pass http://{address};\n"


def maintenance_file_text(retry_after: int, page: str = DEFAULT_MAINTENANCE_PAGE) -> str:
    if "$" in page:
        # nginx reads $name in a string as a variable, and has no escape for it.
        raise ProxyError(_("The maintenance page must not contain '$' (nginx would read it as a variable)."))
    # `return 503 "..."` answers from nginx itself: nothing behind it needs to run.
    return (
        f"# deploy_ops: {MAINTENANCE}\n"
        "default_type text/html;\n"
        f"add_header Retry-After {int(retry_after)} always;\n"
        "add_header Cache-Control no-store always;\n"
        f"return 503 {json.dumps(page)};\n"
    )


class NginxProxy(ReverseProxy):
    kind = "nginx"

    def __init__(
        self,
        route_file: Path | str,
        reload_command: list[str],
        test_command: list[str] | None = None,
        pid_file: Path | str | None = None,
        drain_timeout: float = 30,
    ):
        self.route_file = Path(route_file)
        self.reload_command = Command(tuple(reload_command))
        self.test_command = Command(tuple(test_command)) if test_command else None
        self.pid_file = Path(pid_file) if pid_file else None
        self.drain_timeout = drain_timeout

    def route_to(self, address: str) -> str:
        self._apply(route_file_text(address))
        return _("nginx sends new requests to %(address)s") % {"address": address}

    def serve_maintenance(self, retry_after: int, page: str = DEFAULT_MAINTENANCE_PAGE) -> str:
        self._apply(maintenance_file_text(retry_after, page))
        return _("nginx answers 503 with Retry-After: %(seconds)s and the maintenance page") % {"seconds": retry_after}

    def routed_to(self) -> str | None:
        try:
            first = self.route_file.read_text().splitlines()[:1]
        except FileNotFoundError:
            return None
        found = MARKER.match(first[0]) if first else None
        return found["state"] if found else None

    def commands(self) -> list[Command]:
        return [command for command in (self.test_command, self.reload_command) if command]

    def _apply(self, text: str) -> None:
        previous = self.route_file.read_bytes() if self.route_file.exists() else None
        self.route_file.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.route_file, text.encode())
        os.chmod(self.route_file, 0o644)  # nginx may read it as another user; it holds no secret
        try:
            if self.test_command:
                run(self.test_command, timeout=RELOAD_TIMEOUT)
        except CommandFailed as error:
            if previous is None:
                self.route_file.unlink()
            else:
                write_atomically(self.route_file, previous)
                os.chmod(self.route_file, 0o644)
            raise ProxyError(
                _("nginx rejected the new route, so it was put back and nothing was reloaded: %(error)s") % {"error": error}
            ) from None
        master = self._master_pid()
        old_workers = _children(master) if master else set()
        try:
            run(self.reload_command, timeout=RELOAD_TIMEOUT)
        except CommandFailed as error:
            raise ProxyError(
                _("nginx could not be reloaded; the new route is written but may not be in use: %(error)s") % {"error": error}
            ) from None
        self._wait_for_old_workers(master, old_workers)

    def _master_pid(self) -> int | None:
        if self.pid_file is None or not Path("/proc").is_dir():
            return None
        try:
            return int(self.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _wait_for_old_workers(self, master: int | None, old_workers: set[int]) -> None:
        if master is None:
            time.sleep(self.drain_timeout)
            return
        deadline = time.monotonic() + self.drain_timeout
        while _children(master) & old_workers:
            if time.monotonic() > deadline:
                raise ProxyError(
                    _(
                        "nginx's workers from before the reload still run after %(seconds)ss (requests still in "
                        "flight to the old address): the old release was left running."
                    )
                    % {"seconds": f"{self.drain_timeout:g}"}
                )
            time.sleep(0.02)


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux's /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The parent pid is the 2nd field after the ")" that ends the command name.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == pid:
            found.add(int(entry.name))
    return found
