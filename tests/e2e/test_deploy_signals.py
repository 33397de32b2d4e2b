"""The deploy's signals, received in the deploying process: a Deployer run in-process against the
sample site (commands runtime), its backups taken of a SQLite file database."""

import subprocess

import pytest

from deploy_ops import signals
from deploy_ops.exceptions import EXIT_OK, EXIT_ROLLED_BACK
from deploy_ops.pipeline import Deployer, DeployOptions
from tests.e2e.helpers import wait_for
from tests.fixtures.sample_site import health_fails, release

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def received():
    found = []

    def receiver(signal):
        def record(sender, **kwargs):
            found.append((signal, sender, kwargs))

        return record

    handlers = {name: receiver(name) for name in ("pre_deploy", "post_deploy", "deploy_failed", "rollback_finished")}
    for name, handler in handlers.items():
        getattr(signals, name).connect(handler)
    yield found
    for name, handler in handlers.items():
        getattr(signals, name).disconnect(handler)


@pytest.fixture
def serving(sample_site, settings, tmp_path):
    ops = sample_site.use_commands(HEALTH_CHECK_RETRIES=5, HEALTH_CHECK_DELAY=0.5)
    sample_site.manage("migrate", "--verbosity", "0")
    subprocess.run(ops["COMMANDS"]["start"], cwd=sample_site.production, check=True, capture_output=True)
    wait_for(lambda: sample_site.get("/")[0] == 200, timeout=30)
    settings.DATABASES = {
        **settings.DATABASES,
        "site": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(sample_site.production / "db.sqlite3")},
    }
    settings.DEPLOY_OPS = {**ops, "BACKUP_DATABASE": "site"}
    return sample_site


def test_a_good_deploy_sends_pre_deploy_then_post_deploy_with_its_record(serving, received):
    serving.commit_change(release("2"), "Release 2")
    assert Deployer(DeployOptions()).run() == EXIT_OK
    assert [(name, sender) for name, sender, _ in received] == [
        ("pre_deploy", "deploy_ops.pipeline"),
        ("post_deploy", "deploy_ops.pipeline"),
    ]
    assert received[1][2]["record"].status == "succeeded"


def test_a_failed_deploy_sends_deploy_failed_then_rollback_finished(serving, received):
    serving.commit_change(health_fails(), "Unhealthy release")
    assert Deployer(DeployOptions()).run() == EXIT_ROLLED_BACK
    assert [name for name, _, _ in received] == ["pre_deploy", "deploy_failed", "rollback_finished"]
    assert "Not healthy" in str(received[1][2]["error"])
    assert received[2][2]["succeeded"] is True
    assert received[2][2]["record"].status == "rolled_back"
