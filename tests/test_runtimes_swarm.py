"""SwarmRuntime and swarm_stack.py: the stack file, the command lines and the convergence rules as
pure logic; the real single-node swarm is in tests/e2e/test_deploy_swarm.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deploy_ops.checks import check_swarm_manager
from deploy_ops.conf import problems
from deploy_ops.runner import Command
from deploy_ops.runtimes import get_runtime, swarm_stack
from deploy_ops.runtimes.swarm import SwarmRuntime, service_state
from deploy_ops.runtimes.swarm_stack import StackError, deploy_argv, service_progress, stack_file

RELEASE = "0123456789abcdef0123456789abcdef01234567"

# What `docker compose config --format json` prints for the sample site (trimmed), plus a database.
CONFIG = {
    "name": "shop",
    "services": {
        "web": {
            "build": {"context": "/srv/shop", "dockerfile": "Dockerfile"},
            "command": ["/venv/bin/python", "-m", "gunicorn", "sitecfg.wsgi", "--bind", "127.0.0.1:8123"],
            "entrypoint": None,
            "environment": {"DATABASE_URL": "postgres://shop@127.0.0.1/shop"},
            "healthcheck": {
                "test": ["CMD", "/venv/bin/python", "-c", "..."],
                "timeout": "5s",
                "interval": "2s",
                "retries": 3,
                "start_period": "1m0s",
                "start_interval": "1s",
            },
            "network_mode": "host",
            "stop_grace_period": "5s",
            "volumes": [{"type": "bind", "source": "/usr", "target": "/usr", "read_only": True, "bind": {"create_host_path": True}}],
            "working_dir": "/app",
        },
        "worker": {
            "build": {"context": "/srv/shop"},
            "network_mode": "host",
            "deploy": {"replicas": 2, "update_config": {"order": "start-first", "monitor": "30s"}},
        },
        "db": {
            "image": "postgres:16",
            "networks": {"default": None},
            "ports": [{"mode": "ingress", "target": 5432, "published": "5432", "protocol": "tcp"}],
            "volumes": [{"type": "volume", "source": "data", "target": "/var/lib/postgresql/data", "volume": {}}],
        },
    },
    "networks": {"default": {"name": "shop_default", "ipam": {}}},
    "volumes": {"data": {"name": "shop_data"}},
}


def test_every_built_service_is_pinned_to_the_releases_tag_and_the_others_keep_their_image():
    services = stack_file(CONFIG, RELEASE)["services"]
    assert services["web"]["image"] == "shop-web:0123456789ab"
    assert services["worker"]["image"] == "shop-worker:0123456789ab"
    assert services["db"]["image"] == "postgres:16"
    assert services["web"]["deploy"]["labels"] == {swarm_stack.RELEASE_LABEL: "0123456789ab"}


def test_with_a_registry_the_stack_runs_the_pushed_references():
    services = stack_file(CONFIG, RELEASE, registry="registry.example.org:5000/team/")["services"]
    assert services["web"]["image"] == "registry.example.org:5000/team/shop-web:0123456789ab"
    assert services["db"]["image"] == "postgres:16"


def test_update_and_rollback_policies_come_from_the_settings_where_the_compose_file_sets_none():
    services = stack_file(CONFIG, RELEASE, order="stop-first", monitor=7)["services"]
    assert services["web"]["deploy"]["update_config"] == {
        "parallelism": 1,
        "order": "stop-first",
        "failure_action": "rollback",
        "monitor": "7s",
    }
    assert services["web"]["deploy"]["rollback_config"] == {"parallelism": 0, "order": "stop-first", "failure_action": "pause"}
    # What the Compose file sets wins, key by key; the rest is filled in.
    assert services["worker"]["deploy"]["update_config"] == {
        "parallelism": 1,
        "order": "start-first",
        "failure_action": "rollback",
        "monitor": "30s",
    }
    assert services["worker"]["deploy"]["replicas"] == 2


def test_host_networking_becomes_the_external_host_network_and_compose_only_keys_are_left_out():
    stack = stack_file(CONFIG, RELEASE)
    web = stack["services"]["web"]
    assert web["networks"] == {swarm_stack.HOST_NETWORK: None}
    assert stack["networks"][swarm_stack.HOST_NETWORK] == {"external": True, "name": "host"}
    assert "build" not in web and "network_mode" not in web and "entrypoint" not in web
    assert web["volumes"] == [{"type": "bind", "source": "/usr", "target": "/usr", "read_only": True}]
    assert "start_interval" not in web["healthcheck"]
    db = stack["services"]["db"]
    assert db["ports"][0]["published"] == 5432
    assert stack["networks"]["default"] == {"driver": "overlay", "attachable": True}
    assert stack["volumes"] == {"data": {"name": "shop_data"}}


def test_a_network_mode_a_stack_cannot_have_is_refused_by_name():
    config = {"name": "shop", "services": {"web": {"build": {"context": "."}, "network_mode": "service:vpn"}}}
    with pytest.raises(StackError, match="'web' has network_mode 'service:vpn'"):
        stack_file(config, RELEASE)


def test_stack_deploy_resolves_nothing_on_one_node_and_pins_digests_with_a_registry():
    assert deploy_argv("shop", "/tmp/s.json") == [
        "docker",
        "stack",
        "deploy",
        "--prune",
        "--compose-file",
        "/tmp/s.json",
        "--resolve-image",
        "never",
        "--detach=true",
        "shop",
    ]
    assert deploy_argv("shop", "/tmp/s.json", registry="r.example:5000", detach_flag=False) == [
        "docker",
        "stack",
        "deploy",
        "--prune",
        "--compose-file",
        "/tmp/s.json",
        "--with-registry-auth",
        "--resolve-image",
        "always",
        "shop",
    ]


@pytest.fixture
def swarm_settings(ops_dirs, settings, monkeypatch):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "RUNTIME": "swarm",
        "COMPOSE_COMMAND": ["docker", "compose"],
        "COMPOSE_PROJECT": "shop",
        "START_TIMEOUT": 90,
        "SWARM_UPDATE_MONITOR": 4,
    }
    # The project as Compose would read it, without a Compose file on disk.
    monkeypatch.setattr(SwarmRuntime, "config", lambda self: CONFIG)
    return ops_dirs


def test_swarm_is_a_runtime_setting_and_its_options_are_validated(swarm_settings):
    assert isinstance(get_runtime(), SwarmRuntime)
    assert problems({"RUNTIME": "swarm", "SWARM_UPDATE_ORDER": "start-first", "REGISTRY": "r.example:5000", "SWARM_STACK": "shop"}) == []
    assert problems({"SWARM_UPDATE_ORDER": "first"}) == ["DEPLOY_OPS['SWARM_UPDATE_ORDER'] must be one of 'stop-first', 'start-first'."]


def test_the_start_is_one_stack_deploy_of_the_checked_out_release_and_the_deploy_stops_nothing(swarm_settings, settings):
    runtime = get_runtime()
    [start] = runtime.start_commands()
    assert start == Command(
        (
            sys.executable,
            swarm_stack.__file__,
            "deploy",
            "--stack",
            "shop",
            "--timeout",
            "90",
            "--update-order",
            "stop-first",
            "--monitor",
            "4",
            "--",
            "docker",
            "compose",
            "-p",
            "shop",
        ),
        cwd=str(swarm_settings),
    )
    assert runtime.timeout_for(start) == 90 + 60
    assert runtime.stop_commands() == []
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "SWARM_STACK": "shop-prod", "REGISTRY": "r.example:5000"}
    assert get_runtime().start_commands()[0].argv[3:5] == ("--stack", "shop-prod")
    assert get_runtime().start_commands()[0].argv[-7:-5] == ("--registry", "r.example:5000")


def test_a_recoverys_stop_scales_the_services_the_compose_file_builds_to_zero(swarm_settings, settings, monkeypatch):
    monkeypatch.setattr("deploy_ops.runtimes.swarm.swarm_problem", lambda: "")  # a manager
    monkeypatch.setattr(SwarmRuntime, "stack_service_names", lambda self, stack: ["shop_web", "shop_worker", "shop_db"])
    assert get_runtime().scale_to_zero_commands() == [
        Command(("docker", "service", "scale", "--detach=false", "shop_web=0", "shop_worker=0"))
    ]
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "APP_SERVICES": ["web"]}
    assert get_runtime().scale_to_zero_commands() == [Command(("docker", "service", "scale", "--detach=false", "shop_web=0"))]
    # A service the stack no longer has (the failed release removed it) is not asked for.
    monkeypatch.setattr(SwarmRuntime, "stack_service_names", lambda self, stack: ["shop_db"])
    assert get_runtime().scale_to_zero_commands() == []


def test_with_a_registry_each_release_is_pushed_once_just_after_its_build(swarm_settings, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "REGISTRY": "r.example:5000/team"}
    commands = [command.argv for command in get_runtime().keep_release_commands(RELEASE)]
    # (No registry runs on this machine: the command lines are what is tested.)
    assert commands == [
        ("docker", "image", "tag", "shop-web", "shop-web:0123456789ab"),
        ("docker", "image", "tag", "shop-worker", "shop-worker:0123456789ab"),
        ("docker", "image", "tag", "shop-web:0123456789ab", "r.example:5000/team/shop-web:0123456789ab"),
        ("docker", "image", "push", "r.example:5000/team/shop-web:0123456789ab"),
        ("docker", "image", "tag", "shop-worker:0123456789ab", "r.example:5000/team/shop-worker:0123456789ab"),
        ("docker", "image", "push", "r.example:5000/team/shop-worker:0123456789ab"),
    ]


def test_every_manage_py_command_is_a_one_off_container_labelled_with_its_run(swarm_settings):
    for arguments in (("migrate", "--noinput"), ("check",), ("healthcheck", "--gate")):
        command = get_runtime().manage_command(*arguments)
        assert command.argv[:8] == ("docker", "compose", "-p", "shop", "run", "--rm", "--no-deps", "-T")
        assert command.argv[8:10] == ("--label", "deploy_ops.record=none")
        assert command.argv[10:] == ("web", "python", "manage.py", *arguments)


# -- the convergence rules, on the engine's own objects --------------------------------------------
NEW, OLD = "shop-web:0123456789ab", "shop-web:fedcba987654"


def service(image: str, update: str | None = None, replicas: int = 1) -> dict:
    inspected = {
        "Spec": {
            "Name": "shop_web",
            "Mode": {"Replicated": {"Replicas": replicas}},
            "Labels": {swarm_stack.RELEASE_LABEL: image[-12:]},
            "TaskTemplate": {"ContainerSpec": {"Image": image + "@sha256:" + "0" * 64, "Healthcheck": {"Test": ["CMD", "true"]}}},
        }
    }
    if update:
        inspected["UpdateStatus"] = {"State": update, "Message": f"update {update}"}
    return inspected


def task(image: str, state: str, desired: str = "running", err: str = "") -> dict:
    return {
        "ID": "abcdefabcdef0123",
        "Slot": 1,
        "DesiredState": desired,
        "Spec": {"ContainerSpec": {"Image": image}},
        "Status": {"State": state, "Err": err},
    }


@pytest.mark.parametrize(
    "inspected, tasks, expected",
    [
        (service(NEW, "completed"), [task(NEW, "running"), task(OLD, "shutdown", "shutdown")], "converged"),
        (service(NEW), [task(NEW, "running")], "converged"),  # created, never updated
        (service(NEW, "updating"), [task(NEW, "running")], "waiting"),  # within its monitor window
        (service(NEW, "completed"), [task(NEW, "starting")], "waiting"),  # its healthcheck has not passed yet
        (service(NEW, "completed", replicas=2), [task(NEW, "running")], "waiting"),
        (service(OLD, "rollback_started"), [task(NEW, "failed", "shutdown", "task: non-zero exit (1)")], "failed"),
        (service(OLD, "rollback_completed"), [task(OLD, "running")], "failed"),
        (service(NEW, "paused"), [task(NEW, "failed", "shutdown")], "failed"),
        (service(NEW), [task(NEW, "rejected", err="No such image: shop-web:0123456789ab")], "failed"),
        # A rollback *to* this release (the recovery after a failed deploy) is not a failure.
        (service(NEW, "rollback_completed"), [task(NEW, "running")], "converged"),
    ],
)
def test_a_service_converged_waits_or_failed_as_its_update_and_tasks_say(inspected, tasks, expected):
    state, _ = service_progress(inspected, tasks, NEW)
    assert state == expected


def test_a_failed_update_names_the_failed_tasks_with_the_engines_reason():
    state, failed = service_progress(service(OLD, "rollback_started"), [task(NEW, "failed", "shutdown", "task: non-zero exit (1)")], NEW)
    assert (state, failed) == ("failed", ["task shop_web.1 (abcdefabcdef) failed: task: non-zero exit (1)"])


def test_a_converged_service_is_running_and_healthy_for_the_health_stage_and_a_failed_one_says_why():
    assert service_state("web", service(NEW, "completed"), [task(NEW, "running")]).ok
    failed = service_state("web", service(NEW, "paused"), [task(NEW, "failed", "shutdown", "task: non-zero exit (1)")])
    assert not failed.ok
    assert failed.state == "update paused"
    assert "task shop_web.1 (abcdefabcdef) failed: task: non-zero exit (1)" in failed.detail


@pytest.mark.docker
def test_the_docker_cli_accepts_the_stack_file(tmp_path: Path, docker_engine):
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(stack_file(CONFIG, RELEASE)))
    checked = subprocess.run(["docker", "stack", "config", "--compose-file", str(path)], capture_output=True, text=True)
    if "unknown command" in checked.stderr or "is not a docker command" in checked.stderr:
        pytest.skip("this docker CLI has no `stack config` (it came with 25.0)")
    assert checked.returncode == 0, checked.stderr
    assert "shop-web:0123456789ab" in checked.stdout


class FakeEngine:
    def __init__(self, swarm: dict):
        self.swarm = swarm

    def info(self):
        return {"Swarm": self.swarm}

    def close(self):
        pass


@pytest.mark.parametrize(
    "swarm, expected",
    [
        ({"LocalNodeState": "active", "ControlAvailable": True}, []),
        (
            {"LocalNodeState": "inactive", "ControlAvailable": False},
            ["RUNTIME is 'swarm' but this Docker engine is not part of a swarm (its state: inactive)."],
        ),
        (
            {"LocalNodeState": "active", "ControlAvailable": False},
            ["RUNTIME is 'swarm' but this Docker engine is a swarm worker: stacks are deployed from a manager."],
        ),
    ],
)
def test_check_deploy_wants_a_swarm_manager(swarm_settings, monkeypatch, swarm, expected):
    monkeypatch.setattr("docker.from_env", lambda: FakeEngine(swarm))
    found = check_swarm_manager(None)
    assert [error.msg for error in found] == expected
    assert all(error.id == "deploy_ops.E050" for error in found)
    # A rollback's stop then scales nothing rather than failing before the database restore.
    monkeypatch.setattr(SwarmRuntime, "stack_service_names", lambda self, stack: ["shop_web"])
    assert bool(get_runtime().scale_to_zero_commands()) == (expected == [])


@pytest.mark.docker
def test_this_machines_swarm_manager_passes_the_check(swarm_settings, swarm_engine):
    assert check_swarm_manager(None) == []


def test_a_deploy_from_an_engine_that_is_no_manager_is_refused_by_the_preflight(swarm_settings, monkeypatch):
    from deploy_ops import preflight

    monkeypatch.setattr("docker.from_env", lambda: FakeEngine({"LocalNodeState": "inactive", "ControlAvailable": False}))
    # The Compose half of the preflight is tested with Compose; here only the swarm's part counts.
    monkeypatch.setattr(preflight, "compose_problems", lambda runtime: [])
    monkeypatch.setattr(preflight, "site_check_problems", lambda: [])
    found = preflight.readiness_problems(get_runtime())
    assert "deploy_ops.E050" in [problem.id for problem in found if problem.is_serious()]
