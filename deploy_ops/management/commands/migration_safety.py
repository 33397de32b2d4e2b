"""``manage.py migration_safety``: each pending migration operation, and whether the old release survives it.

Run by the deploy inside the release being deployed (its code has the migrations), so it reads
Django's own operation objects; see deploy_ops.migration_safety.
"""

import json
import sys
from pathlib import Path

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.utils.translation import gettext_lazy

from deploy_ops.management.base import OpsCommand
from deploy_ops.migration_safety import classify_plan, describe_plan, plan_as_json


class Command(OpsCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Classify each pending migration operation as compatible, incompatible or unknown for the release serving now.")  # type: ignore[assignment]
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--database", default=DEFAULT_DB_ALIAS, help=gettext_lazy("The database whose pending migrations are classified.")
        )
        parser.add_argument("--json", action="store_true", help=gettext_lazy("Print the classification as JSON."))
        parser.add_argument(
            "--applied",
            metavar="FILE",
            help=gettext_lazy(
                "Read the applied migrations (a JSON list of 'app.name') from FILE, '-' for stdin, instead of from the database: "
                "the deploy passes them from the serving release's database, which this checkout may not reach."
            ),
        )

    def handle(self, *args, **options):
        if options["applied"]:
            text = sys.stdin.read() if options["applied"] == "-" else Path(options["applied"]).read_text()
            applied = {tuple(label.split(".", 1)) for label in json.loads(text)}
            loader = MigrationLoader(None, ignore_no_migrations=True)
            plan = pending_plan(loader, applied)
            graph = loader.graph
        else:
            executor = MigrationExecutor(connections[options["database"]])
            plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
            graph = executor.loader.graph
        verdicts = classify_plan(plan, graph)
        if options["json"]:
            self.stdout.write(json.dumps(plan_as_json(verdicts)))
            return
        for line in describe_plan(verdicts):
            self.stdout.write(line)


def pending_plan(loader: MigrationLoader, applied: set[tuple[str, str]]) -> list:
    """As MigrationExecutor.migration_plan to the leaf nodes, with ``applied`` given: a squashed
    migration counts as applied when everything it replaces is."""

    def is_applied(key) -> bool:
        migration = loader.graph.nodes[key]
        return key in applied or bool(migration.replaces and all(tuple(old) in applied for old in migration.replaces))

    plan, seen = [], set()
    for leaf in loader.graph.leaf_nodes():
        for key in loader.graph.forwards_plan(leaf):
            if key not in seen and not is_applied(key):
                seen.add(key)
                plan.append((loader.graph.nodes[key], False))
    return plan
