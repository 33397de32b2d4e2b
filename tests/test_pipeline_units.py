"""The deploy's logic alone: which recovery steps each failing stage calls for, and the log scan."""

import pytest

from deploy_ops.pipeline import STAGES, find_error_patterns
from deploy_ops.recovery import STEP_ORDER


def steps_after_failure_in(stage_name):
    begun = STAGES[: [stage.name for stage in STAGES].index(stage_name) + 1]
    return [step for step in STEP_ORDER if step in set().union(*(stage.undo for stage in begun))]


def test_the_stages_run_in_the_documented_order():
    assert [stage.name for stage in STAGES] == [
        "backup",
        "checkout",
        "build",
        "collectstatic",
        "stop",
        "migrate",
        "start",
        "health",
        "verify",
    ]


@pytest.mark.parametrize("stage", ["backup"])
def test_a_failure_before_the_code_moved_undoes_nothing(stage):
    assert steps_after_failure_in(stage) == []


def test_a_failed_checkout_only_puts_the_code_back():
    assert steps_after_failure_in("checkout") == ["revert code"]


def test_a_failed_build_puts_the_previous_images_back_without_touching_the_database_or_the_services():
    assert steps_after_failure_in("build") == ["revert code", "restore images", "verify health"]


def test_a_failed_collectstatic_collects_the_previous_files_again_while_the_old_release_keeps_serving():
    assert steps_after_failure_in("collectstatic") == ["revert code", "restore images", "collect static", "verify health"]


def test_once_the_old_release_stopped_it_is_started_again_but_the_database_was_not_touched():
    assert steps_after_failure_in("stop") == [
        "revert code",
        "stop services",
        "restore images",
        "start services",
        "collect static",
        "verify health",
    ]


@pytest.mark.parametrize("stage", ["migrate", "start", "health", "verify"])
def test_once_the_migrations_began_the_database_is_restored(stage):
    assert steps_after_failure_in(stage) == [
        "revert code",
        "stop services",
        "restore database",
        "restore images",
        "start services",
        "collect static",
        "verify health",
    ]


def test_error_patterns_are_found_as_literal_text_line_by_line():
    logs = "booting\n[2026] CRITICAL could not connect\nok\nTraceback (most recent call last):\n  File x\nvalue [ERROR] y\n"
    assert find_error_patterns(logs, ["CRITICAL", "Traceback (most recent call last)", "[ERROR]"]) == [
        "[2026] CRITICAL could not connect",
        "Traceback (most recent call last):",
        "value [ERROR] y",
    ]
    assert find_error_patterns("all fine\n", ["CRITICAL"]) == []
