"""A webhook receiver can trust what it acts on: every meaningful field is signed, and the
documented replay key lets it act once on a retried or replayed delivery (real HTTP on 127.0.0.1)."""

import json

from deploy_ops.notifications import Level, build_event, send, verify_signature
from deploy_ops.notifications.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, replay_key

from . import test_notifications
from .test_notifications import FAST, WEBHOOK, WEBHOOK_SECRET, configure

failed_record = test_notifications.failed_record  # the same fixture: a failed deploy's record


class Receiver:
    """What docs/NOTIFICATIONS.md tells a receiver to do: verify, then drop a key seen before."""

    def __init__(self):
        self.seen, self.acted_on = set(), []

    def handle(self, request) -> int:
        if not verify_signature(
            WEBHOOK_SECRET, request.headers[TIMESTAMP_HEADER], request.body, request.headers[SIGNATURE_HEADER], tolerance=300
        ):
            return 403
        event = json.loads(request.body)
        key = replay_key(event)
        if key not in self.seen:
            self.seen.add(key)
            self.acted_on.append(event["level"])
        return 200


def test_changing_the_level_on_the_way_breaks_the_signature(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook", "SECRET": WEBHOOK_SECRET})
    send(build_event(Level.ROLLBACK_FAILED, failed_record))
    [request] = http_receiver.requests
    assert json.loads(request.body)["level"] == "ROLLBACK_FAILED"
    downgraded = request.body.replace(b'"level": "ROLLBACK_FAILED"', b'"level": "INFO"')
    assert downgraded != request.body
    assert not verify_signature(WEBHOOK_SECRET, request.headers[TIMESTAMP_HEADER], downgraded, request.headers[SIGNATURE_HEADER])


def test_a_receiver_keeping_replay_keys_acts_once_on_a_retried_and_a_replayed_delivery(failed_record, settings, http_receiver):
    configure(settings, {"BACKEND": WEBHOOK, "URL": http_receiver.url + "/hook", "SECRET": WEBHOOK_SECRET, "RETRIES": 2, **FAST})
    http_receiver.answer(500)  # the receiver acted, then failed to answer: deploy_ops retries
    assert send(build_event(Level.ERROR, failed_record))[-1].ok
    send(build_event(Level.ROLLBACK_SUCCESS, failed_record))
    first, retry, other = http_receiver.requests
    assert first.body == retry.body  # signed anew (with the time of the retry), the same notification

    receiver = Receiver()
    # The retry, then an attacker replaying the captured first request within the window.
    answers = [receiver.handle(request) for request in (first, retry, other, first)]

    assert answers == [200, 200, 200, 200]
    assert receiver.acted_on == ["ERROR", "ROLLBACK_SUCCESS"]
