"""Whether the pending migrations let the old release keep serving, and the deploy strategy that follows.

Each operation of the target release's migration plan (Django's own operation objects, from
``MigrationExecutor.migration_plan``) is one of:

- *compatible*: the old code keeps working after it (a new model, a nullable field or one with a
  database default, a new index);
- *incompatible*: the old code breaks (a field or model removed, renamed or retyped, a NOT NULL
  field without a database default, which the old code's INSERTs leave out);
- *unknown*: ``RunPython``, ``RunSQL`` and operations this module does not know, unless the
  migration's author declares them compatible.

A migration's author annotates it with attributes of its ``Migration`` class::

    deploy_ops_after_switch = True   # the contract step: run once the old release is gone
    deploy_ops_compatible = True     # its RunPython / RunSQL leave the old code working

django-safemigrate's ``safe = Safe.after_deploy()`` counts as ``deploy_ops_after_switch`` and
``Safe.before_deploy()`` / ``Safe.always()`` as ``deploy_ops_compatible``: read by name, so that
package is optional.  A migration that depends on an after-switch one runs after the switch too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

COMPATIBLE = "compatible"
INCOMPATIBLE = "incompatible"
UNKNOWN = "unknown"
STOP_FIRST = "stop-first"
ZERO_DOWNTIME = "zero-downtime"
STRATEGIES = (STOP_FIRST, ZERO_DOWNTIME)

AFTER_SWITCH_ATTRIBUTE = "deploy_ops_after_switch"
COMPATIBLE_ATTRIBUTE = "deploy_ops_compatible"

# Operations that change only Django's model state, or add what the old code never relies on.
ALWAYS_COMPATIBLE = {
    "CreateModel": gettext_lazy("a new table the old code does not use"),
    "AddIndex": gettext_lazy("a new index"),
    "RemoveIndex": gettext_lazy("an index removed: the old code's queries still work"),
    "RemoveConstraint": gettext_lazy("a constraint removed: the old code's writes still pass"),
    "AlterModelOptions": gettext_lazy("model options only, no schema change"),
    "AlterModelManagers": gettext_lazy("managers only, no schema change"),
    "AlterModelTableComment": gettext_lazy("a table comment"),
    "RenameIndex": gettext_lazy("an index renamed"),
    "AddIndexConcurrently": gettext_lazy("a new index"),
    "RemoveIndexConcurrently": gettext_lazy("an index removed"),
    "CreateExtension": gettext_lazy("a database extension"),
    "CreateCollation": gettext_lazy("a collation"),
}
ALWAYS_INCOMPATIBLE = {
    "RemoveField": gettext_lazy("the old code still reads and writes this column"),
    "DeleteModel": gettext_lazy("the old code still uses this table"),
    "RenameField": gettext_lazy("the old code still uses the old column name"),
    "RenameModel": gettext_lazy("the old code still uses the old table name"),
    "AlterModelTable": gettext_lazy("the old code still uses the old table name"),
    "AlterField": gettext_lazy("the column is retyped or constrained under the old code"),
    "AddConstraint": gettext_lazy("the old code may write rows the new constraint rejects"),
    "AlterUniqueTogether": gettext_lazy("the old code may write rows the new constraint rejects"),
    "AlterOrderWithRespectTo": gettext_lazy("adds or drops a NOT NULL _order column the old code does not know"),
}
UNKNOWN_UNLESS_DECLARED = {
    "RunPython": gettext_lazy("code whose effect on the old release cannot be known"),
    "RunSQL": gettext_lazy("SQL whose effect on the old release cannot be known"),
}


@dataclass
class OperationVerdict:
    description: str
    kind: str
    verdict: str
    reason: str


@dataclass
class MigrationVerdict:
    app: str
    name: str
    after_switch: bool
    operations: list[OperationVerdict] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"


@dataclass
class StrategyChoice:
    strategy: str
    reason: str


def classify_operation(operation, declared_compatible: bool = False, on_new_model: bool = False) -> OperationVerdict:
    """``on_new_model``: the operation works on a model this plan creates, which the old code does not use."""
    kind = type(operation).__name__
    description = operation.describe()
    if on_new_model and kind not in UNKNOWN_UNLESS_DECLARED:
        return OperationVerdict(description, kind, COMPATIBLE, _("on a model this deploy creates, which the old code does not use"))
    if kind == "SeparateDatabaseAndState":
        # Only what reaches the database matters to the old code.
        inner = [classify_operation(each, declared_compatible, on_new_model) for each in operation.database_operations]
        worst = next((verdict for rank in (INCOMPATIBLE, UNKNOWN) for verdict in inner if verdict.verdict == rank), None)
        if worst:
            return OperationVerdict(
                description,
                kind,
                worst.verdict,
                _("its database operation %(operation)r: %(reason)s") % {"operation": worst.description, "reason": worst.reason},
            )
        return OperationVerdict(description, kind, COMPATIBLE, _("its database operations are all compatible"))
    if kind == "AddField":
        return OperationVerdict(description, kind, *_classify_added_field(operation.field))
    if kind in ALWAYS_COMPATIBLE:
        return OperationVerdict(description, kind, COMPATIBLE, str(ALWAYS_COMPATIBLE[kind]))
    if kind in ALWAYS_INCOMPATIBLE:
        return OperationVerdict(description, kind, INCOMPATIBLE, str(ALWAYS_INCOMPATIBLE[kind]))
    if declared_compatible:
        return OperationVerdict(description, kind, COMPATIBLE, _("declared compatible by the migration's author"))
    reason = UNKNOWN_UNLESS_DECLARED.get(kind, gettext_lazy("an operation deploy_ops does not know"))
    return OperationVerdict(
        description,
        kind,
        UNKNOWN,
        _("%(reason)s; declare it with %(attribute)s = True if the old release works after it")
        % {"reason": reason, "attribute": COMPATIBLE_ATTRIBUTE},
    )


def _model_key(app: str, operation) -> tuple[str, str | None]:
    """The model an operation works on, as (app label, lower-case name)."""
    name = (
        getattr(operation, "model_name_lower", None) or getattr(operation, "old_name_lower", None) or getattr(operation, "name_lower", None)
    )
    return app, name


def _classify_added_field(model_field) -> tuple[str, str]:
    from django.db.models import NOT_PROVIDED

    if model_field.many_to_many:
        return COMPATIBLE, _("a new join table the old code does not use")
    if model_field.null:
        return COMPATIBLE, _("a nullable column: the old code's INSERTs leave it NULL")
    if getattr(model_field, "db_default", NOT_PROVIDED) is not NOT_PROVIDED:
        return COMPATIBLE, _("a column with a database default: the old code's INSERTs get it")
    return INCOMPATIBLE, _("a NOT NULL column without a database default: the old code's INSERTs fail")


def after_switch_marked(migration) -> bool:
    if getattr(migration, AFTER_SWITCH_ATTRIBUTE, False):
        return True
    return _safemigrate_when(migration) == "after_deploy"


def declared_compatible(migration) -> bool:
    if getattr(migration, COMPATIBLE_ATTRIBUTE, False):
        return True
    return _safemigrate_when(migration) in ("before_deploy", "always")


def _safemigrate_when(migration) -> str:
    """django-safemigrate's ``safe`` (a ``Safe`` with a ``When``, or in old versions the ``When`` or a bool)."""
    safe = getattr(migration, "safe", None)
    when = getattr(safe, "when", safe)
    if isinstance(when, bool):
        return "before_deploy" if when else "after_deploy"
    return str(getattr(when, "value", when) or "")


def classify_plan(plan, graph) -> list[MigrationVerdict]:
    """``plan``: (migration, backwards) pairs from ``MigrationExecutor.migration_plan``; ``graph`` its loader's graph."""
    after: set[tuple[str, str]] = set()
    new_models: set[tuple[str, str | None]] = set()
    verdicts = []
    for migration, _backwards in plan:
        key = (migration.app_label, migration.name)
        parents = {parent.key for parent in graph.node_map[key].parents}
        if after_switch_marked(migration) or parents & after:
            after.add(key)
        compatible = declared_compatible(migration)
        operations = []
        for operation in migration.operations:
            model = _model_key(migration.app_label, operation)
            operations.append(classify_operation(operation, compatible, on_new_model=model in new_models))
            if type(operation).__name__ == "CreateModel":
                new_models.add(model)
        verdicts.append(MigrationVerdict(app=migration.app_label, name=migration.name, after_switch=key in after, operations=operations))
    return verdicts


def waiting_for_switch(names: list[str], alias: str = "default") -> set[str]:
    """Of the pending migrations ``names`` (``app.name``, in plan order), those that wait for the
    switch: marked after-switch, or depending on one.  The release is meant to work before them."""
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    graph = MigrationLoader(connections[alias], ignore_no_migrations=True).graph
    waiting: set[tuple[str, str]] = set()
    for name in names:
        key = migration_key(name)
        parents = {parent.key for parent in graph.node_map[key].parents}
        if after_switch_marked(graph.nodes[key]) or parents & waiting:
            waiting.add(key)
    return {".".join(key) for key in waiting}


def classify_applied(names: list[str], alias: str = "default") -> list[MigrationVerdict]:
    """Migrations already applied (``app.name``, files still here), classified as a plan would be:
    whether the release from before them can run on the schema they left."""
    from django.db import connections
    from django.db.migrations.loader import MigrationLoader

    graph = MigrationLoader(connections[alias], ignore_no_migrations=True).graph
    keys = [migration_key(name) for name in names]
    ordered = _in_graph_order(graph, keys)
    return classify_plan([(graph.nodes[key], False) for key in ordered], graph)


def migration_key(name: str) -> tuple[str, str]:
    """``app.name`` as the migration graph's key, (app label, migration name)."""
    app_label, _dot, migration = name.partition(".")
    return app_label, migration


def _in_graph_order(graph, keys: list[tuple[str, str]]) -> list[tuple[str, str]]:
    wanted, ordered = set(keys), []
    for leaf in graph.leaf_nodes():
        for key in graph.forwards_plan(leaf):
            if key in wanted and key not in ordered:
                ordered.append(key)
    return ordered


def plan_as_json(verdicts: list[MigrationVerdict]) -> list[dict]:
    return [{**asdict(verdict), "label": verdict.label} for verdict in verdicts]


def plan_from_json(data: list[dict]) -> list[MigrationVerdict]:
    return [
        MigrationVerdict(
            app=item["app"],
            name=item["name"],
            after_switch=item["after_switch"],
            operations=[OperationVerdict(**operation) for operation in item["operations"]],
        )
        for item in data
    ]


def blocking_operations(verdicts: list[MigrationVerdict]) -> list[tuple[MigrationVerdict, OperationVerdict]]:
    """The operations that would run while the old release still serves, and could break it."""
    return [
        (migration, operation)
        for migration in verdicts
        if not migration.after_switch
        for operation in migration.operations
        if operation.verdict != COMPATIBLE
    ]


def choose_strategy(verdicts: list[MigrationVerdict] | None, can_switch: bool, requested: str = "", force: bool = False) -> StrategyChoice:
    """The deploy strategy, or PreflightFailed (a refusal) for zero-downtime that cannot or may not run.

    ``verdicts`` is None when the plan could not be classified: every operation is then unknown.
    """
    from .exceptions import PreflightFailed

    if requested == STOP_FIRST:
        return StrategyChoice(STOP_FIRST, _("asked for with --strategy stop-first"))
    if requested == ZERO_DOWNTIME and not can_switch:
        raise PreflightFailed(
            _(
                "A zero-downtime deploy needs two releases side by side behind a reverse proxy that deploy_ops switches "
                "between them, and this site has none. See docs/RUNTIMES.md, section zero-downtime."
            )
        )
    if verdicts is None:
        blocking_text = _("the migration plan could not be classified")
    else:
        blocking = blocking_operations(verdicts)
        blocking_text = "; ".join(
            f"{migration.label}: {operation.description} ({verdict_label(operation.verdict)})" for migration, operation in blocking
        )
    if requested == ZERO_DOWNTIME:
        if blocking_text and not force:
            raise PreflightFailed(
                _(
                    "Zero-downtime was asked for, but the old release could break while these migrations run beside it: "
                    "%(blocking)s. Deploy with --strategy stop-first, mark the contract step with "
                    "%(attribute)s = True, or add --force to run them beside the old release anyway."
                )
                % {"blocking": blocking_text, "attribute": AFTER_SWITCH_ATTRIBUTE}
            )
        if blocking_text:
            return StrategyChoice(ZERO_DOWNTIME, _("forced with --force over: %(blocking)s") % {"blocking": blocking_text})
        return StrategyChoice(ZERO_DOWNTIME, _("asked for with --strategy zero-downtime"))
    if not can_switch:
        return StrategyChoice(STOP_FIRST, _("no reverse proxy switches between two releases side by side here"))
    if blocking_text:
        return StrategyChoice(
            STOP_FIRST, _("the old release could break beside these migrations: %(blocking)s") % {"blocking": blocking_text}
        )
    return StrategyChoice(ZERO_DOWNTIME, _("every migration that runs before the switch is backward compatible"))


def describe_plan(verdicts: list[MigrationVerdict]) -> list[str]:
    """One line per migration and per operation, for --dry-run."""
    if not verdicts:
        return [_("none")]
    lines = []
    for migration in verdicts:
        if migration.after_switch:
            lines.append(_("%(migration)s (runs after the switch)") % {"migration": migration.label})
        else:
            lines.append(_("%(migration)s (runs before the switch)") % {"migration": migration.label})
        lines += [
            f"  {verdict_label(operation.verdict)}: {operation.description} ({operation.reason})" for operation in migration.operations
        ]
    return lines


# The verdicts as the printed output words them; the JSON keeps the identifiers.
VERDICT_LABELS = {
    COMPATIBLE: pgettext_lazy("migration verdict", "compatible"),
    INCOMPATIBLE: pgettext_lazy("migration verdict", "incompatible"),
    UNKNOWN: pgettext_lazy("migration verdict", "unknown"),
}


def verdict_label(verdict: str) -> str:
    return str(VERDICT_LABELS.get(verdict, verdict))
