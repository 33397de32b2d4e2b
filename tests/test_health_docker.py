"""ServicesRunning against a real Compose stack (the sample site) on a real Docker engine."""

import json
import re
import subprocess

import pytest

from deploy_ops.runtimes import get_runtime

from .fixtures.sample_site import postgres_url

pytestmark = [pytest.mark.docker, pytest.mark.slow]


@pytest.fixture
def running_stack(docker_engine, sample_site, postgres_database, settings):
    """The sample site's stack built and started by the compose runtime, as a deploy would."""
    settings.DEPLOY_OPS = sample_site.use_compose(
        docker_engine,
        postgres_url(postgres_database),
        HEALTH_CHECKS=["health_check.checks.Database", "deploy_ops.health.checks.ServicesRunning"],
        HEALTH_DETAILS_PUBLIC=True,
    )
    runtime = get_runtime()
    runtime.build()
    runtime.start()
    return sample_site


@pytest.mark.django_db
def test_health_turns_500_naming_the_service_when_a_compose_service_is_stopped(client, running_stack, docker_engine, settings):
    healthy = client.get("/health/", {"format": "json"})
    assert (healthy.status_code, json.loads(healthy.content)["ServicesRunning()"]) == (200, "OK")

    project = settings.DEPLOY_OPS["COMPOSE_PROJECT"]
    subprocess.run(
        [*docker_engine, "-p", project, "stop", "--timeout", "1", "web"], cwd=running_stack.production, check=True, capture_output=True
    )

    response = client.get("/health/", {"format": "json"})
    results = json.loads(response.content)
    assert response.status_code == 500
    assert results["Database(alias='default')"] == "OK"
    assert re.fullmatch(r"Unavailable: Service 'web' is exited, not running \(exit code \d+\)\.", results["ServicesRunning()"])
