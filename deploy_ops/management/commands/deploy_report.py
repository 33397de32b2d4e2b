"""``manage.py deploy_report``: the dashboard's delivery metrics in the terminal, or as JSON for scripts."""

import json

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from deploy_ops import metrics
from deploy_ops.exceptions import EXIT_REFUSED
from deploy_ops.management.base import TranslatedCommand


class Command(TranslatedCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Delivery metrics from the deployment records: deploys per week, change failure rate, time to restore, lead time.")  # type: ignore[assignment]
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--days",
            type=int,
            action="append",
            metavar="N",
            help=gettext_lazy("The window in days (repeatable; default: 7, 30 and 90)."),
        )
        parser.add_argument("--json", action="store_true", help=gettext_lazy("Machine-readable output."))

    def handle(self, *args, **options):
        days = options["days"] or list(metrics.WINDOWS)
        if any(window < 1 for window in days):
            raise CommandError(_("--days must be 1 or more."), returncode=EXIT_REFUSED)
        commit_times = metrics.CommitTimes()
        found = [metrics.delivery_metrics(window, commit_times=commit_times) for window in days]
        if options["json"]:
            self.stdout.write(json.dumps([window.as_json() for window in found], indent=2))
            return
        for window in found:
            self.stdout.write(self.style.MIGRATE_HEADING(_("Last %(days)d days") % {"days": window.days}))
            for label, value in metrics.describe(window):
                self.stdout.write(f"  {label:<28} {value}")
