"""Which release serves: the slot the proxy routes to, and the host-side tools that follow it."""

from __future__ import annotations

import pytest

from deploy_ops.health.checks import ServicesRunning, run_checks
from deploy_ops.preflight import running_release_problems
from deploy_ops.probe import probe_health
from deploy_ops.proxy.base import MAINTENANCE
from deploy_ops.proxy.nginx import maintenance_file_text, route_file_text
from deploy_ops.proxy.serving import ServingRelease, serving_release, serving_service_states
from deploy_ops.runtimes.base import ServiceState
from tests.test_preflight import served

ADDRESS = "127.0.0.1:8000"
NOWHERE = "http://127.0.0.1:9/health/live/"


@pytest.fixture
def slots(ops_dirs, settings, tmp_path):
    """A proxy with two slots; returns a function that points its route file at an address (or MAINTENANCE)."""
    route_file = tmp_path / "route.conf"
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_CHECK_URL": NOWHERE,
        "HEALTH_CHECK_TIMEOUT": 2,
        "PROXY": {
            "KIND": "nginx",
            "ROUTE_FILE": str(route_file),
            "ADDRESS": ADDRESS,
            "SLOTS": {
                "blue": {"ADDRESS": "127.0.0.1:8001", "HEALTH_CHECK_URL": "http://127.0.0.1:8001/health/"},
                "green": {"ADDRESS": "127.0.0.1:8002", "HEALTH_CHECK_URL": "http://127.0.0.1:8002/health/"},
            },
        },
    }

    def route(address: str) -> None:
        route_file.write_text(maintenance_file_text(7) if address == MAINTENANCE else route_file_text(address))

    return route


def use_slot_url(settings, slot: str, url: str) -> None:
    proxy = settings.DEPLOY_OPS["PROXY"]
    slots = {**proxy["SLOTS"], slot: {**proxy["SLOTS"][slot], "HEALTH_CHECK_URL": url}}
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "PROXY": {**proxy, "SLOTS": slots}}


def test_without_a_proxy_the_project_s_own_web_service_serves_at_health_check_url(ops_dirs, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "HEALTH_CHECK_URL": NOWHERE}
    assert serving_release() == ServingRelease(None, NOWHERE, None)


def test_the_slot_the_proxy_routes_to_serves_with_its_health_url(slots):
    assert serving_release() == ServingRelease(None, NOWHERE, None)  # the route file is not written yet
    slots("127.0.0.1:8002")
    assert serving_release() == ServingRelease("green", "http://127.0.0.1:8002/health/", "127.0.0.1:8002")
    slots(ADDRESS)
    assert serving_release() == ServingRelease(None, NOWHERE, ADDRESS)
    slots(MAINTENANCE)
    assert serving_release() == ServingRelease(None, NOWHERE, MAINTENANCE)


def test_the_probe_and_the_preflight_follow_the_slot_the_proxy_routes_to(slots, settings):
    with served() as url:
        use_slot_url(settings, "blue", f"{url}/health/live/")
        slots("127.0.0.1:8001")
        probe = probe_health()
        assert (probe.url, probe.status) == (f"{url}/health/live/", 200)
        assert running_release_problems() == []
        # Back on the project's own web service, which does not answer here: the probe says so.
        slots(ADDRESS)
        probe = probe_health()
        assert (probe.url, probe.status) == (NOWHERE, 0)
        assert [problem.id for problem in running_release_problems()] == ["deploy_ops.W034"]


class FakeRuntime:
    """Logic only: which view of the services ServicesRunning asks for (the real one is in the e2e test)."""

    slot: str | None = None

    def can_run_side_by_side(self) -> bool:
        return True

    def service_states(self) -> list[ServiceState]:
        # The project's own web service, stopped once a slot serves; or the slot a deploy points at.
        return [ServiceState("web", "exited", exit_code=0), ServiceState("db", "running")]

    def slot_service_states(self, slot: str) -> list[ServiceState]:
        return [ServiceState("web", "running" if slot == "blue" else "exited", exit_code=137), ServiceState("db", "running")]


def services_running(runtime) -> tuple[bool, str]:
    (outcome,) = run_checks([ServicesRunning(runtime=runtime)])
    return outcome.ok, outcome.message


def test_services_running_looks_at_the_serving_slot_and_the_project_s_other_services(slots):
    runtime = FakeRuntime()
    slots("127.0.0.1:8001")
    assert services_running(runtime) == (True, "")
    assert serving_service_states(runtime) == runtime.slot_service_states("blue")
    slots("127.0.0.1:8002")
    ok, message = services_running(runtime)
    assert not ok and "exit code 137" in message


def test_without_a_serving_slot_or_with_the_runtime_pointed_at_one_services_running_sees_what_it_saw_before(slots):
    runtime = FakeRuntime()
    slots(ADDRESS)
    assert serving_service_states(runtime) == runtime.service_states()
    slots("127.0.0.1:8001")
    # A deploy checking the release it started in the other slot keeps looking there.
    runtime.slot = "green"
    assert serving_service_states(runtime) == runtime.service_states()
    # A runtime without slots (Swarm, commands) is never asked for a slot's services.
    runtime.slot, runtime.can_run_side_by_side = None, lambda: False
    assert serving_service_states(runtime) == runtime.service_states()
