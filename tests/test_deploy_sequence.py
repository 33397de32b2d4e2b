"""The exact command sequence of a deploy and of its rollback, for each stage that can fail.

In-process and fast, as Kamal tests its CLI: a Deployer runs against the sample site's real git
repositories and a real SQLite backup, while a recording runner stands in for the Docker engine
(it answers every ``docker compose`` command and records it; git commands really run).  The
end-to-end tests under tests/e2e run the same deploys against a real engine.
"""

from __future__ import annotations

import json
import shlex
import sqlite3

import pytest
from django.db.migrations.loader import MigrationLoader

from deploy_ops import demo, rollback, runner
from deploy_ops.exceptions import EXIT_OK, EXIT_ROLLED_BACK, CommandFailed
from deploy_ops.models import DeploymentRecord
from deploy_ops.pipeline import Deployer, DeployOptions
from deploy_ops.probe import ProbeResult
from deploy_ops.recovery import PLANNED
from deploy_ops.runner import Command, Completed
from deploy_ops.runtimes import ServiceState
from deploy_ops.runtimes.compose import ComposeRuntime
from tests.fixtures.sample_site import git, release

pytestmark = pytest.mark.django_db(transaction=True)

COMPOSE = ["docker", "compose", "-p", "seqtest"]
CONFIG = {"name": "seqtest", "services": {"web": {"build": {"context": "."}}, "db": {"image": "postgres:16"}}}


class RecordingRunner:
    """Runs git for real (the checkout is a real repository); answers and records everything else.

    ``fail_while_at`` makes the commands matching a predicate fail while the production checkout is
    at a given commit: the new release's build fails, its rollback's build of the previous one does not.
    """

    def __init__(self, production):
        self.production = production
        self.real_run = runner.run
        self.commands: list[str] = []
        self.failing = None
        self.failing_sha = ""
        self.bad_health_sha = ""
        # What the engine no longer has, as missing_release_images would find it.
        self.gone_images: list[str] = []

    def fail(self, predicate, while_at: str) -> None:
        self.failing, self.failing_sha = predicate, while_at

    def head(self) -> str:
        return git(self.production, "rev-parse", "HEAD")

    def __call__(self, command: Command, *, check=True, timeout=None, input=None, on_line=None) -> Completed:
        argv = list(command.argv)
        if argv[:2] == COMPOSE[:2] and "config" in argv:
            return Completed(command.argv, 0, json.dumps(CONFIG), "", 0.0)  # a read, not a step
        self.commands.append(command.display())
        if self.failing and self.failing(argv) and self.head() == self.failing_sha:
            raise CommandFailed(argv, 1, stderr_tail="failed on purpose")
        if argv[0] == "git":
            return self.real_run(command, check=check, timeout=timeout, input=input)
        return Completed(command.argv, 0, "", "", 0.0)

    def probe(self, url=None, timeout=None) -> ProbeResult:
        healthy = not self.bad_health_sha or self.head() != self.bad_health_sha
        return ProbeResult("http://127.0.0.1/health/", 200 if healthy else 500, "{}")


@pytest.fixture
def recorded(sample_site, settings, tmp_path, monkeypatch):
    database = tmp_path / "site.sqlite3"
    with sqlite3.connect(database) as connection:
        connection.execute("CREATE TABLE items (id INTEGER PRIMARY KEY)")
    connection.close()
    settings.DATABASES = {**settings.DATABASES, "site": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}}
    settings.DEPLOY_OPS = {
        "PROJECT_DIR": str(sample_site.production),
        "RUNTIME": "compose",
        "COMPOSE_COMMAND": ["docker", "compose"],
        "COMPOSE_PROJECT": "seqtest",
        "BACKUP_DATABASE": "site",
        "HEALTH_CHECK_URL": "http://127.0.0.1:9/health/",
        "HEALTH_CHECK_RETRIES": 1,
        "HEALTH_CHECK_DELAY": 0,
        "APP_SERVICES": ["web"],
        "STOP_TIMEOUT": 5,
        "START_TIMEOUT": 30,
        "HOST_HEALTH_CHECKS": [],
    }
    recording = RecordingRunner(sample_site.production)
    for module in ("deploy_ops.runner", "deploy_ops.gitrepo", "deploy_ops.runtimes.compose"):
        monkeypatch.setattr(f"{module}.run", recording)
    for module in ("deploy_ops.preflight", "deploy_ops.recovery"):
        monkeypatch.setattr(f"{module}.probe_health", recording.probe)
    # What the Docker SDK (not the compose command) would report: every service up, quiet logs.
    monkeypatch.setattr(ComposeRuntime, "service_states", lambda self: [ServiceState("db", "running"), ServiceState("web", "running")])
    monkeypatch.setattr(ComposeRuntime, "logs_since", lambda self, since: "")
    monkeypatch.setattr(ComposeRuntime, "one_off_work", lambda self: [])
    monkeypatch.setattr(ComposeRuntime, "stop_one_off_work", lambda self: [])
    monkeypatch.setattr(ComposeRuntime, "missing_release_images", lambda self, sha: list(recording.gone_images))
    monkeypatch.setattr(ComposeRuntime, "prune_release_images", lambda self, keep: [])
    return sample_site, recording


COMPOSE_LINE = " ".join(COMPOSE)
STOP = f"{COMPOSE_LINE} stop --timeout 5 web"
UP = f"{COMPOSE_LINE} up --detach --remove-orphans --wait --wait-timeout 30"
# One-off containers of the image Compose points at, labelled with the run's record.
ONE_OFF = f"{COMPOSE_LINE} run --rm --no-deps -T --label deploy_ops.record=RECORD web python manage.py"
ORDER = ["checkout", "build", "collectstatic", "stop", "migrate", "start", "verify"]


def deploy_sequence(old: str, new: str) -> dict[str, list[str]]:
    """What a deploy of ``new`` over ``old`` runs, stage by stage (health and backup run no command)."""
    return {
        "checkout": ["git fetch --prune --tags --force origin", f"git checkout --quiet --detach {new}"],
        "build": [f"{COMPOSE_LINE} build", f"docker image tag seqtest-web seqtest-web:{new[:12]}"],
        "collectstatic": [f"{ONE_OFF} collectstatic --noinput"],
        "stop": [STOP],
        "migrate": [f"{ONE_OFF} migrate --noinput"],
        "start": [UP],
        "verify": [
            f"{COMPOSE_LINE} exec -T web python manage.py check",
            f"{COMPOSE_LINE} exec -T web python manage.py healthcheck --gate --skip-services",
        ],
    }


def in_order(stages: dict[str, list[str]], names=ORDER) -> list[str]:
    return [command for name in names for command in stages[name]]


def run_deploy(site, recording, **options) -> tuple[int, list[str]]:
    deployer = Deployer(DeployOptions(**options))
    exit_code = deployer.run()
    record_id = str(deployer.recorder.record.id)
    return exit_code, [line.replace(record_id, "RECORD") for line in recording.commands]


def test_a_good_deploy_builds_and_collects_static_files_before_it_stops_the_old_release_and_migrates_before_it_starts_the_new(recorded):
    site, recording = recorded
    new = site.commit_change(release("2"), "Release 2")
    exit_code, commands = run_deploy(site, recording)
    assert exit_code == EXIT_OK
    assert commands == in_order(deploy_sequence(site.initial_sha, new))


def compose_verb(verb, *words):
    return lambda argv: argv[:2] == ["docker", "compose"] and argv[4] == verb and all(word in argv for word in words)


@pytest.mark.parametrize(
    ("failing", "rollback_tail"),
    [
        # The old release still serves: its images are pointed at again; nothing stops or starts.
        ("build", ["images"]),
        ("collectstatic", ["images", "collectstatic"]),
        # Stopped, not migrated: the old release starts again; the database was not touched.
        ("stop", ["stop", "images", "up", "collectstatic"]),
        ("migrate", ["stop", "images", "up", "collectstatic"]),
        ("start", ["stop", "images", "up", "collectstatic"]),
        ("verify", ["stop", "images", "up", "collectstatic"]),
    ],
)
def test_a_failing_stage_is_followed_by_exactly_its_undo(recorded, failing, rollback_tail):
    site, recording = recorded
    old = site.initial_sha
    new = site.commit_change(release("2"), "Release 2")
    predicate = {
        "build": compose_verb("build"),
        "collectstatic": compose_verb("run", "collectstatic"),
        "stop": compose_verb("stop"),
        "migrate": compose_verb("run", "migrate"),
        "start": compose_verb("up"),
        "verify": compose_verb("exec", "healthcheck"),
    }[failing]
    recording.fail(predicate, while_at=new)

    exit_code, commands = run_deploy(site, recording)

    assert exit_code == EXIT_ROLLED_BACK
    planned = in_order(deploy_sequence(old, new), ORDER[: ORDER.index(failing) + 1])
    # Every command up to the failing one, which ends the deploy.
    ran = planned[: next(at for at, command in enumerate(planned) if predicate(shlex.split(command))) + 1]
    assert commands[: len(ran)] == ran
    undo = {
        "stop": STOP,
        # The previous release's kept image, pointed at again: no build.
        "images": f"docker image tag seqtest-web:{old[:12]} seqtest-web",
        "up": UP,
        "collectstatic": f"{ONE_OFF} collectstatic --noinput",
    }
    # The code back first, then the services (the database restore runs in-process, between stop and images).
    assert commands[len(ran) :] == [f"git checkout --quiet --detach {old}"] + [undo[step] for step in rollback_tail]
    assert git(site.production, "rev-parse", "HEAD") == old


def test_a_failed_health_check_rolls_back_without_running_the_release_checks(recorded):
    site, recording = recorded
    old = site.initial_sha
    new = site.commit_change(release("2"), "Release 2")
    recording.bad_health_sha = new

    exit_code, commands = run_deploy(site, recording)

    assert exit_code == EXIT_ROLLED_BACK
    assert commands == in_order(deploy_sequence(old, new), ORDER[:-1]) + [
        f"git checkout --quiet --detach {old}",
        STOP,
        f"docker image tag seqtest-web:{old[:12]} seqtest-web",
        UP,
        f"{ONE_OFF} collectstatic --noinput",
    ]


def test_the_dry_run_shows_exactly_the_commands_a_deploy_runs(recorded):
    site, recording = recorded
    site.commit_change(release("2"), "Release 2")
    planned: list[tuple[str, str]] = []
    dry = Deployer(
        DeployOptions(dry_run=True), progress=lambda stage, event, detail: planned.append((stage, detail)) if event == PLANNED else None
    )
    assert dry.run() == EXIT_OK
    recording.commands.clear()

    exit_code, commands = run_deploy(site, recording)

    assert exit_code == EXIT_OK
    shown_commands = [detail for _, detail in planned if detail.startswith(("git ", "docker "))]
    ran = [command for command in commands if not command.startswith("git fetch")]
    # The one-off containers' label names the run's record, which a dry run does not have.
    assert [line.replace("deploy_ops.record=none", "deploy_ops.record=RECORD") for line in shown_commands] == ran
    assert [stage for stage, _ in planned][:1] == ["backup"]


def test_a_rollback_builds_only_when_the_previous_release_images_are_gone_and_says_so(recorded):
    site, recording = recorded
    old = site.initial_sha
    new = site.commit_change(release("2"), "Release 2")
    recording.bad_health_sha = new
    recording.gone_images = [f"seqtest-web:{old[:12]}"]

    deployer = Deployer(DeployOptions())
    assert deployer.run() == EXIT_ROLLED_BACK

    rollback = recording.commands[recording.commands.index(f"git checkout --quiet --detach {old}") :]
    assert rollback[2:4] == [f"{COMPOSE_LINE} build", f"docker image tag seqtest-web seqtest-web:{old[:12]}"]
    record = deployer.recorder.record
    assert f"The images of {old[:12]} were gone (seqtest-web:{old[:12]})" in record.warnings
    [restore] = [stage for stage in record.stages.all() if stage.name == "restore images"]
    assert restore.output_tail.startswith("built, as its images were gone")
    assert record.images == f"seqtest-web:{old[:12]}"


def test_a_rollback_with_the_images_kept_starts_them_and_records_them(recorded):
    site, recording = recorded
    old = site.initial_sha
    new = site.commit_change(release("2"), "Release 2")
    recording.bad_health_sha = new

    deployer = Deployer(DeployOptions())
    assert deployer.run() == EXIT_ROLLED_BACK

    assert [command for command in recording.commands if command.endswith(" build")] == [f"{COMPOSE_LINE} build"]  # the new release's only
    [restore] = [stage for stage in deployer.recorder.record.stages.all() if stage.name == "restore images"]
    assert restore.output_tail == f"started from the kept images, no build: seqtest-web:{old[:12]}"


def test_a_manual_rollback_to_a_commit_starts_its_kept_images_in_step_order(recorded):
    site, recording = recorded
    old = site.initial_sha
    site.commit_change(release("2"), "Release 2")
    assert run_deploy(site, recording)[0] == EXIT_OK
    recording.commands.clear()

    # The plan `rollback --commit` makes once its checks passed (they read the site's database).
    plan = rollback.RollbackPlan(
        commit=old, commit_summary="Sample site, release 1", steps=set(rollback.CODE_STEPS), reason="code back to release 1"
    )
    assert f"start its kept images, no build (seqtest-web:{old[:12]})" in plan.describe()[0]
    assert rollback.execute(plan) == EXIT_OK

    record_id = DeploymentRecord.objects.latest("started_at").id
    assert recording.commands == [
        f"git checkout --quiet --detach {old}",
        STOP,
        f"docker image tag seqtest-web:{old[:12]} seqtest-web",
        UP,
        f"{ONE_OFF.replace('RECORD', str(record_id))} collectstatic --noinput",
    ]


@pytest.mark.parametrize(
    ("failing", "restored"),
    [("build", "The database is not restored: no migration had run"), ("verify", "The database is restored from this deploy's backup")],
)
def test_the_record_of_an_automatic_rollback_says_whether_the_database_was_restored_and_why(recorded, failing, restored):
    site, recording = recorded
    new = site.commit_change(release("2"), "Release 2")
    recording.fail(compose_verb("build") if failing == "build" else compose_verb("exec", "healthcheck"), while_at=new)

    assert run_deploy(site, recording)[0] == EXIT_ROLLED_BACK

    record = DeploymentRecord.objects.order_by("-started_at").first()
    assert record.rollback_reason.splitlines()[1].startswith(restored)
    assert ("restore database" in [stage.name for stage in record.stages.all()]) is (failing == "verify")


def test_behind_a_proxy_the_dry_run_shows_the_maintenance_answer_before_the_stop_and_a_route_stage_last(recorded, settings, tmp_path):
    site, _recording = recorded
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "PROXY": {"KIND": "nginx", "ROUTE_FILE": str(tmp_path / "route.conf"), "ADDRESS": "127.0.0.1:8000", "RETRY_AFTER": 9},
    }
    site.commit_change(release("2"), "Release 2")
    planned: list[tuple[str, str]] = []
    dry = Deployer(
        DeployOptions(dry_run=True), progress=lambda stage, event, detail: planned.append((stage, detail)) if event == PLANNED else None
    )
    assert dry.run() == EXIT_OK
    stop = [detail for stage, detail in planned if stage == "stop"]
    assert stop[0] == "nginx answers 503 with Retry-After: 9 and the maintenance page, then the old release stops" and stop[1] == STOP
    assert planned[-1] == ("route", "nginx sends the traffic to 127.0.0.1:8000 again")
    assert not (tmp_path / "route.conf").exists()  # a dry run changes nothing


@pytest.fixture
def blue_green(recorded, settings, tmp_path, monkeypatch):
    """As ``recorded``, behind a proxy with two slots whose reload commands are recorded too."""
    site, recording = recorded
    route = tmp_path / "route.conf"
    route.write_text("# deploy_ops: 127.0.0.1:8000\nproxy_pass http://127.0.0.1:8000;\n")
    slots = {
        slot: {
            "ADDRESS": f"127.0.0.1:{port}",
            "HEALTH_CHECK_URL": f"http://127.0.0.1:{port}/health/",
            "ENVIRONMENT": {"WEB_PORT": str(port)},
        }
        for slot, port in (("blue", 8001), ("green", 8002))
    }
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "PROXY": {
            "KIND": "nginx",
            "ROUTE_FILE": str(route),
            "ADDRESS": "127.0.0.1:8000",
            "TEST_COMMAND": ["nginx", "-t"],
            "RELOAD_COMMAND": ["nginx", "-s", "reload"],
            "DRAIN_TIMEOUT": 0,
            "SLOTS": slots,
        },
    }
    monkeypatch.setattr("deploy_ops.proxy.nginx.run", recording)
    monkeypatch.setattr(ComposeRuntime, "slots_running", lambda self: [])
    # The site's table of applied migrations (its database is not a Django connection here): every
    # one this project knows, so the target's plan is the sample app's notes.0001_initial, a CreateModel.
    known = sorted(f"{app}.{name}" for app, name in MigrationLoader(None, ignore_no_migrations=True).graph.nodes)
    monkeypatch.setattr("deploy_ops.pipeline.applied_migrations", lambda: known)
    # The target classifies its plan with its own manage.py, which finds deploy_ops through this (as .env gives it).
    monkeypatch.setenv("EXTRA_PYTHONPATH", demo.deploy_ops_source())
    return site, recording, route


BLUE = "docker compose -p seqtest-blue"


def test_a_zero_downtime_deploy_migrates_and_starts_the_new_release_beside_the_old_then_switches_then_stops_the_old(blue_green):
    site, recording, route = blue_green
    new = site.commit_change(release("2"), "Release 2")
    exit_code, commands = run_deploy(site, recording)
    assert exit_code == EXIT_OK
    stages = deploy_sequence(site.initial_sha, new)
    assert commands == in_order(stages, ["checkout", "build", "collectstatic", "migrate"]) + [
        f"docker image tag seqtest-web:{new[:12]} seqtest-blue-web",
        f"{BLUE} up --detach --no-deps --no-build --wait --wait-timeout 30 web",
        f"{BLUE} exec -T web python manage.py check",
        f"{BLUE} exec -T web python manage.py healthcheck --gate --skip-services",
        "nginx -t",
        "nginx -s reload",
        STOP,
    ]
    assert route.read_text().startswith("# deploy_ops: 127.0.0.1:8001")
    assert DeploymentRecord.objects.get(kind="deploy").strategy == "zero-downtime"


def test_a_zero_downtime_deploy_that_fails_its_health_check_removes_the_new_release_and_never_touches_the_proxy_or_the_old_release(
    blue_green,
):
    site, recording, route = blue_green
    new = site.commit_change(release("2"), "Release 2")
    recording.bad_health_sha = new
    exit_code, commands = run_deploy(site, recording)
    assert exit_code == EXIT_ROLLED_BACK
    stages = deploy_sequence(site.initial_sha, new)
    assert commands == in_order(stages, ["checkout", "build", "collectstatic", "migrate"]) + [
        f"docker image tag seqtest-web:{new[:12]} seqtest-blue-web",
        f"{BLUE} up --detach --no-deps --no-build --wait --wait-timeout 30 web",
        f"git checkout --quiet --detach {site.initial_sha}",
        f"{BLUE} down --timeout 5",
        f"docker image tag seqtest-web:{site.initial_sha[:12]} seqtest-web",
        f"{ONE_OFF} collectstatic --noinput",
    ]
    assert route.read_text().startswith("# deploy_ops: 127.0.0.1:8000")
    record = DeploymentRecord.objects.get(kind="deploy")
    assert "The database is not restored: the migrations that ran beside the old release are backward compatible" in record.rollback_reason


def test_the_dry_run_of_a_zero_downtime_deploy_shows_exactly_the_commands_it_runs_and_the_strategy(blue_green):
    site, recording, route = blue_green
    site.commit_change(release("2"), "Release 2")
    planned: list[tuple[str, str]] = []
    lines: list[str] = []
    dry = Deployer(
        DeployOptions(dry_run=True),
        report=lambda line, level=1: lines.append(line),
        progress=lambda stage, event, detail: planned.append((stage, detail)) if event == PLANNED else None,
    )
    assert dry.run() == EXIT_OK
    recording.commands.clear()

    exit_code, commands = run_deploy(site, recording)

    assert exit_code == EXIT_OK
    assert "Strategy: zero-downtime, because every migration that runs before the switch is backward compatible." in lines
    shown_commands = [detail for _, detail in planned if detail.startswith(("git ", "docker "))]
    # The proxy's own commands (nginx -t, the reload) run inside the switch, shown by its description.
    ran = [command for command in commands if not command.startswith(("git fetch", "nginx "))]
    assert [line.replace("deploy_ops.record=none", "deploy_ops.record=RECORD") for line in shown_commands] == ran
    assert (
        "switch",
        "nginx sends new requests to the new release in slot blue (127.0.0.1:8001), then waits for its old workers",
    ) in planned
