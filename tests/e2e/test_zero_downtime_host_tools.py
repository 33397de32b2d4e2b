"""After a zero-downtime deploy the site serves from a blue/green slot and the project's own web
service is stopped: the host-side tools (`manage.py healthcheck`, `rollback --status`, the probe
in `check --deploy`) look at the slot the proxy routes to, and see it go down when it stops."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.e2e.helpers import deploy, failure_text, manage
from tests.e2e.test_zero_downtime_bluegreen import blue_green, containers  # noqa: F401 (blue_green: the fixture)
from tests.fixtures.sample_site import release

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def host_tools(site) -> tuple[subprocess.CompletedProcess, dict, str, subprocess.CompletedProcess]:
    """What the host-side tools say now: healthcheck, rollback --status (JSON and text), check --deploy."""
    status = manage(site, "rollback", "--status", "--json")
    assert status.returncode == 0, failure_text(status)
    text = manage(site, "rollback", "--status")
    return manage(site, "healthcheck"), json.loads(status.stdout), text.stdout, manage(site, "check", "--deploy")


def test_the_host_tools_follow_the_serving_slot_and_see_it_go_down(blue_green):  # noqa: F811
    site, nginx, project, addresses = blue_green
    site.commit_change(release("2"), "Release 2")
    finished = deploy(site)
    assert finished.returncode == 0, failure_text(finished)
    assert nginx.proxy().routed_to() == addresses["blue"] and not containers(project)

    health, status, text, checked = host_tools(site)
    assert health.returncode == 0, failure_text(health)
    assert "Serving release: the blue/green slot blue" in health.stdout
    assert "ServicesRunning(): OK" in health.stdout
    serving = status["serving"]
    assert (serving["slot"], serving["compose_project"], serving["healthy"]) == ("blue", f"{project}-blue", True)
    assert status["services"] and all(service["ok"] for service in status["services"])
    assert f"Serving: the blue/green slot blue (Compose project {project}-blue)" in text and "It answers 200." in text
    assert "deploy_ops.W034" not in checked.stdout + checked.stderr

    # The serving slot's container stops: every tool now says the site is down.
    (container,) = containers(f"{project}-blue")
    subprocess.run(["docker", "stop", "--time", "1", container], check=True, capture_output=True)
    health, status, text, checked = host_tools(site)
    assert health.returncode == 1
    assert "Serving release: the blue/green slot blue" in health.stdout
    assert "Service 'web' is exited" in health.stdout
    assert status["serving"]["slot"] == "blue" and not status["serving"]["healthy"]
    assert [service["name"] for service in status["services"] if not service["ok"]] == ["web"]
    assert "It does not serve:" in text and "did not answer" in text
    assert "deploy_ops.W034" in checked.stdout + checked.stderr
