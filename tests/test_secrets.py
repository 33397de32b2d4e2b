"""Secrets are masked before anything is kept or sent: the record, the journal, the log, every channel."""

import json
from dataclasses import replace
from urllib.parse import quote

import django
import pytest

from deploy_ops.audit import Recorder, compact_journal, journal_path
from deploy_ops.models import DeploymentRecord, DeploymentStage
from deploy_ops.notifications import Level, build_event, send
from deploy_ops.notifications.log import log_path
from deploy_ops.secrets import known_secrets, mask

DB_PASSWORD = "db-Pa55'word!"
SMTP_PASSWORD = "smtp-secret-4711"
HEALTH_TOKEN = "health-token-0815"
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")

SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxbSECRETTOKEN"
WEBHOOK_SECRET = "whsec-very-secret-value"


@pytest.fixture
def secrets_configured(settings, ops_dirs, http_receiver):
    settings.DATABASES = {
        **settings.DATABASES,
        "reports": {"ENGINE": "django.db.backends.postgresql", "NAME": "reports", "PASSWORD": DB_PASSWORD},
    }
    if django.VERSION >= (6, 1):  # MAILERS replaces EMAIL_HOST_PASSWORD (which is then unavailable)
        settings.MAILERS = {
            "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {"host": "mail", "password": SMTP_PASSWORD}}
        }
    else:
        settings.EMAIL_HOST_PASSWORD = SMTP_PASSWORD
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "HEALTH_TOKEN": HEALTH_TOKEN,
        "NOTIFICATIONS": [
            {"BACKEND": "deploy_ops.notifications.slack.SlackChannel", "WEBHOOK_URL": http_receiver.url + SLACK_PATH},
            {"BACKEND": "deploy_ops.notifications.webhook.WebhookChannel", "URL": http_receiver.url + "/hook", "SECRET": WEBHOOK_SECRET},
        ],
    }
    return http_receiver


def every_spelling() -> list[str]:
    values = [DB_PASSWORD, SMTP_PASSWORD, HEALTH_TOKEN, SLACK_PATH, WEBHOOK_SECRET]
    return values + [quote(value, safe="") for value in values] + [repr(DB_PASSWORD)[1:-1]]


def assert_no_secret(text: str) -> None:
    for secret in every_spelling():
        assert secret not in text, f"{secret!r} leaked"


# What a careless migration prints: the settings, a DATABASE_URL, a health URL with its token.
LEAKY_OUTPUT = (
    f"DATABASES = {{'reports': {{'NAME': 'reports', 'PASSWORD': {DB_PASSWORD!r}}}}}\n"
    f"DATABASE_URL=postgres://app:{quote(DB_PASSWORD, safe='')}@127.0.0.1:5432/reports\n"
    "REPLICA_URL=mysql://reader:an-unconfigured-password@replica:3306/app\n"
    f"smtp login with {SMTP_PASSWORD}; webhook signed with {WEBHOOK_SECRET}\n"
    "GET http://127.0.0.1:8000/health/?format=json&token=a-token-only-in-a-url answered 500\n"
    f"X-Health-Token: {HEALTH_TOKEN}\n"
)


def test_mask_hides_every_known_secret_in_each_spelling_and_any_url_password_or_token(secrets_configured):
    masked = mask(LEAKY_OUTPUT)
    assert_no_secret(masked)
    assert "an-unconfigured-password" not in masked and "a-token-only-in-a-url" not in masked
    assert "postgres://app:***@127.0.0.1:5432/reports" in masked
    assert "mysql://reader:***@replica:3306/app" in masked
    assert "/health/?format=json&token=*** answered 500" in masked
    # What is not secret stays readable.
    assert "'NAME': 'reports'" in masked and "http://127.0.0.1:8000/health/" in masked


def test_the_options_of_a_django_6_1_mailer_are_known_secrets(settings):
    settings.MAILERS = {
        "default": {"BACKEND": "django.core.mail.backends.smtp.EmailBackend", "OPTIONS": {"host": "mail", "password": "mailer-pw-1"}}
    }
    assert "mailer-pw-1" in known_secrets()
    assert "mail" not in known_secrets()


@pytest.mark.django_db
def test_a_stage_output_and_the_record_fields_are_masked_in_the_journal_and_the_database(secrets_configured):
    recorder = Recorder(DeploymentRecord.Kind.DEPLOY, requested_ref="main")
    stage = recorder.start_stage("migrate")
    # Long enough that the tail cuts into the output: a secret must not survive half-cut either.
    recorder.finish_stage(stage, DeploymentStage.Status.FAILED, "x" * 1990 + LEAKY_OUTPUT)
    recorder.finish(DeploymentRecord.Status.ROLLED_BACK, error=LEAKY_OUTPUT, rollback_reason=LEAKY_OUTPUT, warnings=LEAKY_OUTPUT)

    journal = journal_path().read_text()
    assert_no_secret(journal)
    assert DB_PASSWORD[:8] not in journal and "***" in journal
    saved = DeploymentRecord.objects.get(id=recorder.record.id)
    for text in (saved.error, saved.rollback_reason, saved.warnings, saved.stages.get().output_tail):
        assert_no_secret(text)
        assert DB_PASSWORD[:8] not in text
    assert_no_secret(recorder.record.error)  # what signals and notifications see in memory


@pytest.mark.django_db
def test_no_channel_and_not_the_log_sees_a_secret_even_from_a_record_saved_by_hand(secrets_configured):
    # A record written straight to the database (not through the Recorder) still leaks nothing.
    record = DeploymentRecord.objects.create(
        kind=DeploymentRecord.Kind.DEPLOY,
        status=DeploymentRecord.Status.FAILED,
        failed_stage="migrate",
        error=LEAKY_OUTPUT,
        rollback_reason=LEAKY_OUTPUT,
        requested_ref="main",
        started_at="2026-01-01T00:00:00Z",
    )
    deliveries = send(build_event(Level.ERROR, record))

    assert all(delivery.ok for delivery in deliveries), deliveries
    received = secrets_configured.wait_for(2)
    assert_no_secret(log_path().read_text())
    for request in received:
        assert_no_secret(request.body.decode())
    webhook = next(request for request in received if request.path == "/hook").json()
    assert "postgres://app:***@" in webhook["error_tail"]


def test_a_failed_delivery_names_no_secret_of_any_channel(secrets_configured, refused_url, settings, db):
    settings.DEPLOY_OPS["NOTIFICATIONS"][1].update(URL=refused_url + "?token=hook-token-1", RETRIES=0)
    record = DeploymentRecord(kind="deploy", requested_ref="main", started_at="2026-01-01T00:00:00Z")
    deliveries = send(build_event(Level.INFO, record))
    failed = [delivery for delivery in deliveries if not delivery.ok]
    assert failed and all("hook-token-1" not in delivery.error for delivery in failed)
    assert "hook-token-1" not in json.dumps([line for line in log_path().read_text().splitlines()])


def test_an_event_built_by_other_code_is_masked_before_any_channel_sees_it(secrets_configured, db):
    record = DeploymentRecord(kind="deploy", requested_ref="main", started_at="2026-01-01T00:00:00Z")
    event = replace(build_event(Level.ERROR, record), error_tail=LEAKY_OUTPUT, message=LEAKY_OUTPUT)

    send(event)

    assert_no_secret(log_path().read_text())
    for request in secrets_configured.wait_for(2):
        assert_no_secret(request.body.decode())


def test_compaction_masks_what_an_older_version_wrote_into_the_journal(secrets_configured):
    journal_path().parent.mkdir(parents=True)
    snapshot = {"record": {"id": "old", "status": "succeeded", "error": LEAKY_OUTPUT}, "stages": []}
    journal_path().write_text(json.dumps(snapshot) + "\n")

    assert compact_journal() is True
    assert_no_secret(journal_path().read_text())


def test_a_secret_printed_as_a_value_is_masked_whatever_it_is_and_however_short(settings):
    settings.DATABASES = {**settings.DATABASES, "tiny": {"ENGINE": "django.db.backends.postgresql", "NAME": "tiny", "PASSWORD": "db"}}
    printed = (
        "{'NAME': 'tiny', 'PASSWORD': 'db'}\n"
        '{"api_token": "unknown-to-deploy-ops", "count": 3}\n'
        "EMAIL_HOST_PASSWORD=hunter2 ./manage.py migrate\n"
        "postgres://app:db@127.0.0.1/tiny\n"
    )
    masked = mask(printed)
    assert masked == (
        "{'NAME': 'tiny', 'PASSWORD': '***'}\n"
        '{"api_token": "***", "count": 3}\n'
        "EMAIL_HOST_PASSWORD=*** ./manage.py migrate\n"
        "postgres://app:***@127.0.0.1/tiny\n"
    )
    # Too short to be replaced everywhere: "db.sqlite3" stays readable.
    assert mask("db.sqlite3") == "db.sqlite3"


@pytest.mark.django_db
def test_a_secret_equal_to_a_word_deploy_ops_writes_leaves_the_record_intact(settings, ops_dirs):
    settings.DATABASES = {**settings.DATABASES, "odd": {"ENGINE": "django.db.backends.postgresql", "NAME": "odd", "PASSWORD": "deploy"}}
    recorder = Recorder(DeploymentRecord.Kind.DEPLOY, requested_ref="main")
    stage = recorder.start_stage("checkout")
    recorder.finish_stage(stage, DeploymentStage.Status.SUCCEEDED, "the deploy password is deploy")
    recorder.finish(DeploymentRecord.Status.SUCCEEDED)

    [snapshot] = [json.loads(line) for line in journal_path().read_text().splitlines()][-1:]
    assert (snapshot["record"]["kind"], snapshot["record"]["status"]) == ("deploy", "succeeded")
    assert snapshot["stages"][0]["output_tail"] == "the *** password is ***"
    assert DeploymentRecord.objects.get(id=recorder.record.id).kind == "deploy"
