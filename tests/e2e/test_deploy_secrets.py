"""A release that prints settings.DATABASES leaks its password nowhere: journal, records, log, channels, output."""

import json
import uuid
from urllib.parse import quote

import pytest

from tests.e2e.helpers import deploy, events, failure_text, last_record
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.databases import POSTGRES, _postgres_admin

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

HEALTH_TOKEN = "health-token-" + uuid.uuid4().hex[:8]

LEAKY_MIGRATION = """import sys

from django.conf import settings
from django.db import migrations


def leak(apps, schema_editor):
    print("DATABASES =", settings.DATABASES)
    print("DATABASES =", settings.DATABASES, file=sys.stderr)
    raise RuntimeError(f"cannot migrate with {settings.DATABASES['default']!r}")


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [migrations.RunPython(leak, migrations.RunPython.noop)]
"""


@pytest.fixture
def postgres_with_password(postgres_database):
    """The test database, owned by a new role that has a real password; yields (DATABASE_URL, password)."""
    role = f"deploy_ops_role_{uuid.uuid4().hex[:8]}"
    password = f"Pg+{uuid.uuid4().hex[:12]}#!"
    created = _postgres_admin(
        f"CREATE ROLE {role} LOGIN PASSWORD '{password}'; ALTER DATABASE \"{postgres_database['NAME']}\" OWNER TO {role}"
    )
    assert created.returncode == 0, created.stderr
    yield f"postgres://{role}:{quote(password, safe='')}@{POSTGRES['HOST']}:{POSTGRES['PORT']}/{postgres_database['NAME']}", password
    _postgres_admin(f'DROP DATABASE IF EXISTS "{postgres_database["NAME"]}" WITH (FORCE)')
    _postgres_admin(f"DROP ROLE IF EXISTS {role}")


def everything_stored_in_the_database(site) -> str:
    script = (
        "import json; from deploy_ops.models import DeploymentRecord as R, DeploymentStage as S; "
        "print(json.dumps([list(R.objects.values()), list(S.objects.values())], default=str))"
    )
    return site.manage("shell", "--verbosity", "0", "-c", script)


def test_a_migration_that_prints_settings_databases_leaks_the_password_nowhere(sample_site, postgres_with_password, http_receiver):
    database_url, password = postgres_with_password
    channels = [
        {"BACKEND": "deploy_ops.notifications.slack.SlackChannel", "WEBHOOK_URL": f"{http_receiver.url}/slack/T0/B0/slack-token"},
        {"BACKEND": "deploy_ops.notifications.webhook.WebhookChannel", "URL": f"{http_receiver.url}/hook"},
    ]
    serving_release_1(
        sample_site,
        database_url,
        NOTIFICATIONS=channels,
        HEALTH_TOKEN=HEALTH_TOKEN,
        HEALTH_CHECK_URL=sample_site.url(f"/health/?token={HEALTH_TOKEN}"),
    )
    sample_site.commit_change({"notes/migrations/0002_leak.py": LEAKY_MIGRATION}, "Release whose migration prints the settings")

    finished = deploy(sample_site)

    assert finished.returncode == 1, failure_text(finished)
    assert events(sample_site) == ["INFO", "ERROR", "ROLLBACK_SUCCESS"]
    migrate = next(stage for stage in last_record(sample_site)["stages"] if stage["name"] == "migrate")
    assert "'PASSWORD': '***'" in migrate["output_tail"]  # the output was kept, masked
    stored = {
        "journal": (sample_site.production / "logs" / "deployments.jsonl").read_text(),
        "notifications.log": (sample_site.production / "logs" / "notifications.log").read_text(),
        "the database records": everything_stored_in_the_database(sample_site),
        "Slack and the webhook": json.dumps([request.body.decode() for request in http_receiver.wait_for(6)]),
        "the deploy's output": finished.stdout + finished.stderr,
    }
    for secret in (password, quote(password, safe=""), HEALTH_TOKEN):
        for where, text in stored.items():
            assert secret not in text, f"{secret!r} is in {where}"
    assert (sample_site.production / "logs").stat().st_mode & 0o777 == 0o700
    assert (sample_site.production / "logs" / "deployments.jsonl").stat().st_mode & 0o777 == 0o600
