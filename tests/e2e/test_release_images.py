"""A release is an image (issue 10), on a real Docker engine: kept by commit, started again by a
rollback without a build, pruned to what must stay; migrations run before the new code answers;
the dry run shows what a deploy runs.  Every image a test tags is removed by its teardown
(compose_down removes a project's <project>-<service>:<commit12> tags; the per-test base tag below)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from deploy_ops import runner
from deploy_ops.backups import create_backup
from deploy_ops.exceptions import EXIT_OK
from deploy_ops.models import DeploymentRecord
from deploy_ops.pipeline import Deployer, DeployOptions, releases_to_keep
from deploy_ops.recovery import PLANNED
from deploy_ops.runtimes.compose import ComposeRuntime
from tests.e2e.helpers import deploy, failure_text, last_record, manage, serve_release_1_on_compose
from tests.fixtures.docker import BASE_IMAGE
from tests.fixtures.sample_site import data_changing_migration, health_fails, postgres_url, release

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def docker(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *arguments], capture_output=True, text=True)


def tags_of(repository: str) -> set[str]:
    listed = docker("image", "ls", "--format", "{{.Tag}}", repository)
    return set(listed.stdout.split())


@pytest.fixture
def serving_release_1(sample_site, docker_engine, postgres_database):
    return serve_release_1_on_compose(sample_site, docker_engine, postgres_url(postgres_database))


@pytest.mark.django_db(transaction=True)
def test_pruning_keeps_the_newest_releases_the_current_one_its_rollback_target_and_the_backed_up_ones(
    sample_site, docker_engine, settings, tmp_path
):
    ops = sample_site.use_compose(docker_engine, "sqlite:///db.sqlite3")
    database = tmp_path / "site.sqlite3"
    sqlite3.connect(database).close()
    settings.DATABASES = {**settings.DATABASES, "site": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(database)}}
    settings.DEPLOY_OPS = {**ops, "BACKUP_DATABASE": "site", "KEEP_RELEASES": 2}
    project = ops["COMPOSE_PROJECT"]
    deployed = [f"{n:x}" * 40 for n in range(1, 8)]  # seven releases, oldest first
    failed = "f" * 40
    now = timezone.now()
    for age, sha in enumerate(reversed(deployed)):
        DeploymentRecord.objects.create(
            to_commit=sha, status=DeploymentRecord.Status.SUCCEEDED, started_at=now - timedelta(minutes=age + 1)
        )
    DeploymentRecord.objects.create(to_commit=failed, status=DeploymentRecord.Status.ROLLED_BACK, started_at=now)
    # A kept backup was taken while production was at release 1: that release's schema may come back.
    assert create_backup().commit == sample_site.initial_sha
    for sha in [*deployed, failed, sample_site.initial_sha]:
        assert docker("image", "tag", BASE_IMAGE, f"{project}-web:{sha[:12]}").returncode == 0

    current, rollback_target = deployed[6], deployed[3]
    removed = ComposeRuntime(sample_site.production).prune_release_images({sha[:12] for sha in releases_to_keep(current, rollback_target)})

    kept = {sha[:12] for sha in (deployed[6], deployed[5], deployed[3], sample_site.initial_sha)}
    assert tags_of(f"{project}-web") == kept
    assert sorted(removed) == sorted(f"{project}-web:{sha[:12]}" for sha in (deployed[0], deployed[1], deployed[2], deployed[4], failed))
    # Untagged only: the base image other tests build on is still there.
    assert docker("image", "inspect", BASE_IMAGE).returncode == 0


@pytest.fixture
def removable_base_tag():
    """A tag of the test base image that this test alone uses and removes: a release built FROM it
    cannot be built again once it is gone.  Its registry part is 127.0.0.1:9, so the pull a build
    then tries is refused on this host (no traffic elsewhere)."""
    tag = f"127.0.0.1:9/deploy-ops-base-{uuid.uuid4().hex[:10]}:1"
    assert docker("image", "tag", BASE_IMAGE, tag).returncode == 0
    yield tag
    docker("image", "rm", tag)


@pytest.mark.postgres
def test_a_rollback_starts_the_kept_images_of_a_release_that_can_no_longer_be_built(
    sample_site, serving_release_1, docker_engine, removable_base_tag
):
    dockerfile = (sample_site.work / "Dockerfile").read_text().replace(f"FROM {BASE_IMAGE}", f"FROM {removable_base_tag}")
    release_2 = sample_site.commit_change({"Dockerfile": dockerfile, **release("2")}, "Release 2, built FROM a base tag that will go")
    deployed = deploy(sample_site)
    assert deployed.returncode == 0, failure_text(deployed)
    project = serving_release_1["COMPOSE_PROJECT"]
    assert last_record(sample_site)["record"]["images"] == f"{project}-web:{release_2[:12]}"
    assert docker("image", "rm", removable_base_tag).returncode == 0
    listed = manage(sample_site, "rollback", "--list-commits", "--json")
    # Release 1 was started by hand, before deploy_ops kept images: it would have to be built.
    assert {commit["sha"]: commit["images_kept"] for commit in json.loads(listed.stdout)} == {
        release_2: True,
        sample_site.initial_sha: False,
    }
    text = manage(sample_site, "rollback", "--list-commits").stdout
    assert f"{release_2[:12]}  images kept" in text and f"{sample_site.initial_sha[:12]}  would build" in text

    sample_site.commit_change(health_fails(), "Unhealthy release 3")
    finished = deploy(sample_site)

    assert finished.returncode == 1, failure_text(finished)
    assert sample_site.production_head() == release_2
    assert sample_site.get("/") == (200, "release 2\nnotes 2\n")
    snapshot = last_record(sample_site)
    [restore] = [stage for stage in snapshot["stages"] if stage["name"] == "restore images"]
    assert restore["output_tail"] == f"started from the kept images, no build: {project}-web:{release_2[:12]}"
    assert snapshot["record"]["images"] == f"{project}-web:{release_2[:12]}"
    # The rebuild it replaces really would have failed.
    rebuilt = subprocess.run([*docker_engine, "build"], cwd=sample_site.production, capture_output=True, text=True)
    assert rebuilt.returncode != 0


NEEDS_ITS_MIGRATIONS = """
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

_executor = MigrationExecutor(connection)
if _executor.migration_plan(_executor.loader.graph.leaf_nodes()):
    sys.exit("This release refuses to serve before its migrations ran")
"""


@pytest.mark.postgres
def test_a_migration_the_new_code_depends_on_has_run_before_the_new_web_container_answers(sample_site, serving_release_1):
    wsgi = (sample_site.work / "sitecfg" / "wsgi.py").read_text() + NEEDS_ITS_MIGRATIONS
    # The web container loads the app before it answers (gunicorn --preload): unmigrated, it exits.
    release_2 = sample_site.commit_change({"sitecfg/wsgi.py": wsgi, **data_changing_migration(), **release("2")}, "Release 2 needs 0002")

    finished = deploy(sample_site)

    assert finished.returncode == 0, failure_text(finished)
    assert sample_site.production_head() == release_2
    assert sample_site.get("/") == (200, "release 2\nnotes 2\n")
    assert sample_site.notes() == ["changed by 0002", "changed by 0002"]
    stages = [stage["name"] for stage in last_record(sample_site)["stages"]]
    assert stages.index("migrate") < stages.index("start")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_the_dry_run_shows_exactly_the_commands_a_deploy_then_runs(
    sample_site, serving_release_1, postgres_database, settings, monkeypatch
):
    settings.DATABASES = {**settings.DATABASES, "site": postgres_database}
    settings.DEPLOY_OPS = {**serving_release_1, "BACKUP_DATABASE": "site"}
    sample_site.commit_change(release("2"), "Release 2")
    shown: list[str] = []
    notes: list[str] = []

    def progress(stage, event, detail):
        if event == PLANNED:
            shown.append(detail)

    assert Deployer(DeployOptions(dry_run=True), report=lambda line, level=1: notes.append(line), progress=progress).run() == EXIT_OK
    # Release 1 was started by hand, so no image of it is kept: the plan says a rollback would build.
    project = serving_release_1["COMPOSE_PROJECT"]
    assert (
        f"A rollback would bring back {sample_site.initial_sha[:12]}: BUILD it "
        f"again: its images are gone ({project}-web:{sample_site.initial_sha[:12]})." in notes
    )

    ran: list[str] = []
    real_run = runner.run

    def spying(command, **options):
        ran.append(command.display())
        return real_run(command, **options)

    for module in ("deploy_ops.runner", "deploy_ops.gitrepo", "deploy_ops.runtimes.compose"):
        monkeypatch.setattr(f"{module}.run", spying)
    deployer = Deployer(DeployOptions())
    assert deployer.run() == EXIT_OK

    # Left out: reads (the project's configuration) and the preflight's fetch, which a dry run makes too.
    steps = [line for line in ran if " config --format json" not in line and not line.startswith("git fetch")]
    commands = [line for line in shown if line.startswith(("git ", "docker "))]
    assert [line.replace("deploy_ops.record=none", f"deploy_ops.record={deployer.recorder.record.id}") for line in commands] == steps
