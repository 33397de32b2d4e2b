"""``manage.py healthcheck``: the /health/ checks from the command line, and on the host the
HOST_HEALTH_CHECKS (services, backups, disk) that only the host can see (``--site`` leaves them out).

``--gate`` runs the subset the deploy's verify stage gates on (database, migrations,
services); the deploy runs it inside the new release, so what monitors see at /health/ and
what a deploy gates on are the same check classes.  Exit 1 when a check fails.
"""

import json

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from deploy_ops.health.checks import ServicesRunning, configured_checks, deploy_gate_checks, host_checks, run_checks
from deploy_ops.management.base import TranslatedCommand
from deploy_ops.proxy.serving import serving_release


class Command(TranslatedCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Run the configured health checks (DEPLOY_OPS HEALTH_CHECKS); exit 1 if any fails.")  # type: ignore[assignment]
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--gate", action="store_true", help=gettext_lazy("Only the checks a deploy gates on: database, migrations, services.")
        )
        parser.add_argument(
            "--skip-services",
            action="store_true",
            help=gettext_lazy(
                "Leave out ServicesRunning: the caller inspects the services itself (the deploy does, from the host; "
                "inside the web container the Docker engine is out of reach)."
            ),
        )
        parser.add_argument(
            "--site",
            action="store_true",
            help=gettext_lazy(
                "Only HEALTH_CHECKS, what /health/ runs (where the site runs, e.g. inside the web container); "
                "without it the HOST_HEALTH_CHECKS run too."
            ),
        )
        parser.add_argument("--json", action="store_true", help=gettext_lazy("One JSON object: check name -> OK or the problem."))

    def handle(self, *args, **options):
        if options["gate"]:
            checks = deploy_gate_checks()
        else:
            checks = configured_checks() + ([] if options["site"] else host_checks())
        if options["skip_services"]:
            checks = [check for check in checks if not isinstance(check, ServicesRunning)]
        outcomes = run_checks(checks)
        if not (options["json"] or options["site"] or options["gate"]):
            self.show_serving()
        if options["json"]:
            self.stdout.write(json.dumps({outcome.name: outcome.message or "OK" for outcome in outcomes}, indent=2))
        else:
            for outcome in outcomes:
                style = (
                    self.style.SUCCESS if outcome.ok and not outcome.warning else (self.style.WARNING if outcome.ok else self.style.ERROR)
                )
                self.stdout.write(style(f"{outcome.name}: {outcome.message or _('OK')}"))
        failing = [outcome.name for outcome in outcomes if not outcome.ok]
        if failing:
            raise CommandError(
                ngettext("%(count)d health check failed: %(names)s", "%(count)d health checks failed: %(names)s", len(failing))
                % {"count": len(failing), "names": ", ".join(failing)},
                returncode=1,
            )

    def show_serving(self):
        """On the host, which release the host checks looked at: the blue/green slot the proxy routes to, if any."""
        slot = serving_release().slot
        if slot:
            self.stdout.write(_("Serving release: the blue/green slot %(slot)s (the proxy routes to it).") % {"slot": slot})
