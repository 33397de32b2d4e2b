"""``manage.py rollback``: manual recovery, by flags or through an interactive menu.

Exit codes as for deploy: 0 done; 2 failed (or not verified) and a human is needed; 3 refused before
anything changed; 4 an unexpected error; 5 a usage error.  Never 1, which only a deploy's rollback means.
"""

import sys

from django.core.management.base import CommandError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from deploy_ops import rollback
from deploy_ops.backups import list_backups
from deploy_ops.cli import BackupListing, ask, backup_listing, confirm_or_refuse, dumps, shown_work
from deploy_ops.exceptions import EXIT_OK, EXIT_REFUSED, DeployOpsError
from deploy_ops.management.base import OpsCommand
from deploy_ops.models import DeploymentRecord
from deploy_ops.proxy import MAINTENANCE
from deploy_ops.recovery import command_progress
from deploy_ops.stages import stage_label

MENU = [
    ("1", gettext_lazy("List recent commits")),
    ("2", gettext_lazy("List backups")),
    ("3", gettext_lazy("Roll back the code to a commit")),
    ("4", gettext_lazy("Restore a backup")),
    ("5", gettext_lazy("Full rollback (code and database)")),
    ("6", gettext_lazy("Quick rollback (last good release and its backup)")),
    ("7", gettext_lazy("System status")),
    ("q", gettext_lazy("Quit")),
]


# Whether a rollback to the commit starts its kept images or has to build (--list-commits).
# None: the runtime keeps no images (commands), or the engine could not be asked.
IMAGE_MARKS = {True: gettext_lazy("images kept"), False: gettext_lazy("would build"), None: ""}


# The records' kinds and statuses as the operator's language words them (the JSON keeps the identifiers).
KINDS = dict(DeploymentRecord.Kind.choices)
STATUSES = dict(DeploymentRecord.Status.choices)


class Command(OpsCommand):
    # Django accepts a lazy help and shows it in the active language; django-stubs types it str.
    help = gettext_lazy("Roll back code and/or database; without options on a terminal, an interactive menu.")  # type: ignore[assignment]
    requires_system_checks = []

    def add_arguments(self, parser):
        action = parser.add_mutually_exclusive_group()
        action.add_argument(
            "--quick",
            action="store_true",
            help=gettext_lazy("The last release that deployed successfully, with the backup taken when it was left."),
        )
        action.add_argument("--commit", metavar="SHA", help=gettext_lazy("Roll the code back to this commit (the database stays)."))
        action.add_argument("--backup", metavar="NAME|PATH", help=gettext_lazy("Restore this backup (the code stays)."))
        action.add_argument("--full", nargs=2, metavar=("SHA", "NAME|PATH"), help=gettext_lazy("Code to SHA and database to the backup."))
        action.add_argument(
            "--status", action="store_true", help=gettext_lazy("Current commit, services, backups, lock and recent records.")
        )
        action.add_argument(
            "--list-commits", action="store_true", help=gettext_lazy("Recent commits of the deployed branch and their deploys.")
        )
        action.add_argument("--list-backups", action="store_true", help=gettext_lazy("Backups, newest first."))
        parser.add_argument("-n", type=int, default=15, help=gettext_lazy("How many commits --list-commits shows."))
        parser.add_argument("--json", action="store_true", help=gettext_lazy("Machine-readable output for --status and the lists."))
        parser.add_argument(
            "--noinput", "--no-input", action="store_false", dest="interactive", help=gettext_lazy("Do not ask for confirmation.")
        )
        parser.add_argument("--dry-run", action="store_true", help=gettext_lazy("Say what would be done, and why; change nothing."))

    def handle(self, *args, **options):
        self.options = options
        with shown_work(self, options["verbosity"]):
            return self.dispatch(options)

    def dispatch(self, options):
        if options["status"]:
            return self.show_status()
        if options["list_commits"]:
            return self.show_commits(options["n"])
        if options["list_backups"]:
            return self.show_backups()
        if options["quick"]:
            return self.carry_out(rollback.plan_quick())
        if options["commit"]:
            return self.carry_out(rollback.plan_commit(options["commit"]))
        if options["backup"]:
            return self.carry_out(rollback.plan_backup(options["backup"]))
        if options["full"]:
            return self.carry_out(rollback.plan_full(*options["full"]))
        if not sys.stdin.isatty():
            # Nobody can answer a menu here; say how to use it instead of waiting forever.
            usage = self.create_parser("manage.py", "rollback").format_usage().strip()
            raise CommandError(
                _(
                    "No option given and no terminal for the menu. Use --quick, --commit SHA, --backup NAME, "
                    "--full SHA NAME, --status, --list-commits or --list-backups (see --help)."
                )
                + f"\n{usage}",
                returncode=EXIT_REFUSED,
            )
        return self.menu()

    # -- doing it ----------------------------------------------------------------------------
    def carry_out(self, plan, in_menu=False):
        self.stdout.write(_("Rollback plan:"))
        for line in plan.describe():
            self.stdout.write(f"  {line}")
        if self.options["dry_run"]:
            self.stdout.write(_("Dry run: nothing was changed."))
            return
        if in_menu:
            if not ask(_("Go ahead?")):
                self.stdout.write(_("Cancelled; nothing was changed."))
                return
        else:
            # The one policy (deploy_ops.cli): ask on a terminal, refuse without one unless --noinput.
            confirm_or_refuse(self.options["interactive"], _("Go ahead?"), _("roll back"))
        progress = command_progress(self.stdout, self.style, self.options["verbosity"])
        exit_code = rollback.execute(plan, report=self.report, progress=progress)
        if exit_code != EXIT_OK:
            raise CommandError(_("The rollback failed: a human is needed. See `manage.py rollback --status`."), returncode=exit_code)

    def report(self, line, level=1):
        if self.options["verbosity"] >= level:
            self.stdout.write(line)

    # -- looking -----------------------------------------------------------------------------
    def show_status(self):
        found = rollback.status()
        if self.options["json"]:
            self.stdout.write(dumps(found))
            return
        head = found["current_commit"]
        self.stdout.write(_("Project %(project)s (%(environment)s)") % {"project": found["project"], "environment": found["environment"]})
        self.stdout.write(_("Current commit: %(sha)s %(summary)s") % {"sha": head["sha"][:12], "summary": head["summary"]})
        last = found["last_successful_deploy"]
        if last:
            marker = _("the current commit") if found["current_is_last_successful"] else _("NOT the current commit")
            self.stdout.write(
                _("Last successful deploy: %(sha)s at %(at)s (%(marker)s)")
                % {"sha": last["to_commit"][:12], "at": last["started_at"], "marker": marker}
            )
        else:
            self.stdout.write(_("Last successful deploy: none on record"))
        if found["services"]:
            self.stdout.write(_("Services:"))
        else:
            self.stdout.write(_("Services: %(problem)s") % {"problem": found["services_error"] or _("none reported by the runtime")})
        for service in found["services"]:
            self.stdout.write(f"  {service['name']}: {service['state']}{' / ' + service['health'] if service['health'] else ''}")
        self.stdout.write(_("Newest backups:") if found["backups"] else _("Newest backups: none"))
        for backup in found["backups"]:
            self.stdout.write(f"  {BackupListing(**backup).line()}")
        self.stdout.write(_("Lock: %(lock)s") % {"lock": found["lock"]["description"]})
        if found["proxy_routes_to"] == MAINTENANCE:
            self.stdout.write(
                self.style.ERROR(
                    _(
                        "Proxy: answering 503 with its maintenance page (a deploy or rollback stopped the site and did not finish; "
                        "`manage.py rollback` or a deploy sends the traffic back once a release is verified)."
                    )
                )
            )
        elif found["proxy_routes_to"]:
            self.stdout.write(_("Proxy: sends the traffic to %(address)s") % {"address": found["proxy_routes_to"]})
        self.show_serving(found["serving"])
        if found["work_left_behind"]:
            self.stdout.write(
                self.style.ERROR(_("Work of a run that died is still going on (the next deploy or rollback stops it first):"))
            )
            for line in found["work_left_behind"]:
                self.stdout.write(f"  {line}")
        self.stdout.write(_("Recent records:"))
        for record in found["recent_records"]:
            failed = " " + _("(failed at %(stage)s)") % {"stage": stage_label(record["failed_stage"])} if record["failed_stage"] else ""
            kind, status = KINDS.get(record["kind"], record["kind"]), STATUSES.get(record["status"], record["status"])
            self.stdout.write(f"  {record['started_at'][:19]}  {kind:<8} {status:<24} {record['to_commit'][:12]}{failed}")

    def show_serving(self, serving):
        values = {"slot": serving["slot"], "project": serving["compose_project"], "url": serving["health_url"]}
        if serving["slot"]:
            where = _("Serving: the blue/green slot %(slot)s (Compose project %(project)s), health URL %(url)s.") % values
        else:
            where = _("Serving: the project's own web service, health URL %(url)s.") % values
        if serving["healthy"]:
            self.stdout.write(f"{where} " + _("It answers 200."))
        else:
            self.stdout.write(self.style.ERROR(f"{where} " + _("It does not serve: %(problem)s") % {"problem": serving["problem"]}))

    def show_commits(self, count):
        commits = rollback.recent_commits(count)
        if self.options["json"]:
            self.stdout.write(dumps(commits))
            return
        for commit in commits:
            marks = ", ".join(
                f"{KINDS.get(d['kind'], d['kind'])} {STATUSES.get(d['status'], d['status'])} {d['at'][:16]}" for d in commit["deploys"]
            )
            current = "* " if commit["current"] else "  "
            mark = str(IMAGE_MARKS[commit["images_kept"]])
            images = f"{mark:<11}  " if mark else ""
            self.stdout.write(f"{current}{commit['sha'][:12]}  {images}{commit['summary'][:60]:<60}  {marks}")

    def show_backups(self):
        backups = backup_listing(list_backups())
        if self.options["json"]:
            self.stdout.write(dumps([backup.as_json() for backup in backups]))
            return
        if not backups:
            self.stdout.write(_("No backups."))
        for backup in backups:
            self.stdout.write(backup.line())

    # -- the menu ----------------------------------------------------------------------------
    def menu(self):
        while True:
            self.stdout.write("\ndeploy_ops rollback")
            for key, label in MENU:
                self.stdout.write(f"  {key}) {label}")
            try:
                choice = input(_("Choose: ")).strip().lower()
                if choice in ("q", "quit", "0", ""):
                    return
                self.menu_choice(choice)
            except DeployOpsError as error:
                self.stdout.write(self.style.ERROR(str(error)))
            except EOFError:  # Ctrl-D quits, like q
                self.stdout.write("")
                return

    def menu_choice(self, choice):
        if choice == "1":
            self.show_commits(self.options["n"])
        elif choice == "2":
            self.show_backups()
        elif choice == "3":
            self.carry_out(rollback.plan_commit(input(_("Commit (sha, tag or branch): ")).strip()), in_menu=True)
        elif choice == "4":
            self.carry_out(rollback.plan_backup(input(_("Backup (name or path): ")).strip()), in_menu=True)
        elif choice == "5":
            commit = input(_("Commit (sha, tag or branch): ")).strip()
            backup = input(_("Backup (name or path): ")).strip()
            self.carry_out(rollback.plan_full(commit, backup), in_menu=True)
        elif choice == "6":
            self.carry_out(rollback.plan_quick(), in_menu=True)
        elif choice == "7":
            self.show_status()
        else:
            self.stdout.write(_("No such choice: %(choice)r") % {"choice": choice})
