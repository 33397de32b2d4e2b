"""A deploy that rolls back tells every channel, in order, through real receivers on 127.0.0.1."""

import json

import pytest

from deploy_ops.notifications.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from tests.e2e.helpers import deploy, events, failure_text
from tests.e2e.test_deploy_commands_runtime import serving_release_1
from tests.fixtures.sample_site import failing_migration

pytestmark = pytest.mark.slow

SLACK_TOKEN = "T0123/B0456/very-secret-slack-token"
WEBHOOK_SECRET = "webhook-signing-secret"


def test_a_rolled_back_deploy_sends_error_then_rollback_success_on_every_channel(sample_site, http_receiver, smtp_receiver):
    channels = [
        {"BACKEND": "deploy_ops.notifications.slack.SlackChannel", "WEBHOOK_URL": f"{http_receiver.url}/slack/{SLACK_TOKEN}"},
        {"BACKEND": "deploy_ops.notifications.webhook.WebhookChannel", "URL": f"{http_receiver.url}/hook", "SECRET": WEBHOOK_SECRET},
        {"BACKEND": "deploy_ops.notifications.email.EmailChannel", "RECIPIENTS": ["ops@example.org"]},
    ]
    serving_release_1(sample_site, NOTIFICATIONS=channels)
    with open(sample_site.production / ".env", "a") as env:
        env.write(f"EMAIL_HOST='127.0.0.1'\nEMAIL_PORT='{smtp_receiver_port(smtp_receiver)}'\n")
    sample_site.commit_change(failing_migration(), "Release with a failing migration")

    finished = deploy(sample_site)

    assert finished.returncode == 1, failure_text(finished)
    assert events(sample_site) == ["INFO", "ERROR", "ROLLBACK_SUCCESS"]

    slack = [request for request in http_receiver.requests if request.path.startswith("/slack/")]
    slack_texts = [request.json()["text"] for request in slack]
    assert len(slack_texts) == 3
    assert "failed at stage migrate" in slack_texts[1]
    assert "Rolled back" in slack_texts[2]

    hooks = [request for request in http_receiver.requests if request.path == "/hook"]
    assert [request.json()["level"] for request in hooks] == ["INFO", "ERROR", "ROLLBACK_SUCCESS"]
    assert hooks[1].json()["failed_stage"] == "migrate"
    for request in hooks:
        assert verify_signature(WEBHOOK_SECRET, request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER])

    subjects = [message["Subject"] for message in smtp_receiver.messages]
    assert len(subjects) == 3 and "ERROR" in subjects[1] and "ROLLBACK_SUCCESS" in subjects[2]
    assert "migrate" in smtp_receiver.messages[1].get_content()

    # The Slack token and the webhook secret are in no log, record or output.
    logged = (sample_site.production / "logs" / "notifications.log").read_text()
    journal = (sample_site.production / "logs" / "deployments.jsonl").read_text()
    for text in (logged, journal, finished.stdout, finished.stderr, json.dumps([r.json() for r in hooks])):
        assert SLACK_TOKEN not in text and WEBHOOK_SECRET not in text


def smtp_receiver_port(receiver) -> int:
    from django.conf import settings

    mailers = getattr(settings, "MAILERS", None)
    return mailers["default"]["OPTIONS"]["port"] if mailers else settings.EMAIL_PORT
