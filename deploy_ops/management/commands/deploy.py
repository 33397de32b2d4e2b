"""``manage.py deploy``: the staged deploy with automatic rollback.

Exit codes: 0 deployed; 1 failed and rolled back; 2 failed and the rollback failed, could not be
verified, or was disabled (a human is needed); 3 refused before anything changed; 4 an unexpected
error; 5 a usage error (see deploy_ops.management.base).
"""

import sys

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from deploy_ops.cli import ask, dumps, refuse_without_terminal, shown_work
from deploy_ops.exceptions import EXIT_NEEDS_HUMAN, EXIT_OK, DeployOpsError
from deploy_ops.management.base import OpsCommand
from deploy_ops.migration_safety import STRATEGIES
from deploy_ops.models import DeploymentRecord
from deploy_ops.pipeline import Deployer, DeployOptions
from deploy_ops.recovery import command_progress
from deploy_ops.rollback import record_summary

OUTCOMES = {
    1: gettext_lazy("The deploy failed and was rolled back: the previous release is serving."),
    2: gettext_lazy("The deploy failed and the site was NOT brought back: a human is needed (see `manage.py rollback --status`)."),
    3: gettext_lazy("The deploy stopped before anything changed: the previous release is serving, untouched."),
}
UNVERIFIED = gettext_lazy(
    "The deploy failed and was rolled back, but the health URL never answered, so it could not be verified that the "
    "previous release serves: a human is needed to look (see `manage.py rollback --status`)."
)


class Command(OpsCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Back up, update the code, rebuild, migrate, collect static files, verify; roll back by itself on failure.")  # type: ignore[assignment]
    requires_system_checks = []  # preflight validates what a deploy needs; a broken check must not block a fix.

    def add_arguments(self, parser):
        parser.add_argument(
            "--ref", default="", help=gettext_lazy("Branch, tag or commit to deploy (default: DEPLOY_OPS GIT_BRANCH on GIT_REMOTE).")
        )
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive", help=gettext_lazy("Do not ask for confirmation.")
        )
        parser.add_argument(
            "--dry-run", action="store_true", help=gettext_lazy("Print the commits, migrations and commands; change nothing.")
        )
        parser.add_argument(
            "--no-rollback", action="store_true", help=gettext_lazy("On failure, leave everything as the failed stage left it.")
        )
        parser.add_argument("--health-retries", type=int, help=gettext_lazy("Override HEALTH_CHECK_RETRIES."))
        parser.add_argument("--health-delay", type=float, help=gettext_lazy("Override HEALTH_CHECK_DELAY (seconds)."))
        parser.add_argument(
            "--break-lock",
            nargs="?",
            const=True,
            default=False,
            metavar="HOST",
            help=gettext_lazy(
                "Take over the lock of a run that died: one whose process on this host is gone, or an empty or unreadable "
                "lock file. One left by another host only after you confirm it at the prompt, or name that host (--break-lock=HOST). "
                "Never a lock whose process is alive."
            ),
        )
        parser.add_argument("--json", action="store_true", help=_("Print the result as JSON on stdout (the progress goes to stderr)."))
        parser.add_argument(
            "--force",
            action="store_true",
            help=gettext_lazy(
                "Deploy even though the release serving now fails its health check (to deploy a fix; its rollback could not pass "
                "either), or with --strategy zero-downtime over migrations that could break the old release."
            ),
        )
        parser.add_argument(
            "--strategy",
            choices=STRATEGIES,
            default="",
            help=gettext_lazy(
                "stop-first or zero-downtime, instead of the strategy chosen from the migration plan (zero-downtime over an incompatible "
                "plan needs --force)."
            ),
        )

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        if options["interactive"] and not options["dry_run"]:
            # The one policy (deploy_ops.cli): without a terminal to ask on, only --noinput goes ahead.
            refuse_without_terminal(_("deploy"))
        self.json = options["json"]
        # With --json, stdout carries only the result; the progress goes to stderr.
        self.lines = self.stderr if self.json else self.stdout
        deployer = Deployer(
            DeployOptions(
                ref=options["ref"],
                dry_run=options["dry_run"],
                force=options["force"],
                strategy=options["strategy"],
                rollback=not options["no_rollback"],
                health_retries=options["health_retries"],
                health_delay=options["health_delay"],
                break_lock=self.confirm_foreign_lock(options["break_lock"]) if options["interactive"] else options["break_lock"],
            ),
            report=self.report,
            progress=command_progress(self.lines, self.style, self.verbosity),
        )
        if options["interactive"] and not options["dry_run"]:
            deployer.confirm = self.confirm
        try:
            with shown_work(self, self.verbosity):
                exit_code = deployer.run()
        except DeployOpsError as error:
            self.print_result(deployer, error.exit_code, str(error))
            raise  # OpsCommand gives it its exit code
        unverified = exit_code == EXIT_NEEDS_HUMAN and deployer.recorder.record.status == DeploymentRecord.Status.ROLLBACK_UNVERIFIED
        outcome = str(UNVERIFIED if unverified else OUTCOMES.get(exit_code, ""))
        self.print_result(deployer, exit_code, outcome)
        if exit_code != EXIT_OK:
            raise CommandError(outcome, returncode=exit_code)

    def print_result(self, deployer, exit_code: int, message: str) -> None:
        """--json: the exit code, what it means, and the deploy's record (as rollback --status shows records)."""
        if not self.json:
            return
        record = deployer.recorder.record
        self.stdout.write(
            dumps(
                {
                    "exit_code": exit_code,
                    "message": message,
                    "dry_run": deployer.options.dry_run,
                    "record": record_summary(record) if record.finished_at else None,
                }
            )
        )

    def report(self, line: str, level: int = 1) -> None:
        if self.verbosity >= level:
            self.lines.write(line)

    def confirm(self, summary: str) -> bool:
        return ask(f"{summary}\n" + _("Deploy?"))

    def confirm_foreign_lock(self, break_lock):
        """On a terminal, --break-lock over a lock left by another host asks for that host's name."""
        from deploy_ops.lock import inspect_lock

        if break_lock is not True or not sys.stdin.isatty():
            return break_lock
        state = inspect_lock()
        if not state.foreign:
            return break_lock
        host = state.holder.get("host")
        answer = input(
            _("The deploy lock was %(lock)s.\nIf nothing of deploy_ops runs on %(host)s, type %(host)s to take it over: ")
            % {"lock": state.describe(), "host": host}
        )
        return host if answer.strip() == host else break_lock
