"""The sample site's injected failures do what the deploy tests rely on (host side, no Docker)."""

import time
from datetime import UTC, datetime

import pytest

from deploy_ops.exceptions import CommandFailed
from deploy_ops.runtimes.commands import CommandsRuntime

from .fixtures.sample_site import (
    collectstatic_fails,
    data_changing_migration,
    exits_at_start,
    failing_migration,
    flags,
    health_fails,
    logs_an_error,
    release,
)


@pytest.fixture
def site(sample_site, settings):
    settings.DEPLOY_OPS = sample_site.use_commands()
    sample_site.runtime = CommandsRuntime(sample_site.production)
    sample_site.runtime.manage("migrate", "--noinput")
    return sample_site


def deploy_by_hand(site, changes, message):
    site.commit_change(changes, message)
    site.checkout_latest()


def wait_until_served(site, seconds=15):
    deadline = time.monotonic() + seconds
    while site.get("/health/live/")[0] != 200:
        assert time.monotonic() < deadline, "the sample site did not come up"
        time.sleep(0.1)


def test_a_failing_migration_makes_migrate_fail(site):
    deploy_by_hand(site, failing_migration(), "A migration that raises")
    with pytest.raises(CommandFailed, match="this migration fails on purpose"):
        site.runtime.manage("migrate", "--noinput")


def test_the_data_changing_migration_rewrites_every_note(site):
    site.manage("shell", "-c", "from notes.models import Note; Note.objects.create(text='first'); Note.objects.create(text='second')")
    deploy_by_hand(site, data_changing_migration(), "Rewrite the notes")
    site.runtime.manage("migrate", "--noinput")
    assert site.notes() == ["changed by 0002", "changed by 0002"]


def test_collectstatic_works_until_the_flag_breaks_it(site):
    assert "static files copied" in site.runtime.manage("collectstatic", "--noinput")
    deploy_by_hand(site, collectstatic_fails(), "Static files cannot be written")
    with pytest.raises(CommandFailed, match="COLLECTSTATIC_FAIL is set"):
        site.runtime.manage("collectstatic", "--noinput", "--clear")


def test_a_release_that_exits_at_start_fails_the_servectl_start(site):
    deploy_by_hand(site, exits_at_start(), "A release that cannot start")
    with pytest.raises(CommandFailed, match="EXIT_AT_START is set"):
        site.runtime.start()


def test_health_fails_while_liveness_answers_and_the_startup_error_is_logged(site):
    # Two flags at once need one flags() call: each breaker rewrites the whole flags module.
    deploy_by_hand(site, {**release("2"), **flags(HEALTH_FAIL=True, LOG_STARTUP_ERROR=True)}, "Release 2, unhealthy and noisy")
    before_start = datetime.now(UTC)
    site.runtime.start()
    wait_until_served(site)

    assert site.get("/") == (200, "release 2\nnotes 0\n")
    assert site.get("/health/")[0] == 500
    logs = site.runtime.logs_since(before_start)
    assert "CRITICAL sitecfg startup problem" in logs
    assert "Traceback (most recent call last)" in logs


def test_each_flag_breaker_sets_its_flag_alone():
    assert "HEALTH_FAIL = True" in health_fails()["sitecfg/flags.py"]
    assert "LOG_STARTUP_ERROR = True" in logs_an_error()["sitecfg/flags.py"]
    assert logs_an_error()["sitecfg/flags.py"].count("True") == 1
