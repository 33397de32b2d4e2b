"""``manage.py migration_safety``: each pending migration operation, and whether the old release survives it.

Run by the deploy inside the release being deployed (its code has the migrations), so it reads
Django's own operation objects; see deploy_ops.migration_safety.
"""

import json

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor

from deploy_ops.management.base import OpsCommand
from deploy_ops.migration_safety import classify_plan, describe_plan, plan_as_json


class Command(OpsCommand):
    help = "Classify each pending migration operation as compatible, incompatible or unknown for the release serving now."
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="The database whose pending migrations are classified.")
        parser.add_argument("--json", action="store_true", help="Print the classification as JSON.")

    def handle(self, *args, **options):
        executor = MigrationExecutor(connections[options["database"]])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        verdicts = classify_plan(plan, executor.loader.graph)
        if options["json"]:
            self.stdout.write(json.dumps(plan_as_json(verdicts)))
            return
        for line in describe_plan(verdicts):
            self.stdout.write(line)
