"""The deploy's logic alone: which recovery steps each failing stage calls for, and the log scan."""

import pytest

from deploy_ops.pipeline import STAGES, find_error_patterns
from deploy_ops.recovery import STEP_ORDER


def steps_after_failure_in(stage_name):
    begun = STAGES[: [stage.name for stage in STAGES].index(stage_name) + 1]
    return [step for step in STEP_ORDER if step in set().union(*(stage.undo for stage in begun))]


def test_the_stages_run_in_the_documented_order():
    assert [stage.name for stage in STAGES] == ["backup", "checkout", "build", "start", "migrate", "collectstatic", "health", "verify"]


@pytest.mark.parametrize("stage", ["backup"])
def test_a_failure_before_the_code_moved_undoes_nothing(stage):
    assert steps_after_failure_in(stage) == []


def test_a_failed_checkout_only_puts_the_code_back():
    assert steps_after_failure_in("checkout") == ["revert code"]


def test_a_failed_build_rebuilds_the_previous_release_without_touching_the_database():
    assert steps_after_failure_in("build") == ["revert code", "restore images", "verify health"]


@pytest.mark.parametrize("stage", ["start", "migrate"])
def test_once_the_new_release_ran_the_database_is_restored(stage):
    assert steps_after_failure_in(stage) == [
        "revert code", "stop services", "restore database", "restore images", "start services", "verify health",
    ]


@pytest.mark.parametrize("stage", ["collectstatic", "health", "verify"])
def test_after_collectstatic_the_previous_static_files_are_collected_again(stage):
    assert steps_after_failure_in(stage) == [
        "revert code", "stop services", "restore database", "restore images", "start services", "collect static", "verify health",
    ]


def test_error_patterns_are_found_as_literal_text_line_by_line():
    logs = "booting\n[2026] CRITICAL could not connect\nok\nTraceback (most recent call last):\n  File x\nvalue [ERROR] y\n"
    assert find_error_patterns(logs, ["CRITICAL", "Traceback (most recent call last)", "[ERROR]"]) == [
        "[2026] CRITICAL could not connect",
        "Traceback (most recent call last):",
        "value [ERROR] y",
    ]
    assert find_error_patterns("all fine\n", ["CRITICAL"]) == []
