"""One release of a Compose project deployed as a Docker Swarm stack, and the wait until it converged.

The swarm runtime's start step runs this file as a child process, by its path (as servectl is
run), so that the deploy's one runner times it, records it, and stops it when a run dies:

    python swarm_stack.py deploy --stack NAME --timeout SECONDS --update-order stop-first
        --monitor SECONDS [--registry HOST/PATH] -- docker compose -f ... -p ...

It reads the release from the checkout (HEAD: the deploy checked out the new release, a
rollback the previous one), the project from ``compose config``, writes a stack file with every
built service pinned to ``<project>-<service>:<commit12>``, runs one ``docker stack deploy``, then
follows the services and tasks through the Docker SDK until every service runs the release
(exit 0) or its update failed, a task was rejected, or the time ran out (exit 1, naming the stack,
the services and the failed tasks).  It needs the standard library and the Docker SDK only.

The builders above ``main`` are pure; the runtime (swarm.py) and the tests import them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

STACK_LABEL = "com.docker.stack.namespace"
# On each service of the stack: the commit (12 characters) of the release it runs.
RELEASE_LABEL = "deploy_ops.release"
# The host's network, as a stack file reaches it: an external network named "host".
HOST_NETWORK = "hostnet"
# What a version 3 stack file accepts of a service as `compose config` prints it.
SERVICE_KEYS = (
    "cap_add",
    "cap_drop",
    "command",
    "configs",
    "deploy",
    "dns",
    "dns_search",
    "entrypoint",
    "environment",
    "extra_hosts",
    "healthcheck",
    "hostname",
    "init",
    "labels",
    "logging",
    "networks",
    "ports",
    "read_only",
    "secrets",
    "stop_grace_period",
    "stop_signal",
    "sysctls",
    "tmpfs",
    "ulimits",
    "user",
    "volumes",
    "working_dir",
)
HEALTHCHECK_KEYS = ("test", "interval", "timeout", "retries", "start_period", "disable")
VOLUME_KEYS = ("type", "source", "target", "read_only", "consistency", "volume", "tmpfs")
TOP_LEVEL_KEYS = {
    "volumes": ("name", "external", "driver", "driver_opts", "labels"),
    "secrets": ("name", "file", "external"),
    "configs": ("name", "file", "external"),
}
# UpdateStatus.State values of an update swarm gave up on.
UPDATE_PAUSED = {"paused", "rollback_paused"}
SWARM_ROLLED_BACK = {"rollback_started", "rollback_completed"}
POLL_SECONDS = 0.5


class StackError(Exception):
    """The stack file cannot be made, or the stack did not converge."""


# -- pure builders --------------------------------------------------------------------------------
def release_image(project: str, service: str, release: str, registry: str = "") -> str:
    """The reference a release's built service runs as: the tag the Compose runtime keeps, under the registry when there is one."""
    local = f"{project}-{service}:{release[:12]}"
    return f"{registry.rstrip('/')}/{local}" if registry else local


def update_policy(order: str, monitor: int) -> dict:
    """deploy_ops' defaults for each service's `update_config`: one task at a time, swarm's own
    rollback when a new task fails within ``monitor`` seconds, in ``order``."""
    return {"parallelism": 1, "order": order, "failure_action": "rollback", "monitor": f"{monitor}s"}


def rollback_policy(order: str) -> dict:
    return {"parallelism": 0, "order": order, "failure_action": "pause"}


def stack_file(config: dict, release: str, order: str = "stop-first", monitor: int = 10, registry: str = "") -> dict:
    """The stack file of ``release`` from ``compose config --format json``: built services pinned to
    the release's image, update/rollback policies filled in where the Compose file sets none."""
    project = config["name"]
    services = {}
    uses_host_network = False
    for name, service in sorted((config.get("services") or {}).items()):
        out = {key: service[key] for key in SERVICE_KEYS if service.get(key) is not None}
        if service.get("build"):
            out["image"] = release_image(project, name, release, registry)
        elif service.get("image"):
            out["image"] = service["image"]
        else:
            raise StackError(f"Service {name!r} has neither `image:` nor `build:`.")
        network_mode = service.get("network_mode")
        if network_mode == "host":
            out["networks"] = {HOST_NETWORK: None}
            uses_host_network = True
        elif network_mode:
            raise StackError(
                f"Service {name!r} has network_mode {network_mode!r}: a stack supports only the host's network or its own networks."
            )
        elif "networks" in out:
            out["networks"] = {network: None for network in out["networks"]}
        if "healthcheck" in out:
            out["healthcheck"] = {key: out["healthcheck"][key] for key in HEALTHCHECK_KEYS if key in out["healthcheck"]}
        if "volumes" in out:
            out["volumes"] = [_volume(volume) for volume in out["volumes"]]
        if "ports" in out:
            out["ports"] = [_port(port) for port in out["ports"]]
        deploy = dict(out.get("deploy") or {})
        deploy["update_config"] = {**update_policy(order, monitor), **(deploy.get("update_config") or {})}
        deploy["rollback_config"] = {**rollback_policy(order), **(deploy.get("rollback_config") or {})}
        deploy["labels"] = {**(deploy.get("labels") or {}), RELEASE_LABEL: release[:12]}
        out["deploy"] = deploy
        services[name] = out
    stack: dict = {"version": "3.9", "services": services}
    networks = {}
    for network, definition in (config.get("networks") or {}).items():
        if any(network in (service.get("networks") or {}) for service in services.values()):
            definition = definition or {}
            networks[network] = (
                {"external": True, "name": definition["name"]}
                if definition.get("external")
                else {"driver": definition.get("driver") or "overlay", "attachable": True}
            )
    if uses_host_network:
        networks[HOST_NETWORK] = {"external": True, "name": "host"}
    if networks:
        stack["networks"] = networks
    for section, keys in TOP_LEVEL_KEYS.items():
        entries = {
            name: {key: entry[key] for key in keys if entry.get(key) not in (None, {}, False)}
            for name, entry in (config.get(section) or {}).items()
        }
        if entries:
            stack[section] = entries
    return stack


def _volume(volume):
    if isinstance(volume, str):
        return volume
    out = {key: volume[key] for key in VOLUME_KEYS if key in volume}
    if (volume.get("bind") or {}).get("propagation"):
        out["bind"] = {"propagation": volume["bind"]["propagation"]}
    return out


def _port(port):
    if isinstance(port, dict) and str(port.get("published", "")).isdigit():
        return {**port, "published": int(port["published"])}
    return port


def deploy_argv(stack: str, stack_path: str, registry: str = "", detach_flag: bool = True) -> list[str]:
    """``docker stack deploy`` of the stack file; services the file no longer has are removed."""
    argv = ["docker", "stack", "deploy", "--prune", "--compose-file", stack_path]
    if registry:
        # Every node pulls the same digest, and the registry's credentials travel with the update.
        argv += ["--with-registry-auth", "--resolve-image", "always"]
    else:
        # One node, local images: there is nothing to resolve.
        argv += ["--resolve-image", "never"]
    if detach_flag:
        # Newer clients wait by default; the wait here, on the SDK, is the one that reports.
        argv.append("--detach=true")
    return argv + [stack]


def base_image(reference: str) -> str:
    """A service's image without the digest `--resolve-image` pins to it."""
    return reference.split("@", 1)[0]


def service_progress(service: dict, tasks: list[dict], expected_image: str) -> tuple[str, list[str]]:
    """("converged" | "waiting" | "failed", the failed tasks described) for one service of the stack.

    ``service`` and ``tasks`` are the engine's objects (``docker service inspect``/``docker
    inspect`` of its tasks).  A task of another image is the old release, still going away.
    """
    spec = service["Spec"]
    image = base_image(spec["TaskTemplate"]["ContainerSpec"]["Image"])
    update = (service.get("UpdateStatus") or {}).get("State")
    failed = [
        describe_task(spec["Name"], task)
        for task in tasks
        if task["Status"]["State"] in ("failed", "rejected") and _task_image(task) == expected_image
    ]
    # Swarm rolled the service back from this release, or paused its update: waiting changes nothing.
    # (A rollback *to* this release, as after a failed deploy, is the recovery itself.)
    if update in UPDATE_PAUSED or (update in SWARM_ROLLED_BACK and image != expected_image):
        return "failed", failed or [f"{spec['Name']}: update {update}: {(service.get('UpdateStatus') or {}).get('Message', '')}"]
    if any(
        task["Status"]["State"] == "rejected"
        for task in tasks
        if _task_image(task) == expected_image and task.get("DesiredState") == "running"
    ):
        return "failed", failed  # e.g. "No such image": waiting will not bring it
    if image != expected_image or update in ("updating", "rollback_started"):
        return "waiting", failed
    wanted = (spec.get("Mode") or {}).get("Replicated", {}).get("Replicas", 1)
    running = [
        task
        for task in tasks
        if task.get("DesiredState") == "running" and task["Status"]["State"] == "running" and _task_image(task) == expected_image
    ]
    stale = [task for task in tasks if task.get("DesiredState") == "running" and _task_image(task) != expected_image]
    return ("converged" if len(running) >= wanted and not stale else "waiting"), failed


def _task_image(task: dict) -> str:
    return base_image(task["Spec"]["ContainerSpec"]["Image"])


def describe_task(service_name: str, task: dict) -> str:
    status = task["Status"]
    reason = status.get("Err") or status.get("Message") or status["State"]
    slot = f".{task['Slot']}" if task.get("Slot") else ""
    return f"task {service_name}{slot} ({task['ID'][:12]}) {status['State']}: {reason}"


# -- the child process ------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swarm_stack.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    deploy = commands.add_parser("deploy", help="deploy the checked-out release as the stack and wait until it converged")
    deploy.add_argument("--stack", required=True)
    deploy.add_argument("--timeout", type=float, required=True)
    deploy.add_argument("--update-order", default="stop-first", choices=("stop-first", "start-first"))
    deploy.add_argument("--monitor", type=int, default=10)
    deploy.add_argument("--registry", default="")
    deploy.add_argument("compose", nargs=argparse.REMAINDER, help="-- then the compose command with its -f and -p")
    options = parser.parse_args(argv)
    compose = options.compose[1:] if options.compose[:1] == ["--"] else options.compose
    try:
        print(deploy_release(options.stack, compose, options.timeout, options.update_order, options.monitor, options.registry))
    except StackError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


def deploy_release(stack: str, compose: list[str], timeout: float, order: str, monitor: int, registry: str) -> str:
    release = _output(["git", "rev-parse", "HEAD"]).strip()
    config = json.loads(_output([*compose, "config", "--format", "json"]))
    content = stack_file(config, release, order, monitor, registry)
    with tempfile.NamedTemporaryFile("w", prefix=f"{stack}-", suffix=".stack.json", delete=False) as handle:
        json.dump(content, handle, indent=1)
    try:
        detach_flag = "--detach" in _output(["docker", "stack", "deploy", "--help"])
        _output(deploy_argv(stack, handle.name, registry, detach_flag))
    finally:
        os.unlink(handle.name)
    expected = {f"{stack}_{name}": base_image(service["image"]) for name, service in content["services"].items()}
    return wait_until_converged(stack, expected, timeout)


def wait_until_converged(stack: str, expected: dict[str, str], timeout: float) -> str:
    """Follow every service of ``expected`` (service name: image) until all converged; StackError else."""
    import docker
    from docker.errors import DockerException

    deadline = time.monotonic() + timeout
    client = docker.from_env()
    try:
        while True:
            states: dict[str, tuple[str, list[str]]] = {}
            try:
                for name, image in expected.items():
                    service = client.api.inspect_service(name)
                    tasks = client.api.tasks(filters={"service": name})
                    states[name] = service_progress(service, tasks, image)
            except DockerException as error:
                raise StackError(f"Stack {stack}: could not read its services from the engine: {error}") from None
            failed = {name: detail for name, (state, detail) in states.items() if state == "failed"}
            if failed:
                raise StackError(_failure(stack, "its update failed", failed, states))
            if all(state == "converged" for state, _ in states.values()):
                return f"stack {stack} converged: " + ", ".join(f"{name} runs {expected[name]}" for name in expected)
            if time.monotonic() > deadline:
                raise StackError(_failure(stack, f"it did not converge within {timeout:.0f}s", {}, states))
            time.sleep(POLL_SECONDS)
    finally:
        client.close()


def _failure(stack: str, why: str, failed: dict[str, list[str]], states: dict[str, tuple[str, list[str]]]) -> str:
    lines = [f"Stack {stack}: {why}. Services: " + ", ".join(f"{name} {state}" for name, (state, _) in states.items())]
    for name, (_, tasks) in states.items():
        lines += [f"  {line}" for line in (failed.get(name) or tasks)[-5:]]
    return "\n".join(lines)


def _output(argv: list[str]) -> str:
    finished = subprocess.run(argv, capture_output=True, text=True)
    if finished.returncode != 0:
        raise StackError(f"{' '.join(argv[:4])} failed (exit {finished.returncode}): {finished.stderr.strip() or finished.stdout.strip()}")
    return finished.stdout


if __name__ == "__main__":
    sys.exit(main())
