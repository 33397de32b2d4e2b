"""Notifications against real receivers on 127.0.0.1: Slack- and webhook-shaped HTTP servers, an SMTP server."""

import json
import logging
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from deploy_ops.exceptions import ConfigurationError
from deploy_ops.models import DeploymentRecord, DeploymentStage
from deploy_ops.notifications import Channel, Level, build_event, check_channels, send, send_test_event, verify_signature
from deploy_ops.notifications.log import log_path
from deploy_ops.notifications.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

SLACK = "deploy_ops.notifications.slack.SlackChannel"
WEBHOOK = "deploy_ops.notifications.webhook.WebhookChannel"
EMAIL = "deploy_ops.notifications.email.EmailChannel"
RECORDING = "tests.test_notifications.RecordingChannel"
SLACK_TOKEN = "/services/T0SECRET/B0SECRET/xoxbSECRETTOKEN"
WEBHOOK_SECRET = "whsec-very-secret-value"
# Retry fast in tests; the budgets still apply.
FAST = {"BACKOFF": 0.05, "ATTEMPT_TIMEOUT": 1}


class RecordingChannel(Channel):
    """A custom channel, loaded by dotted path, that keeps what it was asked to deliver."""

    name = "recording"
    delivered: list = []

    def build_payload(self, event):
        if self.options.get("EXPLODE"):
            raise RuntimeError("custom channel exploded")
        return {"title": event.title, "level": event.level.name}

    def deliver(self, payload):
        time.sleep(self.options.get("SLEEP", 0))
        RecordingChannel.delivered.append(payload)


@pytest.fixture(autouse=True)
def _fresh_recording_channel():
    RecordingChannel.delivered = []


def configure(settings, *channels, **extra):
    settings.DEPLOY_OPS = {
        **settings.DEPLOY_OPS,
        "PROJECT_NAME": "certificates",
        "ENVIRONMENT": "production",
        **extra,
        "NOTIFICATIONS": list(channels),
    }


@pytest.fixture
def failed_record(db, ops_dirs):
    started = timezone.now() - timedelta(seconds=42)
    record = DeploymentRecord.objects.create(
        kind=DeploymentRecord.Kind.DEPLOY,
        status=DeploymentRecord.Status.FAILED,
        requested_ref="main",
        from_commit="a" * 40,
        from_summary="Fix the certificate PDF layout",
        to_commit="b" * 40,
        to_summary="Add the new signature field",
        backup_name="backup_20250109_120000.sql.gz",
        failed_stage="migrate",
        error="\n".join(f"traceback line {number}" for number in range(1, 31)) + "\ndjango.db.utils.ProgrammingError: column missing",
        host="prod-1",
        started_at=started,
        finished_at=started + timedelta(seconds=42),
        duration=42.0,
    )
    for position, (name, status, duration) in enumerate(
        [("backup", "succeeded", 3.2), ("update_code", "succeeded", 1.1), ("migrate", "failed", 0.4)], 1
    ):
        DeploymentStage.objects.create(record=record, position=position, name=name, status=status, started_at=started, duration=duration)
    return record


def log_lines():
    return [json.loads(line) for line in log_path().read_text(encoding="utf-8").splitlines()]


def by_channel(deliveries):
    return {delivery.channel: delivery for delivery in deliveries}


# -- the event --------------------------------------------------------------------------------
def test_an_event_carries_commits_timeline_failed_stage_error_tail_and_admin_link(failed_record, settings):
    configure(settings, ADMIN_BASE_URL="https://ops.example.org/")
    event = build_event(Level.ERROR, failed_record)
    assert event.title == f"Deploy of {'b' * 12} failed at stage migrate"
    assert (event.project, event.environment, event.host) == ("certificates", "production", "prod-1")
    assert (event.from_commit, event.from_summary) == ("a" * 40, "Fix the certificate PDF layout")
    assert (event.to_commit, event.to_summary) == ("b" * 40, "Add the new signature field")
    assert [(stage.name, stage.status, stage.duration) for stage in event.stages] == [
        ("backup", "succeeded", 3.2),
        ("update_code", "succeeded", 1.1),
        ("migrate", "failed", 0.4),
    ]
    assert event.failed_stage == "migrate"
    tail = event.error_tail.splitlines()
    assert len(tail) == 20 and tail[0] == "traceback line 12" and tail[-1] == "django.db.utils.ProgrammingError: column missing"
    assert event.backup_name == "backup_20250109_120000.sql.gz" and event.duration == 42.0
    assert event.admin_url == f"https://ops.example.org/admin/deploy_ops/deploymentrecord/{failed_record.pk}/change/"
    data = json.loads(json.dumps(event.as_dict()))
    assert (
        data["level"] == "ERROR"
        and data["record_id"] == str(failed_record.pk)
        and data["stages"][2] == {"name": "migrate", "status": "failed", "duration": 0.4}
    )


def test_an_event_has_no_admin_link_without_admin_base_url(failed_record, settings):
    configure(settings)
    assert build_event("ROLLBACK_SUCCESS", failed_record).admin_url == ""
    assert build_event("ROLLBACK_SUCCESS", failed_record).title == f"Rolled back to {'a' * 12}"


def test_an_unknown_level_is_refused_with_the_valid_names():
    with pytest.raises(ConfigurationError, match="'loud' is not a notification level; use one of INFO, SUCCESS"):
        Level.parse("loud")


# -- the log channel ----------------------------------------------------------------------------
def test_the_log_channel_appends_one_json_line_per_event_even_with_no_channel_configured(failed_record, settings):
    configure(settings)
    first = send(build_event(Level.INFO, failed_record))
    send(build_event(Level.ERROR, failed_record))
    assert [(delivery.channel, delivery.ok) for delivery in first] == [("log", True)]
    lines = log_lines()
    assert [line["level"] for line in lines] == ["INFO", "ERROR"]
    assert lines[1]["failed_stage"] == "migrate" and lines[1]["project"] == "certificates"


# -- Slack --------------------------------------------------------------------------------------
def test_slack_receives_a_block_kit_message_with_fields_commits_error_timeline_and_button(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN}, ADMIN_BASE_URL="https://ops.example.org")
    deliveries = by_channel(send(build_event(Level.ERROR, failed_record)))
    assert deliveries["slack"].ok and deliveries["slack"].attempts == 1
    [request] = http_receiver.requests
    assert request.path == SLACK_TOKEN
    message = request.json()
    assert message["text"] == f"[certificates/production] ERROR: Deploy of {'b' * 12} failed at stage migrate"
    blocks = message["blocks"]
    assert [block["type"] for block in blocks] == ["header", "section", "section", "section", "section", "section", "context", "actions"]
    assert blocks[0]["text"] == {"type": "plain_text", "text": f":x: ERROR: Deploy of {'b' * 12} failed at stage migrate", "emoji": True}
    assert [field["text"] for field in blocks[1]["fields"]] == [
        "*Project*\ncertificates",
        "*Environment*\nproduction",
        "*Host*\nprod-1",
        "*Status*\ndeploy failed in 42.0s",
    ]
    assert blocks[2]["text"]["text"] == f"*From* `{'a' * 12}` Fix the certificate PDF layout\n*To* `{'b' * 12}` Add the new signature field"
    assert blocks[3]["text"]["text"] == "*Failed stage:* `migrate`"
    assert blocks[4]["text"]["text"].startswith("```traceback line 12\n") and blocks[4]["text"]["text"].endswith("column missing```")
    assert blocks[5]["text"]["text"] == "*Timeline*\nbackup — succeeded (3.2s)\nupdate_code — succeeded (1.1s)\nmigrate — failed (0.4s)"
    assert blocks[7]["elements"][0]["url"] == f"https://ops.example.org/admin/deploy_ops/deploymentrecord/{failed_record.pk}/change/"


def test_slack_answering_500_then_200_is_retried_and_succeeds(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN, **FAST})
    http_receiver.answer(500)
    slack = by_channel(send(build_event(Level.SUCCESS, failed_record)))["slack"]
    assert (slack.ok, slack.attempts) == (True, 2)
    assert len(http_receiver.requests) == 2 and http_receiver.requests[0].body == http_receiver.requests[1].body


# 502 and 504 come from a proxy in front of Slack; slack-sdk's own handler retries only 500 and 503.
@pytest.mark.parametrize("answers", [(429, 429), (502, 504)], ids=["rate-limited", "proxy-errors"])
def test_slack_rate_limits_and_any_5xx_are_retried(failed_record, settings, http_receiver, answers):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN, **FAST})
    http_receiver.answer(*answers)
    slack = by_channel(send(build_event(Level.SUCCESS, failed_record)))["slack"]
    assert (slack.ok, slack.attempts) == (True, 3)


def test_slack_waits_as_long_as_a_429s_retry_after_asks(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN, **FAST})
    http_receiver.answer(429)
    http_receiver.retry_after = "1"
    started = time.monotonic()
    slack = by_channel(send(build_event(Level.SUCCESS, failed_record)))["slack"]
    assert (slack.ok, slack.attempts) == (True, 2)
    assert time.monotonic() - started >= 1.0


def test_slack_gives_up_at_once_when_retry_after_would_overrun_the_timeout(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN, "TIMEOUT": 2, **FAST})
    http_receiver.answer(429)
    http_receiver.retry_after = "30"
    started = time.monotonic()
    slack = by_channel(send(build_event(Level.SUCCESS, failed_record)))["slack"]
    assert time.monotonic() - started < 1.5
    assert (slack.ok, slack.attempts) == (False, 1)
    assert slack.error == "Slack answered 429 (rate limited); gave up after 1 attempt to stay within the 2s TIMEOUT."
    assert len(http_receiver.requests) == 1


def test_a_hanging_slack_gets_shorter_attempts_as_the_budget_runs_out(failed_record, settings, http_receiver):
    http_receiver.hang = True
    configure(
        settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN, "TIMEOUT": 1.5, "BACKOFF": 0.1, "ATTEMPT_TIMEOUT": 1}
    )
    started = time.monotonic()
    slack = by_channel(send(build_event(Level.ERROR, failed_record)))["slack"]
    # Two full attempts would take 2.1 s; the second one gets only what is left of the 1.5 s.
    assert time.monotonic() - started < 1.9
    assert (slack.ok, slack.attempts) == (False, 2)
    assert slack.error.startswith("Slack did not answer within 0.")
    assert slack.error.endswith("; gave up after 2 attempts to stay within the 1.5s TIMEOUT.")


def test_slack_refusing_with_a_4xx_fails_at_once_without_retrying(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": http_receiver.url + SLACK_TOKEN, **FAST})
    http_receiver.answer(403)
    slack = by_channel(send(build_event(Level.SUCCESS, failed_record)))["slack"]
    assert (slack.ok, slack.attempts, slack.error) == (False, 1, "Slack refused the message with HTTP 403: server_error")
    assert len(http_receiver.requests) == 1


def test_slack_down_gives_a_failed_delivery_within_the_budget_and_never_raises(failed_record, settings, refused_url):
    configure(settings, {"BACKEND": SLACK, "WEBHOOK_URL": refused_url, "RETRIES": 2, "TIMEOUT": 3, **FAST})
    started = time.monotonic()
    deliveries = by_channel(send(build_event(Level.ERROR, failed_record)))
    assert time.monotonic() - started < 3
    slack = deliveries["slack"]
    assert not slack.ok and slack.attempts == 3
    assert slack.error.startswith("could not reach Slack ([Errno") and slack.error.endswith("gave up after 3 attempts.")
    assert deliveries["log"].ok and log_lines()[-1]["level"] == "ERROR"


# -- the webhook --------------------------------------------------------------------------------
def test_the_webhook_posts_the_event_json_with_a_signature_a_receiver_can_verify(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hooks/deploys", "SECRET": WEBHOOK_SECRET})
    event = build_event(Level.ROLLBACK_SUCCESS, failed_record)
    assert by_channel(send(event))["webhook"].ok
    [request] = http_receiver.requests
    assert request.path == "/hooks/deploys" and request.headers["Content-Type"] == "application/json"
    # The level is in the signed body; no header outside the signature carries meaning.
    assert sorted(name.lower() for name in request.headers if name.lower().startswith("x-deployops-")) == sorted(
        [TIMESTAMP_HEADER.lower(), SIGNATURE_HEADER.lower()]
    )
    assert request.json() == json.loads(json.dumps(event.as_dict()))
    timestamp, header = request.headers[TIMESTAMP_HEADER], request.headers[SIGNATURE_HEADER]
    assert abs(int(timestamp) - time.time()) < 60
    assert verify_signature(WEBHOOK_SECRET, timestamp, request.body, header)
    assert not verify_signature("another-secret", timestamp, request.body, header)
    assert not verify_signature(WEBHOOK_SECRET, timestamp, request.body.replace(b"ROLLBACK_SUCCESS", b"SUCCESS"), header)


def test_verify_signature_refuses_a_replay_outside_the_tolerance():
    old = str(int(time.time()) - 301)
    body = b'{"level": "INFO"}'
    assert verify_signature("s", str(int(time.time())), body, signature("s", str(int(time.time())), body))
    assert not verify_signature("s", old, body, signature("s", old, body))
    assert not verify_signature("s", "not-a-number", body, signature("s", "not-a-number", body))


def test_a_hanging_webhook_is_abandoned_within_its_timeout_and_channels_run_concurrently(failed_record, settings, http_receiver):
    http_receiver.hang = True
    configure(
        settings,
        {
            "BACKEND": WEBHOOK,
            "NAME": "hook-a",
            "URL": http_receiver.url + "/a",
            "TIMEOUT": 1.5,
            "RETRIES": 1,
            "BACKOFF": 0.1,
            "ATTEMPT_TIMEOUT": 0.6,
        },
        {
            "BACKEND": WEBHOOK,
            "NAME": "hook-b",
            "URL": http_receiver.url + "/b",
            "TIMEOUT": 1.5,
            "RETRIES": 1,
            "BACKOFF": 0.1,
            "ATTEMPT_TIMEOUT": 0.6,
        },
    )
    started = time.monotonic()
    deliveries = by_channel(send(build_event(Level.ERROR, failed_record)))
    elapsed = time.monotonic() - started
    # Sequential would be about 2 x 1.3s; concurrent is bounded by one budget.
    assert elapsed < 2.0, elapsed
    for name in ("hook-a", "hook-b"):
        assert not deliveries[name].ok and deliveries[name].attempts == 2
        assert deliveries[name].error == "the webhook did not answer within 0.6s; gave up after 2 attempts."
    assert len(http_receiver.requests) == 4


def test_the_webhook_retries_5xx_with_a_fresh_signature_but_not_400(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook", "SECRET": WEBHOOK_SECRET, **FAST})
    http_receiver.answer(503, 200, 400)
    assert by_channel(send(build_event(Level.INFO, failed_record)))["webhook"].attempts == 2
    for request in http_receiver.requests:
        assert verify_signature(WEBHOOK_SECRET, request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER])
    refused = by_channel(send(build_event(Level.INFO, failed_record)))["webhook"]
    assert (refused.ok, refused.attempts, refused.error) == (False, 1, "the webhook refused the event with HTTP 400")
    assert len(http_receiver.requests) == 3


# -- level filter ---------------------------------------------------------------------------------
def test_min_level_skips_lower_events_and_passes_equal_and_higher_ones(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook", "MIN_LEVEL": "warning"})
    results = {level: by_channel(send(build_event(level, failed_record)))["webhook"] for level in Level}
    assert [level.name for level, delivery in results.items() if delivery.skipped] == ["INFO", "SUCCESS"]
    assert results[Level.INFO].ok and results[Level.INFO].error == "below MIN_LEVEL WARNING"
    assert [request.json()["level"] for request in http_receiver.requests] == ["WARNING", "ERROR", "ROLLBACK_SUCCESS", "ROLLBACK_FAILED"]
    # The log channel has no filter.
    assert len(log_lines()) == len(Level)


def test_rollback_failed_reaches_every_channel_whatever_its_min_level(failed_record, settings, http_receiver):
    configure(
        settings,
        {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook", "MIN_LEVEL": "ROLLBACK_FAILED"},
        {"BACKEND": RECORDING, "MIN_LEVEL": "ROLLBACK_FAILED"},
    )
    send(build_event(Level.ROLLBACK_SUCCESS, failed_record))
    deliveries = by_channel(send(build_event(Level.ROLLBACK_FAILED, failed_record)))
    assert deliveries["webhook"].ok and not deliveries["webhook"].skipped and deliveries["recording"].ok
    assert [request.json()["level"] for request in http_receiver.requests] == ["ROLLBACK_FAILED"]
    assert [payload["level"] for payload in RecordingChannel.delivered] == ["ROLLBACK_FAILED"]


# -- email ----------------------------------------------------------------------------------------
def test_email_arrives_by_smtp_with_the_subject_and_every_field(failed_record, settings, smtp_receiver):
    configure(
        settings,
        {"BACKEND": EMAIL, "RECIPIENTS": ["ops@example.org", "lead@example.org"], "FROM_EMAIL": "deploys@example.org"},
        ADMIN_BASE_URL="https://ops.example.org",
    )
    assert by_channel(send(build_event(Level.ERROR, failed_record)))["email"].ok
    [message] = smtp_receiver.messages
    assert message["Subject"] == f"[certificates/production] ERROR: Deploy of {'b' * 12} failed at stage migrate"
    assert message["From"] == "deploys@example.org"
    assert message["X-Envelope-Rcpt"] == "ops@example.org, lead@example.org"
    body = message.get_content()
    for expected in [
        "Project:      certificates",
        "Environment:  production",
        "Host:         prod-1",
        f"From commit:  {'a' * 40} Fix the certificate PDF layout",
        f"To commit:    {'b' * 40} Add the new signature field",
        "Failed stage: migrate",
        "Backup:       backup_20250109_120000.sql.gz",
        "Duration:     42.0s",
        f"Admin:        https://ops.example.org/admin/deploy_ops/deploymentrecord/{failed_record.pk}/change/",
        "  migrate          failed     0.4s",
        "  django.db.utils.ProgrammingError: column missing",
    ]:
        assert expected in body.splitlines(), expected


def test_email_goes_to_admins_when_no_recipients_are_configured(failed_record, settings, smtp_receiver):
    settings.ADMINS = [("Ops", "admin@example.org")]
    configure(settings, {"BACKEND": EMAIL})
    assert by_channel(send(build_event(Level.SUCCESS, failed_record)))["email"].ok
    assert smtp_receiver.messages[0]["X-Envelope-Rcpt"] == "admin@example.org"


def test_email_with_no_recipients_anywhere_fails_with_a_sentence(failed_record, settings):
    settings.ADMINS = []
    configure(settings, {"BACKEND": EMAIL})
    email = by_channel(send(build_event(Level.SUCCESS, failed_record)))["email"]
    assert (email.ok, email.error) == (False, "no recipients: set the channel's RECIPIENTS option or settings.ADMINS.")


# -- secrets --------------------------------------------------------------------------------------
def test_secret_urls_and_tokens_never_reach_the_log_deliveries_or_logging(failed_record, settings, http_receiver, refused_url, caplog):
    caplog.set_level(logging.DEBUG)
    http_receiver.answer(500, 500, 500, 500)
    refused_slack = refused_url.rsplit("/services/", 1)[0] + SLACK_TOKEN
    bad_scheme_slack = "ftp://hooks.example.org" + SLACK_TOKEN + "x"
    webhook_url = http_receiver.url + "/hooks/" + WEBHOOK_SECRET + "-path"
    configure(
        settings,
        {"BACKEND": SLACK, "NAME": "slack-down", "WEBHOOK_URL": refused_slack, "RETRIES": 1, **FAST},
        {"BACKEND": SLACK, "NAME": "slack-bad-url", "WEBHOOK_URL": bad_scheme_slack, "RETRIES": 0},
        {"BACKEND": WEBHOOK, "URL": webhook_url, "SECRET": WEBHOOK_SECRET, "RETRIES": 1, **FAST},
    )
    deliveries = send(build_event(Level.ROLLBACK_FAILED, failed_record))
    assert [delivery.ok for delivery in deliveries] == [True, False, False, False]
    shown = "\n".join(
        [log_path().read_text(), caplog.text] + [delivery.error for delivery in deliveries] + [repr(delivery) for delivery in deliveries]
    )
    assert "SlackRequestError: Invalid URL detected: ***" in shown
    for secret in ("T0SECRET", "xoxbSECRETTOKEN", WEBHOOK_SECRET, "hooks.example.org"):
        assert secret not in shown


# -- custom channels, broken channels -----------------------------------------------------------
def test_a_custom_channel_by_dotted_path_runs_the_fixed_sequence(failed_record, settings):
    configure(settings, {"BACKEND": RECORDING, "NAME": "pager"})
    deliveries = send(build_event(Level.WARNING, failed_record))
    assert [(delivery.channel, delivery.ok, delivery.attempts) for delivery in deliveries] == [("log", True, 1), ("pager", True, 1)]
    assert RecordingChannel.delivered == [{"title": f"Deploy of {'b' * 12} succeeded with warnings", "level": "WARNING"}]


def test_a_channel_that_raises_or_cannot_be_loaded_becomes_a_failed_delivery(failed_record, settings, http_receiver):
    configure(
        settings,
        {"BACKEND": RECORDING, "EXPLODE": True},
        {"BACKEND": "tests.test_notifications.NoSuchChannel"},
        {"BACKEND": SLACK},
        {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/still-sent"},
    )
    deliveries = send(build_event(Level.ERROR, failed_record))
    assert [(delivery.channel, delivery.ok, delivery.error) for delivery in deliveries] == [
        ("log", True, ""),
        ("recording", False, "RuntimeError: custom channel exploded"),
        (
            "channel 1 (tests.test_notifications.NoSuchChannel)",
            False,
            "The notification channel BACKEND 'tests.test_notifications.NoSuchChannel' cannot be imported; check the dotted path.",
        ),
        (
            "channel 2 (deploy_ops.notifications.slack.SlackChannel)",
            False,
            "The notification channel 'slack' needs the option WEBHOOK_URL.",
        ),
        ("webhook", True, ""),
    ]


def test_an_invalid_notifications_setting_is_a_failed_delivery_that_does_not_quote_it(failed_record, settings):
    settings.DEPLOY_OPS = {**settings.DEPLOY_OPS, "NOTIFICATIONS": {"BACKEND": SLACK, "WEBHOOK_URL": "https://hooks.example.org/T0SECRET"}}
    deliveries = send(build_event(Level.ERROR, failed_record))
    assert [(delivery.channel, delivery.ok, delivery.error) for delivery in deliveries] == [
        ("log", True, ""),
        ("notifications", False, "DEPLOY_OPS['NOTIFICATIONS'] is invalid; run `manage.py check` for details."),
    ]


def test_a_channel_that_ignores_its_budget_is_left_behind_after_timeout(failed_record, settings):
    configure(settings, {"BACKEND": RECORDING, "SLEEP": 4, "TIMEOUT": 0.3})
    started = time.monotonic()
    recording = by_channel(send(build_event(Level.ERROR, failed_record)))["recording"]
    assert time.monotonic() - started < 2
    assert (recording.ok, recording.error) == (False, "did not finish within its 0.3s TIMEOUT; left running in the background.")


def test_the_system_check_names_broken_channels_without_their_secrets(settings, ops_dirs):
    configure(
        settings,
        {"BACKEND": "nowhere.Channel", "URL": "https://hooks.example.org/secret"},
        {"BACKEND": WEBHOOK, "MIN_LEVEL": "LOUD", "URL": "https://x/y"},
        {"BACKEND": WEBHOOK, "URL": "https://x/y"},
    )
    errors = check_channels()
    assert [(error.id, error.msg) for error in errors] == [
        (
            "deploy_ops.E020",
            "DEPLOY_OPS['NOTIFICATIONS'][0]: The notification channel BACKEND 'nowhere.Channel' cannot be imported; check the dotted path.",
        ),
        (
            "deploy_ops.E020",
            "DEPLOY_OPS['NOTIFICATIONS'][1]: 'LOUD' is not a notification level; use "
            "one of INFO, SUCCESS, WARNING, ERROR, ROLLBACK_SUCCESS, ROLLBACK_FAILED.",
        ),
    ]


# -- the test event and the command -------------------------------------------------------------
def test_send_test_event_reaches_every_channel_marked_as_a_test(settings, ops_dirs, http_receiver, db):
    configure(settings, {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook"})
    deliveries = send_test_event()
    assert [(delivery.channel, delivery.ok) for delivery in deliveries] == [("log", True), ("webhook", True)]
    payload = http_receiver.requests[0].json()
    assert (payload["test"], payload["title"], payload["level"], payload["admin_url"]) == (True, "Test notification", "INFO", "")
    assert not DeploymentRecord.objects.exists()


def test_notify_test_prints_each_channel_and_exits_2_when_one_failed(settings, ops_dirs, http_receiver, refused_url, capsys, db):
    configure(
        settings,
        {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook"},
        {"BACKEND": SLACK, "WEBHOOK_URL": refused_url, "RETRIES": 0, "MIN_LEVEL": "ERROR"},
    )
    call_command("notify", "--test", "--level", "info")
    output = capsys.readouterr().out
    assert "log: ok (1 attempt," in output and "webhook: ok (1 attempt," in output
    assert "slack: skipped (below MIN_LEVEL ERROR)" in output
    with pytest.raises(CommandError, match="1 notification channel failed: slack.") as failed:
        call_command("notify", "--test", "--level", "ERROR")
    assert failed.value.returncode == 2
    assert "slack: FAILED after 1 attempt: could not reach Slack" in capsys.readouterr().out


def test_notify_without_test_says_what_to_do(ops_dirs):
    with pytest.raises(CommandError, match="use --test"):
        call_command("notify")
