"""ComposeRuntime: exact compose command lines, and the real thing on a Docker engine."""

import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from deploy_ops import children
from deploy_ops.exceptions import CommandFailed, ServiceError
from deploy_ops.runner import Command
from deploy_ops.runtimes import get_runtime
from deploy_ops.runtimes.base import ServiceState
from deploy_ops.runtimes.compose import ComposeRuntime, docker_client

from .fixtures.sample_site import broken_dockerfile, exits_at_start, postgres_url


@pytest.fixture
def compose_settings(ops_dirs, settings):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "COMPOSE_COMMAND": ["docker-compose"],
        "COMPOSE_FILES": ["compose.yaml", "compose.prod.yaml"],
        "COMPOSE_PROJECT": "certificates",
        "START_TIMEOUT": 120,
        "STOP_TIMEOUT": 20,
    }
    return ops_dirs


COMPOSE = ("docker-compose", "-f", "compose.yaml", "-f", "compose.prod.yaml", "-p", "certificates")


def test_compose_is_the_default_runtime(ops_dirs):
    runtime = get_runtime()
    assert isinstance(runtime, ComposeRuntime)
    assert runtime.project_dir == ops_dirs


def test_build_start_stop_run_compose_with_the_files_and_project_in_the_checkout(compose_settings):
    runtime = ComposeRuntime(compose_settings)
    cwd = str(compose_settings)
    assert runtime.build_commands() == [Command((*COMPOSE, "build"), cwd=cwd)]
    assert runtime.start_commands() == [
        Command((*COMPOSE, "up", "--detach", "--remove-orphans", "--wait", "--wait-timeout", "120"), cwd=cwd)
    ]
    assert runtime.stop_commands() == [Command((*COMPOSE, "stop", "--timeout", "20"), cwd=cwd)]
    assert runtime.config_command() == Command((*COMPOSE, "config", "--format", "json"), cwd=cwd)


def test_default_compose_command_is_the_docker_compose_plugin_without_files_or_project(ops_dirs):
    assert ComposeRuntime(ops_dirs).build_commands() == [Command(("docker", "compose", "build"), cwd=str(ops_dirs))]


def test_stop_names_only_the_app_services_so_the_database_keeps_running(compose_settings, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "APP_SERVICES": ["web", "worker"]}
    assert ComposeRuntime(compose_settings).stop_commands() == [
        Command((*COMPOSE, "stop", "--timeout", "20", "web", "worker"), cwd=str(compose_settings))
    ]


def test_the_release_checks_run_inside_the_serving_web_service(compose_settings, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "WEB_SERVICE": "app"}
    command = ComposeRuntime(compose_settings).manage_command("check")
    assert command == Command((*COMPOSE, "exec", "-T", "app", "python", "manage.py", "check"), cwd=str(compose_settings))


@pytest.mark.parametrize("name", ["migrate", "collectstatic"])
def test_migrate_and_collectstatic_run_in_a_one_off_container_labelled_with_the_run_that_started_it(compose_settings, settings, name):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "WEB_SERVICE": "app"}
    with children.tracking("0123-record"):
        command = ComposeRuntime(compose_settings).manage_command(name, "--noinput")
    assert command == Command(
        (
            *COMPOSE,
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "--label",
            "deploy_ops.record=0123-record",
            "app",
            "python",
            "manage.py",
            name,
            "--noinput",
        ),
        cwd=str(compose_settings),
    )


def test_manage_on_host_runs_manage_py_with_this_python_in_the_checkout(compose_settings, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "MANAGE_ON_HOST": True}
    command = ComposeRuntime(compose_settings).manage_command("collectstatic", "--noinput")
    assert command == Command((sys.executable, "manage.py", "collectstatic", "--noinput"), cwd=str(compose_settings))


def test_build_gets_a_generous_timeout_and_start_stop_their_settings_plus_a_margin(compose_settings):
    runtime = ComposeRuntime(compose_settings)
    [build], [start], [stop] = runtime.build_commands(), runtime.start_commands(), runtime.stop_commands()
    assert (runtime.timeout_for(build), runtime.timeout_for(start), runtime.timeout_for(stop)) == (3600, 180, 80)


def test_an_unreachable_docker_engine_is_a_service_error_that_says_what_to_do(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(ServiceError, match=r"The Docker engine is not reachable .*RUNTIME'\] = 'commands'"):
        with docker_client():
            pass


# -- on a real Docker engine -----------------------------------------------------------------------


@pytest.fixture
def compose_site(sample_site, docker_engine, settings):
    def configure(database_url="postgres://postgres@127.0.0.1:5432/unused"):
        settings.DEPLOY_OPS = sample_site.use_compose(docker_engine, database_url)
        return ComposeRuntime(sample_site.production)

    return configure


@pytest.mark.docker
def test_a_service_never_created_shows_as_missing(compose_site):
    runtime = compose_site()
    assert runtime.service_states() == [ServiceState("web", "missing", None, "no container: it was never created")]


@pytest.mark.docker
@pytest.mark.postgres
def test_sample_stack_builds_starts_healthy_migrates_serves_logs_and_stops(compose_site, sample_site, postgres_database, settings):
    runtime = compose_site(postgres_url(postgres_database))
    project = settings.DEPLOY_OPS["COMPOSE_PROJECT"]
    before_start = timezone.now()
    runtime.build()
    runtime.start()  # --wait: returns once the container's healthcheck passes

    assert runtime.service_states() == [ServiceState("web", "running", "healthy", f"{project}-web-1")]
    assert "Applying notes.0001_initial... OK" in runtime.manage("migrate", "--noinput")
    assert sample_site.get("/") == (200, "release 1\nnotes 0\n")
    assert "web | [" in runtime.logs_since(before_start)
    assert f"Listening at: http://127.0.0.1:{sample_site.web_port}" in runtime.logs_since(before_start)
    assert "Listening at" not in runtime.logs_since(timezone.now() + timedelta(seconds=2))

    runtime.stop()
    [web] = runtime.service_states()
    assert (web.name, web.state, web.ok) == ("web", "exited", False)
    assert sample_site.get("/")[0] is None


@pytest.mark.docker
def test_start_fails_when_the_release_exits_at_start(compose_site, sample_site, settings):
    runtime = compose_site()
    sample_site.commit_change(exits_at_start(), "A release that cannot start")
    sample_site.checkout_latest()
    runtime.build()
    with pytest.raises(CommandFailed, match="exited"):
        runtime.start()
    [web] = runtime.service_states()
    assert (web.state, web.detail) == ("exited", f"{settings.DEPLOY_OPS['COMPOSE_PROJECT']}-web-1 exited with code 1")
    assert "EXIT_AT_START is set" in runtime.logs_since(timezone.now() - timedelta(minutes=1))


@pytest.mark.docker
def test_build_fails_on_a_broken_dockerfile(compose_site, sample_site):
    runtime = compose_site()
    sample_site.commit_change(broken_dockerfile(), "A Dockerfile that cannot build")
    sample_site.checkout_latest()
    with pytest.raises(CommandFailed, match="a-file-that-does-not-exist"):
        runtime.build()


SLOTS = {
    "blue": {"ADDRESS": "127.0.0.1:8001", "HEALTH_CHECK_URL": "http://127.0.0.1:8001/health/", "ENVIRONMENT": {"WEB_PORT": "8001"}},
    "green": {"ADDRESS": "127.0.0.1:8002", "HEALTH_CHECK_URL": "http://127.0.0.1:8002/health/", "ENVIRONMENT": {"WEB_PORT": "8002"}},
}


def test_a_blue_green_slot_starts_only_the_web_service_in_a_project_of_its_own_from_the_kept_image(compose_settings, settings, monkeypatch):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "PROXY": {"KIND": "nginx", "ROUTE_FILE": "route.conf", "ADDRESS": "127.0.0.1:8000", "SLOTS": SLOTS},
    }
    runtime = ComposeRuntime(compose_settings)
    monkeypatch.setattr(
        runtime, "config", lambda: {"name": "certificates", "services": {"web": {"build": "."}, "db": {"image": "postgres"}}}
    )
    slot = ("docker-compose", "-f", "compose.yaml", "-f", "compose.prod.yaml", "-p", "certificates-green")
    environment = {"WEB_PORT": "8002", "DEPLOY_OPS_SLOT": "green"}
    cwd = str(compose_settings)
    assert runtime.start_slot_commands("green", "0123456789abcdef") == [
        Command(("docker", "image", "tag", "certificates-web:0123456789ab", "certificates-green-web")),
        Command((*slot, "up", "--detach", "--no-deps", "--no-build", "--wait", "--wait-timeout", "120", "web"), env=environment, cwd=cwd),
    ]
    assert runtime.remove_slot_commands("green") == [Command((*slot, "down", "--timeout", "20"), env=environment, cwd=cwd)]
    assert runtime.stop_web_commands() == [Command((*COMPOSE, "stop", "--timeout", "20", "web"), cwd=cwd)]
    runtime.slot = "green"
    assert runtime.manage_command("check") == Command(
        (*slot, "exec", "-T", "web", "python", "manage.py", "check"), env=environment, cwd=cwd
    )
    assert runtime.timeout_for(runtime.remove_slot_commands("green")[0]) == 20 + 60


def test_only_plain_compose_runs_two_releases_side_by_side(ops_dirs):
    from deploy_ops.runtimes.swarm import SwarmRuntime

    assert ComposeRuntime(ops_dirs).can_run_side_by_side()
    assert not SwarmRuntime(ops_dirs).can_run_side_by_side()
