"""The nginx proxy against a real nginx on loopback: a switch under load drops nothing, the
maintenance answer is a 503 with Retry-After and a page, and a route nginx rejects is put back."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from deploy_ops.proxy import MAINTENANCE, NginxProxy, ProxyError
from deploy_ops.proxy.nginx import route_file_text
from tests.fixtures.environment import skip_or_fail
from tests.fixtures.sample_site import free_port

NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            include {dir}/route.conf;
            proxy_set_header Host $host;
        }}
    }}
}}
"""


class Nginx:
    """Its own nginx instance: config, pid, logs and temp paths inside ``folder``."""

    def __init__(self, folder, first_address: str):
        self.folder = folder
        self.port = free_port()
        (folder / "tmp").mkdir(parents=True)
        self.conf = folder / "nginx.conf"
        self.conf.write_text(NGINX_CONF.format(dir=folder, port=self.port))
        (folder / "route.conf").write_text(route_file_text(first_address))
        self.base = ["nginx", "-c", str(self.conf), "-p", str(folder), "-e", str(folder / "error.log")]
        subprocess.run(self.base, check=True, capture_output=True)
        # The daemonized master writes its pid file a moment after the starting process exits;
        # `-s stop` before that would fail and leave this nginx running.
        self.pid_file = folder / "nginx.pid"
        assert wait_until(lambda: self.pid_file.exists() and self.pid_file.read_text().strip()), "nginx wrote no pid file"
        self.master = int(self.pid_file.read_text())

    def proxy(self) -> NginxProxy:
        return NginxProxy(
            self.folder / "route.conf",
            [*self.base, "-s", "reload"],
            test_command=[*self.base, "-t", "-q"],
            pid_file=self.folder / "nginx.pid",
            drain_timeout=10,
        )

    def get(self, path: str = "/") -> tuple[int, dict, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode()
        finally:
            connection.close()

    def stop(self) -> None:
        subprocess.run([*self.base, "-s", "stop"], capture_output=True)
        if not wait_until(lambda: not Path(f"/proc/{self.master}").exists()):
            os.kill(self.master, signal.SIGKILL)


class Backend:
    """A tiny HTTP server on loopback that answers with its name (and takes ``delay`` to do so)."""

    def __init__(self, name: str, delay: float = 0.0):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                time.sleep(outer.delay)
                body = outer.name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.name, self.delay = name, delay
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Load:
    """A bounded client: ``clients`` threads, each one request at a time, new connection each."""

    def __init__(self, nginx: Nginx, clients: int = 4):
        self.nginx, self.answers, self.failures = nginx, [], []
        self.running = True
        self.threads = [threading.Thread(target=self.loop, daemon=True) for _ in range(clients)]
        for thread in self.threads:
            thread.start()

    def loop(self) -> None:
        while self.running:
            try:
                status, headers, body = self.nginx.get()
            except OSError as error:  # refused, reset, timed out
                self.failures.append(repr(error))
                continue
            if status >= 500 and not (status == 503 and "Retry-After" in headers):
                self.failures.append(f"{status} {body[:80]}")
            self.answers.append((status, body))
            time.sleep(0.005)

    def stop(self) -> None:
        self.running = False
        for thread in self.threads:
            thread.join(10)


@pytest.fixture
def nginx_with_two_releases(tmp_path):
    if shutil.which("nginx") is None and not shutil.which("/usr/sbin/nginx"):
        skip_or_fail("nginx is not installed: run `bash .ci/nginx`")
    blue, green = Backend("blue", delay=0.05), Backend("green", delay=0.05)
    nginx = Nginx(tmp_path / "nginx", blue.address)
    yield nginx, blue, green
    nginx.stop()
    blue.stop()
    green.stop()


def wait_until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_switching_back_and_forth_under_load_fails_no_request(nginx_with_two_releases):
    nginx, blue, green = nginx_with_two_releases
    proxy = nginx.proxy()
    load = Load(nginx)
    try:
        for target in (green, blue, green, blue, green):
            assert proxy.route_to(target.address) == f"nginx sends new requests to {target.address}"
            assert wait_until(lambda target=target: nginx.get()[2] == target.name)
            time.sleep(0.2)
    finally:
        load.stop()
    assert load.failures == []
    assert len(load.answers) > 50
    assert {body for _, body in load.answers} == {"blue", "green"}
    assert proxy.routed_to() == green.address


def test_the_old_release_stopped_after_the_switch_and_a_drain_loses_no_request(nginx_with_two_releases):
    nginx, blue, green = nginx_with_two_releases
    load = Load(nginx)
    try:
        nginx.proxy().route_to(green.address)
        assert wait_until(lambda: nginx.get()[2] == "green")
        time.sleep(0.5)  # the drain: requests in flight to blue finish
        blue.stop()
        time.sleep(0.5)
    finally:
        load.stop()
    assert load.failures == []


def test_maintenance_answers_503_with_retry_after_and_the_page_even_with_nothing_behind_it(nginx_with_two_releases):
    nginx, blue, green = nginx_with_two_releases
    proxy = nginx.proxy()
    proxy.serve_maintenance(retry_after=17)
    blue.stop()
    green.stop()
    assert wait_until(lambda: nginx.get()[0] == 503)
    status, headers, body = nginx.get("/any/path")
    assert status == 503 and headers["Retry-After"] == "17"
    assert "Back in a moment" in body and headers["Content-Type"].startswith("text/html")
    assert proxy.routed_to() == MAINTENANCE


def test_a_route_nginx_rejects_is_put_back_and_the_old_release_keeps_serving(nginx_with_two_releases):
    nginx, blue, _green = nginx_with_two_releases
    proxy = nginx.proxy()
    with pytest.raises(ProxyError, match="put back"):
        proxy.route_to("no-such-host.invalid:80")  # nginx -t cannot resolve it
    assert proxy.routed_to() == blue.address
    assert nginx.get()[2] == "blue"


def test_an_address_that_is_not_host_and_port_is_refused_before_nginx_is_touched(nginx_with_two_releases, tmp_path):
    nginx, blue, _green = nginx_with_two_releases
    proxy = nginx.proxy()
    before = (nginx.folder / "route.conf").read_text()
    with pytest.raises(ProxyError, match="not an address"):
        proxy.route_to("127.0.0.1:8000; return 200")
    with pytest.raises(ProxyError, match=r"\$"):
        proxy.serve_maintenance(5, page="costs $5")
    assert (nginx.folder / "route.conf").read_text() == before


def test_a_stop_first_window_behind_the_maintenance_answer_gives_only_503s_never_a_refused_connection(nginx_with_two_releases):
    nginx, blue, green = nginx_with_two_releases
    proxy = nginx.proxy()
    load = Load(nginx)
    try:
        proxy.serve_maintenance(retry_after=5)
        assert wait_until(lambda: nginx.get()[0] == 503)
        blue.stop()  # the old release stops; the migrations would run here
        time.sleep(0.3)
        proxy.route_to(green.address)
        assert wait_until(lambda: nginx.get()[2] == "green")
    finally:
        load.stop()
    assert load.failures == []
    statuses = {status for status, _ in load.answers}
    assert statuses == {200, 503}
