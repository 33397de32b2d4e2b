"""The migration plan's classification, operation by operation, and the strategy chosen from it."""

import pytest
from django.db import migrations, models
from django.db.migrations.graph import MigrationGraph
from django.db.models.functions import Now

from deploy_ops.exceptions import PreflightFailed
from deploy_ops.migration_safety import (
    COMPATIBLE,
    INCOMPATIBLE,
    STOP_FIRST,
    UNKNOWN,
    ZERO_DOWNTIME,
    choose_strategy,
    classify_operation,
    classify_plan,
    describe_plan,
    plan_as_json,
    plan_from_json,
)

CASES = [
    (migrations.CreateModel("Tag", [("id", models.AutoField(primary_key=True))]), COMPATIBLE),
    (migrations.AddField("note", "color", models.CharField(max_length=9, null=True)), COMPATIBLE),
    (migrations.AddField("note", "color", models.CharField(max_length=9, db_default="red")), COMPATIBLE),
    (migrations.AddField("note", "seen", models.DateTimeField(db_default=Now())), COMPATIBLE),
    (migrations.AddField("note", "tags", models.ManyToManyField("notes.Tag")), COMPATIBLE),
    (migrations.AddField("note", "color", models.CharField(max_length=9, default="red")), INCOMPATIBLE),
    (migrations.AddField("note", "color", models.CharField(max_length=9)), INCOMPATIBLE),
    (migrations.AddIndex("note", models.Index(fields=["text"], name="note_text")), COMPATIBLE),
    (migrations.RemoveIndex("note", "note_text"), COMPATIBLE),
    (migrations.RemoveField("note", "text"), INCOMPATIBLE),
    (migrations.RenameField("note", "text", "body"), INCOMPATIBLE),
    (migrations.AlterField("note", "text", models.IntegerField()), INCOMPATIBLE),
    (migrations.DeleteModel("Note"), INCOMPATIBLE),
    (migrations.RenameModel("Note", "Memo"), INCOMPATIBLE),
    (migrations.AlterModelTable("note", "memos"), INCOMPATIBLE),
    (migrations.AddConstraint("note", models.UniqueConstraint(fields=["text"], name="one_text")), INCOMPATIBLE),
    (migrations.AlterModelOptions("note", {"ordering": ["text"]}), COMPATIBLE),
    (migrations.RunPython(migrations.RunPython.noop), UNKNOWN),
    (migrations.RunSQL("UPDATE notes_note SET text = ''"), UNKNOWN),
    (migrations.SeparateDatabaseAndState(database_operations=[migrations.RemoveField("note", "text")]), INCOMPATIBLE),
    (migrations.SeparateDatabaseAndState(state_operations=[migrations.RemoveField("note", "text")]), COMPATIBLE),
]


@pytest.mark.parametrize(("operation", "expected"), CASES, ids=[f"{type(op).__name__}-{i}" for i, (op, _) in enumerate(CASES)])
def test_each_operation_kind_is_classified(operation, expected):
    verdict = classify_operation(operation)
    assert (verdict.kind, verdict.verdict) == (type(operation).__name__, expected), verdict.reason
    assert verdict.description == operation.describe()


def test_run_python_and_run_sql_declared_compatible_by_their_author_are_compatible_and_nothing_else_is():
    assert classify_operation(migrations.RunPython(migrations.RunPython.noop), declared_compatible=True).verdict == COMPATIBLE
    assert classify_operation(migrations.RunSQL("SELECT 1"), declared_compatible=True).verdict == COMPATIBLE
    assert classify_operation(migrations.RemoveField("note", "text"), declared_compatible=True).verdict == INCOMPATIBLE


def migration(app, name, operations, parents=(), **attributes):
    found = type("Migration", (migrations.Migration,), {"operations": operations, "dependencies": list(parents), **attributes})
    return found(name, app)


def plan_of(*found):
    graph = MigrationGraph()
    for each in found:
        graph.add_node((each.app_label, each.name), each)
    for each in found:
        for parent in each.dependencies:
            graph.add_dependency(each, (each.app_label, each.name), parent)
    return [(each, False) for each in found], graph


def test_an_after_switch_migration_and_what_depends_on_it_run_after_the_switch_and_do_not_block():
    expand = migration(
        "notes", "0002_expand", [migrations.AddField("note", "body", models.TextField(null=True))], [("notes", "0001_initial")]
    )
    contract = migration(
        "notes", "0003_contract", [migrations.RemoveField("note", "text")], [("notes", "0002_expand")], deploy_ops_after_switch=True
    )
    later = migration(
        "notes", "0004_later", [migrations.AddIndex("note", models.Index(fields=["body"], name="body"))], [("notes", "0003_contract")]
    )
    first = migration("notes", "0001_initial", [])
    plan, graph = plan_of(first, expand, contract, later)
    verdicts = classify_plan(plan[1:], graph)
    assert [(v.name, v.after_switch) for v in verdicts] == [("0002_expand", False), ("0003_contract", True), ("0004_later", True)]
    assert choose_strategy(verdicts, can_switch=True).strategy == ZERO_DOWNTIME


def test_django_safemigrate_annotations_are_honoured_without_the_package():
    class Safe:  # the shape of django_safemigrate.Safe: a dataclass with a When enum
        def __init__(self, when):
            self.when = type("When", (), {"value": when})()

    contract = migration("notes", "0002_drop", [migrations.RemoveField("note", "text")], safe=Safe("after_deploy"))
    data = migration("notes", "0003_data", [migrations.RunPython(migrations.RunPython.noop)], safe=Safe("before_deploy"))
    plan, graph = plan_of(contract, data)
    verdicts = classify_plan(plan, graph)
    assert verdicts[0].after_switch and not verdicts[1].after_switch
    assert verdicts[1].operations[0].verdict == COMPATIBLE


def test_operations_on_a_model_the_plan_creates_are_compatible():
    created = migration(
        "notes",
        "0002_tag",
        [
            migrations.CreateModel("Tag", [("id", models.AutoField(primary_key=True)), ("name", models.TextField())]),
            migrations.AddField("tag", "slug", models.TextField(default="")),
            migrations.AlterUniqueTogether("tag", {("name", "slug")}),
        ],
    )
    plan, graph = plan_of(created)
    assert [op.verdict for op in classify_plan(plan, graph)[0].operations] == [COMPATIBLE] * 3


def incompatible_plan():
    plan, graph = plan_of(migration("notes", "0002_drop", [migrations.RemoveField("note", "text")]))
    return classify_plan(plan, graph)


def test_the_strategy_follows_the_plan_and_the_proxy():
    assert choose_strategy([], can_switch=True).strategy == ZERO_DOWNTIME
    assert choose_strategy([], can_switch=False).strategy == STOP_FIRST
    choice = choose_strategy(incompatible_plan(), can_switch=True)
    assert choice.strategy == STOP_FIRST and "notes.0002_drop: Remove field text from note (incompatible)" in choice.reason
    assert choose_strategy(None, can_switch=True).strategy == STOP_FIRST
    assert choose_strategy([], can_switch=True, requested=STOP_FIRST).strategy == STOP_FIRST


def test_zero_downtime_over_an_incompatible_plan_is_refused_without_force_and_runs_with_it():
    with pytest.raises(PreflightFailed, match="--force") as refused:
        choose_strategy(incompatible_plan(), can_switch=True, requested=ZERO_DOWNTIME)
    assert refused.value.exit_code == 3
    forced = choose_strategy(incompatible_plan(), can_switch=True, requested=ZERO_DOWNTIME, force=True)
    assert forced.strategy == ZERO_DOWNTIME and "forced" in forced.reason


def test_zero_downtime_without_a_switchable_proxy_is_refused():
    with pytest.raises(PreflightFailed, match="reverse proxy that deploy_ops switches"):
        choose_strategy([], can_switch=False, requested=ZERO_DOWNTIME)


def test_the_json_form_round_trips_and_the_dry_run_lines_name_each_operation():
    verdicts = incompatible_plan()
    assert plan_from_json(plan_as_json(verdicts)) == verdicts
    assert describe_plan(verdicts)[1].startswith("  incompatible: Remove field text from note")
    assert describe_plan([]) == ["none"]


# -- end to end: the deploy command on the sample site (commands runtime, SQLite) ----------------
EXPAND_AND_BACKFILL = {
    "notes/migrations/0002_expand.py": """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("notes", "0001_initial")]
    operations = [
        migrations.AddField("note", "title", models.TextField(null=True)),
        migrations.RunPython(migrations.RunPython.noop),
        migrations.RemoveField("note", "text"),
    ]
""",
}


@pytest.mark.slow
def test_dry_run_prints_each_operation_its_classification_and_the_strategy(sample_site):
    from tests.e2e.helpers import deploy, failure_text, records
    from tests.e2e.test_deploy_commands_runtime import serving_release_1

    serving_release_1(sample_site)
    sample_site.commit_change(EXPAND_AND_BACKFILL, "Release 2 with a migration")
    finished = deploy(sample_site, "--dry-run")
    assert finished.returncode == 0, failure_text(finished)
    output = finished.stdout
    assert "  notes.0002_expand (runs before the switch)" in output
    assert "    compatible: Add field title to note (a nullable column" in output
    assert "    unknown: Raw Python operation (code whose effect" in output
    assert "    incompatible: Remove field text from note (the old code still reads and writes this column)" in output
    assert "Strategy: stop-first, because no reverse proxy switches between two releases side by side here." in output
    assert records(sample_site) == []


@pytest.mark.slow
def test_strategy_zero_downtime_without_a_proxy_is_refused_with_exit_3_and_no_alarm(sample_site):
    from tests.e2e.helpers import deploy, events, failure_text, records
    from tests.e2e.test_deploy_commands_runtime import serving_release_1

    serving_release_1(sample_site)
    sample_site.commit_change(EXPAND_AND_BACKFILL, "Release 2 with a migration")
    finished = deploy(sample_site, "--strategy", "zero-downtime", "--force")
    assert finished.returncode == 3, failure_text(finished)
    assert "behind a reverse proxy that deploy_ops switches between them" in finished.stderr
    assert sample_site.production_head() == sample_site.initial_sha
    assert records(sample_site) == [] and events(sample_site) == []
    assert "release 1" in sample_site.get("/")[1]


@pytest.mark.django_db
def test_applied_migrations_are_classified_from_their_files_in_graph_order_for_a_rollback():
    from deploy_ops.migration_safety import blocking_operations, classify_applied

    verdicts = classify_applied(["deploy_ops.0006_record_strategy", "deploy_ops.0005_stage_statuses_that_are_produced"])
    assert [migration.label for migration in verdicts] == [
        "deploy_ops.0005_stage_statuses_that_are_produced",
        "deploy_ops.0006_record_strategy",
    ]
    # AlterField (0005) could break the release from before it; a NOT NULL CharField with Django's default (0006) too.
    assert [(migration.label, operation.kind) for migration, operation in blocking_operations(verdicts)] == [
        ("deploy_ops.0005_stage_statuses_that_are_produced", "AlterField"),
        ("deploy_ops.0006_record_strategy", "AddField"),
    ]
